//! The agent against Honua as Honua's own source answers: the stand-in (`src/standin.rs`) models the
//! JSON-era server's pipeline (legacy redirects, authentication, CSRF, the admin routes under `/v1`, the
//! snapshot store, the local login, QuickStart, the collection rule, a start that waits for metadata).
//! The example agent file deploys production with a backup; every refusal Honua can give is named by the
//! agent with what to set.

mod common;

use std::time::Duration;

use common::edge::{live_release, push, push_main, rolled_back_to, setup, setup_from, Setup};
use honua_gitops::agent::{AdminAuth, Agent, AgentConfig, PollOutcome};
use honua_gitops::standin::{AuthMode, HonuaSettings, StandIn, ADMIN_PASSWORD, ADMIN_USER};
use honua_gitops::store::DeploymentFilter;

/// The examples with the utilities service publishing no OGC collections (and production's deployment
/// windows taken out, so the test runs at any hour).
fn with_a_dark_service(tree: &std::path::Path) -> tempfile::TempDir {
    let dir = common::without_windows(tree);
    let meta = dir.path().join("environments/common/base-metadata.yaml");
    let text = std::fs::read_to_string(&meta).unwrap();
    let at = text.find("  - id: utilities\n    title: Utilities\n    description").expect("the utilities service");
    let (head, tail) = text.split_at(at);
    std::fs::write(
        &meta,
        format!("{head}{}", tail.replacen("collectionsEnabled: true", "collectionsEnabled: false", 1)),
    )
    .unwrap();
    dir
}

/// The newest deployment of `commit` in `environment`, approved (breaking changes acknowledged).
async fn approve(s: &Setup, environment: &str, commit: &str) -> String {
    let filter = DeploymentFilter { environment: Some(environment.into()), limit: 10, ..Default::default() };
    let d = s.store.deployments(&filter).await.unwrap().into_iter().find(|d| d.commit == commit).unwrap();
    s.service.approve(&d.id, "ops", true).await;
    d.id.to_string()
}

async fn reports(s: &Setup, id: &str) -> Vec<String> {
    s.store.agent_reports(id).await.unwrap().into_iter().map(|r| format!("{}: {}", r.phase, r.message)).collect()
}

