//! `honua serve` as a process: settings fail fast with a sentence, and nothing accepted is lost when
//! the process is killed between the 202 and the work.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::fake_github::FakeGithub;
use common::service::webhook;
use common::{Origin, REPO};

const SECRET: &str = "serve-secret";

fn serve(env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_honua"));
    cmd.arg("serve").env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn fails_with(env: &[(&str, String)], needle: &str) {
    let out = serve(env).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
}

#[test]
fn bad_settings_fail_fast_naming_the_setting() {
    let key = common::test_app_key().display().to_string();
    let base = |extra: &[(&'static str, &str)]| {
        let mut env = vec![
            ("HONUA_GITHUB_APP_ID", "1".to_string()),
            ("HONUA_GITHUB_PRIVATE_KEY_PATH", key.clone()),
            ("HONUA_GITHUB_WEBHOOK_SECRET", "s".to_string()),
            ("HONUA_DATABASE_URL", "sqlite://:memory:".to_string()),
        ];
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k, v.to_string()));
        }
        env
    };
    fails_with(&[], "HONUA_GITHUB_APP_ID: not set");
    fails_with(&base(&[("HONUA_GITHUB_PRIVATE_KEY_PATH", "/nonexistent/app.pem")]), "cannot read /nonexistent/app.pem");
    fails_with(&base(&[("HONUA_GITHUB_PRIVATE_KEY_PATH", "/etc/hostname")]), "not an RSA private key");
    fails_with(&base(&[("HONUA_GITHUB_API_URL", "not a url")]), "HONUA_GITHUB_API_URL: `not a url` is not a URL");
    fails_with(&base(&[("HONUA_LISTEN", "everywhere")]), "HONUA_LISTEN");
    fails_with(&base(&[("HONUA_DATABASE_URL", "mysql://x")]), "HONUA_DATABASE_URL");
    fails_with(&base(&[("HONUA_GITHUB_WEBHOOK_SECRET", " , ")]), "HONUA_GITHUB_WEBHOOK_SECRET: not set");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_accepted_before_a_sigkill_is_processed_once_after_restart() {
    let github = FakeGithub::start().await;
    let origin = Origin::new(&common::examples().join("honua-config"));
    let head = origin.push_pr(1, &common::examples().join("honua-config-pr"));
    let data = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let database = format!("sqlite://{}", data.path().join("honua.db").display());
    let env = |workers: &str| {
        let mut env = common::github_mode(port, &database, data.path(), &github.url(), &origin, SECRET);
        env.push(("HONUA_WORKERS", workers.into()));
        env
    };
    let client = reqwest::Client::new();
    let deliver = |id: &'static str| {
        let body = common::pull_request_payload("opened", 1, &head, &origin.main_sha());
        webhook(&client, &url, SECRET, "pull_request", id, body).send()
    };

    // An ingest-only replica answers 202 and records the job, then dies without a chance to clean up.
    let mut first = common::Running(serve(&env("0")).stderr(Stdio::null()).spawn().unwrap());
    common::wait_ready(&client, &url).await;
    let resp = deliver("crash-1").await.unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["status"], "queued");
    first.0.kill().unwrap(); // SIGKILL
    first.0.wait().unwrap();
    assert!(github.check_runs(&head).is_empty(), "nothing ran before the kill");

    // After a restart with workers, the job runs exactly once.
    let _second = common::Running(serve(&env("1")).stderr(Stdio::null()).spawn().unwrap());
    common::wait_ready(&client, &url).await;
    github
        .wait_for(Duration::from_secs(60), "the job to run after the restart", |gh| {
            let runs = gh.check_runs(&head);
            runs.len() == 2 && runs.iter().all(|r| r.status == "completed") && !gh.comments(REPO, 1).is_empty()
        })
        .await;
    // GitHub redelivers the same id: recognized, nothing queued.
    let resp = deliver("crash-1").await.unwrap();
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["status"], "duplicate");
    assert_eq!(github.check_runs(&head).len(), 2, "one pair of check runs");
    assert_eq!(github.comments(REPO, 1).len(), 1, "one comment");
}

