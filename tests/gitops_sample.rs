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
    // Honua's own sentences, as its validator refuses the file.
    assert_eq!(at("honua.required", "Layer 'parcels' is missing geometryType."), Some((13, 9)));
    assert_eq!(at("honua.required", "Layer 'roads' is missing geometryType."), Some((44, 9)));
    assert_eq!(at("honua.required", "Service 'roads' is missing folderId."), Some((39, 5)));
    assert_eq!(at("honua.required", "Metadata catalog must include an 'id'."), Some((1, 1)));
    // Keys Honua does not read are warnings at the key, naming the merged environment.
    let pooling = diagnostics
        .iter()
        .find(|d| {
            d.file == "environments/production/datasources.yaml"
                && d.code == "key.unknown"
                && d.message.contains("`pooling`")
        })
        .expect("pooling is not read by Honua");
    assert_eq!(
        (pooling.line, pooling.column, pooling.environments.as_slice()),
        (11, 5, &["production".to_string()][..])
    );
    // The sample's `caching: {ttl: 3600}` is known (Honua's GitOps vocabulary): no finding on it.
    assert!(!diagnostics.iter().any(|d| d.message.contains("caching")), "{diagnostics:#?}");
    // The sample's datasources use ${DB_PASSWORD}: no secret findings.
    assert!(!diagnostics.iter().any(|d| d.code == "secret.literal"), "{diagnostics:#?}");
}