/// The issue's acceptance: `deploy/examples/agent.yaml`, only Honua's host and port changed (the
/// install's own values, the admin password from agent.env and this machine's restart command given
/// as flags, which win over the file), deploys production under `requireBackup: true`: Honua's snapshot
/// 201, reload 200, every expected collection found by id, and a service with `collectionsEnabled:
/// false` not expected. A snapshot an operator takes later is not drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_agent_file_deploys_production_with_a_snapshot_against_honua() {
    let tree = with_a_dark_service(&common::examples().join("honua-config"));
    let s = setup_from("production", tree.path()).await;
    let address = s.honua.url.trim_start_matches("http://").to_string();
    let yaml = std::fs::read_to_string(common::deploy_file("examples/agent.yaml")).unwrap();
    assert!(yaml.contains("127.0.0.1:5000"));
    let file = s.config.state_dir.parent().unwrap().join("agent.yaml");
    std::fs::write(&file, yaml.replace("127.0.0.1:5000", &address)).unwrap();
    let args = honua_gitops::agent::settings::AgentArgs {
        server: Some(s.config.server.clone()),
        token: Some(s.config.token.clone()),
        public_key: Some(s.config.public_key.clone()),
        git_url: Some(s.config.git_url.clone()),
        target_dir: Some(s.config.target_dir.clone()),
        state_dir: Some(s.config.state_dir.clone()),
        secrets_file: s.config.secrets_file.clone(),
        admin_password: Some(ADMIN_PASSWORD.into()),
        restart_command: Some(format!(
            "curl -fsS -X POST -H 'X-API-Key: restart' -H 'Authorization: Bearer {}' {}/v1/admin/metadata/reload",
            s.honua.admin_token(),
            s.honua.url
        )),
        health_timeout: Some(10),
        ..Default::default()
    };
    let config = args.resolve(Some(&file)).unwrap();
    assert_eq!(config.admin, AdminAuth::Login { user: ADMIN_USER.into(), password: ADMIN_PASSWORD.into() });
    let agent = Agent::new(config.clone()).unwrap();

    // The first release: nothing ran before it, so there is nothing to snapshot.
    let base = push_main(&s, "p-1").await;
    let first_id = approve(&s, "production", &base).await;
    let outcome = agent.poll_once(0).await.unwrap();
    assert!(matches!(outcome, PollOutcome::Applied { .. }), "{outcome:?} {:?}", reports(&s, &first_id).await);
    let first = live_release(&s);

    // The PR: Honua's snapshot of what runs, then the reload, then each collection by id.
    let pr = with_a_dark_service(&common::examples().join("honua-config-pr"));
    let merged = s.origin.merge(pr.path());
    push(&s, &base, &merged, "p-2").await;
    let id = approve(&s, "production", &merged).await;
    let outcome = agent.poll_once(0).await.unwrap();
    assert_eq!(outcome, PollOutcome::Applied { deployment: id.clone() }, "{:?}", reports(&s, &id).await);
    let requests = {
        let honua = s.honua.state.lock().unwrap();
        assert_eq!(honua.snapshots, 1, "requireBackup: one snapshot, answered 201");
        honua.requests.clone()
    };
    assert!(first.join("metadata-snapshots").join(&id).join("metadata.json").exists(), "labelled with the deployment");
    let asked: Vec<&str> = requests
        .iter()
        .filter(|(m, p, _, _)| m == "GET" && p.starts_with("/v1/ogc/collections/"))
        .map(|(_, p, _, _)| p.as_str())
        .collect();
    assert!(asked.iter().any(|p| p.ends_with("transportation::bike_lanes")), "{asked:?}");
    assert!(!asked.iter().any(|p| p.contains("utilities::")), "collectionsEnabled: false is not expected: {asked:?}");
    let admin: Vec<_> = requests.iter().filter(|(m, p, _, _)| m == "POST" && p.starts_with("/v1/admin")).collect();
    assert!(admin.iter().all(|(_, _, key, scheme)| *key && scheme.as_deref() == Some("Bearer")), "{admin:?}");
    let completed = reports(&s, &id).await;
    assert!(
        completed.iter().any(|r| r.starts_with("completed: reloaded; healthy, 11 expected collection(s) served")),
        "{completed:?}"
    );
    assert!(completed.iter().any(|r| r.contains("backup: Honua snapshot")), "{completed:?}");

    // An operator takes a snapshot through Honua: it lands in the live release, and is not drift.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/admin/metadata/snapshots", s.honua.url))
        .header("X-API-Key", "operator")
        .bearer_auth(s.honua.admin_token())
        .json(&serde_json::json!({"label": "by-hand"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(agent.poll_once(0).await.unwrap(), PollOutcome::Unchanged);
    let (_, agents) = (0, s.store.agents(Some("production")).await.unwrap());
    let beat = serde_json::to_value(agents[0].heartbeat.as_ref().unwrap()).unwrap();
    assert_eq!(beat["sync"], "synced", "{beat}");
}

/// The agent of `s`'s environment against a stand-in of its own with `settings`, configured by `edit`.
async fn against(
    s: &Setup,
    settings: HonuaSettings,
    edit: impl FnOnce(AgentConfig) -> AgentConfig,
) -> (Agent, StandIn) {
    let honua = StandIn::start_with(s.config.target_dir.clone(), settings).await;
    let config = edit(honua.serving(s.config.clone()));
    (Agent::new(config).unwrap(), honua)
}

/// Deploys `main` to development and returns why it was rolled back.
async fn rolled_back(s: &Setup, agent: &Agent) -> String {
    let base = s.origin.main_sha();
    push(s, &"0".repeat(40), &base, "d-1").await;
    match agent.poll_once(0).await.unwrap() {
        PollOutcome::RolledBack { cause, .. } => cause,
        other => panic!("not rolled back: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_api_key_honuas_csrf_check_refuses_and_the_agent_names_the_header() {
    let s = setup("development").await;
    let (agent, _honua) = against(&s, HonuaSettings::supported(), |c| AgentConfig { api_key: None, ..c }).await;
    let cause = rolled_back(&s, &agent).await;
    assert!(cause.contains("HTTP 403 \"CSRF Token Validation Failed\""), "{cause}");
    assert!(cause.contains("`X-API-Key` header; set HONUA_AGENT_API_KEY"), "{cause}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_a_401_named_with_the_user() {
    let s = setup("development").await;
    let wrong = AdminAuth::Login { user: ADMIN_USER.into(), password: "not-the-password".into() };
    let (agent, _honua) = against(&s, HonuaSettings::supported(), |c| AgentConfig { admin: wrong, ..c }).await;
    let cause = rolled_back(&s, &agent).await;
    assert!(cause.contains(&format!("Honua refused `{ADMIN_USER}` (HTTP 401)")), "{cause}");
    // No credentials at all: the challenge says which settings to give.
    let s = setup("development").await;
    let (agent, _honua) =
        against(&s, HonuaSettings::supported(), |c| AgentConfig { admin: AdminAuth::None, ..c }).await;
    let cause = rolled_back(&s, &agent).await;
    assert!(cause.contains("(HTTP 401): no admin credentials are configured: set HONUA_AGENT_ADMIN_USER"), "{cause}");
}

/// Honua's local tokens expire (30 minutes by default; here 61 s): the agent logs in again a minute
/// before, and once more when Honua refuses a token it thought valid (sessions revoked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_login_token_is_renewed_and_a_refused_one_replaced() {
    let s = setup("development").await;
    let settings = HonuaSettings { session_lifetime: Duration::from_secs(61), ..HonuaSettings::supported() };
    let (agent, honua) = against(&s, settings, |c| c).await;
    let base = push_main(&s, "d-1").await;
    assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));
    assert_eq!(honua.state.lock().unwrap().logins, 1);
    // Past the renewal point (a minute before expiry): the next deployment logs in first.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let retitled = |title: &str| {
        let dir = tempfile::tempdir().unwrap();
        common::copy_tree(&common::examples().join("honua-config"), dir.path());
        let meta = dir.path().join("environments/development/metadata.yaml");
        let text = std::fs::read_to_string(&meta).unwrap();
        std::fs::write(&meta, text.replacen("title:", &format!("title: {title} "), 1)).unwrap();
        dir
    };
    let second = s.origin.merge(retitled("Second").path());
    push(&s, &base, &second, "d-2").await;
    assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));
    assert_eq!(honua.state.lock().unwrap().logins, 2, "renewed before it expired");
    // An administrator ends every session: the 401 makes the agent log in once more, and it goes on.
    honua.revoke_sessions();
    let third = s.origin.merge(retitled("Third").path());
    push(&s, &second, &third, "d-3").await;
    let outcome = agent.poll_once(0).await.unwrap();
    assert!(matches!(outcome, PollOutcome::Applied { .. }), "{outcome:?}");
    assert_eq!(honua.state.lock().unwrap().logins, 3, "one new login after the 401");
}

