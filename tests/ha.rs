//! Two `honua serve` replicas on one PostgreSQL database, webhooks spread over both as a round-robin
//! load balancer would, and one replica killed with SIGKILL in the middle of a burst of 500 deliveries.
//! Every accepted delivery is processed exactly once: one pair of check runs and one comment per PR,
//! three deployments (and three GitHub deployments) for the pushed commit, and the queue drains (the
//! killed replica's claimed jobs are taken over when their lease ends). Needs `HONUA_TEST_DATABASE_URL`
//! (skipped with a notice otherwise, like the other PostgreSQL suites).

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::fake_github::FakeGithub;
use common::service::webhook;
use common::{Origin, REPO};
use sqlx::Connection;

const SECRET: &str = "ha-secret";
const PRS: u64 = 10;
const DELIVERIES: usize = 500;

/// A database of its own, dropped at the end.
struct Database {
    admin: String,
    name: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_killed_mid_burst_process_every_accepted_delivery_exactly_once() {
    let Ok(admin) = std::env::var("HONUA_TEST_DATABASE_URL") else {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "notice: HONUA_TEST_DATABASE_URL is not set; the HA test is skipped");
        return;
    };
    let name = format!("honua_ha_{}_{}", std::process::id(), chrono::Utc::now().timestamp_micros());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    let database = Database { admin: admin.clone(), name: name.clone() };
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&format!("/{}", database.name));

    let github = FakeGithub::start().await;
    let origin = Origin::new(&common::examples().join("honua-config"));
    let heads: Vec<String> = (1..=PRS)
        .map(|n| {
            let tree = tempfile::tempdir().unwrap();
            common::copy_tree(&common::examples().join("honua-config-pr"), tree.path());
            let meta = tree.path().join("environments/development/metadata.yaml");
            let text = std::fs::read_to_string(&meta).unwrap();
            std::fs::write(&meta, text.replacen("title:", &format!("title: PR {n} "), 1)).unwrap();
            let head = origin.push_pr(n, tree.path());
            github.open_pr(REPO, n, &head, "main");
            head
        })
        .collect();
    let base = origin.main_sha();

    let data = tempfile::tempdir().unwrap();
    let start = |tag: &str, port: u16| {
        let dir = data.path().join(tag);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_honua"));
        cmd.arg("serve").env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        let mut env = common::github_mode(port, url.as_str(), &dir, &github.url(), &origin, SECRET);
        env.push(("HONUA_WORKERS", "2".into()));
        // The killed replica's jobs are taken over after this many seconds.
        env.push(("HONUA_JOB_LEASE", "5".into()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let log = std::fs::File::create(data.path().join(format!("{tag}.log"))).unwrap();
        common::Running(cmd.env("HONUA_LOG", "info").stdout(Stdio::null()).stderr(log).spawn().unwrap())
    };
    let ports = [common::free_port(), common::free_port()];
    let urls: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut a = start("a", ports[0]);
    common::wait_ready(&client, &urls[0]).await;
    let _b = start("b", ports[1]);
    common::wait_ready(&client, &urls[1]).await;

    // 500 deliveries, as a busy organisation sends them: mostly pushes to feature branches (queued and
    // processed, nothing to deploy), each PR's head once, every tenth PR delivery redelivered with the same
    // id (to either replica), and the push of main five times (distinct ids, one commit).
    let deliveries: Vec<(String, &'static str, Vec<u8>)> = (0..DELIVERIES)
        .map(|i| {
            if i % 100 == 50 {
                (format!("main-{i}"), "push", common::push_payload(&"0".repeat(40), &base, "alice"))
            } else if i % 50 < PRS as usize && i < 50 {
                let n = i as u64 + 1;
                let body = common::pull_request_payload("opened", n, &heads[n as usize - 1], &base);
                (format!("pr-{n}"), "pull_request", body)
            } else if i % 50 < PRS as usize && i % 100 < 50 {
                // A redelivery of PR n's delivery: same id, same body.
                let n = (i % 50) as u64 + 1;
                let body = common::pull_request_payload("opened", n, &heads[n as usize - 1], &base);
                (format!("pr-{n}"), "pull_request", body)
            } else {
                let mut body: serde_json::Value =
                    serde_json::from_slice(&common::push_payload(&"0".repeat(40), &base, "bob")).unwrap();
                body["ref"] = format!("refs/heads/feature-{i}").into();
                (format!("feature-{i}"), "push", serde_json::to_vec(&body).unwrap())
            }
        })
        .collect();
    let deliveries = Arc::new(deliveries);
    let killed = Arc::new(tokio::sync::RwLock::new(false));
    let accepted = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let mut senders = tokio::task::JoinSet::new();
    for lane in 0..8usize {
        let (deliveries, client, urls, killed, accepted) =
            (deliveries.clone(), client.clone(), urls.clone(), killed.clone(), accepted.clone());
        senders.spawn(async move {
            for i in (lane..DELIVERIES).step_by(8) {
                let (id, event, body) = &deliveries[i];
                // Round robin; once a replica is gone the balancer sends everything to the other one,
                // and a delivery that failed on the dead one is redelivered (as GitHub does).
                let mut target = i % 2;
                if *killed.read().await {
                    target = 1;
                }
                loop {
                    let sent = webhook(&client, &urls[target], SECRET, event, id, body.clone()).send().await;
                    match sent {
                        Ok(r) if r.status() == 202 => {
                            let status =
                                r.json::<serde_json::Value>().await.unwrap()["status"].as_str().unwrap().to_string();
                            accepted.lock().unwrap().push((id.clone(), status));
                            break;
                        }
                        Ok(r) => panic!("delivery {id}: HTTP {}", r.status()),
                        Err(_) if target == 0 => target = 1,
                        Err(e) => panic!("delivery {id} to the surviving replica failed: {e}"),
                    }
                }
            }
        });
    }
    // Mid-burst: replica A dies with SIGKILL (no shutdown, jobs it claimed left leased).
    while accepted.lock().unwrap().len() < DELIVERIES / 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    *killed.write().await = true;
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), DELIVERIES, "every delivery was accepted by one replica or the other");
    let queued: std::collections::HashSet<&str> =
        accepted.iter().filter(|(_, s)| s == "queued").map(|(id, _)| id.as_str()).collect();
    let duplicates = accepted.iter().filter(|(_, s)| s == "duplicate").count();
    let distinct: std::collections::HashSet<&str> = deliveries.iter().map(|(id, _, _)| id.as_str()).collect();
    let queued_total = accepted.iter().filter(|(_, s)| s == "queued").count();
    assert_eq!(queued_total, queued.len(), "no delivery id was queued twice");
    let answered: std::collections::HashSet<&str> = accepted.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(answered, distinct, "every delivery was answered");
    // A delivery the killed replica stored but could not answer is redelivered and recognised: queued
    // once, on A, then `duplicate` on B.
    assert!(queued.len() >= distinct.len() - 8, "{} of {} queued", queued.len(), distinct.len());
    assert_eq!(queued.len() + duplicates, DELIVERIES);

    // The survivor finishes everything, the killed replica's leased jobs included.
    let store = honua_gitops::store::open(url.as_str()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let checked = heads.iter().filter(|h| {
            let runs = github.check_runs(h);
            runs.len() >= 2 && runs.iter().all(|r| r.status == "completed")
        });
        let checked = checked.count();
        let commented = (1..=PRS).filter(|n| !github.comments(REPO, *n).is_empty()).count();
        let mirrored = github.deployments().len();
        if checked == PRS as usize && commented == PRS as usize && mirrored >= 3 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let log = std::fs::read_to_string(data.path().join("b.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "checked {checked}/{PRS}, commented {commented}/{PRS}, GitHub deployments {mirrored}, queue {:?}\nreplica b, last lines:\n{}",
                store.queue_depth().await,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while store.queue_depth().await.unwrap() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the queue never drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Settled: nothing more may appear.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (n, head) in heads.iter().enumerate() {
        assert_eq!(github.check_runs(head).len(), 2, "PR {}: one pair of check runs", n + 1);
        assert_eq!(github.comments(REPO, n as u64 + 1).len(), 1, "PR {}: one plan comment", n + 1);
    }
    let all =
        store.deployments(&honua_gitops::store::DeploymentFilter { limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 3, "one deployment per environment: {all:#?}");
    let mirrored = github.deployments();
    assert_eq!(mirrored.len(), 3, "one GitHub deployment per environment: {mirrored:#?}");
    drop(store);
    drop(database);
}
