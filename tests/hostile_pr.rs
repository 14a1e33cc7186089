//! Hostile pull requests against a running service: a policy depth bomb, hostile titles and names in
//! the plan comment, another bot's copy of our marker, and a job that keeps killing its worker. The
//! service must stay up, say why on the PR, and never post anything the repository's content controls.

#[macro_use]
mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::fake_github::FakeGithub;
use common::service::{webhook, ExampleScene};
use common::{Origin, REPO};
use honua_gitops::store::{now_ms, JobState, Store};

const WAIT: Duration = Duration::from_secs(60);
const SECRET: &str = "hostile-secret";

fn completed(gh: &FakeGithub, sha: &str) -> bool {
    let runs = gh.check_runs(sha);
    runs.len() == 2 && runs.iter().all(|r| r.status == "completed")
}

/// The examples' repository with two approval rules added to production: a condition of 100,000
/// nested parentheses (200 KB) and one of 50,000 `!` prefixes. Both overflowed the stack of the
/// process that parsed them.
fn policy_bombs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::copy_tree(&common::examples().join("honua-config"), dir.path());
    let path = dir.path().join(".gitops/deployment-policy.yaml");
    let policy = std::fs::read_to_string(&path).unwrap();
    let parens = format!("{}resourcesAdded > 0{}", "(".repeat(100_000), ")".repeat(100_000));
    let bangs = format!("{}breakingChanges", "!".repeat(50_000));
    let rules = format!(
        "      - name: parens\n        condition: \"{parens}\"\n        reason: boom\n      - name: bangs\n        condition: \"{bangs}\"\n        reason: boom\n      - name: resources-removed\n"
    );
    assert!(policy.contains("      - name: resources-removed\n"));
    std::fs::write(&path, policy.replacen("      - name: resources-removed\n", &rules, 1)).unwrap();
    dir
}

fn serve(env: &[(&str, String)]) -> common::Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_honua"));
    cmd.arg("serve").env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    common::Running(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap())
}

fn still_running(process: &mut common::Running) {
    assert!(process.0.try_wait().unwrap().is_none(), "honua serve exited: {:?}", process.0.try_wait());
}

async fn deliver(client: &reqwest::Client, url: &str, id: &str, body: Vec<u8>) {
    let r = webhook(client, url, SECRET, "pull_request", id, body).send().await.unwrap();
    assert_eq!(r.status(), 202);
}

/// The issue's first finding, against the released binary: a PR that only adds the bombs used to abort
/// `honua serve` on its `pull_request` webhook (and again after every restart). Now the PR's validate
/// check fails with a finding per rule, the process stays up, and a restart is uneventful.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pr_adding_policy_depth_bombs_fails_its_check_and_the_service_stays_up() {
    let github = FakeGithub::start().await;
    let origin = Origin::new(&common::examples().join("honua-config"));
    let bombs = policy_bombs();
    let head = origin.push_pr(1, bombs.path());
    let data = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let database = format!("sqlite://{}", data.path().join("honua.db").display());
    let env = common::github_mode(port, &database, data.path(), &github.url(), &origin, SECRET);
    let client = reqwest::Client::new();
    let mut service = serve(&env);
    common::wait_ready(&client, &url).await;
    deliver(&client, &url, "d-bomb", common::pull_request_payload("opened", 1, &head, &origin.main_sha())).await;
    github.wait_for(WAIT, "both checks completed", |gh| completed(gh, &head)).await;
    still_running(&mut service);

    let runs = github.check_runs(&head);
    let validate = runs.iter().find(|r| r.name == "honua/validate").unwrap();
    assert_eq!(validate.conclusion.as_deref(), Some("failure"));
    let bombs: Vec<&str> = validate
        .annotations
        .iter()
        .filter(|a| a["title"] == "policy.condition_too_long")
        .map(|a| a["message"].as_str().unwrap())
        .collect();
    assert_eq!(bombs.len(), 2, "{:?}", validate.annotations);
    assert!(bombs[0].contains("a condition may have at most 1000"), "{}", bombs[0]);
    assert!(bombs.iter().all(|m| m.len() < 500), "the message quotes an excerpt, not 200 KB: {bombs:?}");

    // A restart (the old failure mode crash-looped here) comes up and keeps working.
    drop(service);
    let mut service = serve(&env);
    common::wait_ready(&client, &url).await;
    deliver(&client, &url, "d-bomb-again", common::pull_request_payload("reopened", 1, &head, &origin.main_sha()))
        .await;
    github.wait_for(WAIT, "checks after the restart", |gh| gh.check_runs(&head).len() == 4).await;
    github
        .wait_for(WAIT, "both new checks completed", |gh| gh.check_runs(&head).iter().all(|r| r.status == "completed"))
        .await;
    still_running(&mut service);
    assert_eq!(client.get(format!("{url}/healthz")).send().await.unwrap().status(), 200);
}

