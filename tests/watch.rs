//! `honua watch` in a real terminal (tmux): it shows the environments, follows a deployment's state
//! as it changes, and exits on `q`. Skipped with a notice where tmux is not installed.

mod common;

use std::process::Command;
use std::time::Duration;

use common::fake_github::FakeGithub;
use common::service::Service;
use common::Origin;
use honua_gitops::store::{DeploymentFilter, Role};

fn tmux(args: &[&str]) -> std::process::Output {
    Command::new("tmux").args(args).output().unwrap()
}

async fn pane_until(session: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pane = String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", session]).stdout).into_owned();
        if done(&pane) {
            return pane;
        }
        assert!(tokio::time::Instant::now() < deadline, "the dashboard never showed {what}:\n{pane}");
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
    let github = FakeGithub::start().await;
    let origin = Origin::new(&common::examples().join("honua-config"));
    let service = Service::start(&github, &origin, store.clone()).await;
    let token = common::api_token(&store, "watcher", Role::Viewer, None).await;

    let session = format!("honua-watch-{}", std::process::id());
    let command = format!(
        "HONUA_SERVER={} HONUA_TOKEN={} HONUA_CLIENT_CONFIG=/nonexistent {} watch",
        service.url,
        token,
        env!("CARGO_BIN_EXE_honua")
    );
    let started = tmux(&["new-session", "-d", "-s", &session, "-x", "120", "-y", "50", &command]);
    assert!(started.status.success(), "{started:?}");
    let _guard = scopeguard(session.clone());
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
    service.controller.approve(&prod.id, "mike", "api", true, chrono::Utc::now()).await.unwrap();
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

fn scopeguard(name: String) -> Session {
    Session(name)
}
