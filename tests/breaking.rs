//! One change per breaking code: each yields exactly that code. Non-breaking changes yield none.

mod common;

use honua_gitops::config::EnvName;
use honua_gitops::diff::{diff_environment, ChangeSet};
use serde_json::{json, Value};

fn base() -> Value {
    let layer = |id: &str, title: &str, table: &str| {
        json!({
            "id": id, "serviceId": "s1", "title": title, "geometryType": "Point",
            "idField": "id", "geometryField": "geom", "crs": ["EPSG:4326", "EPSG:3857"],
            "storage": {"table": table, "geometryColumn": "geom", "primaryKey": "id", "srid": 4326},
            "query": {"maxRecordCount": 1000},
            "styles": {"defaultStyleId": "st1", "styleIds": ["st1"]},
            "caching": {"enabled": true, "ttl": 3600},
            "fields": [
                {"name": "id", "type": "int", "nullable": false},
                {"name": "name", "type": "string", "nullable": true}
            ]
        })
    };
    json!({
        "catalog": {"id": "c", "title": "Catalog"},
        "folders": [{"id": "f1"}, {"id": "f2"}],
        "dataSources": [
            {"id": "db", "provider": "postgis", "connectionString": "Host=a"},
            {"id": "db2", "provider": "postgis", "connectionString": "Host=b"}
        ],
        "services": [
            {"id": "s1", "folderId": "f1", "serviceType": "feature", "dataSourceId": "db", "enabled": true,
             "ogc": {"collectionsEnabled": true}},
            {"id": "s2", "folderId": "f2", "serviceType": "feature", "dataSourceId": "db2"}
        ],
        "styles": [{"id": "st1", "renderer": "simple"}, {"id": "st2", "renderer": "simple"}],
        "layers": [layer("a", "Layer A", "t_a"), layer("b", "Layer B", "t_b")]
    })
}

fn changes(edit: impl FnOnce(&mut Value)) -> ChangeSet {
    let old = base();
    let mut new = base();
    edit(&mut new);
    let file = "environments/production/metadata.json";
    let from = common::repo(&[(file, &old.to_string())]);
    let to = common::repo(&[(file, &new.to_string())]);
    let env = EnvName::new("production");
    diff_environment(&env, from.effective(&env), to.effective(&env))
}

fn codes(cs: &ChangeSet) -> Vec<&'static str> {
    let mut c: Vec<&'static str> = cs.changes.iter().flat_map(|c| c.breaking.iter().map(|b| b.code)).collect();
    c.dedup();
    c
}

fn remove_by_id(list: &mut Value, id: &str) {
    list.as_array_mut().unwrap().retain(|x| x["id"] != id);
}

fn layer(v: &mut Value, i: usize) -> &mut Value {
    &mut v["layers"][i]
}

macro_rules! breaking {
    ($name:ident, $code:literal, $edit:expr) => {
        #[test]
        fn $name() {
            let cs = changes($edit);
            assert_eq!(codes(&cs), [$code], "{:#?}", cs.changes);
            let b = cs.changes.iter().flat_map(|c| &c.breaking).next().unwrap();
            assert!(!b.reason.is_empty());
        }
    };
}

breaking!(service_removed, "service.removed", |v| remove_by_id(&mut v["services"], "s2"));
breaking!(service_type_changed, "service.type_changed", |v| v["services"][0]["serviceType"] = json!("map"));
breaking!(service_folder_changed, "service.folder_changed", |v| v["services"][0]["folderId"] = json!("f2"));
breaking!(service_datasource_changed, "service.datasource_changed", |v| v["services"][0]["dataSourceId"] =
    json!("db2"));
breaking!(service_disabled, "service.disabled", |v| v["services"][0]["enabled"] = json!(false));
breaking!(service_collections_disabled, "service.collections_disabled", |v| v["services"][0]["ogc"]
    ["collectionsEnabled"] = json!(false));
breaking!(service_ogc_block_removed, "service.collections_disabled", |v| {
    v["services"][0].as_object_mut().unwrap().remove("ogc");
});

/// With an `ogc` block Honua's `collectionsEnabled` defaults to true: writing the default out, or
/// leaving it out, changes nothing for clients.
#[test]
fn collections_enabled_defaults_to_true_with_an_ogc_block() {
    let cs = changes(|v| v["services"][0]["ogc"] = json!({"wfsEnabled": true}));
    assert!(codes(&cs).is_empty(), "{:#?}", cs.changes);
    // A service without the block publishes no collections: adding one is not breaking either.
    let cs = changes(|v| v["services"][1]["ogc"] = json!({}));
    assert!(codes(&cs).is_empty(), "{:#?}", cs.changes);
}

breaking!(layer_removed, "layer.removed", |v| remove_by_id(&mut v["layers"], "b"));
breaking!(layer_service_changed, "layer.service_changed", |v| layer(v, 1)["serviceId"] = json!("s2"));
breaking!(layer_geometry_type_changed, "layer.geometry_type_changed", |v| layer(v, 0)["geometryType"] =
    json!("Polygon"));
breaking!(layer_id_field_changed, "layer.id_field_changed", |v| layer(v, 0)["idField"] = json!("name"));
breaking!(layer_geometry_field_changed, "layer.geometry_field_changed", |v| layer(v, 0)["geometryField"] =
    json!("shape"));
breaking!(layer_crs_removed, "layer.crs_removed", |v| layer(v, 0)["crs"] = json!(["EPSG:4326"]));
breaking!(layer_srid_changed, "layer.srid_changed", |v| layer(v, 0)["storage"]["srid"] = json!(3857));
breaking!(layer_storage_table_changed, "layer.storage_table_changed", |v| layer(v, 0)["storage"]["table"] =
    json!("t_new"));
