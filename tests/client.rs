//! The operator's CLI as a process against a running service: every command works, `--output json`
//! parses for each, decisions made with it land, and text output has no colour off a terminal.

mod common;

use std::time::Duration;

use common::service::ExampleScene;
use honua_gitops::store::{DeploymentFilter, DeploymentState, Role};

fn honua(server: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_honua"))
        .args(args)
        .env("HONUA_SERVER", server)
        .env("HONUA_TOKEN", token)
        .env("HONUA_CLIENT_CONFIG", "/nonexistent/client.yaml")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn run(server: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let (server, token) = (server.to_string(), token.to_string());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        honua(&server, &token, &args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_command_works_against_the_service_and_speaks_json() {
    let db = common::db::sqlite().await;
    let store = db.store.clone();
    let ExampleScene { github: _github, origin, service } = ExampleScene::start(store.clone()).await;
    let token = common::api_token(&store, "operator", Role::Admin, None).await;
    let (_, all) = service.push_main(&origin, "c-1").await;
    let prod = all.iter().find(|d| d.environment == "production").unwrap().clone();
    let url = service.url.clone();

    // Every command's JSON parses.
    for args in [
        vec!["status", "--output", "json"],
        vec!["status", "production", "--output", "json"],
        vec!["deployments", "production", "--output", "json"],
        vec!["deployment", "show", &prod.id, "--output", "json"],
        vec!["agents", "--output", "json"],
    ] {
        let (code, out, err) = run(&url, &token, &args).await;
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"));
    }

    // Text: tables and the box, no colour off a terminal, within 80 columns.
    let (code, out, _) = run(&url, &token, &["deployments", "production"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(prod.id.as_str()) && out.contains("Awaiting approval") && out.contains("alice"), "{out}");
    assert!(!out.contains('\u{1b}') && out.lines().all(|l| l.chars().count() <= 80), "{out}");
    let (_, out, _) = run(&url, &token, &["status", "production"]).await;
    assert!(out.contains("Environment: production") && out.contains(&format!("Pending: {}", prod.id)), "{out}");

    // Decisions made with the CLI land.
    let (code, out, err) = run(&url, &token, &["deployment", "approve", &prod.id]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("Approved {}", prod.id)), "{out}");
    assert_eq!(store.deployment(&prod.id).await.unwrap().unwrap().state, DeploymentState::Approved);
    // Approved but not started: it can still be rejected; then nothing more.
    let (code, out, err) =
        run(&url, &token, &["deployment", "reject", &prod.id, "--reason", "too late", "--output", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let rejected: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rejected["state"], "rejected", "{out}");
    let (code, _, err) = run(&url, &token, &["deployment", "approve", &prod.id]).await;
    assert_eq!(code, 2);
    assert!(err.contains("wrong_state"), "{err}");

    // Rollback asks for confirmation; without a terminal it needs --yes.
    let (code, _, err) = run(&url, &token, &["rollback", "production"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("pass --yes"), "{err}");
    // Nothing completed yet: the service says there is nothing to return to.
    let (code, _, err) = run(&url, &token, &["rollback", "production", "--yes", "--output", "json"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("production"), "{err}");

    // Without a server or with a bad token, the error says what to do.
    let (code, _, err) = run("http://127.0.0.1:9", &token, &["status"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("unreachable"), "{err}");
    let (code, _, err) = run(&url, "honua_wrong", &["status"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("the token is refused"), "{err}");

    // Shell completions.
    let (code, out, _) = run(&url, &token, &["completions", "bash"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("honua") && out.contains("deployments"));
}

/// `rollback` shows what it restores before doing it, `--wait` follows the rollback to its end (exit 0
/// only on completed, 3 when the time runs out first), `status` shows the pause, `resume` lifts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_shows_what_it_restores_waits_for_the_end_and_resume_lifts_the_pause() {
    let db = common::db::sqlite().await;
    let store = db.store.clone();
    let ExampleScene { github: _github, origin, service } = ExampleScene::start(store.clone()).await;
    let token = common::api_token(&store, "operator", Role::Admin, None).await;
    let url = service.url.clone();
    let wait_for = |commit: String| {
        let store = store.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let all = store.deployments(&DeploymentFilter { limit: 50, ..Default::default() }).await.unwrap();
                if let Some(d) = all.into_iter().find(|d| d.environment == "development" && d.commit == commit) {
                    break d;
                }
                assert!(tokio::time::Instant::now() < deadline, "no deployment of {commit}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let complete = |id: String| {
        let store = store.clone();
        async move {
            let now = honua_gitops::store::now_ms();
            assert!(store.transition(&id, DeploymentState::Applying, "agent", "applying", now).await.unwrap());
            assert!(store.transition(&id, DeploymentState::Completed, "agent", "healthy", now).await.unwrap());
        }
    };
    let base = origin.main_sha();
    service.deliver("push", "w-1", common::push_payload(&"0".repeat(40), &base, "alice")).await;
    complete(wait_for(base.clone()).await.id.to_string()).await;
    let merged = origin.merge(&common::examples().join("honua-config-pr"));
    service.deliver("push", "w-2", common::push_payload(&base, &merged, "bob")).await;
    let bad = wait_for(merged.clone()).await;
    complete(bad.id.to_string()).await;

    // An agent completes the rollback while the CLI waits for it.
    let agent = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                let all = store.deployments(&DeploymentFilter { limit: 50, ..Default::default() }).await.unwrap();
                if let Some(r) = all.iter().find(|d| {
                    d.cause == honua_gitops::deployment::Cause::Rollback && d.state == DeploymentState::Approved
                }) {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    let now = honua_gitops::store::now_ms();
                    store.transition(&r.id, DeploymentState::Applying, "agent", "applying", now).await.unwrap();
                    store.transition(&r.id, DeploymentState::Completed, "agent", "healthy", now).await.unwrap();
                    break r.id.to_string();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let (code, out, err) = run(&url, &token, &["rollback", "development", "--yes", "--wait", "60"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let rollback_id = agent.await.unwrap();
    assert!(out.contains("Rollback of `development`"), "{out}");
    assert!(
        out.contains(&format!("runs now: {}", bad.id)) && out.contains(&format!("commit {}", &merged[..7])),
        "{out}"
    );
    assert!(out.contains("restores:") && out.contains(&format!("commit {}", &base[..7])), "{out}");
    assert!(out.contains("The change back:"), "{out}");
    assert!(out.contains("Approved") && out.lines().last().unwrap().contains("Completed"), "{out}");

    let (_, out, _) = run(&url, &token, &["status", "development"]).await;
    assert!(out.contains(&format!("Paused after the rollback {rollback_id}")), "{out}");
    assert!(out.contains("honua resume development") && out.lines().all(|l| l.chars().count() <= 80), "{out}");

    // Nothing applies this one: the wait ends when its time does, with exit 3 and what to do.
    let (code, out, err) = run(&url, &token, &["resume", "development", "--wait", "2"]).await;
    assert!(out.contains("Resumed automatic deployments of `development`"), "{out}");
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(err.contains("still approved after 2 s") && err.contains("honua deployment show"), "{err}");
    let (_, out, _) = run(&url, &token, &["status", "development"]).await;
    assert!(!out.contains("Paused"), "{out}");
    let (code, _, err) = run(&url, &token, &["resume", "development"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("not paused"), "{err}");
}

/// A reader that stops early (`| head`) closes the pipe: every printing command then ends quietly, with
/// exit 0 and nothing on standard error, never a panic (exit 101). The read end is closed before the
/// command writes anything, so its first write meets the closed pipe whatever the output's size.
#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let example = common::examples().join("honua-config");
    let example = example.to_str().unwrap();
    for args in [
        vec!["render", "--path", example, "--env", "production"],
        vec!["validate", "--path", example, "--format", "json"],
        vec!["plan", "--from-dir", example, "--to-dir", example],
        vec!["completions", "bash"],
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_honua"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "honua {args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "honua {args:?}: {stderr}");
    }
}

/// A repository controls text the CLI prints (titles, the policy's reasons): terminal control sequences in
/// it (an OSC 52 clipboard write, a screen clear, conceal) are printed visibly, never passed to the
/// reader's terminal. Values in change details are JSON-quoted; the policy's reasons are printed as
/// written, and made visible by the output layer.
#[test]
fn control_sequences_in_a_repository_reach_no_terminal() {
    let base = tempfile::tempdir().unwrap();
    common::copy_tree(&common::examples().join("honua-config"), base.path());
    let policy = base.path().join(".gitops/deployment-policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    let hostile = r#"reason: "Breaking\e]52;c;ZXZpbA==\a\e[2J\e[8m changes""#;
    std::fs::write(&policy, text.replacen(r#"reason: "Breaking changes require approval""#, hostile, 1)).unwrap();
    let pr = tempfile::tempdir().unwrap();
    common::copy_tree(&common::examples().join("honua-config-pr"), pr.path());
    let file = pr.path().join("environments/common/base-metadata.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let title = r#"title: "Land\e]52;c;ZXZpbA==\a\e[8m and Property""#;
    std::fs::write(&file, text.replacen("title: Land and Property", title, 1)).unwrap();
    let (from, to) = (base.path().to_str().unwrap(), pr.path().to_str().unwrap());
    for args in [vec!["plan", "--from-dir", from, "--to-dir", to], vec!["diff", "--from-dir", from, "--to-dir", to]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_honua")).args(&args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !stdout.contains('\u{1b}') && !stdout.contains('\u{7}'),
            "{args:?}: a control reached the terminal:\n{stdout}"
        );
        assert!(stdout.contains("Land"), "{args:?}: {stdout}");
        if args[0] == "plan" {
            assert!(stdout.contains("Breaking␛]52;c;ZXZpbA==␇␛[2J␛[8m changes"), "the reason is shown:\n{stdout}");
        }
    }
}