/// Honua refuses the metadata on reload (a 500; it keeps its previous snapshot): the agent restores the
/// previous release and says Honua refused it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_honua_refuses_is_a_500_and_rolled_back() {
    let s = setup("development").await;
    let (agent, honua) = against(&s, HonuaSettings::supported(), |c| c).await;
    let base = push_main(&s, "d-1").await;
    assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));
    let good = live_release(&s);
    let merged = s.origin.merge(&common::examples().join("honua-config-pr"));
    push(&s, &base, &merged, "d-2").await;
    honua.state.lock().unwrap().fail_reloads = true;
    let cause = rolled_back_to(&s, agent.poll_once(0).await.unwrap(), &good).await;
    assert!(cause.starts_with("Honua refused the new metadata (HTTP 500"), "{cause}");
    assert!(cause.contains("its log names the cause"), "{cause}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_mode_is_recognised_and_the_reload_command_suggested() {
    let s = setup("development").await;
    let settings = HonuaSettings { mode: AuthMode::QuickStart, ..HonuaSettings::supported() };
    let admin = AdminAuth::Bearer("whatever".into());
    let (agent, _honua) = against(&s, settings, |c| AgentConfig { admin, ..c }).await;
    let cause = rolled_back(&s, &agent).await;
    assert!(cause.starts_with("Honua runs in QuickStart mode"), "{cause}");
    assert!(cause.contains("HONUA_AGENT_RELOAD_COMMAND") && cause.contains("HONUA_AGENT_RESTART_COMMAND"), "{cause}");
}

