//! `honua watch` in a real terminal (tmux): it shows the environments, follows a deployment's state
//! as it changes, and exits on `q`. Skipped with a notice where tmux is not installed.

mod common;

use std::process::Command;
use std::time::Duration;

use common::service::ExampleScene;
use honua_gitops::store::{DeploymentFilter, Role};

fn tmux(args: &[&str]) -> std::process::Output {
    Command::new("tmux").args(args).output().unwrap()
}

/// The pane once it shows `what` and has settled: two captures in a row alike, so a frame caught while
/// it was being drawn (its last lines missing) is not taken.
async fn pane_until(session: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut previous = String::new();
    loop {
        let pane = String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", session]).stdout).into_owned();
        if done(&pane) && pane == previous {
            return pane;
        }
        assert!(tokio::time::Instant::now() < deadline, "the dashboard never showed {what}:\n{pane}");
        previous = pane;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_a_deployment_live_in_a_terminal_and_quits_on_q() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("tmux is not installed: skipping the terminal test of `honua watch` (apt-get install tmux)");
        return;
    }
    let db = common::db::sqlite().await;
    let store = db.store.clone();
    let ExampleScene { github: _github, origin, service } = ExampleScene::start(store.clone()).await;
    let token = common::api_token(&store, "watcher", Role::Viewer, None).await;

    let session = format!("honua-watch-{}", std::process::id());
    let _guard = watch_in_tmux(&session, &service.url, &token, 120, 50);
    pane_until(&session, "the empty state", |p| p.contains("No environment has a deployment yet")).await;

    // A merge: production awaits approval, live on the dashboard.
    let base = origin.main_sha();
    service.deliver("push", "w-1", common::push_payload(&"0".repeat(40), &base, "alice")).await;
    pane_until(&session, "production awaiting approval", |p| {
        p.contains("production ·") && p.contains("awaiting approval")
    })
    .await;
    let prod = store
        .deployments(&DeploymentFilter { environment: Some("production".into()), limit: 1, ..Default::default() })
        .await
        .unwrap()
        .remove(0);
    // It changes state: the dashboard follows without a keypress.
    service.approve(&prod.id, "mike", true).await;
    pane_until(&session, "production approved", |p| {
        p.lines()
            .any(|l| l.contains(&format!("Pending {}", prod.id)) && l.contains("approved") && !l.contains("awaiting"))
    })
    .await;

    tmux(&["send-keys", "-t", &session, "q"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tmux(&["has-session", "-t", &session]).status.success() {
        assert!(tokio::time::Instant::now() < deadline, "`q` did not end `honua watch`");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills the tmux session however the test ends.
struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).output();
    }
}

/// `honua watch` against the service at `url` with `token`, in a detached tmux session `name` of
/// `width`×`height`; the session ends when the returned guard is dropped.
fn watch_in_tmux(name: &str, url: &str, token: &str, width: u16, height: u16) -> Session {
    let command = format!(
        "HONUA_SERVER={url} HONUA_TOKEN={token} HONUA_CLIENT_CONFIG=/nonexistent {} watch",
        env!("CARGO_BIN_EXE_honua")
    );
    let (w, h) = (width.to_string(), height.to_string());
    let started = tmux(&["new-session", "-d", "-s", name, "-x", &w, "-y", &h, &command]);
    assert!(started.status.success(), "{started:?}");
    Session(name.to_string())
}

/// The dashboard at 80×24 and 120×40 (tmux), three environments: nothing overprinted, every environment's
/// title shown in promotion order, and the screen as a reviewed snapshot (times, ids, commits, the
/// server's port and the repository's path redacted). `watch --once --output json` prints the state for
/// scripts, and without a terminal plain `watch` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_degrades_with_the_terminal_and_keeps_promotion_order() {
    let db = common::db::sqlite().await;
    let store = db.store.clone();
    let ExampleScene { github: _github, origin, service } = ExampleScene::start(store.clone()).await;
    let token = common::api_token(&store, "watcher", Role::Viewer, None).await;
    service.push_main(&origin, "s-1").await;

    // For scripts: the state once, as JSON, without a terminal.
    let once = Command::new(env!("CARGO_BIN_EXE_honua"))
        .args(["watch", "--once", "--output", "json"])
        .env("HONUA_SERVER", &service.url)
        .env("HONUA_TOKEN", &token)
        .env("HONUA_CLIENT_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(once.status.success(), "{once:?}");
    let state: serde_json::Value = serde_json::from_slice(&once.stdout).unwrap();
    let order: Vec<&str> =
        state["environments"].as_array().unwrap().iter().map(|e| e["environment"].as_str().unwrap()).collect();
    assert_eq!(order, ["development", "staging", "production"], "promotion order");
    let piped = Command::new(env!("CARGO_BIN_EXE_honua"))
        .arg("watch")
        .env("HONUA_SERVER", &service.url)
        .env("HONUA_TOKEN", &token)
        .env("HONUA_CLIENT_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&piped.stderr).contains("--once --output json"), "{piped:?}");

    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("tmux is not installed: skipping the terminal sizes of `honua watch` (apt-get install tmux)");
        return;
    }
    for (width, height) in [(80u16, 24u16), (120, 40)] {
        let session = format!("honua-watch-{}-{width}", std::process::id());
        let _guard = watch_in_tmux(&session, &service.url, &token, width, height);
        let pane = pane_until(&session, "three environments", |p| {
            p.contains("production ·") && p.contains("staging ·") && p.contains("development ·") && p.contains("● live")
        })
        .await;
        let lines: Vec<&str> = pane.lines().collect();
        assert!(lines[0].starts_with("Honua GitOps"), "{pane}");
        assert!(lines.len() <= usize::from(height) && lines.iter().all(|l| l.chars().count() <= usize::from(width)));
        let at = |name: &str| lines.iter().position(|l| l.contains(&format!(" {name} ·"))).unwrap();
        assert!(at("development") < at("staging") && at("staging") < at("production"), "{pane}");
        assert!(!pane.contains("HealthAgent") && !pane.contains("unknownAgent"), "overprinted:\n{pane}");
        insta::with_settings!({filters => vec![
            (r"http://127\.0\.0\.1:\d+", "[server]"),
            (r"\d{2}:\d{2}:\d{2}", "[time]"),
            (r"[a-z]+-\d{14}-[0-9a-f]{7}", "[id]"),
            (r"\b[0-9a-f]{7}\b", "[sha]"),
            (r"\d+[sm] ago", "[age]"),
            (r"· [^ ]*[/.][^ ]* ", "· [repository] "),
            (r"─+", "─"),
            (r" +\n", "\n"),
        ]}, {
            insta::assert_snapshot!(format!("watch_{width}x{height}"), pane);
        });
    }
}