/// Plain-Git mode: the bombs reach the deployment branch itself. The poller plans the commit, the
/// unreadable rules ask for approval (a rule that cannot be read never waves a change through), and
/// the service stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_git_mode_plans_a_branch_with_policy_bombs_and_stays_up() {
    let bombs = policy_bombs();
    let origin = Origin::new(bombs.path());
    let data = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", data.path().join("honua.db").display());
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let remote = format!("file://{}#main", origin.git_root.join("city/gis-config.git").display());
    let env = vec![
        ("HONUA_LISTEN", format!("127.0.0.1:{port}")),
        ("HONUA_DATABASE_URL", database.clone()),
        ("HONUA_REPOSITORIES", remote),
        ("HONUA_DATA_DIR", data.path().display().to_string()),
        ("HONUA_POLL_INTERVAL", "1".into()),
    ];
    let client = reqwest::Client::new();
    let mut service = serve(&env);
    common::wait_ready(&client, &url).await;
    let token = Command::new(env!("CARGO_BIN_EXE_honua"))
        .args(["token", "create", "--database-url", &database, "--name", "ops", "--role", "viewer"])
        .output()
        .unwrap();
    assert!(token.status.success(), "{token:?}");
    let token = String::from_utf8(token.stdout)
        .unwrap()
        .split_whitespace()
        .find(|w| w.starts_with("honua_"))
        .unwrap()
        .to_string();
    let mut production = serde_json::Value::Null;
    for _ in 0..600 {
        let list =
            common::json_of(client.get(format!("{url}/api/v1/deployments?environment=production")).bearer_auth(&token))
                .await;
        if let Some(d) = list["deployments"].as_array().and_then(|l| l.first()) {
            production = d.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    still_running(&mut service);
    assert_eq!(production["state"], "blocked", "{production}");
    let reasons = production["reasons"].to_string();
    assert!(reasons.contains("approval rule `parens` could not be read"), "{reasons}");
    assert!(reasons.contains("approval rule `bangs` could not be read"), "{reasons}");
}

/// Text outside code spans in a Markdown document, and the links, images and HTML it holds.
fn inert_markdown_violations(markdown: &str, own_link_prefix: &str) -> Vec<String> {
    use pulldown_cmark::{Event, Options, Parser, Tag};
    let ours = ["<br>", "<details>", "</details>", "<summary>", "</summary>", "<sub>", "</sub>"];
    let mut bad = Vec::new();
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Link { dest_url, .. }) if !dest_url.starts_with(own_link_prefix) => {
                bad.push(format!("link to {dest_url}"))
            }
            Event::Start(Tag::Image { dest_url, .. }) => bad.push(format!("image {dest_url}")),
            Event::Html(html) | Event::InlineHtml(html) => {
                let tag = html.trim();
                let summary = tag.starts_with("<summary>") && tag.ends_with("</summary>");
                if !ours.contains(&tag) && !tag.starts_with("<!-- honua-gitops:") && !summary {
                    bad.push(format!("HTML {tag}"));
                }
            }
            Event::Text(text) => {
                // What GitHub links after rendering: mentions, issue references, bare URLs.
                let t = text.to_lowercase();
                let chars: Vec<char> = t.chars().collect();
                for (i, c) in chars.iter().enumerate() {
                    let before_ok = i == 0 || !chars[i - 1].is_alphanumeric();
                    let next = chars.get(i + 1).copied().unwrap_or(' ');
                    if *c == '@' && before_ok && next.is_ascii_alphanumeric() {
                        bad.push(format!("mention in {text:?}"));
                    }
                    if *c == '#' && before_ok && next.is_ascii_digit() {
                        bad.push(format!("issue reference in {text:?}"));
                    }
                }
                if t.contains("://") || t.contains("www.") {
                    bad.push(format!("bare URL in {text:?}"));
                }
            }
            _ => {}
        }
    }
    bad
}

