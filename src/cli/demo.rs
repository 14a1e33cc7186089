//! `honua demo`: the whole loop on loopback, in a temporary directory, with nothing but this binary.
//! The service runs in plain-Git mode on SQLite; a config repository is built from the embedded
//! example; one stand-in Honua and one agent per environment apply what is approved. It narrates the
//! product README's three examples (a new `bike_lanes` layer, the parcels cache TTL raised from 3600 to
//! 7200, a rollback of production) and checks each step really happened: the exit code is 0 only then.
//! With `--format hcl` the same tour runs on the Configuration 2.0 example (`examples/honua-config-hcl`)
//! against stand-ins in their Configuration 2.0 mode; its second example raises production's rate limit,
//! since Configuration 2.0 has no per-layer cache TTL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::agent::{Agent, AgentConfig};
use crate::config::ConfigRepo;
use crate::controller::DeploySource;
use crate::deployment::wire::{DeploymentDetail, DeploymentSummary, Deployments, Environments};
use crate::deployment::DeploymentState;
use crate::standin::StandIn;
use crate::store::{ApiTokenHash, Role};

/// The example configuration repository, embedded so the demo needs no checkout.
const EXAMPLE: &[(&str, &str)] = &[
    (".gitops/deployment-policy.yaml", include_str!("../../examples/honua-config/.gitops/deployment-policy.yaml")),
    (
        "environments/common/base-metadata.yaml",
        include_str!("../../examples/honua-config/environments/common/base-metadata.yaml"),
    ),
    (
        "environments/development/metadata.yaml",
        include_str!("../../examples/honua-config/environments/development/metadata.yaml"),
    ),
    (
        "environments/development/datasources.yaml",
        include_str!("../../examples/honua-config/environments/development/datasources.yaml"),
    ),
    (
        "environments/development/config.yaml",
        include_str!("../../examples/honua-config/environments/development/config.yaml"),
    ),
    (
        "environments/staging/metadata.yaml",
        include_str!("../../examples/honua-config/environments/staging/metadata.yaml"),
    ),
    (
        "environments/staging/datasources.yaml",
        include_str!("../../examples/honua-config/environments/staging/datasources.yaml"),
    ),
    ("environments/staging/config.yaml", include_str!("../../examples/honua-config/environments/staging/config.yaml")),
    (
        "environments/production/metadata.yaml",
        include_str!("../../examples/honua-config/environments/production/metadata.yaml"),
    ),
    (
        "environments/production/datasources.yaml",
        include_str!("../../examples/honua-config/environments/production/datasources.yaml"),
    ),
    (
        "environments/production/config.yaml",
        include_str!("../../examples/honua-config/environments/production/config.yaml"),
    ),
];

/// The Configuration 2.0 example repository (converted from the one above by `honua convert`).
const EXAMPLE_HCL: &[(&str, &str)] = &[
    (".gitops/deployment-policy.yaml", include_str!("../../examples/honua-config-hcl/.gitops/deployment-policy.yaml")),
    ("environments/common/honua.hcl", include_str!("../../examples/honua-config-hcl/environments/common/honua.hcl")),
    (
        "environments/development/honua.hcl",
        include_str!("../../examples/honua-config-hcl/environments/development/honua.hcl"),
    ),
    ("environments/staging/honua.hcl", include_str!("../../examples/honua-config-hcl/environments/staging/honua.hcl")),
    (
        "environments/production/honua.hcl",
        include_str!("../../examples/honua-config-hcl/environments/production/honua.hcl"),
    ),
];

/// The first example's layer as a Configuration 2.0 block, appended to the shared file.
pub const BIKE_LANES_HCL: &str = "
layer \"bike_lanes\" {
  title             = \"Bike Lanes\"
  data_source       = data_source.city-postgis
  table             = \"public.bike_lanes\"
  id_field          = \"lane_id\"
  display_field     = \"street_name\"
  introspect_fields = true
  geometry = {
    column = \"geom\"
    type   = \"LineString\"
    srid   = 4326
  }
  services = [service.ogc_api, service.wfs]
}
";

