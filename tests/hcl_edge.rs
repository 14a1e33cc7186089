//! The loop on a Configuration 2.0 repository (`examples/honua-config-hcl`), through the service and the
//! agent, against the stand-in Honua in its Configuration 2.0 mode (one HCL file, its file watcher, a
//! reload that reads nothing from disk, no snapshot store): the README's examples (a layer added with a
//! setting changed, a rollback), a failed release restored in place, and drift of the file.

mod common;

use std::time::Duration;

use common::edge::{push, push_main, setup_with, Setup};
use honua_gitops::agent::{Agent, PollOutcome};
use honua_gitops::standin::HonuaSettings;
use honua_gitops::store::DeploymentFilter;

async fn approve(s: &Setup, commit: &str) -> String {
    let filter = DeploymentFilter { environment: Some("production".into()), limit: 10, ..Default::default() };
    let d = s.store.deployments(&filter).await.unwrap().into_iter().find(|d| d.commit == commit).unwrap();
    s.service.approve(&d.id, "ops", true).await;
    d.id.to_string()
}

async fn reports(s: &Setup, id: &str) -> Vec<String> {
    s.store.agent_reports(id).await.unwrap().into_iter().map(|r| format!("{}: {}", r.phase, r.message)).collect()
}

fn hcl_file(s: &Setup) -> std::path::PathBuf {
    s.config.target_dir.join(&s.config.hcl_file)
}