const HOSTILE: [&str; 6] = [
    "a ` @org/team @someone ` b",
    "[click](https://evil.example)",
    "![x](https://evil.example/p.png)",
    "<img src=x onerror=alert(1)>",
    "see #1 and www.evil.example",
    "``` | ~~~ <details>",
];

/// Hostile layer titles, ids and field names from a PR: the plan comment and the diff check render them
/// as text, never as a mention, a link, an image or HTML, and they are still shown.
async fn hostile_titles_ids_and_field_names_stay_inert_in_the_plan(store: Arc<dyn Store>) {
    let ExampleScene { github, origin, service } = ExampleScene::start(store).await;
    let tree = tempfile::tempdir().unwrap();
    common::copy_tree(&common::examples().join("honua-config"), tree.path());
    let meta = tree.path().join("environments/common/base-metadata.yaml");
    let mut text = std::fs::read_to_string(&meta).unwrap();
    for (i, hostile) in HOSTILE.iter().enumerate() {
        let quoted = serde_json::to_string(hostile).unwrap();
        text.push_str(&format!(
            "  - id: {}\n    serviceId: utilities\n    title: {quoted}\n    geometryType: Point\n    idField: id\n    geometryField: geom\n    fields:\n      - {{name: id, type: int}}\n      - {{name: {quoted}, type: string}}\n",
            serde_json::to_string(&format!("x{i}{hostile}")).unwrap()
        ));
    }
    std::fs::write(&meta, text).unwrap();
    let head = origin.push_pr(11, tree.path());
    service.pull_request("d-hostile", "opened", 11, &head, &origin.main_sha()).await;
    github.wait_for(WAIT, "checks and comment", |gh| completed(gh, &head) && gh.comments(REPO, 11).len() == 1).await;
    let comment = github.comments(REPO, 11).remove(0).body;
    let diff = github.check_runs(&head).into_iter().find(|r| r.name == "honua/diff").unwrap();
    for markdown in [&comment, diff.summary.as_ref().unwrap()] {
        let bad = inert_markdown_violations(markdown, "https://honua.example.org/");
        assert!(bad.is_empty(), "{bad:#?}\n{markdown}");
        // Still shown: every hostile id appears in a code span.
        let code: String = pulldown_cmark::Parser::new_ext(markdown, pulldown_cmark::Options::ENABLE_TABLES)
            .filter_map(|e| match e {
                pulldown_cmark::Event::Code(c) => Some(format!("{c}\n")),
                _ => None,
            })
            .collect();
        for (i, hostile) in HOSTILE.iter().enumerate() {
            assert!(code.contains(&format!("x{i}{hostile}")), "{hostile} not shown in:\n{code}");
        }
    }
}