/// Honua accepts HTTP Basic only over HTTPS: over http the agent says so; behind HTTPS it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_basic_works_over_https_only() {
    let s = setup("development").await;
    let basic = AdminAuth::Basic { user: ADMIN_USER.into(), password: ADMIN_PASSWORD.into() };
    let (agent, _honua) = against(&s, HonuaSettings::supported(), |c| AgentConfig { admin: basic.clone(), ..c }).await;
    let cause = rolled_back(&s, &agent).await;
    assert!(cause.contains("Honua accepts HTTP Basic only over HTTPS"), "{cause}");
    let s = setup("development").await;
    let https = HonuaSettings { https: true, ..HonuaSettings::supported() };
    let (agent, honua) = against(&s, https, |c| c).await;
    push(&s, &"0".repeat(40), &s.origin.main_sha(), "d-1").await;
    assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));
    assert_eq!(honua.state.lock().unwrap().logins, 0, "Basic, not the login");
}

/// Honua's default `ApiVersioning:AllowLegacyUrls` redirects every `/api` path to `/v1`, and its local
/// login is not versioned: the agent follows the 308 and explains the 404 it ends on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_login_behind_honuas_legacy_redirect_is_explained() {
    let s = setup("development").await;
    let (agent, _honua) = against(&s, HonuaSettings::shipped(), |c| c).await;
    let cause = rolled_back(&s, &agent).await;
    assert!(cause.contains("redirected to") && cause.contains("/v1/api/auth/local/login"), "{cause}");
    assert!(cause.contains("`ApiVersioning:AllowLegacyUrls` to false"), "{cause}");
}

/// Un-versioned paths, as an older agent file has them: Honua answers 308 to `/v1…`, and the agent
/// follows with the method, the body and its credentials. A redirect to another origin is not followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_with_method_body_and_credentials_to_the_same_origin_only() {
    let s = setup("staging").await;
    let honua = StandIn::start_with(s.config.target_dir.clone(), HonuaSettings::shipped()).await;
    let legacy = |c: AgentConfig| AgentConfig {
        admin: AdminAuth::Bearer(honua.admin_token()),
        reload_url: format!("{}/admin/metadata/reload", honua.url),
        snapshot_url: Some(format!("{}/admin/metadata/snapshots", honua.url)),
        collections_url: Some(format!("{}/ogc/collections", honua.url)),
        ..c
    };
    let agent = Agent::new(legacy(honua.serving(s.config.clone()))).unwrap();
    let base = push_main(&s, "s-1").await;
    assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));
    let merged = s.origin.merge(&common::examples().join("honua-config-pr"));
    push(&s, &base, &merged, "s-2").await;
    assert!(matches!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { .. }));
    let requests = {
        let state = honua.state.lock().unwrap();
        assert_eq!(state.snapshots, 1, "the snapshot's POST body survived the redirect");
        state.requests.clone()
    };
    let posts: Vec<_> = requests.iter().filter(|(m, _, _, _)| m == "POST").collect();
    assert!(posts.iter().any(|(_, p, _, _)| p == "/admin/metadata/reload"), "{posts:?}");
    let followed = posts.iter().find(|(_, p, _, _)| p == "/v1/admin/metadata/reload").expect("the 308 followed");
    assert!(followed.2 && followed.3.as_deref() == Some("Bearer"), "X-API-Key and credentials kept: {followed:?}");

    // Another origin: a server that redirects everything to the stand-in is not followed.
    let elsewhere = honua.url.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let to = format!("{elsewhere}{}", uri.path());
        async move { (axum::http::StatusCode::PERMANENT_REDIRECT, [(axum::http::header::LOCATION, to)]) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client =
        honua_gitops::agent::HonuaClient::new(Some("k".into()), AdminAuth::Bearer("t".into()), String::new()).unwrap();
    let err = client.reload(&format!("{redirector}/v1/admin/metadata/reload")).await.unwrap_err().to_string();
    assert!(err.contains("another origin: not followed"), "{err}");
}