#[tokio::test]
async fn a_token_is_printed_once_and_stored_only_as_a_hash() {
    use honua_gitops::store::{Role, TokenStore};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("honua.db").display());
    let create = |args: &[&str]| {
        let mut all = vec!["token", "create", "--database-url", url.as_str()];
        all.extend_from_slice(args);
        common::honua(&all)
    };
    let out = create(&["--name", "release-bot", "--role", "approver"]);
    assert_eq!(common::code(&out), 0, "{out:?}");
    let token = common::stdout(&out).trim().to_string();
    assert!(token.starts_with("honua_") && token.len() == 70, "{token}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown once"));

    let store = honua_gitops::store::SqlStore::open(&url).await.unwrap();
    let found = store.token(&honua_gitops::server::api::token_hash(&token), 1).await.unwrap().unwrap();
    assert_eq!((found.name.as_str(), found.role), ("release-bot", Role::Approver));
    // The database's files (the `-wal` too, where the rows are until a checkpoint) are searched by another
    // process: a descriptor of an SQLite file opened and closed here would drop every POSIX lock this
    // process holds on it, and a later `honua` process could then delete the `-shm` this store still maps,
    // leaving it blind to every later write (sqlx's `close` does not wait for a connection on its way
    // back to the pool, so closing first is no remedy).
    let search = |needle: &str| {
        let out = std::process::Command::new("grep")
            .args(["-rlF", "--binary-files=text", "-e", needle])
            .arg(dir.path())
            .output()
            .expect("grep runs");
        out.status.code()
    };
    assert_eq!(search(&token), Some(1), "the token itself is not stored");
    assert_eq!(search(&honua_gitops::server::api::token_hash(&token)), Some(0), "its hash is, where grep looked");

    for (args, needle) in [
        (vec!["--name", "release-bot", "--role", "viewer"], "exists already"),
        (vec!["--name", "edge", "--role", "agent"], "needs --environment"),
        (vec!["--name", "x", "--role", "root"], "use viewer, approver, admin or agent"),
        (vec!["--name", "y", "--role", "viewer", "--environment", "production"], "only for --role agent"),
    ] {
        let out = create(&args);
        assert_ne!(common::code(&out), 0, "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert_eq!(common::code(&create(&["--name", "edge", "--role", "agent", "--environment", "production"])), 0);

    // The lifecycle on the same database: list (never a secret), rotate (the new secret printed once),
    // revoke; each audited.
    let token_cmd = |args: &[&str]| {
        let mut all = vec!["token"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--database-url", url.as_str()]);
        common::honua(&all)
    };
    let out = token_cmd(&["list"]);
    let listed = common::stdout(&out);
    assert!(listed.contains("release-bot") && listed.contains("approver") && listed.contains("edge"), "{listed}");
    assert!(!listed.contains("honua_"), "no secret in the list: {listed}");
    let out = token_cmd(&["rotate", "release-bot", "--grace-hours", "1"]);
    assert_eq!(common::code(&out), 0, "{out:?}");
    let rotated = common::stdout(&out).trim().to_string();
    assert!(rotated.starts_with("honua_") && rotated != token, "{rotated}");
    let now = honua_gitops::store::now_ms();
    assert!(store.token(&honua_gitops::server::api::token_hash(&rotated), now).await.unwrap().is_some());
    assert!(store.token(&honua_gitops::server::api::token_hash(&token), now).await.unwrap().is_some(), "grace");
    let out = token_cmd(&["list", "--output", "json"]);
    let json: serde_json::Value = serde_json::from_str(&common::stdout(&out)).unwrap();
    let bot = json["tokens"].as_array().unwrap().iter().find(|t| t["name"] == "release-bot").unwrap().clone();
    assert!(bot["previous_valid_until"].as_i64().unwrap() > now, "{bot}");
    assert_eq!(common::code(&token_cmd(&["revoke", "release-bot"])), 0);
    assert!(store.token(&honua_gitops::server::api::token_hash(&rotated), now).await.unwrap().is_none());
    let out = token_cmd(&["revoke", "release-bot"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no live token named `release-bot`"), "{out:?}");
    let audit = honua_gitops::store::AuditLog::audit(&store, 0, None, 100).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"token.rotate") && actions.contains(&"token.revoke"), "{actions:?}");
}

/// `honua app create`: the manifest flow through the loopback page (its form posts the manifest, with the
/// public URL filled in, to GitHub; GitHub's redirect with a forged state is refused, the real one taken),
/// then the code exchange against the fake GitHub; the App id, key and webhook secret are written
/// owner-only where `honua serve` reads them, and nothing secret is printed. A used code is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_create_runs_the_manifest_flow_and_writes_the_credentials() {
    let github = common::fake_github::FakeGithub::start().await;
    let out = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let manifest = common::deploy_file("github/app-manifest.json");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_honua"))
        .args(["app", "create", "--manifest", manifest.to_str().unwrap(), "--org", "city"])
        .args(["--public-url", "https://gitops.city.example", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--api-url", &github.url(), "--github-url", "https://github.example"])
        .arg("--out")
        .arg(out.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let page = loop {
        if let Ok(r) = http.get(&base).send().await {
            break r.text().await.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "the loopback page never answered");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(page.contains("action=\"https://github.example/organizations/city/settings/apps/new?state="), "{page}");
    let state = page.split("state=").nth(1).unwrap().split('"').next().unwrap().to_string();
    let manifest_field = page.split("name=\"manifest\" value=\"").nth(1).unwrap().split('"').next().unwrap();
    let sent: serde_json::Value = serde_json::from_str(&manifest_field.replace("&quot;", "\"")).unwrap();
    assert_eq!(sent["hook_attributes"]["url"], "https://gitops.city.example/webhooks/github");
    assert_eq!(sent["redirect_url"], format!("http://127.0.0.1:{port}/callback").as_str());
    let forged = http.get(format!("{base}/callback?code=abc&state=not-it")).send().await.unwrap();
    assert_eq!(forged.status(), 400);
    let back = http.get(format!("{base}/callback?code=abc123&state={state}")).send().await.unwrap();
    assert_eq!(back.status(), 200);
    let done =
        tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&done.stdout), String::from_utf8_lossy(&done.stderr));
    assert!(done.status.success(), "{stderr}");
    let env = std::fs::read_to_string(out.path().join("github-app.env")).unwrap();
    assert!(env.contains("HONUA_GITHUB_APP_ID=") && env.contains("HONUA_GITHUB_WEBHOOK_SECRET=whsec-test"), "{env}");
    let pem = std::fs::read_to_string(out.path().join("github-app.pem")).unwrap();
    assert!(pem.contains("PRIVATE KEY"));
    use std::os::unix::fs::PermissionsExt;
    for file in ["github-app.env", "github-app.pem"] {
        let mode = std::fs::metadata(out.path().join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    for secret in ["whsec-test", "PRIVATE KEY", "client-secret-test"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "{secret} printed:\n{stdout}{stderr}");
    }
    // The settings file loads as `honua serve` reads it: the App id is the fake's.
    assert!(env.contains(&format!("HONUA_GITHUB_APP_ID={}", common::fake_github::APP_ID)), "{env}");

    let again = tempfile::tempdir().unwrap();
    let used = common::honua(&[
        "app",
        "create",
        "--manifest",
        manifest.to_str().unwrap(),
        "--code",
        "used",
        "--api-url",
        &github.url(),
        "--out",
        again.path().to_str().unwrap(),
    ]);
    assert_ne!(common::code(&used), 0);
    assert!(String::from_utf8_lossy(&used.stderr).contains("GitHub refused the code"), "{used:?}");
}

/// `honua serve --workers 2` keeps one worker for deployment work. With the installation's GitHub write
/// budget spent for the next hour, the two PRs' jobs wait for it, each holding a worker it could take;
/// the merged pull request's job and its push, queued behind them, are done all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_workers_a_push_is_deployed_while_pull_requests_wait_on_github() {
    use honua_gitops::store::{now_ms, DeploymentFilter, DeploymentStore, JobQueue, SqlStore, WriteBudget};
    let github = FakeGithub::start().await;
    let origin = Origin::new(&common::examples().join("honua-config"));
    let heads: Vec<String> = (1..=2).map(|n| origin.push_pr(n, &common::examples().join("honua-config-pr"))).collect();
    let data = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", data.path().join("honua.db").display());
    let store = SqlStore::open(&database).await.unwrap();
    let hour = 3_600_000;
    let spent = WriteBudget { minute_period_ms: hour, minute_burst: 1, hour_period_ms: hour, hour_burst: 1 };
    assert_eq!(store.take_write_budget(7, spent, now_ms()).await.unwrap(), None);

    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut env = common::github_mode(port, &database, data.path(), &github.url(), &origin, SECRET);
    env.push(("HONUA_WORKERS", "2".into()));
    let _serve = common::Running(serve(&env).stderr(Stdio::null()).spawn().unwrap());
    let client = reqwest::Client::new();
    common::wait_ready(&client, &url).await;
    for (n, head) in (1..=2).zip(&heads) {
        let body = common::pull_request_payload("opened", n, head, &origin.main_sha());
        let sent = webhook(&client, &url, SECRET, "pull_request", &format!("held-{n}"), body).send().await.unwrap();
        assert_eq!(sent.status(), 202);
    }
    let base = origin.main_sha();
    let body = common::merged_payload(3, &heads[0], &base);
    assert_eq!(webhook(&client, &url, SECRET, "pull_request", "merged", body).send().await.unwrap().status(), 202);
    let body = common::push_payload(&"0".repeat(40), &base, "alice");
    assert_eq!(webhook(&client, &url, SECRET, "push", "merge", body).send().await.unwrap().status(), 202);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let all = store.deployments(&DeploymentFilter { limit: 10, ..Default::default() }).await.unwrap();
        if all.len() == 3 {
            assert!(all.iter().all(|d| d.commit == base));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the push was never planned: {all:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Both deployment jobs finish; the two PR checks are still to.
    while store.queue_depth().await.unwrap() != 2 {
        assert!(tokio::time::Instant::now() < deadline, "the merged pull request's job never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for head in &heads {
        assert!(github.check_runs(head).is_empty(), "the PR jobs still wait for GitHub's budget");
    }
}

/// The retention sweep runs at start (then hourly): a job that ended more than `HONUA_JOB_RETENTION_DAYS`
/// ago is deleted with its delivery, a newer one stays, and `/metrics` counts what went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_that_ended_before_the_retention_are_deleted_from_the_start() {
    use honua_gitops::store::{now_ms, JobQueue, NewDelivery, Recorded, SqlStore};
    let github = FakeGithub::start().await;
    let origin = Origin::new(&common::examples().join("honua-config"));
    let data = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", data.path().join("honua.db").display());
    let store = SqlStore::open(&database).await.unwrap();
    let (day, now) = (86_400_000, now_ms());
    let mut ended = Vec::new();
    for (id, at) in [("ended-31-days-ago", now - 31 * day), ("ended-29-days-ago", now - 29 * day)] {
        let delivery = NewDelivery {
            id: id.into(),
            event: "pull_request".into(),
            repository: Some(REPO.into()),
            payload: b"{}".to_vec(),
            pr_head: None,
            deploys: false,
        };
        let Recorded::New(job) = store.record_delivery(&delivery, at).await.unwrap() else { panic!("new") };
        assert_eq!(store.claim_job("w", Duration::from_secs(60), at, false).await.unwrap().unwrap().id, job);
        assert!(store.complete_job(job, "w", at).await.unwrap());
        ended.push(job);
    }

    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut env = common::github_mode(port, &database, data.path(), &github.url(), &origin, SECRET);
    env.push(("HONUA_WORKERS", "0".into()));
    env.push(("HONUA_JOB_RETENTION_DAYS", "30".into()));
    let _serve = common::Running(serve(&env).stderr(Stdio::null()).spawn().unwrap());
    let client = reqwest::Client::new();
    common::wait_ready(&client, &url).await;
    // Counted once its batch is committed.
    let pruned =
        |metrics: &str| metrics.lines().find(|l| l.starts_with("honua_jobs_pruned_total ")).map(str::to_string);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
        match pruned(&metrics) {
            Some(line) if line != "honua_jobs_pruned_total 0" => {
                assert_eq!(line, "honua_jobs_pruned_total 1");
                break;
            }
            _ => assert!(tokio::time::Instant::now() < deadline, "no job was pruned in 30 s: {metrics}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(store.job(ended[0]).await.unwrap().is_none(), "the job that ended 31 days ago is deleted");
    assert!(store.job(ended[1]).await.unwrap().is_some(), "the job that ended 29 days ago stays");
}
