//! The edge agent against real parts on loopback: the service (fake GitHub, SQLite), the config
//! repository over `file://`, and a stand-in Honua that loads and validates what it is given.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use common::edge::{
    agent_token, expected_render, ledger_deployment, live_release, push, push_main, rolled_back_to, setup, setup_from,
    Setup,
};
use common::without_windows;
use honua_gitops::agent::{Agent, AgentConfig, JournalPhase, PollOutcome};
use honua_gitops::standin::StandIn;
use honua_gitops::store::{DeploymentFilter, DeploymentState};

/// The examples' config repository with `edit` applied to development's policy block.
fn tree_with_development_policy(extra: &str) -> tempfile::TempDir {
    let dir = common::example_with_policy("development", extra);
    let policy = dir.path().join(".gitops/deployment-policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, text.replacen("healthCheckTimeout: 60", "healthCheckTimeout: 2", 1)).unwrap();
    dir
}

async fn approve_waiting(s: &Setup, environment: &str) {
    assert!(approve_waiting_if_any(s, environment).await, "a deployment of {environment} awaits approval");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_applies_what_was_approved_and_honua_loads_exactly_the_effective_config() {
    let s = setup("development").await;
    let agent = Agent::new(s.config.clone()).unwrap();
    assert_eq!(agent.poll_once(0).await.unwrap(), PollOutcome::Unchanged, "nothing approved yet");

    let base = push_main(&s, "g-1").await;
    let PollOutcome::Applied { deployment } = agent.poll_once(0).await.unwrap() else { panic!("not applied") };
    let d = s.store.deployment(&deployment).await.unwrap().unwrap();
    assert_eq!(
        (d.state, d.environment.as_str(), d.commit.as_str()),
        (DeploymentState::Completed, "development", base.as_str())
    );
    assert_eq!(s.honua.state.lock().unwrap().loaded.clone().unwrap(), expected_render(&s, &base, "development"));
    // The release is owner-only; `current` points at it.
    let current = live_release(&s);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(current.join("metadata.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by others: {mode:o}");
    }
    // Again: nothing new, nothing done.
    assert_eq!(agent.poll_once(0).await.unwrap(), PollOutcome::Unchanged);
    assert_eq!(s.honua.state.lock().unwrap().reloads, 1);

    // The next merge is applied on top; the phases are on the deployment.
    let merged = s.origin.merge(&common::examples().join("honua-config-pr"));
    push(&s, &base, &merged, "g-2").await;
    let PollOutcome::Applied { deployment } = agent.poll_once(0).await.unwrap() else { panic!("not applied") };
    assert_eq!(s.honua.state.lock().unwrap().loaded.clone().unwrap(), expected_render(&s, &merged, "development"));
    let phases: Vec<String> =
        s.store.agent_reports(&deployment).await.unwrap().into_iter().map(|r| r.phase.to_string()).collect();
    assert_eq!(phases, ["fetching", "rendering", "writing", "swapping", "reloading", "completed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_or_a_missing_collection_rolls_back_to_the_previous_release() {
    let s = setup("development").await;
    let agent = Agent::new(s.config.clone()).unwrap();
    let base = push_main(&s, "g-1").await;
    assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));
    let good = s.honua.state.lock().unwrap().loaded.clone().unwrap();
    let good_release = live_release(&s);

    // The merge adds `transportation::bike_lanes`; Honua does not serve it after the reload.
    let merged = s.origin.merge(&common::examples().join("honua-config-pr"));
    push(&s, &base, &merged, "g-2").await;
    s.honua.state.lock().unwrap().hide_collection = Some("transportation::bike_lanes".into());
    let cause = rolled_back_to(&s, agent.poll_once(0).await.unwrap(), &good_release).await;
    assert!(cause.contains("`transportation::bike_lanes` not served"), "{cause}");
    assert!(cause.contains("previous release restored"), "{cause}");
    assert_eq!(s.honua.state.lock().unwrap().loaded.clone().unwrap(), good, "Honua runs the previous config again");
}

/// A merge removes `transportation::bike_lanes` and Honua still serves it after the reload: the agent
/// rolls back. What the live release served is read from its manifest, or, for a manifest an older agent
/// wrote (no `collections`), from the live file itself; both must find the collection that is to go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_collection_still_served_after_the_reload_rolls_back() {
    for manifest_lists_collections in [true, false] {
        let s = setup("development").await;
        let agent = Agent::new(s.config.clone()).unwrap();
        let base = push_main(&s, "g-1").await;
        let with_lanes = s.origin.merge(&common::examples().join("honua-config-pr"));
        push(&s, &base, &with_lanes, "g-2").await;
        assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));
        let lanes_release = live_release(&s);
        if !manifest_lists_collections {
            let name = lanes_release.file_name().unwrap().to_string_lossy().into_owned();
            let path = s.config.state_dir.join("manifests").join(format!("{name}.json"));
            let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            assert!(manifest.as_object_mut().unwrap().remove("collections").is_some(), "{manifest}");
            std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
        }

        // Back to the configuration without the layer; Honua's reload does not drop it.
        let without_lanes = s.origin.merge(&common::examples().join("honua-config"));
        push(&s, &with_lanes, &without_lanes, "g-3").await;
        approve_waiting_if_any(&s, "development").await;
        s.honua.state.lock().unwrap().keep_collection = Some("transportation::bike_lanes".into());
        eprintln!("the live release's manifest lists its collections: {manifest_lists_collections}");
        let cause = rolled_back_to(&s, agent.poll_once(0).await.unwrap(), &lanes_release).await;
        assert!(cause.contains("`transportation::bike_lanes` still served after their removal"), "{cause}");
    }
}