/// Another bot (a workflow echoing PR text, say) posts a comment that starts with our marker: it is
/// not ours. The service posts its own plan and leaves that comment alone.
async fn another_bots_comment_with_our_marker_is_left_alone(store: Arc<dyn Store>) {
    let ExampleScene { github, origin, service } = ExampleScene::start(store).await;
    let planted = "<!-- honua-gitops:plan -->\nechoed by a workflow";
    let other = github.post_comment_as(REPO, 12, planted, "ci-echo[bot]", "Bot");
    let head = origin.push_pr(12, &common::examples().join("honua-config-pr"));
    service.pull_request("d-echo", "opened", 12, &head, &origin.main_sha()).await;
    github.wait_for(WAIT, "our plan comment", |gh| completed(gh, &head) && gh.comments(REPO, 12).len() == 2).await;
    let comments = github.comments(REPO, 12);
    let theirs = comments.iter().find(|c| c.id == other).unwrap();
    assert_eq!((theirs.body.as_str(), theirs.edits), (planted, 0), "another bot's comment was edited");
    let ours = comments.iter().find(|c| c.id != other).unwrap();
    assert_eq!(ours.author, "honua-gitops[bot]");
    assert!(ours.body.contains("## Honua deployment plan"));
}

/// A job whose worker vanished twice (simulated: two claims whose leases ran out) is not run a third
/// time: it is failed as quarantined, and the PR's checks say so, neutral.
async fn a_job_that_stopped_its_worker_twice_is_quarantined(store: Arc<dyn Store>) {
    let ExampleScene { github, origin, service } = ExampleScene::start_idle(store.clone()).await;
    let head = origin.push_pr(13, &common::examples().join("honua-config-pr"));
    service.pull_request("d-crash", "opened", 13, &head, &origin.main_sha()).await;
    // Two workers claim the job and die with it (their leases run out at once).
    let first = store.claim_job("dead-1", Duration::ZERO, now_ms(), false).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = store.claim_job("dead-2", Duration::ZERO, now_ms(), false).await.unwrap().unwrap();
    assert_eq!((first.id, second.takeovers), (second.id, 1));
    tokio::time::sleep(Duration::from_millis(5)).await;
    service.start_worker("w1");
    github.wait_for(WAIT, "neutral checks", |gh| completed(gh, &head)).await;
    for run in github.check_runs(&head) {
        assert_eq!(run.conclusion.as_deref(), Some("neutral"), "{run:?}");
        assert_eq!(run.title.as_deref(), Some("Not checked: the job was quarantined"));
        assert!(run.summary.as_deref().unwrap().contains("the job stopped its worker 2 times; quarantined"));
    }
    let mut status = store.job(first.id).await.unwrap().unwrap();
    for _ in 0..200 {
        if status.state == JobState::Failed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = store.job(first.id).await.unwrap().unwrap();
    }
    assert_eq!(status.state, JobState::Failed);
    assert!(status.last_error.unwrap().contains("quarantined"));
    assert!(github.comments(REPO, 13).is_empty(), "nothing of the job ran: no plan comment");
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = client.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// An admin reading an agent route used to register itself as an agent of that environment, so the
/// real agent's `completed` left the deployment `applying`, waiting for the admin. Agent routes take
/// agent tokens only; an agent naming a deployment of another environment is refused and audited.
async fn agent_routes_take_only_agent_tokens_of_their_environment(store: Arc<dyn Store>) {
    use reqwest::Method;
    let ExampleScene { github: _github, origin, service } = ExampleScene::start(store.clone()).await;
    let client = reqwest::Client::new();
    let admin = common::api_token(&store, "root", honua_gitops::store::Role::Admin, None).await;
    let dev = common::api_token(&store, "dev-agent", honua_gitops::store::Role::Agent, Some("development")).await;
    let (_, deployments) = service.push_main(&origin, "p-1").await;
    let of = |env: &str| deployments.iter().find(|d| d.environment == env).unwrap().id.clone();
    let (development, production) = (of("development"), of("production"));

    let desired = format!("{}/api/v1/agent/desired?environment=development", service.url);
    let (status, body) = call(&client, Method::GET, desired.clone(), &admin, None).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("agent routes take only agent tokens"), "{body}");
    let (_, agents) = call(&client, Method::GET, format!("{}/api/v1/agents", service.url), &admin, None).await;
    assert!(agents["agents"].as_array().unwrap().iter().all(|a| a["name"] != "root"), "{agents}");

    // The real agent applies and completes: nobody else is waited for.
    assert_eq!(call(&client, Method::GET, desired, &dev, None).await.0, 200);
    let report = |id: &str, phase: &str| serde_json::json!({"deployment": id, "phase": phase});
    let url = format!("{}/api/v1/agent/report", service.url);
    for phase in ["applying", "completed"] {
        let (status, body) = call(&client, Method::POST, url.clone(), &dev, Some(report(&development, phase))).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(store.deployment(&development).await.unwrap().unwrap().state.as_str(), "completed");

    // Another environment's deployment, in a report or a heartbeat: 403, audited.
    let (status, _) = call(&client, Method::POST, url, &dev, Some(report(&production, "failed"))).await;
    assert_eq!(status, 403);
    let beat = serde_json::json!({"deployment": production, "health": "healthy", "version": "1", "sync": "synced"});
    let (status, body) =
        call(&client, Method::POST, format!("{}/api/v1/agent/heartbeat", service.url), &dev, Some(beat)).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = call(
        &client,
        Method::POST,
        format!("{}/api/v1/agent/heartbeat", service.url),
        &admin,
        Some(serde_json::json!({"health": "healthy", "version": "1", "sync": "synced"})),
    )
    .await;
    assert_eq!(status, 403, "an admin sends no heartbeats");
    let refused: Vec<String> = store
        .audit(0, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action.starts_with("agent.") && e.action.ends_with(".forbidden"))
        .map(|e| format!("{} {}", e.action, e.message))
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused[1].starts_with("agent.heartbeat.forbidden agent `dev-agent` of `development`"), "{refused:?}");
    assert_eq!(store.deployment(&production).await.unwrap().unwrap().state.as_str(), "awaiting_approval");
}

