//! Slow-loris: thousands of connections that send half a request header and then nothing do not stop
//! webhook handling. 4,000 by default (the test holds both ends, 8,000 descriptors);
//! `SLOWLORIS_CONNECTIONS=10000` for the figure where the descriptor limit allows.

mod common;

use std::time::{Duration, Instant};

use common::fake_github::FakeGithub;
use common::service::Service;
use common::Origin;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_stalled_connections_do_not_stop_a_webhook() {
    let connections: usize = std::env::var("SLOWLORIS_CONNECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
    let db = common::db::sqlite().await;
    let github = FakeGithub::start().await;
    let origin = Origin::new(&common::examples().join("honua-config"));
    let service = Service::start(&github, &origin, db.store.clone()).await;
    let addr = service.url.trim_start_matches("http://").to_string();

    let mut stalled = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
        socket.write_all(b"POST /webhooks/github HTTP/1.1\r\nHost: honua\r\nX-GitHub-Event: pu").await.unwrap();
        stalled.push(socket);
    }
    let started = Instant::now();
    let head = origin.push_pr(1, &common::examples().join("honua-config-pr"));
    github.open_pr(common::REPO, 1, &head, "main");
    tokio::time::timeout(
        Duration::from_secs(30),
        service.pull_request("loris-1", "opened", 1, &head, &origin.main_sha()),
    )
    .await
    .expect("the webhook was answered while the stalled connections were open");
    github
        .wait_for(Duration::from_secs(60), "the PR's checks", |gh| {
            let runs = gh.check_runs(&head);
            runs.len() == 2 && runs.iter().all(|r| r.status == "completed")
        })
        .await;
    println!("{connections} stalled connections; webhook to completed checks in {:?}", started.elapsed());
    drop(stalled);
}