/// A layer added by hand to the live release (drift, not healed) is served: the release's manifest no
/// longer describes the file, so the agent reads what the file serves. The next merge does not have the
/// layer, Honua's reload does not drop it, and the agent rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_added_by_hand_to_the_live_release_must_be_gone_after_the_next_apply() {
    let s = setup("development").await;
    let agent = Agent::new(s.config.clone()).unwrap();
    let base = push_main(&s, "g-1").await;
    assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));
    let edited = live_release(&s);
    let live = edited.join("metadata.json");
    let mut metadata: serde_json::Value = serde_json::from_slice(&std::fs::read(&live).unwrap()).unwrap();
    let layers = metadata["layers"].as_array_mut().unwrap();
    let mut copy = layers.iter().find(|l| l["serviceId"] == "transportation").unwrap().clone();
    copy["id"] = "hand_added".into();
    layers.push(copy);
    std::fs::write(&live, serde_json::to_vec_pretty(&metadata).unwrap()).unwrap();

    let merged = s.origin.merge(&common::examples().join("honua-config-pr"));
    push(&s, &base, &merged, "g-2").await;
    s.honua.state.lock().unwrap().keep_collection = Some("transportation::hand_added".into());
    let cause = rolled_back_to(&s, agent.poll_once(0).await.unwrap(), &edited).await;
    assert!(cause.contains("`transportation::hand_added` still served after their removal"), "{cause}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_refuses_the_deployment_before_anything_is_touched() {
    let s = setup("development").await;
    std::fs::write(s.config.secrets_file.as_ref().unwrap(), "OTHER=1\n").unwrap();
    let agent = Agent::new(s.config.clone()).unwrap();
    push(&s, &"0".repeat(40), &s.origin.main_sha(), "g-1").await;
    let err = agent.poll_once(0).await.unwrap_err().to_string();
    assert!(err.contains("`${DB_PASSWORD}` is set neither"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    assert!(!s.config.target_dir.join("current").exists(), "nothing was swapped");
    assert_eq!(s.honua.state.lock().unwrap().reloads, 0);
    let d = s
        .store
        .deployments(&DeploymentFilter { limit: 10, environment: Some("development".into()), ..Default::default() })
        .await
        .unwrap()
        .remove(0);
    assert_eq!(d.state, DeploymentState::Failed);
    let report = s.store.agent_reports(&d.id).await.unwrap().pop().unwrap();
    assert!(report.message.contains("DB_PASSWORD") && !report.message.contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_does_not_verify_is_refused() {
    let mut s = setup("development").await;
    // An agent that pinned another key: the service's records do not verify.
    s.config.public_key = honua_gitops::plan::signing::Signer::from_secret(&[7u8; 32]).unwrap().public_key();
    let agent = Agent::new(s.config.clone()).unwrap();
    push(&s, &"0".repeat(40), &s.origin.main_sha(), "g-1").await;
    let err = agent.poll_once(0).await.unwrap_err().to_string();
    assert!(err.contains("signature does not verify"), "{err}");
    assert_eq!(s.honua.state.lock().unwrap().reloads, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_error_or_a_server_that_never_turns_ready_rolls_back() {
    let s = setup("development").await;
    let agent = Agent::new(s.config.clone()).unwrap();
    let base = push_main(&s, "g-1").await;
    assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));

    // This commit's policy gives development 2 s to turn healthy; as what runs, it judges the next ones.
    // A policy edit needs an approval, even in development.
    let quick = tempfile::tempdir().unwrap();
    common::copy_tree(&common::examples().join("honua-config-pr"), quick.path());
    let policy = quick.path().join(".gitops/deployment-policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, text.replacen("healthCheckTimeout: 60", "healthCheckTimeout: 2", 1)).unwrap();
    let merged = s.origin.merge(quick.path());
    push(&s, &base, &merged, "g-2").await;
    approve_waiting(&s, "development").await;
    assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));
    let good_release = live_release(&s);
    let retitled = |title: &str| {
        let dir = tempfile::tempdir().unwrap();
        common::copy_tree(quick.path(), dir.path());
        let meta = dir.path().join("environments/development/metadata.yaml");
        let text = std::fs::read_to_string(&meta).unwrap();
        std::fs::write(&meta, text.replacen("title:", &format!("title: {title} "), 1)).unwrap();
        dir
    };

    // Reload answers 500: swap back. The restore's own reload fails too, and the report says so.
    let first = retitled("Again");
    let newer = s.origin.merge(first.path());
    push(&s, &merged, &newer, "g-3").await;
    s.honua.state.lock().unwrap().fail_reloads = true;
    let PollOutcome::RolledBack { cause, .. } = agent.poll_once(0).await.unwrap() else { panic!("not rolled back") };
    assert!(cause.starts_with("Honua refused the new metadata (HTTP 500"), "{cause}");
    assert!(cause.contains("restoring the previous release failed too"), "{cause}");
    assert_eq!(live_release(&s), good_release);

    // Reloads work again but Honua never turns ready: the policy's 2 s health timeout rolls back.
    {
        let mut h = s.honua.state.lock().unwrap();
        h.fail_reloads = false;
        h.unhealthy = true;
    }
    let second = retitled("Once more");
    let newest = s.origin.merge(second.path());
    push(&s, &newer, &newest, "g-4").await;
    let cause = rolled_back_to(&s, agent.poll_once(0).await.unwrap(), &good_release).await;
    assert!(cause.starts_with("not healthy within 2 s"), "{cause}");
}

/// The agent dies (as with SIGKILL: nothing after the journal entry runs) at each phase of an apply;
/// a restarted agent converges to the new release fully verified, and the service learns it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_apply_phase_converges_after_restart() {
    for &phase in JournalPhase::ALL {
        let s = setup("development").await;
        let base = push_main(&s, "g-1").await;
        let crashing = Agent::new(AgentConfig { crash_after: Some(phase), ..s.config.clone() }).unwrap();
        let err = crashing.poll_once(0).await.unwrap_err().to_string();
        assert!(err.contains("crashed after"), "{phase}: {err}");
        let reloads_before = s.honua.state.lock().unwrap().reloads;
        assert_eq!(reloads_before, 0, "{phase}: Honua never saw the interrupted apply");

        let restarted = Agent::new(s.config.clone()).unwrap();
        // Before the swap the partial release is discarded and the deployment applied from scratch;
        // after it, the live release is verified. Either way one poll converges.
        let outcome = restarted.poll_once(0).await.unwrap();
        let PollOutcome::Applied { deployment } = outcome else { panic!("{phase}: {outcome:?}") };
        assert_eq!(
            s.store.deployment(&deployment).await.unwrap().unwrap().state,
            DeploymentState::Completed,
            "{phase}"
        );
        assert_eq!(
            s.honua.state.lock().unwrap().loaded.clone().unwrap(),
            expected_render(&s, &base, "development"),
            "{phase}"
        );
        assert!(!s.config.state_dir.join("journal.json").exists(), "{phase}: journal cleared");
        assert_eq!(restarted.poll_once(0).await.unwrap(), PollOutcome::Unchanged, "{phase}: converged once");
    }
}

/// Work in a child process: a child that ends without answering fails the poll with its exit status
/// and applies nothing; a child's own failure is the poll's error; a program that cannot be started
/// has the work done in the agent's process.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_in_a_child_process_fails_cleanly_and_falls_back_to_this_process() {
    use honua_gitops::agent::isolate::Isolation;
    let s = setup("development").await;
    let base = push_main(&s, "c-1").await;
    let sh = |script: &str| Isolation::new("/bin/sh".into(), vec!["-c".into(), script.into()]);
    let mut agent = Agent::new(s.config.clone()).unwrap();

    agent.isolate_work(sh("cat > /dev/null; exit 3"));
    let e = agent.poll_once(0).await.unwrap_err().to_string();
    assert!(e.contains("exit status: 3") && e.contains("without an answer"), "{e}");
    assert!(!s.config.target_dir.join("current").exists(), "nothing was swapped");
    assert_eq!(s.honua.state.lock().unwrap().reloads, 0);

    agent.isolate_work(sh(r#"cat > /dev/null; printf '{"Failed":"render: the child said why"}'"#));
    let e = agent.poll_once(0).await.unwrap_err().to_string();
    assert_eq!(e, "render: the child said why");

    agent.isolate_work(Isolation::new("/nonexistent/honua-agent".into(), Vec::new()));
    assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));
    assert_eq!(s.honua.state.lock().unwrap().loaded.clone().unwrap(), expected_render(&s, &base, "development"));
}

fn agent_process(config: &AgentConfig, args: &[&str]) -> std::process::Output {
    agent_command(config, args).output().unwrap()
}

/// `honua agent` configured by its environment variables only.
fn agent_command(config: &AgentConfig, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_honua"));
    cmd.arg("agent");
    configured(cmd, config, args)
}

/// The slim `honua-agent` binary, configured the same way.
fn slim_agent_command(config: &AgentConfig, args: &[&str]) -> std::process::Command {
    configured(std::process::Command::new(env!("CARGO_BIN_EXE_honua-agent")), config, args)
}

fn configured(mut cmd: std::process::Command, config: &AgentConfig, args: &[&str]) -> std::process::Command {
    cmd.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in [
        ("HONUA_AGENT_SERVER", config.server.clone()),
        ("HONUA_AGENT_TOKEN", config.token.clone()),
        ("HONUA_AGENT_ENVIRONMENT", config.environment.clone()),
        ("HONUA_AGENT_PUBLIC_KEY", config.public_key.clone()),
        ("HONUA_AGENT_GIT_URL", config.git_url.clone()),
        ("HONUA_AGENT_TARGET_DIR", config.target_dir.display().to_string()),
        ("HONUA_AGENT_HONUA_URL", config.reload_url.split("/v1/").next().unwrap().to_string()),
        ("HONUA_AGENT_ADMIN_USER", honua_gitops::standin::ADMIN_USER.to_string()),
        ("HONUA_AGENT_ADMIN_PASSWORD", honua_gitops::standin::ADMIN_PASSWORD.to_string()),
        ("HONUA_AGENT_STATE_DIR", config.state_dir.display().to_string()),
        ("HONUA_AGENT_SECRETS_FILE", config.secrets_file.as_ref().unwrap().display().to_string()),
        ("HONUA_AGENT_HEALTH_TIMEOUT", "2".into()),
    ] {
        cmd.env(k, v);
    }
    cmd
}

/// The slim binary is the same agent: it checks, then applies once, as `honua agent` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slim_honua_agent_binary_checks_and_applies_as_honua_agent_does() {
    let s = setup("development").await;
    std::fs::create_dir_all(&s.config.state_dir).unwrap();
    let config = s.config.clone();
    let out =
        tokio::task::spawn_blocking(move || slim_agent_command(&config, &["--check"]).output().unwrap()).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for line in ["ok    service:", "ok    git:", "ok    honua:", "ok    honua admin:"] {
        assert!(text.contains(line), "{line} missing: {text}");
    }
    push(&s, &"0".repeat(40), &s.origin.main_sha(), "g-1").await;
    let config = s.config.clone();
    let out =
        tokio::task::spawn_blocking(move || slim_agent_command(&config, &["--once"]).output().unwrap()).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Applied"), "{out:?}");
    let base = s.origin.main_sha();
    assert_eq!(s.honua.state.lock().unwrap().loaded.clone().unwrap(), expected_render(&s, &base, "development"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honua_agent_checks_its_prerequisites_and_applies_once_as_a_process() {
    let s = setup("development").await;
    std::fs::create_dir_all(&s.config.state_dir).unwrap();
    let config = s.config.clone();
    let out = tokio::task::spawn_blocking(move || agent_process(&config, &["--check"])).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for line in ["ok    service:", "ok    git:", "ok    target directory:", "ok    honua:"] {
        assert!(text.contains(line), "{line} missing: {text}");
    }
    assert!(!text.contains(&s.config.token), "the token is never printed");

    let bad = AgentConfig { token: "honua_wrong".into(), ..s.config.clone() };
    let out = tokio::task::spawn_blocking(move || agent_process(&bad, &["--check"])).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL  service: the token is refused"), "{text}");

    let missing = AgentConfig { public_key: "ed25519:nope".into(), ..s.config.clone() };
    let out = tokio::task::spawn_blocking(move || agent_process(&missing, &["--check"])).await.unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad setting: the agent cannot start");
    assert!(String::from_utf8_lossy(&out.stderr).contains("HONUA_AGENT_PUBLIC_KEY"), "{out:?}");

    push(&s, &"0".repeat(40), &s.origin.main_sha(), "g-1").await;
    let config = s.config.clone();
    let out = tokio::task::spawn_blocking(move || agent_process(&config, &["--once"])).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Applied"), "{out:?}");
    assert_eq!(
        s.honua.state.lock().unwrap().loaded.clone().unwrap(),
        expected_render(&s, &s.origin.main_sha(), "development")
    );
}

/// With the service down, the agent applies what the Git ledger holds (verified with the pinned key)
/// and keeps its reports; when the service is back, the reports arrive and the state is true again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_service_down_the_agent_applies_from_the_git_ledger_and_reports_later() {
    let s = setup("development").await;
    let base = push_main(&s, "g-1").await;
    let dev = ledger_deployment(&s, "development").await;

    // Port 9 (discard) on loopback: nothing listens, the service is unreachable.
    let offline = Agent::new(AgentConfig { server: "http://127.0.0.1:9".into(), ..s.config.clone() }).unwrap();
    assert_eq!(offline.poll_once(0).await.unwrap(), PollOutcome::Applied { deployment: dev.clone() });
    assert_eq!(s.honua.state.lock().unwrap().loaded.clone().unwrap(), expected_render(&s, &base, "development"));
    assert_eq!(s.store.deployment(&dev).await.unwrap().unwrap().state, DeploymentState::Approved, "not told yet");
    assert!(s.config.state_dir.join("pending-reports.json").exists());
    assert_eq!(offline.poll_once(0).await.unwrap(), PollOutcome::Unchanged, "a replay from the ledger changes nothing");

    // The service is back: the kept reports arrive, in order, and nothing is applied twice.
    let online = Agent::new(s.config.clone()).unwrap();
    assert_eq!(online.poll_once(0).await.unwrap(), PollOutcome::Unchanged);
    assert_eq!(s.store.deployment(&dev).await.unwrap().unwrap().state, DeploymentState::Completed);
    assert_eq!(s.honua.state.lock().unwrap().reloads, 1);
}

/// Edits `file` of the live release by hand, as an operator on the server would.
fn hand_edit(s: &Setup, file: &str) {
    let path = s.config.target_dir.join("current").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"title\"", "\"title\" ", 1) + "\n").unwrap();
}