fn served(s: &Setup) -> Vec<String> {
    let honua = s.honua.state.lock().unwrap();
    let mut ids: Vec<String> = honua
        .loaded
        .as_ref()
        .map(|v| {
            let node = honua_gitops::config::node::Node::from_json(v, Default::default());
            honua_gitops::config::hcl::served_collections(&node)
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hcl_repository_deploys_rolls_back_and_heals_through_honuas_file_watcher() {
    let tree = common::without_windows(&common::examples().join("honua-config-hcl"));
    let s = setup_with("production", tree.path(), HonuaSettings::configuration_2_0()).await;
    let agent = Agent::new(s.config.clone()).unwrap();

    // The first release: the HCL file appears in Honua's directory, its watcher loads it.
    let base = push_main(&s, "h-1").await;
    let first = approve(&s, &base).await;
    let outcome = agent.poll_once(0).await.unwrap();
    assert_eq!(outcome, PollOutcome::Applied { deployment: first.clone() }, "{:?}", reports(&s, &first).await);
    let text = std::fs::read_to_string(hcl_file(&s)).unwrap();
    assert!(text.contains("Password=s3cret-pw;"), "the secret is resolved on the edge");
    assert!(!std::fs::symlink_metadata(hcl_file(&s)).unwrap().file_type().is_symlink(), "a file, replaced in place");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(hcl_file(&s)).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o640, "secrets inside: the agent's user and group only");
    assert!(served(&s).contains(&"ogc_api::parcels_ogc_api".to_string()), "{:?}", served(&s));
    let done = reports(&s, &first).await;
    assert!(done.iter().any(|r| r.contains("26 expected collection(s) served")), "{done:?}");
    assert!(done.iter().any(|r| r.contains("Configuration 2.0 has no snapshot store")), "{done:?}");
    {
        let honua = s.honua.state.lock().unwrap();
        assert!(honua.watcher_loads >= 1, "Honua read the file by its watcher, not by the reload");
        assert_eq!(honua.snapshots, 0);
    }

    // The PR: a layer added, a field dropped (breaking), production's rate limit raised.
    let pr = common::hcl_pull_request();
    let merged = s.origin.merge(pr.path());
    push(&s, &base, &merged, "h-2").await;
    let id = approve(&s, &merged).await;
    let outcome = agent.poll_once(0).await.unwrap();
    assert_eq!(outcome, PollOutcome::Applied { deployment: id.clone() }, "{:?}", reports(&s, &id).await);
    assert!(served(&s).contains(&"wfs::bike_lanes_wfs".to_string()), "{:?}", served(&s));
    assert!(std::fs::read_to_string(hcl_file(&s)).unwrap().contains("requests = 2000"));

    // A rollback: the previous commit deployed again, the file back to what it was.
    let rollback = s
        .service
        .controller
        .rollbacks()
        .rollback(None, "production", None, "oncall", chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(rollback.commit, base);
    let outcome = agent.poll_once(0).await.unwrap();
    assert_eq!(
        outcome,
        PollOutcome::Applied { deployment: rollback.id.to_string() },
        "{:?}",
        reports(&s, &rollback.id).await
    );
    assert_eq!(std::fs::read_to_string(hcl_file(&s)).unwrap(), text, "the file is the first release's again");
    assert!(!served(&s).contains(&"wfs::bike_lanes_wfs".to_string()), "{:?}", served(&s));

    // Someone edits the file in place: the heartbeat says so (drift), naming the file.
    std::fs::write(hcl_file(&s), text.replace("Property Parcels", "Parcels (edited by hand)")).unwrap();
    assert_eq!(agent.poll_once(0).await.unwrap(), PollOutcome::Unchanged);
    let agents = s.store.agents(Some("production")).await.unwrap();
    let beat = serde_json::to_value(agents[0].heartbeat.as_ref().unwrap()).unwrap();
    assert_eq!(beat["sync"], "drifted", "{beat}");
    assert!(beat["drifted"].to_string().contains("honua.config.hcl (edited in place)"), "{beat}");
}

/// `tree` with production's health timeout cut to 3 s: a release Honua never serves fails in that time.
fn quick_to_fail(tree: &tempfile::TempDir) {
    let policy = tree.path().join(".gitops/deployment-policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, text.replace("healthCheckTimeout: 300", "healthCheckTimeout: 3")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_honua_does_not_serve_is_restored_in_place() {
    let tree = common::without_windows(&common::examples().join("honua-config-hcl"));
    quick_to_fail(&tree);
    let s = setup_with("production", tree.path(), HonuaSettings::configuration_2_0()).await;
    let agent = Agent::new(s.config.clone()).unwrap();
    let base = push_main(&s, "f-1").await;
    approve(&s, &base).await;
    assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));
    let before = std::fs::read_to_string(hcl_file(&s)).unwrap();

    // Honua will not serve the new layer: the agent waits for its watcher, then restores the file.
    s.honua.state.lock().unwrap().hide_collection = Some("ogc_api::bike_lanes_ogc_api".into());
    let pr = common::hcl_pull_request();
    quick_to_fail(&pr);
    let merged = s.origin.merge(pr.path());
    push(&s, &base, &merged, "f-2").await;
    let id = approve(&s, &merged).await;
    let outcome = agent.poll_once(0).await.unwrap();
    let PollOutcome::RolledBack { cause, .. } = outcome else { panic!("{outcome:?} {:?}", reports(&s, &id).await) };
    assert!(cause.contains("ogc_api::bike_lanes_ogc_api") && cause.contains("previous release restored"), "{cause}");
    assert_eq!(std::fs::read_to_string(hcl_file(&s)).unwrap(), before);
    // The watcher loaded the restored file too.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(!served(&s).iter().any(|c| c.contains("bike_lanes")), "{:?}", served(&s));
}

/// `honua agent --check` against a Configuration 2.0 Honua: no snapshot store is not a failure, and the
/// line says where Honua reads its file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_recognises_a_configuration_2_0_honua() {
    let tree = common::without_windows(&common::examples().join("honua-config-hcl"));
    let s = setup_with("production", tree.path(), HonuaSettings::configuration_2_0()).await;
    let agent = Agent::new(s.config.clone()).unwrap();
    let checks = agent.check().await;
    let admin = checks.into_iter().find(|(what, _)| what == "honua admin").expect("an admin line").1;
    let line = admin.unwrap_or_else(|e| panic!("{}", e.0));
    assert!(line.contains("Configuration 2.0") && line.contains("honua.config.hcl"), "{line}");
}