/// The layer of the README's first example, appended to the shared layers.
const BIKE_LANES: &str = "  - id: bike_lanes
    serviceId: transportation
    title: Bike Lanes
    catalog: {ordering: 5}
    geometryType: LineString
    idField: lane_id
    displayField: street_name
    geometryField: geom
    crs: [\"EPSG:4326\", \"EPSG:3857\"]
    extent:
      bbox: [[-123.2, 45.4, -122.4, 45.7]]
      crs: EPSG:4326
    storage:
      table: public.bike_lanes
      geometryColumn: geom
      primaryKey: lane_id
      srid: 4326
    fields:
      - {name: lane_id, type: int, nullable: false}
      - {name: street_name, type: string, nullable: true}
      - {name: lane_type, type: string, nullable: true}
";

const ENVIRONMENTS: [&str; 3] = ["development", "staging", "production"];

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Leave the service, the stand-ins and the agents running after the tour (Ctrl-C stops them).
    #[arg(long)]
    pub keep: bool,
    /// For CI: no colour, shorter polling; the same checks.
    #[arg(long)]
    pub ci: bool,
    /// The repository's format: JSON-era metadata (YAML), or Honua's Configuration 2.0 (HCL), deployed
    /// to stand-ins that read one HCL file by its watcher.
    #[arg(long, value_enum, default_value = "metadata")]
    pub format: DemoFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoFormat {
    Metadata,
    Hcl,
}

type Files = BTreeMap<String, Vec<u8>>;

fn example_files(format: DemoFormat) -> Files {
    let example = match format {
        DemoFormat::Metadata => EXAMPLE,
        DemoFormat::Hcl => EXAMPLE_HCL,
    };
    let mut files: Files = example.iter().map(|(p, t)| (p.to_string(), t.as_bytes().to_vec())).collect();
    // The demo must run at any hour: production's deployment windows and holiday blackout are taken out.
    let policy = files.get_mut(".gitops/deployment-policy.yaml").expect("embedded");
    let text = String::from_utf8(policy.clone()).expect("UTF-8");
    if let (Some(from), Some(to)) = (text.find("      deploymentWindows:"), text.find("    notifications:")) {
        *policy = format!("{}{}", &text[..from], &text[to..]).into_bytes();
    }
    files
}

/// Writes `files` as a tree in `repo` (nested directories included).
fn write_tree(repo: &git2::Repository, files: &Files, prefix: &str) -> Result<git2::Oid> {
    let mut builder = repo.treebuilder(None)?;
    let mut dirs: BTreeMap<String, ()> = BTreeMap::new();
    for (path, bytes) in files {
        let Some(rest) = path.strip_prefix(prefix) else { continue };
        match rest.split_once('/') {
            Some((dir, _)) => {
                dirs.insert(dir.to_string(), ());
            }
            None => {
                let blob = repo.blob(bytes)?;
                builder.insert(rest, blob, 0o100644)?;
            }
        }
    }
    for dir in dirs.keys() {
        let oid = write_tree(repo, files, &format!("{prefix}{dir}/"))?;
        builder.insert(dir, oid, 0o040000)?;
    }
    Ok(builder.write()?)
}

/// Commits `files` on `main` of the bare repository at `path`; returns the commit id.
fn commit(path: &Path, files: &Files, message: &str) -> Result<String> {
    let repo = git2::Repository::open_bare(path)?;
    let tree = repo.find_tree(write_tree(&repo, files, "")?)?;
    let sig = git2::Signature::now("Alice (demo)", "alice@example.org")?;
    let parent = repo.refname_to_id("refs/heads/main").ok().map(|p| repo.find_commit(p)).transpose()?;
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let oid = repo.commit(Some("refs/heads/main"), &sig, &sig, message, &tree, &parents)?;
    Ok(oid.to_string())
}

struct Painter {
    colour: bool,
}

impl Painter {
    fn step(&self, text: &str) {
        if self.colour {
            crate::outln!("\n\x1b[1;36m▶ {text}\x1b[0m");
        } else {
            crate::outln!("\n▶ {text}");
        }
    }

    fn ok(&self, text: &str) {
        if self.colour {
            crate::outln!("  \x1b[32m✓\x1b[0m {text}");
        } else {
            crate::outln!("  ✓ {text}");
        }
    }

    fn note(&self, text: &str) {
        crate::outln!("  {text}");
    }
}

/// The demo's parts, as a running system.
struct World {
    dir: PathBuf,
    origin: PathBuf,
    api: String,
    operator_token: String,
    http: reqwest::Client,
    honua: BTreeMap<&'static str, StandIn>,
    painter: Painter,
    step_timeout: Duration,
}

impl World {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let mut request = self.http.request(method, format!("{}{path}", self.api)).bearer_auth(&self.operator_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| format!("the demo service did not answer {path}"))?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// `GET path`, read as the contract's type.
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await?;
        if status != 200 {
            bail!("the demo service answered HTTP {status} to {path}: {body}");
        }
        serde_json::from_value(body).with_context(|| format!("the demo service's answer to {path}"))
    }

    /// The deployment of `commit` to `env`, once planned.
    async fn deployment(&self, env: &str, commit: &str) -> Result<DeploymentSummary> {
        let deadline = Instant::now() + self.step_timeout;
        loop {
            let list: Deployments = self.get(&format!("/api/v1/deployments?environment={env}&limit=20")).await?;
            if let Some(d) = list.deployments.into_iter().find(|d| d.summary.commit == commit) {
                return Ok(d.summary);
            }
            if Instant::now() > deadline {
                bail!(
                    "commit {} was never planned for {env} (the service polls the repository every second)",
                    crate::deployment::short_sha(commit)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_state(&self, id: &str, states: &[DeploymentState]) -> Result<DeploymentDetail> {
        use DeploymentState::*;
        let deadline = Instant::now() + self.step_timeout;
        loop {
            let d: DeploymentDetail = self.get(&format!("/api/v1/deployments/{id}")).await?;
            let state = d.view.summary.state;
            if states.contains(&state) {
                return Ok(d);
            }
            if [Failed, RolledBack, Rejected, Superseded].contains(&state) || Instant::now() > deadline {
                let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
                bail!(
                    "deployment {id} is `{state}`, not {}: see {}/api/v1/deployments/{id}",
                    states.join(" or "),
                    self.api
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the stand-in Honua of `env` serves now.
    fn served(&self, env: &str) -> Value {
        self.honua[env].state.lock().expect("stand-in state").loaded.clone().unwrap_or(Value::Null)
    }

    fn plan(&self, from: &str, to: &str) -> Result<String> {
        let (a, b) = (ConfigRepo::load_git(&self.origin, from)?, ConfigRepo::load_git(&self.origin, to)?);
        let set = crate::plan::build(&a, &b, None, chrono::Utc::now());
        Ok(crate::plan::render::plan_text(&set.plans, 100))
    }
}

fn layer<'a>(served: &'a Value, id: &str) -> Option<&'a Value> {
    served["layers"].as_array()?.iter().find(|l| l["id"] == id)
}

/// Whether Honua serves the bike lanes: a metadata layer, or a Configuration 2.0 layer block.
fn serves_bike_lanes(format: DemoFormat, served: &Value) -> bool {
    match format {
        DemoFormat::Metadata => layer(served, "bike_lanes").is_some(),
        DemoFormat::Hcl => served["layer"]["bike_lanes"].is_object(),
    }
}

/// The README's second example in one format: a value of production that a commit changes and the
/// rollback restores.
struct SecondExample {
    file: &'static str,
    /// The text replaced in `file`, and what replaces it.
    from: &'static str,
    to: &'static str,
    /// The value Honua serves before and after the change.
    before: i64,
    after: i64,
    title: &'static str,
    /// What Honua serves, named for the narration.
    what: &'static str,
    message: &'static str,
    /// The narration once the rollback restored `before`.
    again: &'static str,
}

impl SecondExample {
    fn of(format: DemoFormat) -> SecondExample {
        match format {
            DemoFormat::Metadata => SecondExample {
                file: "environments/production/metadata.yaml",
                from: "ttl: 3600",
                to: "ttl: 7200",
                before: 3600,
                after: 7200,
                title: "Example 2: raise the parcels cache TTL 3600 → 7200 in production",
                what: "parcels with caching.ttl",
                message: "Increase cache TTL for parcels layer",
                again: "parcels TTL is 3600 again",
            },
            DemoFormat::Hcl => SecondExample {
                file: "environments/production/honua.hcl",
                from: "requests = 1000",
                to: "requests = 2000",
                before: 1000,
                after: 2000,
                title: "Example 2: raise production's rate limit 1000 → 2000 requests a minute (Configuration 2.0 has no per-layer cache TTL)",
                what: "rate_limit.rules.default.requests",
                message: "Raise the production rate limit",
                again: "the rate limit is 1000 requests a minute again",
            },
        }
    }

    /// The value as Honua serves it: parcels' cache TTL, or production's rate limit.
    fn served(format: DemoFormat, served: &Value) -> Option<i64> {
        match format {
            DemoFormat::Metadata => layer(served, "parcels")?["caching"]["ttl"].as_i64(),
            DemoFormat::Hcl => served["rate_limit"]["rules"]["default"]["requests"].as_i64(),
        }
    }
}

pub fn run(args: DemoArgs) -> Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(tour(args))
}

async fn tour(args: DemoArgs) -> Result<std::process::ExitCode> {
    let started = Instant::now();
    let colour =
        !args.ci && std::io::IsTerminal::is_terminal(&std::io::stdout()) && std::env::var_os("NO_COLOR").is_none();
    let painter = Painter { colour };
    let temp = tempfile::Builder::new().prefix("honua-demo-").tempdir()?;
    let dir = temp.path().to_path_buf();
    painter.step(&format!("Setting up in {}", dir.display()));

    // The config repository, as a team would keep it (bare, served over file://).
    let origin = dir.join("honua-config.git");
    git2::Repository::init_bare(&origin)?;
    let format = args.format;
    let mut files = example_files(format);
    let initial = commit(&origin, &files, "Initial configuration")?;
    let url = format!("file://{}", origin.display());
    let shape = match format {
        DemoFormat::Metadata => "4 services, 13 layers, 3 environments",
        DemoFormat::Hcl => "Configuration 2.0 (HCL): 2 protocol services, 13 layers, 3 environments",
    };
    painter.ok(&format!("config repository with {shape}: {url}"));

    // The service, plain-Git mode (no GitHub App), SQLite, polling the repository every second.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut service_stop = stopped.clone();
    let settings = crate::server::settings::Settings {
        listen: "127.0.0.1:0".parse().expect("address"),
        database_url: format!("sqlite://{}", dir.join("honua.db").display()),
        database_timeout: crate::store::STATEMENT_TIMEOUT,
        github: None,
        repositories: vec![DeploySource { repository: url.clone(), url: url.clone(), branch: "main".into() }],
        revert_pull_requests: false,
        slack_webhook_url: None,
        webhook_secrets: Vec::new(),
        git_url: String::new(),
        data_dir: dir.join("data"),
        public_url: None,
        public_pages: true,
        workers: 1,
        job_lease: Duration::from_secs(120),
        job_retention: None,
        header_read_timeout: Duration::from_secs(10),
        body_read_timeout: Duration::from_secs(30),
        poll_interval: Some(Duration::from_secs(1)),
    };
    let service = crate::server::start(settings, async move {
        let _ = service_stop.changed().await;
    })
    .await
    .context("the demo service could not start")?;
    let api = format!("http://{}", service.addr);
    let store = service.controller.store.clone();
    let public_key = service.controller.signer.public_key();
    painter.ok(&format!("honua serve listening on {api} (SQLite: {})", dir.join("honua.db").display()));

    let operator_token = crate::server::api::new_token()?;
    let hash = crate::server::api::token_hash(&operator_token);
    store.create_token("demo-operator", &ApiTokenHash { role: Role::Admin, environment: None, hash: &hash }, 0).await?;

    // One stand-in Honua and one agent per environment.
    let secrets = dir.join("secrets.env");
    std::fs::write(&secrets, "DB_PASSWORD=demo-password\n")?;
    let mut honua = BTreeMap::new();
    let mut agents = Vec::new();
    for env in ENVIRONMENTS {
        let target = dir.join(env).join("honua");
        std::fs::create_dir_all(&target)?;
        let honua_settings = match format {
            DemoFormat::Metadata => crate::standin::HonuaSettings::supported(),
            DemoFormat::Hcl => crate::standin::HonuaSettings::configuration_2_0(),
        };
        let standin = StandIn::start_with(target.clone(), honua_settings).await;
        let token = crate::server::api::new_token()?;
        let hash = crate::server::api::token_hash(&token);
        let name = format!("{env}-agent");
        store.create_token(&name, &ApiTokenHash { role: Role::Agent, environment: Some(env), hash: &hash }, 0).await?;
        let state_dir = dir.join(env).join("agent");
        let config = AgentConfig::new(api.clone(), token, env, public_key.clone(), url.clone(), target, state_dir);
        let config = AgentConfig {
            health_timeout: Duration::from_secs(30),
            secrets_file: Some(secrets.clone()),
            ..standin.serving(config)
        };
        let agent = Arc::new(Agent::new(config)?);
        let runner = agent.clone();
        let stopped = stopped.clone();
        agents.push(tokio::spawn(async move { runner.run(stopped).await }));
        painter.ok(&format!("{env}: stand-in Honua on {}, agent `{name}`", standin.url));
        honua.insert(env, standin);
    }
    let world = World {
        dir: dir.clone(),
        origin: origin.clone(),
        api: api.clone(),
        operator_token,
        http: reqwest::Client::new(),
        honua,
        painter,
        step_timeout: Duration::from_secs(if args.ci { 30 } else { 60 }),
    };
    let p = &world.painter;

    // Bootstrap: what runs before the examples.
    p.step("Bootstrap: the initial configuration reaches every environment");
    for env in ["development", "staging"] {
        let d = world.deployment(env, &initial).await?;
        world.wait_state(&d.id, &[DeploymentState::Completed]).await?;
        p.ok(&format!("{env}: {} completed (the policy approves it by itself)", d.id));
    }
    let prod = world.deployment("production", &initial).await?;
    let prod_id = prod.id.clone();
    p.note(&format!("production: {prod_id} is `{}` ({})", prod.state, reasons(&prod)));
    approve(&world, &prod_id, true).await?;
    world.wait_state(&prod_id, &[DeploymentState::Completed]).await?;
    p.ok("production: approved by the operator and applied");

    // Example 1: a new layer.
    p.step("Example 1: add a `bike_lanes` layer");
    let (shared, block) = match format {
        DemoFormat::Metadata => ("environments/common/base-metadata.yaml", BIKE_LANES),
        DemoFormat::Hcl => ("environments/common/honua.hcl", BIKE_LANES_HCL),
    };
    let base = String::from_utf8(files[shared].clone())?;
    files.insert(shared.into(), format!("{}{block}", base.trim_end_matches('\n').to_string() + "\n").into_bytes());
    let collection = match format {
        DemoFormat::Metadata => "transportation::bike_lanes",
        DemoFormat::Hcl => "ogc_api::bike_lanes_ogc_api and wfs::bike_lanes_wfs",
    };
    let bikes = commit(&origin, &files, "Add bike lanes from public.bike_lanes")?;
    p.note(&format!(
        "commit {} pushed to main; the plan, as `honua plan` and the PR comment show it:",
        crate::deployment::short_sha(&bikes)
    ));
    for line in world.plan(&initial, &bikes)?.lines() {
        p.note(&format!("  {line}"));
    }
    for env in ["development", "staging"] {
        let d = world.deployment(env, &bikes).await?;
        world.wait_state(&d.id, &[DeploymentState::Completed]).await?;
        if !serves_bike_lanes(format, &world.served(env)) {
            bail!("{env} completed but its Honua does not serve bike_lanes");
        }
        p.ok(&format!("{env}: applied automatically; Honua serves {collection}"));
    }
    let d = world.deployment("production", &bikes).await?;
    let id = d.id.clone();
    if d.state != DeploymentState::AwaitingApproval {
        bail!("production should await approval, it is `{}`", d.state);
    }
    if serves_bike_lanes(format, &world.served("production")) {
        bail!("production serves bike_lanes before anyone approved it");
    }
    p.ok(&format!("production: {id} awaits approval ({}); Honua does not serve it yet", reasons(&d)));
    p.note(&format!("$ honua deployment approve {id}"));
    approve(&world, &id, false).await?;
    let done = world.wait_state(&id, &[DeploymentState::Completed]).await?;
    if !serves_bike_lanes(format, &world.served("production")) {
        bail!("production completed but its Honua does not serve bike_lanes");
    }
    p.ok(&format!("production: approved, applied, verified ({} transitions recorded)", done.transitions.len()));

    // Example 2: a cache TTL.
    let second = SecondExample::of(format);
    p.step(second.title);
    let text = String::from_utf8(files[second.file].clone())?;
    if !text.contains(second.from) {
        bail!("the embedded example no longer has `{}` in {}", second.from, second.file);
    }
    files.insert(second.file.into(), text.replacen(second.from, second.to, 1).into_bytes());
    let ttl_commit = commit(&origin, &files, second.message)?;
    for line in world.plan(&bikes, &ttl_commit)?.lines() {
        p.note(&format!("  {line}"));
    }
    let d = world.deployment("production", &ttl_commit).await?;
    let ttl_id = d.id.clone();
    p.ok(&format!("production: {ttl_id} awaits approval; development and staging have nothing to do"));
    approve(&world, &ttl_id, false).await?;
    world.wait_state(&ttl_id, &[DeploymentState::Completed]).await?;
    let now = SecondExample::served(format, &world.served("production"));
    if now != Some(second.after) {
        bail!("production completed but Honua serves {} {now:?}", second.what);
    }
    p.ok(&format!("production: Honua serves {} {}", second.what, second.after));

    // Example 3: emergency rollback.
    p.step("Example 3: roll production back");
    p.note("$ honua rollback production --yes");
    let (status, body) = world
        .call(reqwest::Method::POST, "/api/v1/environments/production/rollback", Some(serde_json::json!({})))
        .await?;
    if status != 201 {
        bail!("rollback refused: HTTP {status} {body}");
    }
    let rollback: DeploymentDetail = serde_json::from_value(body).context("the rollback's answer")?;
    let rollback_id = rollback.view.summary.id;
    world.wait_state(&rollback_id, &[DeploymentState::Completed]).await?;
    let now = SecondExample::served(format, &world.served("production"));
    if now != Some(second.before) {
        bail!("the rollback completed but Honua serves {} {now:?}", second.what);
    }
    p.ok(&format!("production: {rollback_id} restored the previous commit; {}", second.again));
    p.ok("automatic deployments of production pause until a newer commit lands");

    // Where things are.
    p.step("Status");
    let envs: Environments = world.get("/api/v1/environments").await?;
    for e in &envs.environments {
        let agent = e.agents.first();
        p.note(&format!(
            "{:<12} {:<10} sync {:<8} health {:<8} current {}",
            e.environment,
            e.status,
            agent.map_or("unknown", |a| a.sync.as_str()),
            agent.map_or("unknown", |a| a.health.as_str()),
            e.current.as_ref().map_or("-", |c| c.summary.id.as_str()),
        ));
    }
    p.ok(&format!("every step happened, in {:.1} s", started.elapsed().as_secs_f64()));

    if args.keep {
        p.step("Still running (Ctrl-C stops it)");
        p.note(&format!("export HONUA_SERVER={api}"));
        p.note(&format!("export HONUA_TOKEN={}", world.operator_token));
        p.note("honua status   # or: curl -H \"Authorization: Bearer $HONUA_TOKEN\" $HONUA_SERVER/api/v1/environments");
        p.note(&format!("files: {}", world.dir.display()));
        let _ = temp.keep();
        crate::server::shutdown_signal().await;
    } else {
        p.note(&format!("(run `honua demo --keep` to leave it running and point the CLI at it: HONUA_SERVER={api})"));
    }
    let _ = stop.send(true);
    for agent in agents {
        let _ = agent.await;
    }
    service.finished().await?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn reasons(d: &DeploymentSummary) -> String {
    if d.reasons.is_empty() {
        "no reasons given".into()
    } else {
        d.reasons.join("; ")
    }
}

async fn approve(world: &World, id: &str, breaking: bool) -> Result<()> {
    let (status, body) = world
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/deployments/{id}/approve"),
            Some(serde_json::json!({ "breaking": breaking })),
        )
        .await?;
    if status != 200 {
        bail!("approving {id} was refused: HTTP {status} {body}");
    }
    Ok(())
}