async fn agent_view(s: &Setup, name: &str) -> serde_json::Value {
    let store = s.store.clone();
    let agents = store.agents(Some(&s.config.environment)).await.unwrap();
    let a = agents.into_iter().find(|a| a.name == name).unwrap();
    serde_json::to_value(a.heartbeat.as_ref().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_of_the_live_config_is_reported_as_drift_and_left_without_self_heal() {
    let s = setup("development").await;
    let agent = Agent::new(s.config.clone()).unwrap();
    push(&s, &"0".repeat(40), &s.origin.main_sha(), "g-1").await;
    assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));
    assert_eq!(agent.poll_once(0).await.unwrap(), PollOutcome::Unchanged);
    let beat = agent_view(&s, "development-agent").await;
    assert_eq!((beat["sync"].as_str(), beat["health"].as_str()), (Some("synced"), Some("healthy")), "{beat}");

    hand_edit(&s, "metadata.json");
    std::fs::write(s.config.target_dir.join("current/notes.txt"), "hello").unwrap();
    assert_eq!(agent.poll_once(0).await.unwrap(), PollOutcome::Unchanged);
    let beat = agent_view(&s, "development-agent").await;
    assert_eq!(beat["sync"].as_str(), Some("drifted"), "{beat}");
    assert_eq!(beat["health"].as_str(), Some("healthy"), "health and sync are separate axes");
    assert_eq!(beat["drifted"], serde_json::json!(["metadata.json", "notes.txt (added)"]));
    // No selfHeal in this policy: the edit stays, and the service knows (audited once).
    assert!(std::fs::read_to_string(s.config.target_dir.join("current/metadata.json")).unwrap().ends_with('\n'));
    assert_eq!(s.honua.state.lock().unwrap().reloads, 1);
    let audit = s.store.audit(0, None, 500).await.unwrap();
    let drift: Vec<_> = audit.iter().filter(|e| e.action == "agent.drift").collect();
    assert_eq!(drift.len(), 1);
    assert!(drift[0].message.contains("metadata.json, notes.txt (added)"), "{}", drift[0].message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_self_heal_a_hand_edit_is_restored_and_verified() {
    let tree = tree_with_development_policy("    selfHeal: true\n");
    let s = setup_from("development", tree.path()).await;
    let agent = Agent::new(s.config.clone()).unwrap();
    let base = push_main(&s, "g-1").await;
    assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));

    hand_edit(&s, "metadata.json");
    assert_eq!(agent.poll_once(0).await.unwrap(), PollOutcome::Unchanged);
    let beat = agent_view(&s, "development-agent").await;
    assert_eq!((beat["sync"].as_str(), beat["restored"].as_str()), (Some("synced"), Some("restored (selfHeal)")));
    assert_eq!(beat["drifted"], serde_json::json!(["metadata.json"]), "what was restored is named");
    let live: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.config.target_dir.join("current/metadata.json")).unwrap()).unwrap();
    assert_eq!(live, expected_render(&s, &base, "development"));
    assert_eq!(s.honua.state.lock().unwrap().reloads, 2, "Honua reloaded the restored release");
    assert_eq!(s.honua.state.lock().unwrap().loaded.clone().unwrap(), expected_render(&s, &base, "development"));
    let audit = s.store.audit(0, None, 500).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "agent.drift" && e.message.contains("restored (selfHeal)")));
    // In sync again: the next poll changes nothing.
    assert_eq!(agent.poll_once(0).await.unwrap(), PollOutcome::Unchanged);
    assert_eq!(agent_view(&s, "development-agent").await["sync"].as_str(), Some("synced"));
    assert_eq!(s.honua.state.lock().unwrap().reloads, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rollback_on_failure_a_failed_release_is_left_in_place_and_reported_failed() {
    let tree = tree_with_development_policy("");
    let policy = tree.path().join(".gitops/deployment-policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, text.replacen("rollbackOnFailure: true", "rollbackOnFailure: false", 1)).unwrap();
    let s = setup_from("development", tree.path()).await;
    let agent = Agent::new(s.config.clone()).unwrap();
    s.honua.state.lock().unwrap().unhealthy = true;
    push(&s, &"0".repeat(40), &s.origin.main_sha(), "g-1").await;
    let err = agent.poll_once(0).await.unwrap_err().to_string();
    assert!(err.contains("not healthy within 2 s") && err.contains("rollbackOnFailure: false"), "{err}");
    assert!(s.config.target_dir.join("current").exists(), "left in place");
    let d = s.store.deployments(&DeploymentFilter { limit: 1, ..Default::default() }).await.unwrap().remove(0);
    assert_eq!(d.state, DeploymentState::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_config_change_restarts_honua_and_require_backup_takes_a_snapshot() {
    let mut s = setup("staging").await;
    let marker = s.config.state_dir.parent().unwrap().join("restarts.log");
    // A restart, as the stand-in knows it: noted, then Honua loads what `current` holds (the script
    // holds an administrator's token, and sends the X-API-Key Honua's CSRF check wants).
    s.config.restart_command = Some(format!(
        "echo restarted >> '{}' && curl -fsS -X POST -H 'X-API-Key: restart' -H 'Authorization: Bearer {}' {}/v1/admin/metadata/reload",
        marker.display(),
        s.honua.admin_token(),
        s.honua.url
    ));
    let agent = Agent::new(s.config.clone()).unwrap();
    let base = push_main(&s, "g-1").await;
    assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));
    // staging says requireBackup, but nothing ran before the first release: no snapshot to take.
    assert_eq!(s.honua.state.lock().unwrap().snapshots, 0);
    let restarts = || std::fs::read_to_string(&marker).unwrap_or_default().lines().count();
    assert_eq!(restarts(), 1, "the first release brings the server configuration");
    let reloads = s.honua.state.lock().unwrap().reloads;
    let first_release = live_release(&s);

    // Only metadata changes: a reload, no restart; Honua's snapshot API was called before the swap, and
    // Honua wrote the snapshot through `current`, into the release that was live then.
    let merged = s.origin.merge(&common::examples().join("honua-config-pr"));
    push(&s, &base, &merged, "g-2").await;
    assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));
    assert_eq!((restarts(), s.honua.state.lock().unwrap().reloads), (1, reloads + 1));
    assert_eq!(s.honua.state.lock().unwrap().snapshots, 1);
    let snapshots = std::fs::read_dir(first_release.join("metadata-snapshots")).unwrap().count();
    assert_eq!(snapshots, 1, "one snapshot, labelled with the deployment id");

    // config.yaml changes: the restart command, not a reload.
    let changed = tempfile::tempdir().unwrap();
    common::copy_tree(&common::examples().join("honua-config-pr"), changed.path());
    let config = changed.path().join("environments/staging/config.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\nrequestTimeoutSeconds: 45\n")).unwrap();
    let newer = s.origin.merge(changed.path());
    push(&s, &merged, &newer, "g-3").await;
    let outcome = agent.poll_once(0).await.unwrap();
    assert!(matches!(outcome, PollOutcome::Applied { .. }), "{outcome:?}");
    assert_eq!((restarts(), s.honua.state.lock().unwrap().reloads), (2, reloads + 2), "restarted, not reloaded");
    let live: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.config.target_dir.join("current/config.yaml")).unwrap()).unwrap();
    assert_eq!(live["requestTimeoutSeconds"], 45);
    let PollOutcome::Applied { .. } = outcome else { unreachable!() };
    let reports = s
        .store
        .agent_reports(&s.store.deployments(&DeploymentFilter { limit: 1, ..Default::default() }).await.unwrap()[0].id)
        .await
        .unwrap();
    assert!(reports.iter().any(|r| r.message.contains("restarting Honua")), "{reports:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_fails_refuses_a_deployment_that_requires_a_backup() {
    let mut s = setup("staging").await;
    s.config.snapshot_url = Some(format!("{}/no-such-snapshot-api", s.honua.url));
    let agent = Agent::new(s.config.clone()).unwrap();
    push(&s, &"0".repeat(40), &s.origin.main_sha(), "g-1").await;
    let err = agent.poll_once(0).await.unwrap_err().to_string();
    assert!(err.contains("requireBackup: ") && err.contains("no-such-snapshot-api answered HTTP 404"), "{err}");
    assert!(!s.config.target_dir.join("current").exists(), "nothing was touched");
    assert_eq!(s.honua.state.lock().unwrap().reloads, 0);
}