breaking!(layer_primary_key_changed, "layer.primary_key_changed", |v| layer(v, 0)["storage"]["primaryKey"] =
    json!("gid"));
breaking!(layer_max_records_lowered, "layer.max_records_lowered", |v| layer(v, 0)["query"]["maxRecordCount"] =
    json!(100));
breaking!(layer_filter_added, "layer.filter_added", |v| layer(v, 0)["query"]["autoFilter"] =
    json!({"cql": "status = 'active'"}));
breaking!(field_removed, "field.removed", |v| layer(v, 0)["fields"].as_array_mut().unwrap().truncate(1));
breaking!(field_type_changed, "field.type_changed", |v| layer(v, 0)["fields"][1]["type"] = json!("int"));
breaking!(field_nullability_changed, "field.nullability_changed", |v| layer(v, 0)["fields"][1]["nullable"] =
    json!(false));
breaking!(datasource_removed, "datasource.removed", |v| remove_by_id(&mut v["dataSources"], "db2"));
breaking!(datasource_provider_changed, "datasource.provider_changed", |v| v["dataSources"][0]["provider"] =
    json!("sqlite"));
breaking!(style_removed_while_referenced, "style.removed", |v| remove_by_id(&mut v["styles"], "st1"));
breaking!(folder_removed_while_referenced, "folder.removed", |v| remove_by_id(&mut v["folders"], "f2"));

#[test]
fn layer_reordered_flags_every_shifted_esri_index() {
    // Honua sorts a service's layers by `catalog.ordering`, then title: a retitle that sorts "Layer A"
    // after "Layer B" moves both.
    let cs = changes(|v| layer(v, 0)["title"] = json!("Zoned layer A"));
    assert_eq!(codes(&cs), ["layer.reordered"]);
    assert_eq!(cs.summary.breaking, 2, "both layers moved: {:#?}", cs.changes);
    // So does an ordering that puts B first.
    let cs = changes(|v| layer(v, 1)["catalog"] = json!({"ordering": 1}));
    assert_eq!((codes(&cs), cs.summary.breaking), (vec!["layer.reordered"], 2), "{:#?}", cs.changes);
}

#[test]
fn reordering_the_file_alone_shifts_no_esri_index() {
    let cs = changes(|v| v["layers"].as_array_mut().unwrap().swap(0, 1));
    assert!(codes(&cs).is_empty(), "{:#?}", cs.changes);
}

#[test]
fn inserting_a_layer_before_others_shifts_their_index() {
    // Its title sorts first: wherever it is written, A and B move up one index.
    let cs = changes(|v| {
        let mut new = v["layers"][0].clone();
        new["id"] = json!("first");
        new["title"] = json!("Aardvarks");
        v["layers"].as_array_mut().unwrap().push(new);
    });
    assert_eq!(codes(&cs), ["layer.reordered"]);
    assert_eq!(cs.summary, honua_gitops::diff::Summary { added: 1, modified: 2, removed: 0, breaking: 2 });
}

#[test]
fn non_breaking_changes_yield_no_breaking_code() {
    let cs = changes(|v| {
        // Still sorts before "Layer B": no Esri index moves.
        layer(v, 0)["title"] = json!("Layer A (renamed)");
        layer(v, 0)["description"] = json!("Described");
        layer(v, 0)["keywords"] = json!(["k"]);
        layer(v, 0)["caching"]["ttl"] = json!(7200);
        layer(v, 0)["crs"].as_array_mut().unwrap().push(json!("EPSG:25832"));
        layer(v, 0)["fields"].as_array_mut().unwrap().push(json!({"name": "extra", "type": "string"}));
        layer(v, 0)["extent"] = json!({"bbox": [[0, 0, 1, 1]]});
        layer(v, 0)["query"]["maxRecordCount"] = json!(2000);
        v["styles"][0]["renderer"] = json!("uniqueValue");
        v["catalog"]["title"] = json!("Renamed");
        remove_by_id(&mut v["styles"], "st2");
        let mut extra = v["layers"][1].clone();
        extra["id"] = json!("c_at_the_end");
        v["layers"].as_array_mut().unwrap().push(extra);
    });
    assert!(codes(&cs).is_empty(), "{:#?}", cs.changes);
    assert_eq!(cs.summary.added, 1);
    assert_eq!(cs.summary.removed, 1);
}

#[test]
fn a_cache_ttl_change_shows_as_a_field_path_on_its_layer() {
    let cs = changes(|v| layer(v, 0)["caching"]["ttl"] = json!(7200));
    assert_eq!(cs.changes.len(), 1);
    let c = &cs.changes[0];
    assert_eq!(c.id, "s1::a");
    let fields: Vec<String> = c.fields.iter().map(|f| format!("{}: {} -> {}", f.path, f.from, f.to)).collect();
    assert_eq!(fields, ["caching.ttl: 3600 -> 7200"]);
}

#[test]
fn unknown_keys_are_preserved_and_diffed() {
    let cs = changes(|v| layer(v, 0)["vendorExtension"] = json!({"tiles": {"maxZoom": 18}}));
    let fields: Vec<&str> = cs.changes[0].fields.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(fields, ["vendorExtension"]);
}

#[test]
fn ids_match_without_case() {
    let cs = changes(|v| layer(v, 0)["id"] = json!("A"));
    assert_eq!(cs.summary.added + cs.summary.removed, 0, "{:#?}", cs.changes);
}
