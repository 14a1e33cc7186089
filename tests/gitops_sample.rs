//! Honua's own GitOps sample (`kind: ServiceCollection` dialect) loads through normalization, and what
//! it lacks for the real server is reported at the line of the entity that lacks it.

mod common;

use honua_gitops::config::{ConfigRepo, EnvName};
use honua_gitops::validate::validate_repo;

#[test]
fn the_service_collection_sample_is_normalized_and_its_gaps_located() {
    let root = common::shared().join("gitops-sample/gitops");
    let repo = ConfigRepo::load_dir(&root).unwrap();
    let envs: Vec<String> = repo.environments().map(|e| e.to_string()).collect();
    assert_eq!(envs, ["development", "production"]);

    let prod = repo.effective(&EnvName::new("production")).unwrap().metadata.to_json();
    let parcels = prod["layers"].as_array().unwrap().iter().find(|l| l["id"] == "parcels").unwrap();
    assert_eq!(parcels["serviceId"], "parcels");
    assert_eq!(parcels["idField"], "parcel_id");
    assert_eq!(parcels["geometryField"], "geom");
    assert_eq!(parcels["storage"]["table"], "parcels");
    assert_eq!(parcels["storage"]["primaryKey"], "parcel_id");
    assert_eq!(parcels["caching"]["ttl"], 3600, "unknown keys are preserved");
    assert_eq!(parcels["fields"].as_array().unwrap().len(), 6);
    let service = &prod["services"][0];
    assert_eq!(service["dataSourceId"], "postgis-prod");
    let ds = &prod["dataSources"][0];
    assert_eq!((ds["id"].as_str(), ds["provider"].as_str()), (Some("postgis-prod"), Some("postgis")));

    let diagnostics = validate_repo(&repo, None);
    let file = "environments/production/metadata.yaml";
    let at = |code: &str, msg: &str| {
        diagnostics
            .iter()
            .find(|d| d.file == file && d.code == code && d.message.contains(msg))
            .map(|d| (d.line, d.column))
    };
    assert_eq!(at("dialect.service_collection", "Migrate"), Some((2, 7)));
    // `- name: parcels` under `layers:` is line 13, `- name: roads` line 44.
    assert_eq!(at("schema.required", "layer `parcels` is missing required key `geometryType`"), Some((13, 9)));
    assert_eq!(at("schema.required", "layer `roads` is missing required key `geometryType`"), Some((44, 9)));
    assert_eq!(at("schema.required", "service `roads` is missing required key `folderId`"), Some((39, 5)));
    // The sample's datasources use ${DB_PASSWORD}: no secret findings.
    assert!(!diagnostics.iter().any(|d| d.code == "secret.literal"), "{diagnostics:#?}");
}