/// Two agents on one environment under `rollout: one-at-a-time`: the second is offered the deployment
/// only once the first completed it; the deployment completes when both have; a failure on the first
/// stops the rollout before the second is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_at_a_time_applies_agent_by_agent_and_stops_at_the_first_failure() {
    let tree = tree_with_development_policy("    rollout: one-at-a-time\n");
    let s = setup_from("development", tree.path()).await;
    let first = Agent::new(s.config.clone()).unwrap();
    let (second, second_honua, _second_dir) = another_agent(&s, "development-agent-2", "development").await;
    // Both check in before anything is approved.
    assert_eq!(first.poll_once(0).await.unwrap(), PollOutcome::Unchanged);
    assert_eq!(second.poll_once(0).await.unwrap(), PollOutcome::Unchanged);

    let base = push_main(&s, "g-1").await;
    assert_eq!(second.poll_once(0).await.unwrap(), PollOutcome::Unchanged, "not its turn yet");
    let PollOutcome::Applied { deployment } = first.poll_once(0).await.unwrap() else { panic!("first") };
    assert_eq!(s.store.deployment(&deployment).await.unwrap().unwrap().state, DeploymentState::Applying);
    assert_eq!(second.poll_once(0).await.unwrap(), PollOutcome::Applied { deployment: deployment.clone() });
    assert_eq!(s.store.deployment(&deployment).await.unwrap().unwrap().state, DeploymentState::Completed);
    assert_eq!(second_honua.state.lock().unwrap().loaded.clone().unwrap(), expected_render(&s, &base, "development"));

    // The next one fails on the first agent: rolled back there, never offered to the second.
    let merged = s.origin.merge(&common::examples().join("honua-config-pr"));
    push(&s, &base, &merged, "g-2").await;
    approve_waiting_if_any(&s, "development").await;
    s.honua.state.lock().unwrap().fail_reloads = true;
    let PollOutcome::RolledBack { deployment, .. } = first.poll_once(0).await.unwrap() else { panic!("first") };
    assert_eq!(s.store.deployment(&deployment).await.unwrap().unwrap().state, DeploymentState::RolledBack);
    assert_eq!(second.poll_once(0).await.unwrap(), PollOutcome::Unchanged);
    assert_eq!(second_honua.state.lock().unwrap().reloads, 1, "the second server was never touched");
}

