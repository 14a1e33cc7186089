//! The web pages of `honua serve`: a viewer token entered once (HttpOnly cookie), environments and a
//! deployment rendered on the server with everything escaped, no open redirect; and, where Debian's
//! Chromium is installed, the overview rendered by a real browser with a screenshot checked.

mod common;

use std::time::Duration;

use common::service::ExampleScene;
use honua_gitops::store::Role;

async fn token(store: &std::sync::Arc<dyn honua_gitops::store::Store>, name: &str, role: Role) -> String {
    common::api_token(store, name, role, (role == Role::Agent).then_some("development")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_need_a_viewer_token_once_and_render_environments_and_deployments_escaped() {
    let db = common::db::sqlite().await;
    let store = db.store.clone();
    let ExampleScene { github, origin, service } = ExampleScene::start(store.clone()).await;
    let viewer = token(&store, "viewer", Role::Viewer).await;
    let agent = token(&store, "agent", Role::Agent).await;
    let (_, all) = service.push_main(&origin, "p-1").await;
    let prod = all.into_iter().find(|d| d.environment == "production").unwrap();
    // A reason with markup, as anyone with an approver token could write it.
    service
        .controller
        .decisions()
        .reject(&prod.id, "mallory", "<script>alert(1)</script>", chrono::Utc::now())
        .await
        .unwrap();

    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let url = &service.url;
    let r = http.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=%2F");

    // Sign in: the cookie is HttpOnly and SameSite=Strict; the redirect stays on this site.
    let r = http
        .post(format!("{url}/login"))
        .form(&[("token", viewer.as_str()), ("next", "//evil.example")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/", "no open redirect");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let r = http.post(format!("{url}/login")).form(&[("token", agent.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 403, "an agent token does not read the pages");
    let r = http.post(format!("{url}/login")).form(&[("token", "honua_wrong")]).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let page = |path: String| {
        let (http, session) = (http.clone(), session.clone());
        async move {
            let r = http.get(path).header("cookie", session).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, html) = page(format!("{url}/")).await;
    assert_eq!(status, 200);
    for text in ["Environments", "development", "staging", "production", &prod.id] {
        assert!(html.contains(text), "{text} missing from the overview");
    }
    let (status, html) = page(format!("{url}/deployments/{}", prod.id)).await;
    assert_eq!(status, 200);
    assert!(html.contains("Transitions") && html.contains("rejected") && html.contains("Plan ("), "{html}");
    assert!(!html.contains("<script>alert(1)</script>"), "markup in data is escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let (status, _) = page(format!("{url}/deployments/nope")).await;
    assert_eq!(status, 404);

    // A PR's checks link to its plan page: breaking changes first, the policy's decision per environment.
    let head = origin.push_pr(5, &common::examples().join("honua-config-pr"));
    github.open_pr(common::REPO, 5, &head, "main");
    service.pull_request("p-2", "opened", 5, &head, &origin.main_sha()).await;
    github
        .wait_for(Duration::from_secs(60), "the PR's checks", |gh| {
            let runs = gh.check_runs(&head);
            runs.len() == 2 && runs.iter().all(|r| r.status == "completed")
        })
        .await;
    let (status, html) = page(format!("{url}/plans/city/gis-config/5/{head}")).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("transportation::bike_lanes") && html.contains("BREAKING field.removed"), "{html}");
    let breaking = html.find("BREAKING field.removed").unwrap();
    assert!(breaking < html.find("transportation::bike_lanes").unwrap(), "breaking changes come first");
    assert!(html.contains("production") && html.contains("blocked"), "{html}");
    let (status, _) = page(format!("{url}/plans/city/gis-config/5/not-a-sha")).await;
    assert_eq!(status, 400);
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_renders_in_headless_chromium() {
    let Some(chromium) =
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|p| std::path::Path::new(p).exists())
    else {
        eprintln!("Chromium is not installed: skipping the browser test of the pages (apt-get install chromium)");
        return;
    };
    let db = common::db::sqlite().await;
    let store = db.store.clone();
    let ExampleScene { github: _github, origin, service } = ExampleScene::start(store.clone()).await;
    service.push_main(&origin, "p-1").await;
    // The same pages, public (HONUA_PUBLIC_PAGES=true), for a browser without a cookie.
    let pages = honua_gitops::server::pages::Pages { controller: service.controller.clone(), public: true };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, honua_gitops::server::pages::router(pages)).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("overview.png");
    let browser = |args: Vec<String>| {
        let chromium = chromium.to_string();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(chromium)
                .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,900"])
                .args(args)
                .output()
                .unwrap()
        })
    };
    let dom = browser(vec!["--dump-dom".into(), url.clone()]).await.unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    for text in ["Environments", "development", "staging", "production", "awaiting approval"] {
        assert!(dom.contains(text), "{text} missing from what Chromium rendered:\n{dom}");
    }
    let out = browser(vec![format!("--screenshot={}", shot.display()), url]).await.unwrap();
    let bytes = std::fs::read(&shot).unwrap_or_else(|_| panic!("no screenshot: {out:?}"));
    assert_eq!(png_size(&bytes), (1280, 900));
    // A blank page compresses to almost nothing; the table and its colours do not.
    assert!(bytes.len() > 15_000, "the screenshot looks empty ({} bytes)", bytes.len());
    let keep = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("pages-overview.png");
    let _ = std::fs::copy(&shot, &keep);
}