/// Honua refuses to start without metadata: on a first install it is not running. The agent writes the
/// release and waits for Honua to come up on it (a service manager retrying), or starts it with the
/// restart command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_honua_that_starts_only_after_the_first_release_is_waited_for_or_started() {
    for with_command in [false, true] {
        // Without a server configuration (config.yaml), the first release is a reload that finds Honua
        // not running, rather than a restart.
        let tree = tempfile::tempdir().unwrap();
        common::copy_tree(&common::examples().join("honua-config"), tree.path());
        std::fs::remove_file(tree.path().join("environments/development/config.yaml")).unwrap();
        let s = setup_from("development", tree.path()).await;
        let port = common::free_port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let trigger = s.config.state_dir.parent().unwrap().join("start-honua");
        let watched = trigger.clone();
        let metadata = s.config.target_dir.join("current/metadata.json");
        // Without a command, a service manager retrying every 300 ms (systemd's `RestartSec`) starts it.
        let settled = move || {
            std::fs::metadata(&metadata)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_millis(300))
        };
        let honua = StandIn::start_when(addr, s.config.target_dir.clone(), HonuaSettings::supported(), move || {
            if with_command {
                watched.exists()
            } else {
                settled()
            }
        });
        let config = AgentConfig {
            restart_command: with_command.then(|| format!("touch '{}'", trigger.display())),
            health_timeout: Duration::from_secs(10),
            ..honua.serving(s.config.clone())
        };
        let agent = Agent::new(config).unwrap();
        push_main(&s, "d-1").await;
        let PollOutcome::Applied { deployment } = agent.poll_once(0).await.unwrap() else { panic!("not applied") };
        let done = reports(&s, &deployment).await;
        let how = if with_command {
            "Honua was not running: started with the restart command"
        } else {
            "Honua was not running: it started on the new release"
        };
        assert!(done.iter().any(|r| r.starts_with(&format!("completed: {how}; healthy"))), "{done:?}");
        assert!(honua.state.lock().unwrap().loaded.is_some());
    }
}

/// `honua agent --check` probes Honua's admin API as a deployment will use it, without changing
/// anything: accepted credentials, wrong ones, QuickStart (fatal unless a reload command replaces the
/// API), and a missing `X-API-Key`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_probes_honuas_admin_api_as_a_deployment_will_use_it() {
    let s = setup("development").await;
    let admin_line = |checks: Vec<(String, Result<String, honua_gitops::agent::CheckFailure>)>| {
        checks.into_iter().find(|(what, _)| what == "honua admin").expect("an admin line").1.map_err(|e| e.0)
    };

    let (agent, honua) = against(&s, HonuaSettings::supported(), |c| c).await;
    let ok = admin_line(agent.check().await).unwrap();
    assert!(ok.contains("/v1/admin/metadata/snapshots accepts the agent (local login as `"), "{ok}");
    assert_eq!(honua.state.lock().unwrap().snapshots, 0, "a probe takes no snapshot");

    let wrong = AdminAuth::Login { user: ADMIN_USER.into(), password: "not-the-password".into() };
    let (agent, _honua) = against(&s, HonuaSettings::supported(), |c| AgentConfig { admin: wrong, ..c }).await;
    let err = admin_line(agent.check().await).unwrap_err();
    assert!(err.contains("(HTTP 401)") && !err.contains("not-the-password"), "{err}");

    let quick = || HonuaSettings { mode: AuthMode::QuickStart, ..HonuaSettings::supported() };
    let bearer = || AdminAuth::Bearer("whatever".into());
    let (agent, _honua) = against(&s, quick(), |c| AgentConfig { admin: bearer(), ..c }).await;
    let err = admin_line(agent.check().await).unwrap_err();
    assert!(err.starts_with("Honua runs in QuickStart mode") && err.contains("HONUA_AGENT_RELOAD_COMMAND"), "{err}");
    // QuickStart closes the local login too (503): the check says what to use instead.
    let (agent, _honua) = against(&s, quick(), |c| c).await;
    let err = admin_line(agent.check().await).unwrap_err();
    assert!(err.contains("local authentication is not enabled") && err.contains("the reload command"), "{err}");
    // With a reload command, QuickStart is a way of running, not a failure, whatever the credentials.
    for admin in [bearer(), AdminAuth::Login { user: ADMIN_USER.into(), password: ADMIN_PASSWORD.into() }] {
        let command = Some("systemctl reload honua".into());
        let (agent, _honua) = against(&s, quick(), |c| AgentConfig { admin, reload_command: command, ..c }).await;
        let ok = admin_line(agent.check().await).unwrap();
        assert!(ok.starts_with("QuickStart mode") && ok.contains("HONUA_AGENT_SNAPSHOT_URL empty"), "{ok}");
    }

    let (agent, _honua) = against(&s, HonuaSettings::supported(), |c| AgentConfig { api_key: None, ..c }).await;
    let err = admin_line(agent.check().await).unwrap_err();
    assert!(err.starts_with("HONUA_AGENT_API_KEY is empty") && err.contains("X-API-Key"), "{err}");
}