/// Every client error of the API is JSON, the auth scheme is case-insensitive, and the pages carry the
/// headers that keep them from being framed, sniffed or made to load anything else.
async fn the_api_answers_every_client_error_in_json_and_pages_carry_security_headers(store: Arc<dyn Store>) {
    let ExampleScene { github: _github, origin: _origin, service } = ExampleScene::start(store.clone()).await;
    let client = reqwest::Client::new();
    let viewer = common::api_token(&store, "dash", honua_gitops::store::Role::Viewer, None).await;
    let lower = client
        .get(format!("{}/api/v1/deployments", service.url))
        .header("authorization", format!("bearer {viewer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status(), 200, "a lower-case scheme is the same scheme (RFC 7235)");
    for (method, path, status, code) in [
        ("GET", "/api/v1/deployments?limit=many", 400, "bad_request"),
        ("GET", "/api/v1/audit?after=%ZZ", 400, "bad_request"),
        ("DELETE", "/api/v1/deployments", 405, "method_not_allowed"),
        ("GET", "/api/v1/nothing/here", 404, "not_found"),
        ("POST", "/api/v1/deployments/x/approve", 403, "forbidden"),
    ] {
        let resp = client
            .request(method.parse().unwrap(), format!("{}{path}", service.url))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"), "{method} {path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"].as_str(), Some(code), "{method} {path}: {body}");
        assert!(!body["message"].as_str().unwrap().is_empty(), "{body}");
    }
    for page in ["/login", "/", "/assets/honua.css"] {
        let resp = client.get(format!("{}{page}", service.url)).send().await.unwrap();
        let h = resp.headers();
        assert_eq!(h["x-frame-options"], "DENY", "{page}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{page}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{page}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    }
    let login = client.get(format!("{}/login", service.url)).send().await.unwrap().text().await.unwrap();
    assert!(!login.contains("<style") && login.contains("/assets/honua.css"), "inline style breaks the policy");
}

/// Production's password and an API key committed by mistake in a PR: the plan comment, the diff check,
/// the API's deployment detail and the deployment page show masks, never the values.
async fn secrets_committed_by_mistake_are_masked_in_comments_api_and_pages(store: Arc<dyn Store>) {
    use honua_gitops::store::{DeploymentFilter, DeploymentState};
    let ExampleScene { github, origin, service } = ExampleScene::start(store.clone()).await;
    let viewer = common::api_token(&store, "dash", honua_gitops::store::Role::Viewer, None).await;
    service.deliver("push", "p-base", common::push_payload(&"0".repeat(40), &origin.main_sha(), "alice")).await;
    // Production runs the base (approved and applied), so the merge's plan diffs the connection string.
    let production_of = |commit: String| {
        let store = store.clone();
        async move {
            let filter = DeploymentFilter { environment: Some("production".into()), limit: 5, ..Default::default() };
            for _ in 0..600 {
                let found = store.deployments(&filter).await.unwrap().into_iter().find(|d| d.commit == commit);
                if let Some(d) = found {
                    return d.id;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("no production deployment of {commit}");
        }
    };
    let first = production_of(origin.main_sha()).await;
    service.approve(&first, "ops", true).await;
    for to in [DeploymentState::Applying, DeploymentState::Completed] {
        assert!(store.transition(&first, to, "agent", "test", now_ms()).await.unwrap());
    }
    let leaked = tempfile::tempdir().unwrap();
    common::copy_tree(&common::examples().join("honua-config"), leaked.path());
    let ds = leaked.path().join("environments/production/datasources.yaml");
    let text = std::fs::read_to_string(&ds).unwrap().replace("Password=${DB_PASSWORD}", "Password=Tr0ub4dor&3");
    std::fs::write(&ds, text + "    auth: {apiKey: sk-live-51HxQ}\n").unwrap();
    let never_shown = |what: &str, text: &str| {
        for secret in ["Tr0ub4dor", "sk-live-51HxQ"] {
            assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
        }
        assert!(text.contains("••••"), "{what} does not show the mask:\n{text}");
    };

    let head = origin.push_pr(14, leaked.path());
    service.pull_request("d-leak", "opened", 14, &head, &origin.main_sha()).await;
    github.wait_for(WAIT, "checks and comment", |gh| completed(gh, &head) && gh.comments(REPO, 14).len() == 1).await;
    never_shown("the plan comment", &github.comments(REPO, 14)[0].body);
    let diff = github.check_runs(&head).into_iter().find(|r| r.name == "honua/diff").unwrap();
    never_shown("the diff check", diff.summary.as_deref().unwrap());

    let before = origin.main_sha();
    let merged = origin.merge(leaked.path());
    service.deliver("push", "p-leak", common::push_payload(&before, &merged, "alice")).await;
    let id = production_of(merged).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let detail =
        common::text_of(client.get(format!("{}/api/v1/deployments/{id}", service.url)).bearer_auth(&viewer)).await;
    never_shown("the API's deployment detail", &detail);
    let login = client.post(format!("{}/login", service.url)).form(&[("token", viewer.as_str())]).send().await.unwrap();
    let session = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page = common::text_of(client.get(format!("{}/deployments/{id}", service.url)).header("cookie", session)).await;
    never_shown("the deployment page", &page);
}

on_both_stores!(
    secrets_committed_by_mistake_are_masked_in_comments_api_and_pages,
    agent_routes_take_only_agent_tokens_of_their_environment,
    the_api_answers_every_client_error_in_json_and_pages_carry_security_headers,
    hostile_titles_ids_and_field_names_stay_inert_in_the_plan,
    another_bots_comment_with_our_marker_is_left_alone,
    a_job_that_stopped_its_worker_twice_is_quarantined,
);
