//! Honua Configuration 2.0 (HCL): Honua's own files get Honua's verdict, a repository of `.hcl` files
//! layers, validates and diffs as a metadata repository does, with the collection ids Honua builds.

mod common;

use std::path::Path;

use common::{code, honua, repo, stdout};
use honua_gitops::config::{load_single_file, ConfigFormat, EnvName};
use honua_gitops::diagnostic::Severity;
use honua_gitops::diff::diff_repositories;
use honua_gitops::validate::{validate_repo, validate_single};

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/honua-hcl")
}

/// `(code, line, column)` of each error of one file validated alone.
fn errors_of(path: &Path) -> Vec<(String, u32, u32)> {
    let file = load_single_file(path).unwrap();
    validate_single(&file)
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| (d.code, d.line, d.column))
        .collect()
}

/// Honua's own Configuration 2.0 files (honua-io/Honua.Server `00710654`), with the verdict Honua's
/// `HclParser` and `honua config validate` give: most of its examples use nested-block syntax
/// (`cors { … }`, `pool { … }`) its parser refuses at the `{` ("Expected '='").
/// The error a file must fail with, `(code, line, column)`, or none.
type Verdict = Option<(&'static str, u32, u32)>;

const VERDICTS: [(&str, Verdict); 12] = [
    ("minimal.honua", None),
    ("production.honua", None),
    // `log_level = "info"`: SyntaxValidator's levels are trace … information … critical.
    ("honua.test.config.hcl", Some(("hcl.log_level", 4, 17))),
    ("all-services-example.honua", Some(("hcl.syntax", 10, 8))),
    ("config.test.example.honua", Some(("hcl.syntax", 24, 10))),
    ("docker-compose-ha.honua", Some(("hcl.syntax", 10, 21))),
    ("docker-compose.honua", Some(("hcl.syntax", 9, 8))),
    ("kubernetes-ha.honua", Some(("hcl.syntax", 10, 21))),
    ("leader-election.example.honua", Some(("hcl.syntax", 9, 21))),
    ("quick-start.honua", Some(("hcl.syntax", 10, 8))),
    ("read-replica-configuration.hcl", Some(("hcl.syntax", 27, 8))),
    ("real-world-gis.honua", Some(("hcl.syntax", 9, 8))),
];

#[test]
fn honuas_own_files_get_honuas_verdict() {
    for (name, verdict) in VERDICTS {
        let errors = errors_of(&fixtures().join(name));
        match verdict {
            None => assert!(errors.is_empty(), "{name}: {errors:?}"),
            Some((code, line, column)) => {
                assert_eq!(errors, [(code.to_string(), line, column)], "{name}")
            }
        }
    }
    let out = honua(&["validate", "--path", fixtures().join("production.honua").to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let out = honua(&["validate", "--path", fixtures().join("real-world-gis.honua").to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(stdout(&out).contains("write `cors = { … }`"), "{}", stdout(&out));
}

/// An invalid variant of each valid file for a rule of each validator: the parser, `SyntaxValidator`,
/// `SemanticValidator`, and ours (variables).
#[test]
fn a_variant_breaking_one_rule_of_each_validator_is_refused_there() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, &str, &str); 8] = [
        ("minimal.honua", "    table = \"roads\"", "    tabel = \"roads\"", "hcl.unknown_attribute"),
        ("minimal.honua", "type = \"LineString\"", "type = \"Linestring\"", "hcl.geometry_type"),
        (
            "minimal.honua",
            "services = [\"odata\", \"ogc_api\"]",
            "services = [\"odata\", \"wfs\"]",
            "hcl.reference_undefined",
        ),
        (
            "minimal.honua",
            "connection = \"Data Source=./data/dev.db\"",
            "connection = \"Data Source=var.db_path\"",
            "hcl.variable_undefined",
        ),
        ("production.honua", "provider = \"postgresql\"", "provider = \"\"", "hcl.provider_required"),
        (
            "production.honua",
            "data_source = \"postgres-primary\"",
            "data_source = data_source.postgres_primary",
            "hcl.reference_undefined",
        ),
        (
            "production.honua",
            "    enabled = true\n    connection = \"${env:REDIS_URL}\"",
            "    enabled = false\n    connection = \"${env:REDIS_URL}\"",
            "hcl.cache_required",
        ),
        ("production.honua", "            requests = 1000\n", "            requests = 0\n", "hcl.rate_limit_rule"),
    ];
    for (i, (name, from, to, expected)) in cases.into_iter().enumerate() {
        let text = std::fs::read_to_string(fixtures().join(name)).unwrap();
        assert!(text.contains(from), "{name} has `{from}`");
        let path = dir.path().join(format!("{i}-{name}"));
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let errors = errors_of(&path);
        assert!(errors.iter().any(|(c, ..)| c == expected), "{name} with `{to}`: {expected} not in {errors:?}");
        let line = text[..text.find(from).unwrap()].matches('\n').count() as u32 + 1;
        let (_, at, _) = errors.iter().find(|(c, ..)| c == expected).unwrap();
        assert!(
            (line..=line + 1).contains(at) || expected == "hcl.cache_required",
            "{expected} at line {at}, edited line {line}"
        );
    }
}

const COMMON: &str = r#"
honua {
  version     = "1.0"
  environment = "development"
  log_level   = "information"
}

data_source "city" {
  provider   = "postgresql"
  connection = "${env:DATABASE_URL}"
  pool = {
    min_size = 1
    max_size = 10
  }
}

service "ogc_api" {
  enabled    = true
  item_limit = 1000
}

service "wfs" {
  enabled = true
}

layer "parcels" {
  title       = "Parcels"
  data_source = data_source.city
  table       = "cadastre.parcels"
  id_field    = "parcel_id"
  geometry = {
    column = "geom"
    type   = "Polygon"
    srid   = 4326
  }
  services = [service.ogc_api, service.wfs]
}

layer "roads" {
  title       = "Roads"
  data_source = data_source.city
  table       = "transport.roads"
  id_field    = "road_id"
  geometry = {
    column = "geom"
    type   = "LineString"
  }
  services = [service.ogc_api]
}
"#;

const PRODUCTION: &str = r#"
honua {
  environment = "production"
  log_level   = "warning"
}

data_source "city" {
  pool = {
    max_size = 50
  }
}

layer "roads" {
  title = "Road Centerlines"
}

rate_limit {
  enabled = true
  rules = {
    default = {
      requests = 1000
      window   = "1m"
    }
  }
}
"#;

fn hcl_repo(common: &str, production: &str) -> honua_gitops::config::ConfigRepo {
    repo(&[("environments/common/base.hcl", common), ("environments/production/honua.hcl", production)])
}

#[test]
fn common_and_environment_layer_by_block_label() {
    let r = hcl_repo(COMMON, PRODUCTION);
    let env = EnvName::new("production");
    assert_eq!(r.format(&env), ConfigFormat::Hcl);
    let diagnostics = validate_repo(&r, None);
    assert!(diagnostics.iter().all(|d| !d.is_error()), "{diagnostics:#?}");
    let effective = r.effective(&env).unwrap();
    let j = effective.metadata.to_json();
    assert_eq!(j["honua"]["environment"], "production");
    assert_eq!(j["honua"]["version"], "1.0", "inherited from common");
    assert_eq!(
        j["data_source"]["city"]["pool"],
        serde_json::json!({"min_size": 1, "max_size": 50}),
        "objects merge deeply"
    );
    assert_eq!(j["data_source"]["city"]["connection"], "${DATABASE_URL}", "a placeholder for the agent");
    assert_eq!(j["layer"]["roads"]["title"], "Road Centerlines");
    assert_eq!(j["layer"]["roads"]["table"], "transport.roads");
    // A finding on a merged value points at the file that wrote it.
    let title = effective.metadata.get_path(&["layer", "roads", "title"]).unwrap();
    assert_eq!(r.sources.path(title.loc.file), "environments/production/honua.hcl");
}

#[test]
fn a_mixed_environment_is_an_error_that_says_how_to_finish() {
    let r = repo(&[
        ("environments/common/base.hcl", COMMON),
        ("environments/production/honua.hcl", PRODUCTION),
        ("environments/production/metadata.yaml", "catalog: {id: c}\n"),
        ("environments/staging/metadata.yaml", "catalog: {id: c}\n"),
    ]);
    let d = validate_repo(&r, None);
    let mixed: Vec<_> = d.iter().filter(|d| d.code == "environment.mixed_formats").map(|d| d.file.as_str()).collect();
    assert_eq!(mixed, ["environments/production", "environments/staging"], "{d:#?}");
    assert!(d.iter().any(|d| d.message.contains("honua convert --to hcl")));
    assert!(r.is_unreadable(&EnvName::new("production")));
}

#[test]
fn a_syntax_error_names_its_line_and_column_and_the_environment_is_not_planned() {
    let r = hcl_repo(COMMON, "layer \"roads\" {\n  title = \"x\"\n  geometry {\n  }\n}\n");
    let d = validate_repo(&r, None);
    let syntax = d.iter().find(|d| d.code == "hcl.syntax").expect("reported");
    assert_eq!((syntax.file.as_str(), syntax.line, syntax.column), ("environments/production/honua.hcl", 3, 12));
    assert!(r.is_unreadable(&EnvName::new("production")));
}

fn changes(old: &str, new: &str) -> serde_json::Value {
    let from = hcl_repo(COMMON, PRODUCTION);
    let to = hcl_repo(&COMMON.replace(old, new), PRODUCTION);
    let sets = diff_repositories(&from, &to, Some(&EnvName::new("production")));
    serde_json::to_value(&sets[0]).unwrap()
}

fn codes(set: &serde_json::Value) -> Vec<String> {
    set["changes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["breaking"].as_array().unwrap().iter().map(|b| b["code"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn breaking_changes_of_configuration_2_0_name_honuas_collections() {
    // A protocol dropped: the layer's collection under it is gone, and with one service left Honua
    // names the remaining collection `parcels`, no longer `parcels_ogc_api`.
    let set = changes("services = [service.ogc_api, service.wfs]", "services = [service.ogc_api]");
    assert_eq!(codes(&set), ["layer.collection_renamed", "layer.protocol_removed"], "{set:#}");
    let reasons = set.to_string();
    assert!(reasons.contains("wfs::parcels_wfs") && reasons.contains("ogc_api::parcels_ogc_api"), "{reasons}");

    let set = changes("  table       = \"transport.roads\"", "  table       = \"transport.road_lines\"");
    assert_eq!(codes(&set), ["layer.storage_table_changed"]);
    assert_eq!(set["changes"][0]["type"], "layer");
    assert_eq!(set["changes"][0]["id"], "roads");
    assert_eq!(set["changes"][0]["fields"][0]["path"], "table");

    let set = changes("    type   = \"LineString\"\n  }", "    type   = \"MultiLineString\"\n    srid   = 3857\n  }");
    assert_eq!(codes(&set), ["layer.geometry_type_changed", "layer.srid_changed"]);

    let set = changes("service \"wfs\" {\n  enabled = true", "service \"wfs\" {\n  enabled = false");
    assert_eq!(codes(&set), ["service.disabled"]);

    let set = changes("provider   = \"postgresql\"", "provider   = \"sqlserver\"");
    assert_eq!(codes(&set), ["datasource.provider_changed"]);
    assert_eq!(set["changes"][0]["type"], "data_source");

    let removed = COMMON.split("layer \"roads\"").next().unwrap();
    let from = hcl_repo(COMMON, "");
    let to = hcl_repo(removed, "");
    let set = serde_json::to_value(&diff_repositories(&from, &to, None)[0]).unwrap();
    assert_eq!(codes(&set), ["layer.removed"]);
    assert!(set.to_string().contains("ogc_api::roads"), "{set}");

    // Not breaking: a title, a pool size, an added layer.
    let set = changes("title       = \"Parcels\"", "title       = \"Property Parcels\"");
    assert!(codes(&set).is_empty() && set["summary"]["modified"] == 1, "{set:#}");
}

#[test]
fn the_cli_diffs_renders_and_plans_an_hcl_repository() {
    let dir = tempfile::tempdir().unwrap();
    let write = |root: &Path, common: &str| {
        for (path, text) in
            [("environments/common/base.hcl", common), ("environments/production/honua.hcl", PRODUCTION)]
        {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    };
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    write(&old, COMMON);
    write(&new, &COMMON.replace("services = [service.ogc_api]\n}", "services = [service.ogc_api]\n}\n\nlayer \"bike_lanes\" {\n  title       = \"Bike Lanes\"\n  data_source = data_source.city\n  table       = \"transport.bike_lanes\"\n  id_field    = \"id\"\n  services    = [service.ogc_api]\n}"));
    let (o, n) = (old.to_str().unwrap(), new.to_str().unwrap());
    let out = honua(&["diff", "--from-dir", o, "--to-dir", n, "--format", "json"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let text = json.to_string();
    assert!(text.contains("\"bike_lanes\"") && text.contains("\"added\""), "{json:#}");
    let out = honua(&["render", "--path", n, "--env", "production"]);
    assert_eq!(code(&out), 0);
    let rendered = stdout(&out);
    assert!(rendered.contains("layer \"bike_lanes\" {\n  title       = \"Bike Lanes\"\n"), "{rendered}");
    assert!(rendered.contains("  environment = \"production\"\n"), "{rendered}");
    assert!(rendered.contains("connection = \"${DATABASE_URL}\""), "{rendered}");
    // What `render` prints is a file Honua's parser reads, with the same verdict.
    let file = dir.path().join("rendered.hcl");
    std::fs::write(&file, &rendered).unwrap();
    assert_eq!(errors_of(&file), []);
    let out = honua(&["plan", "--from-dir", o, "--to-dir", n, "--format", "markdown"]);
    assert!(stdout(&out).contains("bike_lanes"), "{}", stdout(&out));
}

/// `honua convert --to hcl` on the example repository: the written repository validates clean, and
/// per environment the collections Honua served from the metadata are, under their new ids, exactly
/// those it serves from the HCL, with the same data sources; nothing else differs.
#[test]
fn the_example_repository_converts_and_the_proof_holds() {
    let source = common::examples().join("honua-config");
    let repo = honua_gitops::config::ConfigRepo::load_dir(&source).unwrap();
    let conversion = honua_gitops::config::convert::to_hcl(&repo).unwrap();
    assert!(conversion.mismatches.is_empty(), "{:#?}", conversion.mismatches);
    assert_eq!(conversion.proved.len(), 3);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("converted");
    let run = honua(&["convert", "--to", "hcl", "--path", source.to_str().unwrap(), "--output", out.to_str().unwrap()]);
    assert_eq!(code(&run), 0, "{}", stdout(&run));
    let report = stdout(&run);
    assert!(report.contains("cadastre::parcels -> ogc_api::parcels_ogc_api, wfs::parcels_wfs"), "{report}");
    assert!(report.contains("layer cadastre::parcels: catalog, crs, extent, query, styles, caching"), "{report}");
    let converted = honua_gitops::config::ConfigRepo::load_dir(&out).unwrap();
    let findings = validate_repo(&converted, None);
    assert!(findings.iter().all(|d| !d.is_error()), "{findings:#?}");
    for env in repo.environments() {
        let before = honua_gitops::config::served::collections(&repo.effective(env).unwrap().metadata);
        let mut expected: Vec<String> = before
            .iter()
            .flat_map(|c| {
                conversion.renamings.iter().find(|r| r.environment == env.as_str() && &r.from == c).unwrap().to.clone()
            })
            .collect();
        let mut after = honua_gitops::config::hcl::served_collections(&converted.effective(env).unwrap().metadata);
        expected.sort();
        after.sort();
        assert_eq!(expected, after, "{env}");
        let data_sources = |r: &honua_gitops::config::ConfigRepo, key: &str| -> Vec<String> {
            let json = r.effective(env).unwrap().metadata.to_json();
            match key {
                "dataSources" => {
                    json[key].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_string()).collect()
                }
                _ => json[key].as_object().unwrap().keys().cloned().collect(),
            }
        };
        assert_eq!(data_sources(&repo, "dataSources"), data_sources(&converted, "data_source"), "{env}");
    }
    // The policy came along, its data-source rule renamed for Configuration 2.0's type name.
    let policy = std::fs::read_to_string(out.join(".gitops/deployment-policy.yaml")).unwrap();
    assert!(policy.contains("type == \"data_source\""));
    // The committed HCL example is this conversion (plus production's hand-written rate limit).
    let example =
        std::fs::read_to_string(common::examples().join("honua-config-hcl/environments/common/honua.hcl")).unwrap();
    assert_eq!(example, std::fs::read_to_string(out.join("environments/common/honua.hcl")).unwrap());
    // Converting again is refused: the repository is Configuration 2.0 already.
    let again = honua(&["convert", "--to", "hcl", "--path", out.to_str().unwrap()]);
    assert_eq!(code(&again), 2);
}

/// Every valid metadata sample of Honua's converts with the proof holding.
#[test]
fn every_valid_honua_sample_converts_with_the_proof_holding() {
    let mut seen = 0;
    for entry in std::fs::read_dir(common::shared().join("metadata/valid")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let ext = path.extension().unwrap().to_string_lossy().into_owned();
        let r = repo(&[(&format!("environments/production/metadata.{ext}"), &text)]);
        let conversion = honua_gitops::config::convert::to_hcl(&r).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(conversion.mismatches.is_empty(), "{name}: {:#?}", conversion.mismatches);
        let served =
            honua_gitops::config::served::collections(&r.effective(&EnvName::new("production")).unwrap().metadata);
        assert_eq!(conversion.renamings.len(), served.len(), "{name}: every served collection is accounted for");
        assert_eq!(conversion.proved[0].2, conversion.renamings.iter().map(|r| r.to.len()).sum::<usize>(), "{name}");
        seen += 1;
    }
    assert!(seen >= 3);
}

/// A comment right above an entity in the metadata comes along above its block, saying where from.
#[test]
fn comments_above_an_entity_come_along() {
    let r = repo(&[
        ("environments/common/base-metadata.yaml", "services:\n  - id: s\n    dataSourceId: db\n    ogc: {collectionsEnabled: true}\n\nlayers:\n  # The city's parcels,\n  # refreshed nightly.\n  - id: parcels\n    serviceId: s\n    title: Parcels\n    storage: {table: parcels}\n"),
        ("environments/production/metadata.yaml", "dataSources:\n  # The primary database.\n  - {id: db, provider: postgis, connectionString: \"Host=db\"}\n"),
        ("environments/staging/metadata.yaml", "dataSources:\n  - {id: db, provider: postgis, connectionString: \"Host=db2\"}\n"),
    ]);
    let conversion = honua_gitops::config::convert::to_hcl(&r).unwrap();
    let common = &conversion.files["environments/common/honua.hcl"];
    assert!(
        common.contains("# (from environments/common/base-metadata.yaml)\n# The city's parcels,\n# refreshed nightly.\nlayer \"parcels\" {"),
        "{common}"
    );
    // The data source is shared (its provider) and differs (its connection): its comment goes with the
    // block in common/, where it is written first.
    assert!(
        common
            .contains("# (from environments/production/metadata.yaml)\n# The primary database.\ndata_source \"db\" {"),
        "{common}"
    );
    let staging = &conversion.files["environments/staging/honua.hcl"];
    assert!(!staging.contains("# The primary"), "{staging}");
    assert!(conversion.mismatches.is_empty(), "{:#?}", conversion.mismatches);
}