/// Approves the newest deployment of `environment` awaiting approval; false when none does.
async fn approve_waiting_if_any(s: &Setup, environment: &str) -> bool {
    let waiting = s
        .store
        .deployments(&DeploymentFilter {
            environment: Some(environment.into()),
            states: vec![DeploymentState::AwaitingApproval],
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let Some(d) = waiting.first() else { return false };
    s.service.approve(&d.id, "alice", false).await;
    true
}

/// A service that answers every desired-state request with one fixed signed record (a compromised or
/// confused service, as far as the agent can tell); the rest of the body says whatever it likes.
async fn fixed_desired(signed: honua_gitops::plan::signing::Signed) -> String {
    let body = honua_gitops::deployment::wire::DesiredState {
        deployment: "whatever".into(),
        repository: "whatever".into(),
        environment: "development".into(),
        commit: "0".repeat(40).into(),
        sequence: i64::MAX,
        state: honua_gitops::store::DeploymentState::Approved,
        record: Some(signed.record),
        signature: Some(signed.signature),
    };
    fixed_service(axum::Json(body).into_response()).await
}

/// A service that answers every desired-state request with a copy of `answer`, and takes reports and
/// heartbeats.
async fn fixed_service(answer: axum::response::Response) -> String {
    use axum::routing::{get, post};
    let (parts, body) = answer.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let desired = move || {
        let (status, headers, body) = (parts.status, parts.headers.clone(), body.clone());
        async move { (status, headers, body) }
    };
    let app = axum::Router::new()
        .route("/api/v1/agent/desired", get(desired))
        .route("/api/v1/agent/report", post(|| async { axum::http::StatusCode::OK }))
        .route("/api/v1/agent/heartbeat", post(|| async { axum::http::StatusCode::NO_CONTENT }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_for_another_environment_or_an_older_replayed_one_changes_nothing() {
    let s = setup("development").await;
    let agent = Agent::new(s.config.clone()).unwrap();
    push_main(&s, "g-1").await;
    let PollOutcome::Applied { deployment } = agent.poll_once(0).await.unwrap() else { panic!("not applied") };
    let applied = s.store.deployment(&deployment).await.unwrap().unwrap();
    let record: honua_gitops::plan::signing::SignedRecord =
        serde_json::from_str(&applied.signed.as_ref().unwrap().record).unwrap();
    let release = live_release(&s);
    let signer = &s.service.controller.signer;

    // Validly signed, but for staging.
    let staging = honua_gitops::plan::signing::SignedRecord {
        environment: "staging".into(),
        sequence: record.sequence + 5,
        ..record.clone()
    };
    let url = fixed_desired(signer.sign(&staging)).await;
    let confused = Agent::new(AgentConfig { server: url, ..s.config.clone() }).unwrap();
    let err = confused.poll_once(0).await.unwrap_err().to_string();
    assert!(err.contains("a record for `staging`; this agent serves `development`"), "{err}");

    // Validly signed for development, but older than what runs: a replay.
    let older = honua_gitops::plan::signing::SignedRecord { sequence: record.sequence - 1, ..record.clone() };
    let url = fixed_desired(signer.sign(&older)).await;
    let replayed = Agent::new(AgentConfig { server: url, ..s.config.clone() }).unwrap();
    assert_eq!(replayed.poll_once(0).await.unwrap(), PollOutcome::Unchanged);
    // The very record that was applied, replayed: nothing either.
    let url = fixed_desired(applied.signed.clone().unwrap()).await;
    let again = Agent::new(AgentConfig { server: url, ..s.config.clone() }).unwrap();
    assert_eq!(again.poll_once(0).await.unwrap(), PollOutcome::Unchanged);

    assert_eq!(live_release(&s), release);
    assert_eq!(s.honua.state.lock().unwrap().reloads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_service_and_git_unreachable_honua_keeps_serving_and_the_agent_recovers() {
    let s = setup("development").await;
    let agent = Agent::new(s.config.clone()).unwrap();
    let base = push_main(&s, "g-1").await;
    assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));
    let release = live_release(&s);
    let merged = s.origin.merge(&common::examples().join("honua-config-pr"));
    push(&s, &base, &merged, "g-2").await;

    // Nothing answers: neither the service nor the Git remote.
    let cut_off = Agent::new(AgentConfig {
        server: "http://127.0.0.1:9".into(),
        git_url: format!("file://{}/nowhere.git", s.config.state_dir.display()),
        ..s.config.clone()
    })
    .unwrap();
    for _ in 0..3 {
        let err = cut_off.poll_once(0).await.unwrap_err().to_string();
        assert!(!err.is_empty());
        assert_eq!(live_release(&s), release, "untouched");
        let ready = reqwest::get(&s.config.health_url).await.unwrap().status();
        assert!(ready.is_success(), "Honua keeps serving the last good config");
    }
    // Both are back: the next poll applies what was approved meanwhile.
    let PollOutcome::Applied { deployment } = agent.poll_once(0).await.unwrap() else { panic!("not applied") };
    assert_eq!(s.store.deployment(&deployment).await.unwrap().unwrap().commit, merged);
    assert_eq!(s.honua.state.lock().unwrap().loaded.clone().unwrap(), expected_render(&s, &merged, "development"));
}

/// The deployment of `commit` to `environment`, once the push has been planned.
async fn deployment_of(s: &Setup, environment: &str, commit: &str) -> honua_gitops::store::Deployment {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let filter = DeploymentFilter { environment: Some(environment.into()), limit: 100, ..Default::default() };
        let all = s.store.deployments(&filter).await.unwrap();
        if let Some(d) = all.into_iter().find(|d| d.commit == commit) {
            return d;
        }
        assert!(tokio::time::Instant::now() < deadline, "{commit} was not planned for {environment}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Another agent of `environment` with its own stand-in Honua and directories (kept by the caller).
async fn another_agent(s: &Setup, name: &str, environment: &str) -> (Agent, StandIn, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("honua");
    std::fs::create_dir_all(&target).unwrap();
    let honua = StandIn::start(target.clone()).await;
    let config = AgentConfig {
        token: agent_token(&s.store, name, environment).await,
        environment: environment.into(),
        target_dir: target,
        state_dir: dir.path().join("agent"),
        snapshot_url: None,
        ..honua.serving(s.config.clone())
    };
    (Agent::new(config).unwrap(), honua, dir)
}

/// The whole loop on loopback: the service with the fake GitHub, two stand-in Honua servers and their
/// agents. A PR is opened and merged; development applies at once; production waits for an approval;
/// a writer's `/honua approve production --breaking` on the PR lets its agent apply it; each stand-in
/// loaded exactly its environment's effective config of the merged commit, secrets resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_a_merge_reaches_development_at_once_and_production_after_an_approval_by_comment() {
    let tree = without_windows(&common::examples().join("honua-config"));
    let pr_tree = without_windows(&common::examples().join("honua-config-pr"));
    let s = setup_from("production", tree.path()).await;
    s.github.grant(common::REPO, "bob", "write", "write");
    let (dev, dev_honua, _dev_dir) = another_agent(&s, "development-agent", "development").await;
    let prod = Agent::new(s.config.clone()).unwrap();

    // What runs before the PR: main, everywhere (production approved once by an operator).
    let base = push_main(&s, "g-1").await;
    let first = deployment_of(&s, "production", &base).await;
    s.service.approve(&first.id, "operator", true).await;
    assert!(matches!(dev.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));
    assert!(matches!(prod.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));

    // A PR adds bike lanes, raises a cache TTL and drops a field (breaking); it is merged.
    let head = s.origin.push_pr(7, pr_tree.path());
    s.github.open_pr(common::REPO, 7, &head, "main");
    s.service.pull_request("g-2", "opened", 7, &head, &base).await;
    let merged = s.origin.merge(pr_tree.path());
    s.github.merge_pr(common::REPO, 7, &merged);
    s.service.deliver("pull_request", "g-3", common::merged_payload(7, &head, &merged)).await;
    push(&s, &base, &merged, "g-4").await;
    deployment_of(&s, "development", &merged).await;
    let prod_deployment = deployment_of(&s, "production", &merged).await;

    // Development: applied by its agent right away.
    let PollOutcome::Applied { deployment } = dev.poll_once(0).await.unwrap() else { panic!("development") };
    assert_eq!(s.store.deployment(&deployment).await.unwrap().unwrap().state, DeploymentState::Completed);
    assert_eq!(dev_honua.state.lock().unwrap().loaded.clone().unwrap(), expected_render(&s, &merged, "development"));

    // Production: waits; its agent has nothing new to do.
    assert_eq!(prod_deployment.state, DeploymentState::Blocked, "breaking changes need an acknowledged approval");
    assert_eq!(prod.poll_once(0).await.unwrap(), PollOutcome::Unchanged);
    assert_eq!(s.honua.state.lock().unwrap().loaded.clone().unwrap(), expected_render(&s, &base, "production"));

    // A writer approves on the PR; production's agent applies it.
    let body = "/honua approve production --breaking";
    let id = s.github.post_comment_as(common::REPO, 7, body, "bob", "User");
    s.service.deliver("issue_comment", "g-5", common::comment_payload("created", 7, id, body, "bob", "User")).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while s.store.deployment(&prod_deployment.id).await.unwrap().unwrap().state != DeploymentState::Approved {
        assert!(tokio::time::Instant::now() < deadline, "the comment did not approve production");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(prod.poll_once(0).await.unwrap(), PollOutcome::Applied { deployment: prod_deployment.id.to_string() });
    let done = s.store.deployment(&prod_deployment.id).await.unwrap().unwrap();
    assert_eq!(done.state, DeploymentState::Completed);
    assert_eq!(s.honua.state.lock().unwrap().loaded.clone().unwrap(), expected_render(&s, &merged, "production"));
    let loaded = s.honua.state.lock().unwrap().loaded.clone().unwrap().to_string();
    assert!(loaded.contains("Password=s3cret-pw") && !loaded.contains("${DB_PASSWORD}"), "secrets resolved");
}

/// The real process, killed with SIGKILL while Honua is reloading the new release (the reload hangs):
/// restarted, it converges to the new release fully verified and the service learns it.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_process_killed_mid_apply_converges_when_restarted() {
    let s = setup("development").await;
    let base = push_main(&s, "g-1").await;
    s.honua.state.lock().unwrap().hang = Some(Duration::from_secs(30));
    let mut child = agent_command(&s.config, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let journal = s.config.state_dir.join("journal.json");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let phase = std::fs::read(&journal)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|j| j["phase"].as_str().map(str::to_string));
        if phase.as_deref() == Some("swapped") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the agent never reached the reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give it the moment to send the reload that hangs, then kill it outright.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let workers = children_of(child.id());
    assert_eq!(workers.len(), 1, "the apply runs in one child process");
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    // The child doing the apply dies with the agent: no orphan goes on writing while it recovers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while workers.iter().any(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists()) {
        assert!(tokio::time::Instant::now() < deadline, "the apply's child process outlived the agent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(journal.exists(), "killed mid-apply: the journal remains");
    let d = deployment_of(&s, "development", &base).await;
    assert_eq!(s.store.deployment(&d.id).await.unwrap().unwrap().state, DeploymentState::Applying);

    s.honua.state.lock().unwrap().hang = None;
    let config = s.config.clone();
    let out = tokio::task::spawn_blocking(move || agent_command(&config, &["--once"]).output().unwrap()).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!journal.exists(), "converged: journal cleared");
    assert_eq!(s.store.deployment(&d.id).await.unwrap().unwrap().state, DeploymentState::Completed);
    assert_eq!(s.honua.state.lock().unwrap().loaded.clone().unwrap(), expected_render(&s, &base, "development"));
}

#[cfg(unix)]
/// The processes whose parent is `pid` (Linux's `/proc`).
#[cfg(unix)]
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // `pid (comm) state ppid …`: the command name may hold spaces, so read after its `)`.
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}

/// `honua agent --once --config FILE` with no service (Git-only), against the stand-in Honua at `honua`
/// and its administrator.
fn once_with_settings_file(file: std::path::PathBuf, honua: String) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_honua"));
    cmd.args(["agent", "--once", "--config"]).arg(&file).env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HONUA_AGENT_HONUA_URL", &honua)
        .env("HONUA_AGENT_ADMIN_USER", honua_gitops::standin::ADMIN_USER)
        .env("HONUA_AGENT_ADMIN_PASSWORD", honua_gitops::standin::ADMIN_PASSWORD)
        .env("DB_PASSWORD", "s3cret-pw");
    cmd.output().unwrap()
}

/// Honua's own server configuration with the `gitops:` block of its GitOps sample, and no service:
/// the agent applies the branch head where the policy approves by itself, and waits where it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gitops_block_of_honuas_sample_runs_git_only_where_the_policy_auto_approves() {
    let s = setup("development").await;
    let server_config = |environment: &str, state: &std::path::Path| {
        format!(
            "# Honua server configuration\nlogging:\n  level: Information\n\ngitops:\n  enabled: true\n  repository:\n    url: {}\n    branch: main\n    path: {}\n\n  environment: {environment}\n\n  polling:\n    intervalSeconds: 30\n\n  stateStore:\n    type: file\n    path: {}\n",
            s.config.git_url,
            state.join("config-repo").display(),
            state.join("gitops-state").display(),
        )
    };
    let run = once_with_settings_file;

    // Development auto-approves: the head is applied; Honua's config directory is the file's.
    let config_file = s.config.target_dir.join("honua.yaml");
    std::fs::write(&config_file, server_config("development", s.config.state_dir.parent().unwrap())).unwrap();
    let (file, url) = (config_file.clone(), s.honua.url.clone());
    let out = tokio::task::spawn_blocking(move || run(file, url)).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Applied"), "{out:?}");
    let head = s.origin.main_sha();
    assert_eq!(s.honua.state.lock().unwrap().loaded.clone().unwrap(), expected_render(&s, &head, "development"));
    assert!(s.config.state_dir.parent().unwrap().join("config-repo").exists(), "the mirror lives at repository.path");
    let again = tokio::task::spawn_blocking(move || run(config_file, s.honua.url.clone())).await.unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("Unchanged"), "{again:?}");

    // Production needs approval: nothing is applied, and the log says why and what to do.
    let prod_dir = tempfile::tempdir().unwrap();
    let prod_target = prod_dir.path().join("honua");
    std::fs::create_dir_all(&prod_target).unwrap();
    let prod_honua = StandIn::start(prod_target.clone()).await;
    let prod_file = prod_target.join("honua.yaml");
    std::fs::write(&prod_file, server_config("production", prod_dir.path())).unwrap();
    let url = prod_honua.url.clone();
    let out = tokio::task::spawn_blocking(move || run(prod_file, url)).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Unchanged"), "{out:?}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("it needs an approval") && log.contains("honua serve"), "{log}");
    assert_eq!(prod_honua.state.lock().unwrap().reloads, 0);
    assert!(!prod_target.join("current").exists());
}

/// Honua's own appsettings `GitOps` section (JSON with comments, PascalCase): `DryRun` plans and reports
/// the head and never touches Honua; without it the same file applies the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honuas_gitops_section_dry_runs_then_applies() {
    let s = setup("development").await;
    let home = s.config.state_dir.parent().unwrap().to_path_buf();
    let clone = home.join("local-clone");
    git2::Repository::init(&clone).unwrap().remote("origin", &s.config.git_url).unwrap();
    let settings = |dry_run: bool| {
        format!(
            "{{\n  // Honua's appsettings\n  \"Honua\": {{ \"Metadata\": {{ \"Provider\": \"json\", \"Path\": \"{}\" }} }},\n  \"GitOps\": {{\n    \"RepositoryPath\": \"{}\",\n    \"StateDirectory\": \"{}\",\n    \"DryRun\": {dry_run},\n    \"Watcher\": {{ \"Branch\": \"main\", \"Environment\": \"development\", \"PollIntervalSeconds\": 30 }},\n    \"Approvals\": {{ \"Required\": false }} /* read and ignored */\n  }}\n}}\n",
            s.config.target_dir.join("current").join("metadata.json").display(),
            clone.display(),
            home.join("gitops-state").display(),
        )
    };
    let run = once_with_settings_file;
    let file = home.join("appsettings.json");

    std::fs::write(&file, settings(true)).unwrap();
    let (f, url) = (file.clone(), s.honua.url.clone());
    let out = tokio::task::spawn_blocking(move || run(f, url)).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let (stdout, log) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let head = s.origin.main_sha();
    assert!(stdout.starts_with("DryRun") && stdout.contains(&head), "{stdout}");
    assert!(stdout.contains("for `development`: ") && stdout.contains(" added, "), "{stdout}");
    assert!(stdout.contains("the policy would apply it now"), "{stdout}");
    assert!(log.contains("GitOps:Approvals") && log.contains("ignored"), "{log}");
    assert!(!s.config.target_dir.join("current").exists(), "a dry run writes nothing");
    assert_eq!(s.honua.state.lock().unwrap().reloads, 0, "a dry run reloads nothing");
    let (f, url) = (file.clone(), s.honua.url.clone());
    let again = tokio::task::spawn_blocking(move || run(f, url)).await.unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("Unchanged"), "reported once: {again:?}");

    std::fs::write(&file, settings(false)).unwrap();
    let (f, url) = (file.clone(), s.honua.url.clone());
    let out = tokio::task::spawn_blocking(move || run(f, url)).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Applied"), "{out:?}");
    assert_eq!(s.honua.state.lock().unwrap().loaded.clone().unwrap(), expected_render(&s, &head, "development"));
}

