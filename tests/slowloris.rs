//! Slow-loris: thousands of connections that send half a request header and then nothing do not stop
//! webhook handling. 4,000 by default (the test holds both ends, 8,000 descriptors);
//! `SLOWLORIS_CONNECTIONS=10000` for the figure where the descriptor limit allows.

mod common;

use std::time::{Duration, Instant};

use common::service::ExampleScene;
use common::Origin;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_stalled_connections_do_not_stop_a_webhook() {
    let connections: usize = std::env::var("SLOWLORIS_CONNECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
    let db = common::db::sqlite().await;
    let ExampleScene { github, origin, service } = ExampleScene::start(db.store.clone()).await;
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

/// `honua serve` closes a connection whose request headers do not arrive within the header-read timeout,
/// cuts off a request body that does not arrive whole within the body timeout, and closes a kept-alive
/// connection left idle, while ordinary requests and long-lived event streams keep working through the
/// same server loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_closes_a_connection_that_stalls_in_its_headers() {
    use tokio::io::AsyncReadExt;
    let origin = Origin::new(&common::examples().join("honua-config"));
    let data = tempfile::tempdir().unwrap();
    let url = format!("file://{}/city/gis-config.git", origin.git_root.display());
    let settings = honua_gitops::server::settings::Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", data.path().join("h.db").display()),
        database_timeout: honua_gitops::store::STATEMENT_TIMEOUT,
        github: None,
        repositories: vec![honua_gitops::controller::DeploySource {
            repository: url.clone(),
            url,
            branch: "main".into(),
        }],
        revert_pull_requests: false,
        slack_webhook_url: None,
        webhook_secrets: Vec::new(),
        git_url: String::new(),
        data_dir: data.path().join("data"),
        public_url: None,
        public_pages: false,
        workers: 1,
        job_lease: Duration::from_secs(120),
        job_retention: None,
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(2),
        poll_interval: Some(Duration::from_secs(1)),
    };
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let running = honua_gitops::server::start(settings, async move {
        let _ = stopped.changed().await;
    })
    .await
    .unwrap();
    let base = format!("http://{}", running.addr);
    let token = common::api_token(&running.controller.store, "viewer", honua_gitops::store::Role::Viewer, None).await;

    // A stalled header: closed by the server after about a second.
    let mut stalled = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    stalled.write_all(b"GET /healthz HTTP/1.1\r\nHost: honua\r\nX-Slow: ").await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut buf)).await;
    assert!(read.is_ok(), "the stalled connection was still open after 10 s");
    assert!(started.elapsed() >= Duration::from_millis(900), "closed too early: {:?}", started.elapsed());

    // Ordinary requests, and an event stream that outlives the header timeout, still work.
    assert_eq!(reqwest::get(format!("{base}/healthz")).await.unwrap().status(), 200);
    let mut events =
        reqwest::Client::new().get(format!("{base}/api/v1/events")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(events.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(10), events.chunk()).await.unwrap().unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: environments"), "{first:?}");
    // Past the header timeout the stream is still open: a read waits instead of finding it closed.
    let later = tokio::time::timeout(Duration::from_secs(3), events.chunk()).await;
    assert!(later.is_err(), "the event stream was closed: {later:?}");

    // A body sent a byte every half second: cut off at the body timeout (2 s), counted from the end of
    // the headers, not from the last byte; the answer says why.
    let mut trickle = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    trickle
        .write_all(b"POST /webhooks/github HTTP/1.1\r\nHost: honua\r\nX-GitHub-Event: ping\r\nX-GitHub-Delivery: t-1\r\nContent-Length: 1000\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let cut = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if trickle.write_all(b"x").await.is_err() {
                break;
            }
            let mut buf = [0u8; 1024];
            match tokio::time::timeout(Duration::from_millis(500), trickle.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "a trickled body was still being read after 15 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("the request body did not arrive within 2s"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(1900), "cut off too early: {:?}", started.elapsed());

    // A kept-alive connection left idle after its request is closed after the header timeout (1 s).
    let mut idle = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: honua\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0))), "the idle connection was not closed: {closed:?}");
    assert!(started.elapsed() >= Duration::from_millis(900), "closed too early: {:?}", started.elapsed());

    stop.send(true).unwrap();
    drop(events);
    running.finished().await.unwrap();
}