/// Bodies bind as ASP.NET Core binds them: only as JSON (415 otherwise), property names without case, and
/// a body that does not bind is a 400 (for the login in any mode, before the mode is looked at; for a
/// snapshot, a bare 400 and no snapshot, in QuickStart too). No body at all is a snapshot request without
/// a label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stand_ins_bodies_bind_as_honuas_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("current")).unwrap();
    std::fs::write(dir.path().join("current/metadata.json"), "{}").unwrap();
    let client = reqwest::Client::new();
    let post = |honua: &StandIn, path: &str, token: Option<&str>, body: &str| {
        let mut request = client
            .post(format!("{}{path}", honua.url))
            .header("X-API-Key", "t")
            .header("Content-Type", "application/json; charset=utf-8")
            .body(body.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let honua = StandIn::start_with(dir.path().to_path_buf(), HonuaSettings::supported()).await;
    let login = format!(r#"{{"Username": "{ADMIN_USER}", "PASSWORD": "{ADMIN_PASSWORD}"}}"#);
    let answer = post(&honua, "/api/auth/local/login", None, &login).await.unwrap();
    assert_eq!(answer.status(), 200, "names match without case");
    let token = answer.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_string();

    let snapshots = "/v1/admin/metadata/snapshots";
    for unbound in ["not json", r#"{"label": 7}"#, "[]"] {
        let answer = post(&honua, snapshots, Some(&token), unbound).await.unwrap();
        assert_eq!(answer.status(), 400, "{unbound}");
        assert_eq!(answer.text().await.unwrap(), "", "a bare 400 for {unbound}");
    }
    let untyped = |path: &str, body: &str| {
        client.post(format!("{}{path}", honua.url)).header("X-API-Key", "t").bearer_auth(&token).body(body.to_string())
    };
    let answer = untyped(snapshots, r#"{"label": "x"}"#).send().await.unwrap();
    assert_eq!(answer.status(), 415, "a body is read only as JSON");
    assert_eq!(untyped("/api/auth/local/login", &login).send().await.unwrap().status(), 415);
    assert!(!dir.path().join("current/metadata-snapshots").exists(), "no snapshot was made");
    let answer = post(&honua, snapshots, Some(&token), r#"{"LABEL": "before release 7", "Notes": "n"}"#).await.unwrap();
    assert_eq!(answer.status(), 201);
    let created: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(
        (created["snapshot"]["label"].as_str(), created["snapshot"]["notes"].as_str()),
        (Some("before-release-7"), Some("n"))
    );
    assert_eq!(post(&honua, snapshots, Some(&token), "null").await.unwrap().status(), 201, "a null request");
    let answer = untyped(snapshots, "").send().await.unwrap();
    assert_eq!(answer.status(), 201, "no body (and no content type) is a request without a label");
    let created: serde_json::Value = answer.json().await.unwrap();
    assert!(created["snapshot"]["label"].as_str().unwrap().starts_with("snapshot-"), "{created}");

    let quickstart = HonuaSettings { mode: AuthMode::QuickStart, ..HonuaSettings::supported() };
    let honua = StandIn::start_with(dir.path().to_path_buf(), quickstart).await;
    assert_eq!(post(&honua, "/api/auth/local/login", None, "{}").await.unwrap().status(), 400, "validated first");
    assert_eq!(post(&honua, "/api/auth/local/login", None, &login).await.unwrap().status(), 503);
    // QuickStart's 401 is an endpoint filter: after CSRF, routing and the binding of the body.
    assert_eq!(post(&honua, snapshots, None, "{}").await.unwrap().status(), 401);
    assert_eq!(post(&honua, snapshots, None, "not json").await.unwrap().status(), 400, "bound before the filter");
    assert_eq!(post(&honua, "/v1/admin/metadata/nowhere", None, "{}").await.unwrap().status(), 404);
    let without_key = client.post(format!("{}{snapshots}", honua.url)).body("{}").send().await.unwrap();
    assert_eq!(without_key.status(), 403, "CSRF before the filter");
}