/// Links planted in the agent's directories never make it write outside them: a release path that is
/// a link to elsewhere, and a stale `.current.tmp` link, are replaced, not followed.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_planted_in_the_agents_directories_are_never_followed() {
    let s = setup("development").await;
    let base = push_main(&s, "g-1").await;
    let d = deployment_of(&s, "development", &base).await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("keep.txt"), "mine").unwrap();
    let releases = s.config.state_dir.join("releases");
    std::fs::create_dir_all(&releases).unwrap();
    std::os::unix::fs::symlink(outside.path(), releases.join(format!("{:010}-{}", d.sequence, d.id))).unwrap();
    std::os::unix::fs::symlink(outside.path(), s.config.target_dir.join(".current.tmp")).unwrap();

    let agent = Agent::new(s.config.clone()).unwrap();
    assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));
    let names: Vec<_> = std::fs::read_dir(outside.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["keep.txt"], "nothing was written outside");
    assert_eq!(std::fs::read_to_string(outside.path().join("keep.txt")).unwrap(), "mine");
    let live = live_release(&s);
    assert!(live.starts_with(&releases) && !std::fs::symlink_metadata(&live).unwrap().file_type().is_symlink());
    assert_eq!(s.honua.state.lock().unwrap().loaded.clone().unwrap(), expected_render(&s, &base, "development"));
}

