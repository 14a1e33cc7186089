//! Synthetic config repositories of any size, for benchmarks and load tests: one environment over a
//! common base, `layers` layers spread over services of 50, each with fields, a CRS list and storage.
//! The `changed` variant touches 1% of layers (TTL), drops a field from one, and adds one at the end.

use std::fmt::Write;

use super::source::RepoFiles;

pub fn generate(layers: usize, changed: bool) -> RepoFiles {
    let services = layers.div_ceil(50).max(1);
    let mut m = String::with_capacity(layers * 900);
    m.push_str("catalog:\n  id: synthetic\n  title: Synthetic catalog\nfolders:\n  - id: main\n    title: Main\n");
    m.push_str(
        "dataSources:\n  - id: db\n    provider: postgis\n    connectionString: \"Host=db;Password=${DB_PASSWORD}\"\n",
    );
    m.push_str("services:\n");
    for s in 0..services {
        let _ = write!(m, "  - id: svc{s}\n    folderId: main\n    serviceType: feature\n    dataSourceId: db\n    ogc:\n      collectionsEnabled: true\n");
    }
    m.push_str("layers:\n");
    let total = layers + usize::from(changed);
    for l in 0..total {
        let ttl = if changed && l % 100 == 7 { 7200 } else { 3600 };
        let _ = write!(
            m,
            "  - id: layer{l}\n    serviceId: svc{s}\n    title: Layer {l}\n    geometryType: Polygon\n    idField: gid\n    geometryField: geom\n    \
             crs: [\"EPSG:4326\", \"EPSG:3857\", \"EPSG:25832\"]\n    extent:\n      bbox: [[5.5, 47.2, 15.1, 55.1]]\n    \
             storage:\n      table: public.t{l}\n      geometryColumn: geom\n      primaryKey: gid\n      srid: 4326\n    \
             query:\n      maxRecordCount: 5000\n    caching:\n      ttl: {ttl}\n    fields:\n",
            s = (l / 50).min(services - 1)
        );
        for (name, ty) in [
            ("gid", "int"),
            ("name", "string"),
            ("category", "string"),
            ("area", "double"),
            ("updated", "datetime"),
            ("owner", "string"),
        ] {
            if changed && l == 3 && name == "owner" {
                continue;
            }
            let _ = writeln!(m, "      - {{name: {name}, type: {ty}, nullable: {}}}", name != "gid");
        }
    }
    let mut files = RepoFiles { env_dirs: vec!["common".into(), "production".into()], ..RepoFiles::default() };
    files.files.insert("environments/production/metadata.yaml".into(), m.into_bytes());
    files.files.insert(
        "environments/production/datasources.yaml".into(),
        b"datasources:\n  db:\n    type: postgis\n    connectionString: \"Host=prod;Password=${DB_PASSWORD}\"\n"
            .to_vec(),
    );
    files.files.insert(
        ".gitops/deployment-policy.yaml".into(),
        b"environments:\n  production:\n    autoApprove: false\n    allowBreakingChanges: false\n".to_vec(),
    );
    files
}

/// Writes a generated repository under `dir` (for whole-command measurements).
pub fn write(files: &RepoFiles, dir: &std::path::Path) -> std::io::Result<()> {
    for (path, bytes) in &files.files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().expect("files live in directories"))?;
        std::fs::write(p, bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigRepo, EnvName};

    #[test]
    fn generated_repositories_are_valid_and_differ_as_documented() {
        let base = ConfigRepo::from_files(generate(120, false), "a".into());
        let changed = ConfigRepo::from_files(generate(120, true), "b".into());
        assert!(crate::validate::validate_repo(&base, None).is_empty());
        let env = EnvName::new("production");
        let cs = crate::diff::diff_environment(&env, base.effective(&env), changed.effective(&env));
        assert_eq!((cs.summary.added, cs.summary.modified, cs.summary.breaking), (1, 3, 1));
    }
}
