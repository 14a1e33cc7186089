//! The edge of the loop, as the agent tests meet it: the service in-process (fake GitHub, SQLite), the
//! config repository over `file://`, a stand-in Honua, and an agent configured for one environment.

use std::sync::Arc;
use std::time::Duration;

use honua_gitops::agent::{AgentConfig, PollOutcome};
use honua_gitops::config::{ConfigRepo, EnvName};
use honua_gitops::standin::StandIn;
use honua_gitops::store::{DeploymentFilter, DeploymentState, Role, Store};

use super::fake_github::FakeGithub;
use super::service::Service;
use super::Origin;

pub struct Setup {
    pub github: FakeGithub,
    pub origin: Origin,
    pub service: Service,
    pub store: Arc<dyn Store>,
    pub honua: StandIn,
    pub config: AgentConfig,
    _dirs: tempfile::TempDir,
    _db: super::db::TestDb,
}

pub async fn setup(environment: &str) -> Setup {
    setup_from(environment, &super::examples().join("honua-config")).await
}

/// An agent token for `name` serving `environment`.
pub async fn agent_token(store: &Arc<dyn Store>, name: &str, environment: &str) -> String {
    super::api_token(store, name, Role::Agent, Some(environment)).await
}

pub async fn setup_from(environment: &str, tree: &std::path::Path) -> Setup {
    setup_with(environment, tree, honua_gitops::standin::HonuaSettings::supported()).await
}

/// [`setup_from`] against a stand-in Honua with `settings` (Configuration 2.0, say).
pub async fn setup_with(
    environment: &str,
    tree: &std::path::Path,
    settings: honua_gitops::standin::HonuaSettings,
) -> Setup {
    let db = super::db::sqlite().await;
    let store = db.store.clone();
    let github = FakeGithub::start().await;
    let origin = Origin::new(tree);
    let service = Service::start(&github, &origin, store.clone()).await;
    let dirs = tempfile::tempdir().unwrap();
    let target = dirs.path().join("honua");
    std::fs::create_dir_all(&target).unwrap();
    let honua = StandIn::start_with(target.clone(), settings).await;
    let token = agent_token(&store, &format!("{environment}-agent"), environment).await;
    let secrets = dirs.path().join("secrets.env");
    std::fs::write(&secrets, "# the agent's secrets\nDB_PASSWORD=s3cret-pw\n").unwrap();
    let git_url = format!("file://{}/city/gis-config.git", origin.git_root.display());
    let public_key = service.controller.signer.public_key();
    let base = AgentConfig::new(
        service.url.clone(),
        token,
        environment,
        public_key,
        git_url,
        target,
        dirs.path().join("agent"),
    );
    let config =
        AgentConfig { health_timeout: Duration::from_secs(2), secrets_file: Some(secrets), ..honua.serving(base) };
    Setup { github, origin, service, store, honua, config, _dirs: dirs, _db: db }
}

pub async fn push(s: &Setup, before: &str, after: &str, delivery: &str) {
    s.service.deliver("push", delivery, super::push_payload(before, after, "alice")).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        // The agent's own environment: the others are planned in their own time.
        let filter =
            DeploymentFilter { environment: Some(s.config.environment.clone()), limit: 100, ..Default::default() };
        let all = s.store.deployments(&filter).await.unwrap();
        if all.iter().any(|d| d.commit == after) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "no deployment of {after} for {}", s.config.environment);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first push of the branch: main's commit as it stands (returned) is pushed and planned.
pub async fn push_main(s: &Setup, delivery: &str) -> String {
    let base = s.origin.main_sha();
    push(s, &"0".repeat(40), &base, delivery).await;
    base
}

/// The release the agent made live (what `current` in Honua's directory points at).
pub fn live_release(s: &Setup) -> std::path::PathBuf {
    std::fs::read_link(s.config.target_dir.join("current")).unwrap()
}

/// `outcome` rolled back to `good`: that release is live again and the deployment is `rolled_back`.
/// Returns the cause the agent reported.
pub async fn rolled_back_to(s: &Setup, outcome: PollOutcome, good: &std::path::Path) -> String {
    let PollOutcome::RolledBack { deployment, cause } = outcome else { panic!("not rolled back: {outcome:?}") };
    assert_eq!(live_release(s), good, "the previous release is live again ({cause})");
    assert_eq!(s.store.deployment(&deployment).await.unwrap().unwrap().state, DeploymentState::RolledBack);
    cause
}

pub fn expected_render(s: &Setup, commit: &str, env: &str) -> serde_json::Value {
    let repo = ConfigRepo::load_git(&s.origin.git_root.join("city/gis-config.git"), commit).unwrap();
    let text = serde_json::to_string(&repo.effective(&EnvName::new(env)).unwrap().metadata.to_json()).unwrap();
    serde_json::from_str(&text.replace("${DB_PASSWORD}", "s3cret-pw")).unwrap()
}

/// The deployment of `environment`'s record once the service has published it to the Git ledger.
pub async fn ledger_deployment(s: &Setup, environment: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let entries = s
            .origin
            .repo
            .refname_to_id(honua_gitops::git::ledger::LEDGER_REF)
            .ok()
            .map(|oid| honua_gitops::git::ledger::read(&s.origin.repo, oid).unwrap())
            .unwrap_or_default();
        if let Some(e) = entries.into_iter().find(|e| e.environment == environment) {
            return e.deployment;
        }
        assert!(tokio::time::Instant::now() < deadline, "the ledger never got {environment}'s record");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