/// `honua agent`'s loop: long-polling, it applies each new approval as it is decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_agent_applies_each_new_approval_as_it_is_decided() {
    let s = setup("development").await;
    let agent = Arc::new(Agent::new(s.config.clone()).unwrap());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runner = agent.clone();
    let task = tokio::spawn(async move { runner.run(stopped).await });
    let mut before = "0".repeat(40);
    let mut head = s.origin.main_sha();
    for (n, tree) in ["honua-config-pr", "honua-config", "honua-config-pr"].iter().enumerate() {
        push(&s, &before, &head, &format!("run-{n}")).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while s.honua.state.lock().unwrap().loaded.as_ref() != Some(&expected_render(&s, &head, "development")) {
            let all = s.store.deployments(&DeploymentFilter { limit: 5, ..Default::default() }).await.unwrap();
            assert!(
                tokio::time::Instant::now() < deadline,
                "commit {n} never applied: {:?}",
                all.iter().map(|d| (&d.environment, &d.state, &d.commit[..7])).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        before = head.clone();
        head = s.origin.merge(&common::examples().join(tree));
    }
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// A service that answers but offers nothing (withholding, or behind): the Git ledger, read on its own
/// schedule, still brings the approved record, verified like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_git_ledger_is_read_even_while_the_service_answers_and_a_newer_record_wins() {
    let s = setup("development").await;
    let base = push_main(&s, "g-1").await;
    let dev = ledger_deployment(&s, "development").await;
    let silent = fixed_service(axum::http::StatusCode::NO_CONTENT.into_response()).await;
    let agent =
        Agent::new(AgentConfig { server: silent, ledger_interval: Duration::ZERO, ..s.config.clone() }).unwrap();
    assert_eq!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { deployment: dev });
    assert_eq!(s.honua.state.lock().unwrap().loaded.clone().unwrap(), expected_render(&s, &base, "development"));
    assert_eq!(agent.poll_once(0).await.unwrap(), PollOutcome::Unchanged, "applied once");
}
