//! The `honua` command line: argument parsing with clap and the offline commands (validate, diff,
//! plan, render). Output for people is tables and short sentences; `--format json` is for scripts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{load_single_file, ConfigRepo, EnvName};
use crate::diagnostic::count_errors;
use crate::diff::diff_repositories;
use crate::plan::{self, render};
use crate::validate::{self, report};

pub mod ai;
pub mod app;
pub mod client;
pub mod demo;
pub mod output;
pub mod watch;

/// Exit status when the command itself could not run (bad path, unreadable repository).
pub const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "honua",
    version,
    about = "GitOps for Honua geospatial servers: validate, plan, approve and deploy configuration changes",
    long_about = "GitOps for Honua geospatial servers.\n\n\
        A config repository holds environments/common/base-metadata.yaml, environments/<env>/metadata.yaml \
        (+ datasources.yaml, config.yaml), or Honua's Configuration 2.0 as environments/<env>/honua.hcl, and \
        .gitops/deployment-policy.yaml. `honua validate` checks it \
        against the Honua server's schema and rules, `honua diff` shows semantic and breaking changes between \
        two revisions, and `honua plan` adds the policy's decision and a digest that approvals bind to. \
        `honua serve` runs the service (PR checks, deployments, approvals), `honua agent` applies approved \
        deployments to a Honua server, and `status`, `deployments`, `deployment`, `rollback`, `resume`, \
        `agents` and `watch` operate them (`token` and `app` set them up). `honua ai` writes a change asked for in \
        plain words (a layer from a PostGIS table) and `honua promote` carries one environment to another, \
        each as a pull request. `honua demo` shows the whole loop on this machine.",
    after_help = "Examples:\n  \
        honua demo\n  \
        honua validate --path environments/\n  \
        honua diff --from main --to HEAD --format markdown\n  \
        honua plan --from-dir examples/honua-config --to-dir examples/honua-config-pr\n  \
        honua ai \"Add a new layer for bike lanes from table public.bike_lanes\" --dry-run\n  \
        honua promote staging production --dry-run\n  \
        honua status production\n\n\
        Exit status: 0 success, 1 findings (validation errors; breaking changes with --fail-on-breaking), 2 the command could not run."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate a config repository, one environment, or a single metadata file.
    #[command(
        after_help = "Exit status: 0 no errors (warnings allowed), 1 errors found, 2 the command could not run.\n\n\
        Examples:\n  honua validate --path .\n  honua validate --path environments/production\n  \
        honua validate --path environments/production/metadata.yaml --format github"
    )]
    Validate(ValidateArgs),
    /// Show the semantic changes and breaking changes between two revisions, per environment.
    #[command(
        after_help = "Exit status: 0 (with or without changes), 1 breaking changes with --fail-on-breaking, 2 error.\n\n\
        Examples:\n  honua diff --from main --to HEAD\n  honua diff --from-dir old/ --to-dir new/ --env production --format json"
    )]
    Diff(DiffArgs),
    /// Plan a change: per environment the changes, the policy's decision (read from the FROM side) and the plan digest.
    #[command(
        after_help = "The policy is read from the base (--from / --from-dir): a change is never judged by the policy it brings.\n\n\
        Examples:\n  honua plan --from main --to HEAD\n  \
        honua plan --from-dir examples/honua-config --to-dir examples/honua-config-pr --at 2026-11-25T10:00:00Z"
    )]
    Plan(PlanArgs),
    /// Print one environment as the Honua server loads it: metadata as JSON, Configuration 2.0 as one HCL file.
    #[command(
        after_help = "Literal secrets (values of password/secret/token/apiKey keys, a connection string's password) are \
        masked as `•••• (length, sha256:xxxx)`; `${VAR}` placeholders are shown as written, since the agent resolves them \
        on the server. --show-secrets prints literals as they are (never paste that output anywhere).\n\n\
        Examples:\n  honua render --env production\n  honua render --path . --rev main --env staging"
    )]
    Render(RenderArgs),
    /// Rewrite a metadata repository (YAML/JSON) as Honua Configuration 2.0 (HCL), and prove it.
    #[command(
        after_help = "Each environment's effective metadata is mapped to Configuration 2.0 blocks; what every environment \
        shares goes to environments/common/honua.hcl, the rest to environments/<env>/honua.hcl. The result is loaded again \
        and compared with the metadata, environment by environment: the same data sources and, for every collection, the \
        same table, geometry, id field, data source and fields, under the new collection ids (Configuration 2.0 names \
        collections by protocol: `cadastre::parcels` becomes `ogc_api::parcels`, or `ogc_api::parcels_ogc_api` and \
        `wfs::parcels_wfs` when the layer has two protocols). Everything Configuration 2.0 cannot say (catalog, folders, \
        styles, layer caching, extents, …) is listed.\n\n\
        Without --output or --in-place nothing is written: the report shows what would be.\n\n\
        Exit status: 0 converted (or would convert) with the proof holding, 1 the proof found a difference (nothing \
        written), 2 error.\n\n\
        Examples:\n  honua convert --to hcl --path examples/honua-config\n  \
        honua convert --to hcl --path . --output ../city-gis-hcl\n  honua convert --to hcl --in-place"
    )]
    Convert(ConvertArgs),
    /// A change in plain words, made by the tool and opened as a pull request: a layer from a PostGIS
    /// table, a cache TTL, a title, a description, a field; disable or remove a layer.
    Ai(Box<ai::AiArgs>),
    /// Carry one environment's configuration to another (staging → production) as a pull request;
    /// connections and server settings stay.
    Promote(ai::PromoteArgs),
    /// Run the central service: GitHub webhooks in, check runs and the plan comment out.
    #[command(
        after_help = "Every setting is a flag, a HONUA_* environment variable, or a key of --config (snake_case).\n\n\
        Example:\n  HONUA_GITHUB_APP_ID=12345 HONUA_GITHUB_PRIVATE_KEY_PATH=/etc/honua/app.pem \\\n  \
        HONUA_GITHUB_WEBHOOK_SECRET=… honua serve --listen 0.0.0.0:8080"
    )]
    Serve(Box<ServeCommand>),
    /// Run the edge agent: apply approved, signed deployments of one environment to a Honua server.
    #[command(
        after_help = "Every setting is a flag, a HONUA_AGENT_* environment variable, or a key of --config (snake_case).\n\n\
        Examples:\n  honua agent --config /etc/honua/agent.yaml --check\n  honua agent --config /etc/honua/agent.yaml"
    )]
    Agent(Box<AgentCommand>),
    /// Manage API tokens (stored hashed in the service's database; a token is shown once).
    #[command(subcommand)]
    Token(TokenCommand),
    /// The whole loop on this machine: service, config repository, stand-in Honua servers and agents.
    #[command(
        after_help = "Runs on loopback in a temporary directory and narrates the README's three examples: a new \
        layer (development and staging applied automatically, production approved then applied), a cache TTL \
        change, and a rollback of production. Exit status 0 only if every step really happened.\n\n\
        Example:\n  cargo run --release -- demo\n  honua demo --keep    # then point the CLI at the printed HONUA_SERVER"
    )]
    Demo(demo::DemoArgs),
    /// Every environment at a glance (or one): commit, sync, health, last deployment.
    #[command(after_help = CLIENT_HELP)]
    Status {
        environment: Option<String>,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// A live dashboard: deployments and their phase, agents' health and check-ins, recent changes.
    #[command(after_help = CLIENT_HELP)]
    Watch {
        environment: Option<String>,
        /// Print the state once and exit (with `--output json`, the API's answer): for scripts and pipes.
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// An environment's deployments, newest first.
    #[command(after_help = CLIENT_HELP)]
    Deployments {
        environment: String,
        #[arg(long, default_value_t = 10)]
        limit: u32,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// One deployment: show, approve or reject it.
    #[command(subcommand)]
    Deployment(DeploymentCommand),
    /// Roll an environment back to its previous completed deployment (or `--to ID`).
    #[command(after_help = CLIENT_HELP)]
    Rollback {
        environment: String,
        /// A completed deployment of the environment to return to.
        #[arg(long)]
        to: Option<String>,
        /// Do not ask for confirmation (what it restores is still shown).
        #[arg(long)]
        yes: bool,
        /// Follow the rollback to its end; exit 0 only when it completed (1 on any other end, 3 when
        /// SECS, default 600, ran out first).
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "600")]
        wait: Option<u64>,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Lift the pause a rollback left on an environment, and deploy its branch head again as a push
    /// would (a commit newer than the rolled-back one lifts the pause by itself).
    #[command(after_help = CLIENT_HELP)]
    Resume {
        environment: String,
        /// Follow the deployment it plans to its end (see `rollback --wait`).
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "600")]
        wait: Option<u64>,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// The agents, their health, sync status and last check-in.
    #[command(after_help = CLIENT_HELP)]
    Agents {
        environment: Option<String>,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Exit 0 if URL answers 2xx within 5 s (the container image's health check; no curl needed).
    #[command(hide = true)]
    Probe { url: String },
    /// The GitHub App: `honua app create --manifest deploy/github/app-manifest.json`.
    #[command(subcommand)]
    App(AppCommand),
    /// Print a shell completion script (`honua completions bash > /etc/bash_completion.d/honua`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

const CLIENT_HELP: &str = "The service and token come from --server/--token, HONUA_SERVER/HONUA_TOKEN, or \
    ~/.config/honua/client.yaml (`server:` and `token:`; HONUA_CLIENT_CONFIG names another file). \
    --output json prints the API's answer.\n\nExamples:\n  honua status production\n  \
    honua deployments production --limit 5\n  honua deployment approve prod-20261125101500-abc1234\n  \
    honua rollback production --yes --wait\n  honua resume production";

#[derive(Subcommand, Debug)]
pub enum DeploymentCommand {
    /// The plan (breaking changes first), approvals, every transition and the agents' reports.
    #[command(after_help = CLIENT_HELP)]
    Show {
        id: String,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Approve a deployment (bound to its plan's digest and signed).
    #[command(after_help = CLIENT_HELP)]
    Approve {
        id: String,
        /// Acknowledge its breaking changes (required when the policy does not allow them).
        #[arg(long)]
        breaking: bool,
        /// Follow it to its end; exit 0 only when it completed (1 on any other end, 3 when SECS,
        /// default 600, ran out first).
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "600")]
        wait: Option<u64>,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Reject a deployment that has not started.
    #[command(after_help = CLIENT_HELP)]
    Reject {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: client::ClientArgs,
    },
}

/// The `honua-agent` binary: the agent alone, without the service, the operator client or the pages
/// linked in (`honua agent` is the same command inside the full binary).
#[derive(Parser, Debug)]
#[command(name = "honua-agent", version, about = "The Honua GitOps edge agent: applies approved, signed deployments to the Honua server beside it.", long_about = None)]
pub struct AgentCli {
    #[command(flatten)]
    pub agent: AgentCommand,
}

/// The agent idles for days between deployments: mimalloc should give freed memory back at once and
/// commit arenas as they are used, not up front. Those options are read when the allocator starts, before
/// `main`, so the agent re-executes itself once with them set (an operator's own setting wins). Measured
/// with `benches/agent_idle.sh`: anonymous memory at idle 15 MB -> 5 MB.
pub fn lean_allocator() {
    #[cfg(unix)]
    if std::env::var_os("HONUA_AGENT_LEAN").is_none() {
        use std::os::unix::process::CommandExt;
        let Ok(exe) = std::env::current_exe() else { return };
        let mut again = std::process::Command::new(exe);
        again.args(std::env::args_os().skip(1)).env("HONUA_AGENT_LEAN", "1");
        for name in ["MIMALLOC_ARENA_EAGER_COMMIT", "MIMALLOC_PURGE_DELAY"] {
            if std::env::var_os(name).is_none() {
                again.env(name, "0");
            }
        }
        // Only returns if the exec failed; then the agent simply runs with the defaults.
        let error = again.exec();
        eprintln!("note: running with the allocator's defaults ({error})");
    }
}

#[derive(Args, Debug)]
pub struct AgentCommand {
    /// A settings file (flags and environment variables win over it): the agent's own YAML, Honua's
    /// server configuration with a `gitops:` block, or Honua's appsettings (JSON with comments, or YAML)
    /// with a `GitOps` section.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Check every prerequisite (service, token, key, Git, directories, Honua's health and admin API), one
    /// line each, and exit.
    #[arg(long)]
    pub check: bool,
    /// Poll once (apply what is new) and exit.
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub settings: crate::agent::settings::AgentArgs,
}

#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// Create the GitHub App from a manifest and write its id, key and webhook secret where `honua serve`
    /// reads them (GitHub's manifest flow: a loopback page, GitHub's confirmation, the code exchange).
    #[command(after_help = "Examples:
  honua app create --manifest deploy/github/app-manifest.json --public-url https://gitops.example.org
  honua app create --manifest deploy/github/app-manifest.json --org city-gis --out /etc/honua
  honua app create --manifest deploy/github/app-manifest.json --code 4f2a…   (a code copied from the redirect)")]
    Create(app::AppCreateArgs),
}

#[derive(Subcommand, Debug)]
#[command(after_help = TOKEN_HELP)]
pub enum TokenCommand {
    /// Create a token and print it once.
    #[command(after_help = "Roles: viewer (read), approver (read, approve, reject, roll back), admin (everything),
        agent (one environment's agent routes; give --environment).

        Example:
  HONUA_DATABASE_URL=postgres://honua@db/honua honua token create --name release-bot --role approver")]
    Create(TokenCreateArgs),
    /// Every token: role, environment, created, last used, revoked, rotation grace. Never a secret.
    List {
        #[command(flatten)]
        database: DatabaseArg,
        /// `json` for scripts.
        #[arg(long, value_enum, default_value = "text")]
        output: client::Output,
    },
    /// Revoke a token at once (both secrets, if it was rotated).
    Revoke {
        name: String,
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Give a token a new secret, printed once; the old one keeps working for --grace-hours.
    Rotate {
        name: String,
        /// How long the previous secret keeps working.
        #[arg(long, default_value_t = 24)]
        grace_hours: u64,
        #[command(flatten)]
        database: DatabaseArg,
    },
}

const TOKEN_HELP: &str = "These commands use the service's database directly (HONUA_DATABASE_URL, as `honua serve` \
    does); admins can do the same over the API (/api/v1/tokens). Where the service runs in a container or under \
    systemd, run them there:\n  docker exec honua-gitops honua token list\n  \
    kubectl exec deploy/honua-gitops -- honua token list\n  \
    sudo systemd-run --pty --wait -p DynamicUser=yes -p StateDirectory=honua -E HONUA_DATABASE_URL=sqlite:///var/lib/honua/honua.db honua token list";

/// The service's database, for the commands that use it directly.
#[derive(Args, Debug)]
pub struct DatabaseArg {
    /// The service's database (the same as `honua serve` uses).
    #[arg(long, env = "HONUA_DATABASE_URL", default_value = "sqlite://honua.db")]
    pub database_url: String,
}

#[derive(Args, Debug)]
pub struct TokenCreateArgs {
    /// A unique name; approvals and audit entries made with the token carry it.
    #[arg(long)]
    pub name: String,
    /// viewer, approver, admin or agent.
    #[arg(long)]
    pub role: String,
    /// The environment an agent token serves (agent role only).
    #[arg(long)]
    pub environment: Option<String>,
    /// The service's database (the same as `honua serve` uses).
    #[arg(long, env = "HONUA_DATABASE_URL", default_value = "sqlite://honua.db")]
    pub database_url: String,
}

#[derive(Args, Debug)]
pub struct ServeCommand {
    /// A YAML file with the settings (flags and environment variables win over it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: crate::server::settings::ServeArgs,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// A repository root, its `environments/` directory, one environment directory, or a metadata file.
    /// A file inside `environments/<env>/` is validated as that environment merged with `common/` (an
    /// overlay alone lacks what it inherits); any other file is validated on its own.
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
    /// Only this environment (and the common layer and policy).
    #[arg(long)]
    pub env: Option<String>,
    #[arg(long, value_enum, default_value_t = DiagnosticFormat::Text)]
    pub format: DiagnosticFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiagnosticFormat {
    /// `file:line:col: error[code]: message` with the source line.
    Text,
    /// A JSON list of {file, line, column, severity, code, message}.
    Json,
    /// GitHub Actions workflow annotations.
    Github,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeFormat {
    Text,
    Markdown,
    Json,
}

/// Two revisions to compare: Git revisions in one repository, or two directories.
#[derive(Args, Debug)]
pub struct Revisions {
    /// Base revision (branch, tag or SHA) in --repo; a branch that is not local is read as
    /// `origin/<branch>`.
    #[arg(long, conflicts_with = "from_dir")]
    pub from: Option<String>,
    /// Target revision in --repo (`HEAD` in CI).
    #[arg(long, requires = "from", conflicts_with = "to_dir")]
    pub to: Option<String>,
    /// The Git repository holding --from and --to.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Base as a directory (a checkout of the config repository).
    #[arg(long, requires = "to_dir")]
    pub from_dir: Option<PathBuf>,
    /// Target as a directory; with --from REV, the working tree against a revision (`--to-dir .`).
    #[arg(long)]
    pub to_dir: Option<PathBuf>,
    /// Only this environment.
    #[arg(long)]
    pub env: Option<String>,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    #[command(flatten)]
    pub revisions: Revisions,
    #[arg(long, value_enum, default_value_t = ChangeFormat::Text)]
    pub format: ChangeFormat,
    /// Exit 1 when any environment has a breaking change.
    #[arg(long)]
    pub fail_on_breaking: bool,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub revisions: Revisions,
    #[arg(long, value_enum, default_value_t = ChangeFormat::Text)]
    pub format: ChangeFormat,
    /// Evaluate deployment windows and blackouts at this instant (RFC 3339), instead of now.
    #[arg(long, value_parser = parse_instant)]
    pub at: Option<DateTime<Utc>>,
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The format to convert to.
    #[arg(long, value_enum)]
    pub to: ConvertTarget,
    /// The repository to convert (a directory).
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
    /// Write the converted repository (its `.gitops/` policy included) to this new directory.
    #[arg(long, conflicts_with = "in_place")]
    pub output: Option<PathBuf>,
    /// Write the Configuration 2.0 files into --path and delete the metadata files they replace.
    #[arg(long)]
    pub in_place: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvertTarget {
    /// Honua Configuration 2.0 (`.hcl`).
    Hcl,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// The repository root (a directory), or with --rev the Git repository.
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
    /// Render the repository as it is at this Git revision instead of the directory's files.
    #[arg(long)]
    pub rev: Option<String>,
    #[arg(long)]
    pub env: String,
    /// Print literal secrets as they are instead of masked.
    #[arg(long)]
    pub show_secrets: bool,
}

/// `--at` that is not an instant.
#[derive(Debug, thiserror::Error)]
#[error("{0}; write an RFC 3339 instant such as 2026-11-25T10:00:00Z")]
pub struct BadInstant(chrono::ParseError);

fn parse_instant(s: &str) -> Result<DateTime<Utc>, BadInstant> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).map_err(BadInstant)
}

/// Runs the parsed command; errors here mean "could not run" (exit 2).
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => validate_command(args),
        Command::Diff(args) => diff_command(args),
        Command::Plan(args) => plan_command(args),
        Command::Render(args) => render_command(args),
        Command::Convert(args) => convert_command(args),
        Command::Ai(args) => ai::ai(*args),
        Command::Promote(args) => ai::promote(args),
        Command::Serve(args) => serve_command(*args),
        Command::Token(command) => token_command(command),
        Command::App(AppCommand::Create(args)) => app::create(args),
        Command::Agent(args) => agent_command(*args),
        Command::Demo(args) => demo::run(args),
        Command::Status { environment, client } => client::status(&client, environment.as_deref()),
        Command::Deployments { environment, limit, client } => client::deployments(&client, &environment, limit),
        Command::Deployment(DeploymentCommand::Show { id, client }) => client::show(&client, &id),
        Command::Deployment(DeploymentCommand::Approve { id, breaking, wait, client }) => {
            client::decide(&client, &id, true, breaking, None, wait)
        }
        Command::Deployment(DeploymentCommand::Reject { id, reason, client }) => {
            client::decide(&client, &id, false, false, Some(&reason), None)
        }
        Command::Rollback { environment, to, yes, wait, client } => {
            client::rollback(&client, &environment, to.as_deref(), yes, wait)
        }
        Command::Resume { environment, wait, client } => client::resume(&client, &environment, wait),
        Command::Agents { environment, client } => client::agents(&client, environment.as_deref()),
        Command::Watch { environment, once, client } => watch::run(&client, environment.as_deref(), once),
        Command::Probe { url } => probe(&url),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "honua", &mut script);
            output::write_bytes(&script);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn probe(url: &str) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build()?;
        match client.get(url).send().await {
            Ok(r) if r.status().is_success() => Ok(ExitCode::SUCCESS),
            Ok(r) => {
                eprintln!("{url}: HTTP {}", r.status().as_u16());
                Ok(ExitCode::from(1))
            }
            Err(e) => {
                eprintln!("{url}: {e}");
                Ok(ExitCode::from(1))
            }
        }
    })
}

/// What `--path` designates.
enum Target {
    Repo { root: PathBuf, env: Option<String> },
    File(PathBuf),
}

fn resolve_target(path: &Path, env: Option<String>) -> Result<Target> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{}: cannot read this path; check that it exists", path.display()))?;
    let name_of = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    if meta.is_file() {
        // A file of a repository (`environments/<env>/metadata.yaml`) is only meaningful merged with
        // `common/`: alone, an overlay lacks everything it inherits. A file in `common/` concerns every
        // environment.
        let dir = parent(path);
        let envs = parent(&dir);
        let is_repo_file = name_of(&envs).as_deref() == Some("environments")
            && name_of(path).is_some_and(|n| crate::config::source::is_config_file(&n));
        if is_repo_file {
            let dir_env = name_of(&dir).unwrap_or_default();
            let root = parent(&envs);
            if dir_env == "common" {
                return Ok(Target::Repo { root, env });
            }
            if env.as_ref().is_some_and(|e| *e != dir_env) {
                bail!(
                    "--env {} contradicts --path {}, which belongs to environment `{dir_env}`",
                    env.unwrap_or_default(),
                    path.display()
                );
            }
            return Ok(Target::Repo { root, env: Some(dir_env) });
        }
        if env.is_some() {
            bail!("--env applies to a repository; {} is a single file", path.display());
        }
        return Ok(Target::File(path.to_path_buf()));
    }
    if path.join("environments").is_dir() {
        return Ok(Target::Repo { root: path.to_path_buf(), env });
    }
    if name_of(path).as_deref() == Some("environments") {
        return Ok(Target::Repo { root: parent(path), env });
    }
    let up = parent(path);
    if name_of(&up).as_deref() == Some("environments") {
        let dir_env = name_of(path).unwrap_or_default();
        if env.as_ref().is_some_and(|e| *e != dir_env) {
            bail!(
                "--env {} contradicts --path {}, which is environment `{dir_env}`",
                env.unwrap_or_default(),
                path.display()
            );
        }
        return Ok(Target::Repo { root: parent(&up), env: Some(dir_env) });
    }
    bail!(
        "{}: not a config repository (no `environments/` directory here); point --path at the repository root, its environments/ directory, one environment directory, or a metadata file",
        path.display()
    )
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn validate_command(args: ValidateArgs) -> Result<ExitCode> {
    let (diagnostics, sources, prefix) = match resolve_target(&args.path, args.env)? {
        Target::File(path) => {
            let file = load_single_file(&path)?;
            (validate::validate_single(&file), file.sources, String::new())
        }
        Target::Repo { root, env } => {
            let repo = ConfigRepo::load_dir(&root)?;
            if args.path.is_file() && args.format == DiagnosticFormat::Text {
                let scope = env.as_deref().map_or("every environment".to_string(), |e| format!("environment `{e}`"));
                crate::outln!(
                    "{} is part of the repository at {}: validating {scope} as merged with environments/common/",
                    args.path.display(),
                    root.display()
                );
            }
            let env = env.map(EnvName::new);
            if let Some(e) = &env {
                if !repo.has_environment(e.as_str()) {
                    bail!(
                        "environment `{e}` not found under {}/environments; known: {}",
                        root.display(),
                        env_list(&repo)
                    );
                }
            }
            (validate::validate_repo(&repo, env.as_ref()), repo.sources, root.display().to_string())
        }
    };
    match args.format {
        DiagnosticFormat::Text => {
            crate::out!("{}", report::text(&diagnostics, &sources, &prefix));
            let verdict = if count_errors(&diagnostics) == 0 { "valid" } else { "invalid" };
            crate::outln!("{}: {verdict} ({})", args.path.display(), report::summary(&diagnostics));
        }
        DiagnosticFormat::Json => crate::outln!("{}", report::json(&diagnostics, &prefix)),
        DiagnosticFormat::Github => crate::out!("{}", report::github(&diagnostics, &prefix)),
    }
    Ok(ExitCode::from(u8::from(count_errors(&diagnostics) > 0)))
}

fn env_list(repo: &ConfigRepo) -> String {
    repo.environments().map(|e| e.to_string()).collect::<Vec<_>>().join(", ")
}

/// Loads both sides of a comparison.
fn load_pair(r: &Revisions) -> Result<(ConfigRepo, ConfigRepo)> {
    // Both sides load in parallel: parsing dominates on large catalogues and the machine has 2+ cores.
    let (from, to) = match (&r.from, &r.to, &r.from_dir, &r.to_dir) {
        (Some(a), Some(b), None, None) => std::thread::scope(|s| {
            let from = s.spawn(|| load_rev(&r.repo, a));
            let to = load_rev(&r.repo, b);
            (from.join().expect("loader thread"), to)
        }),
        (None, None, Some(a), Some(b)) => std::thread::scope(|s| {
            let from =
                s.spawn(|| ConfigRepo::load_dir(a).with_context(|| format!("reading --from-dir {}", a.display())));
            let to = ConfigRepo::load_dir(b).with_context(|| format!("reading --to-dir {}", b.display()));
            (from.join().expect("loader thread"), to)
        }),
        (Some(a), None, None, Some(b)) => std::thread::scope(|s| {
            let from = s.spawn(|| load_rev(&r.repo, a));
            let to = ConfigRepo::load_dir(b).with_context(|| format!("reading --to-dir {}", b.display()));
            (from.join().expect("loader thread"), to)
        }),
        _ => bail!(
            "give --from REV --to REV (with --repo DIR, default .), --from REV --to-dir DIR (the working tree \
             against a revision), or --from-dir DIR --to-dir DIR"
        ),
    };
    let (from, to) = (from?, to?);
    if let Some(env) = &r.env {
        if !from.has_environment(env) && !to.has_environment(env) {
            bail!("environment `{env}` exists on neither side; known: {}", env_list(&to));
        }
    }
    Ok((from, to))
}

/// A Git revision (a branch that is not local is read as `origin/<branch>`: see `config::commit`).
fn load_rev(repo: &Path, rev: &str) -> Result<ConfigRepo> {
    Ok(ConfigRepo::load_git(repo, rev)?)
}

fn width() -> u16 {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(110)
}

fn diff_command(args: DiffArgs) -> Result<ExitCode> {
    let (from, to) = load_pair(&args.revisions)?;
    let only = args.revisions.env.map(EnvName::new);
    let sets = diff_repositories(&from, &to, only.as_ref());
    let out = match args.format {
        ChangeFormat::Text => render::diff_text(&sets, width()),
        ChangeFormat::Markdown => render::diff_markdown(&sets),
        ChangeFormat::Json => render::diff_json(&sets),
    };
    crate::outln!("{}", out.trim_end());
    let breaking = sets.iter().any(|s| s.summary.breaking > 0);
    if breaking && args.format == ChangeFormat::Text {
        crate::outln!("\nBreaking changes need an explicit acknowledgement where the policy forbids them: `/honua approve <env> --breaking` on the pull request (GitHub App), or `honua deployment approve <id> --breaking` once it is merged.");
    }
    Ok(ExitCode::from(u8::from(args.fail_on_breaking && breaking)))
}

fn plan_command(args: PlanArgs) -> Result<ExitCode> {
    let (from, to) = load_pair(&args.revisions)?;
    let only = args.revisions.env.map(EnvName::new);
    let set = plan::build(&from, &to, only.as_ref(), args.at.unwrap_or_else(Utc::now));
    let out = match args.format {
        ChangeFormat::Text => {
            let prefix = args.revisions.to_dir.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
            let target =
                args.revisions.to_dir.as_ref().map_or_else(|| to.revision.clone(), |p| p.display().to_string());
            let mut text = format!("Validated {target}: {}\n", report::summary(&set.diagnostics));
            if !set.diagnostics.is_empty() {
                text.push_str(&format!("Validation of the target ({}):\n", report::summary(&set.diagnostics)));
                text.push_str(&report::text(&set.diagnostics, &to.sources, &prefix));
            }
            text.push('\n');
            text + &render::plan_text(&set.plans, width())
        }
        ChangeFormat::Markdown => render::plan_markdown(&set.plans),
        ChangeFormat::Json => render::plan_json(&set.plans),
    };
    crate::outln!("{}", out.trim_end());
    Ok(ExitCode::SUCCESS)
}

fn render_command(args: RenderArgs) -> Result<ExitCode> {
    let repo = match &args.rev {
        Some(rev) => load_rev(&args.path, rev)?,
        None => ConfigRepo::load_dir(&args.path)?,
    };
    let env = EnvName::new(args.env.clone());
    let Some(effective) = repo.effective(&env) else {
        bail!("environment `{}` not found; known: {}", args.env, env_list(&repo));
    };
    let mut metadata = effective.metadata.to_json();
    if !args.show_secrets {
        crate::config::secrets::mask_json("", &mut metadata, false);
    }
    match effective.format {
        crate::config::ConfigFormat::Metadata => crate::outln!("{}", serde_json::to_string_pretty(&metadata)?),
        crate::config::ConfigFormat::Hcl => {
            let tree = crate::config::node::Node::from_json(&metadata, effective.metadata.loc);
            crate::out!("{}", crate::config::hcl::render(&tree));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn convert_command(args: ConvertArgs) -> Result<ExitCode> {
    use crate::config::convert;
    let ConvertTarget::Hcl = args.to;
    let repo = ConfigRepo::load_dir(&args.path)?;
    let conversion = convert::to_hcl(&repo).with_context(|| format!("{}: cannot convert", args.path.display()))?;
    let proved = conversion.mismatches.is_empty();
    let written = match (&args.output, args.in_place, proved) {
        (_, _, false) => None,
        (Some(out), _, true) => Some(write_conversion(&args.path, out, &conversion, false)?),
        (None, true, true) => Some(write_conversion(&args.path, &args.path, &conversion, true)?),
        (None, false, true) => None,
    };
    match args.format {
        ReportFormat::Json => crate::outln!("{}", serde_json::to_string_pretty(&conversion)?),
        ReportFormat::Text => crate::out!("{}", conversion_report(&conversion, written.as_deref())),
    }
    Ok(if proved { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Writes the files of `conversion` under `to` (a new directory, or the repository itself with
/// `in_place`, whose metadata files are then deleted). The policy comes along; a condition on the
/// metadata type name `datasource` is renamed to Configuration 2.0's `data_source`.
fn write_conversion(
    from: &Path,
    to: &Path,
    conversion: &crate::config::convert::Conversion,
    in_place: bool,
) -> Result<String> {
    if !in_place && to.exists() && std::fs::read_dir(to).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{}: exists and is not empty; give --output a new directory", to.display());
    }
    for (path, text) in &conversion.files {
        let target = to.join(path);
        std::fs::create_dir_all(target.parent().expect("repository paths have a directory"))
            .with_context(|| format!("cannot create {}", target.display()))?;
        std::fs::write(&target, text).with_context(|| format!("cannot write {}", target.display()))?;
    }
    let policy_dir = from.join(crate::config::source::POLICY_DIR);
    for entry in std::fs::read_dir(&policy_dir).into_iter().flatten().filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let text =
            std::fs::read_to_string(entry.path()).with_context(|| format!("cannot read {}", entry.path().display()))?;
        let text = text.replace("type == \"datasource\"", "type == \"data_source\"");
        let target = to.join(crate::config::source::POLICY_DIR).join(&name);
        std::fs::create_dir_all(target.parent().expect("in a directory"))?;
        std::fs::write(&target, text).with_context(|| format!("cannot write {}", target.display()))?;
    }
    let mut removed = 0;
    if in_place {
        let envs = from.join(crate::config::source::ENVIRONMENTS_DIR);
        for dir in std::fs::read_dir(&envs).into_iter().flatten().filter_map(Result::ok) {
            for file in std::fs::read_dir(dir.path()).into_iter().flatten().filter_map(Result::ok) {
                let name = file.file_name().to_string_lossy().into_owned();
                if crate::config::source::is_config_file(&name) && !crate::config::source::is_hcl_file(&name) {
                    std::fs::remove_file(file.path())
                        .with_context(|| format!("cannot delete {}", file.path().display()))?;
                    removed += 1;
                }
            }
        }
    }
    Ok(if in_place {
        format!(
            "written into {} ({removed} metadata file(s) deleted; review with `git status`, then commit)",
            to.display()
        )
    } else {
        format!("written to {}", to.display())
    })
}

fn conversion_report(c: &crate::config::convert::Conversion, written: Option<&str>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "Configuration 2.0 files:");
    for (path, text) in &c.files {
        let _ = writeln!(out, "  {path} ({} lines)", text.lines().count());
    }
    let _ = writeln!(out, "\nProof (the files loaded again, compared with the metadata):");
    for (env, data_sources, collections) in &c.proved {
        let _ = writeln!(out, "  {env}: {data_sources} data source(s), {collections} collection(s) the same");
    }
    for m in &c.mismatches {
        let _ = writeln!(out, "  DIFFERENT in {}: {}", m.environment, m.what);
    }
    let _ = writeln!(out, "\nCollections renamed (Configuration 2.0 names them by protocol):");
    let mut seen = std::collections::BTreeMap::<(&str, String), Vec<&str>>::new();
    for r in &c.renamings {
        seen.entry((r.from.as_str(), r.to.join(", "))).or_default().push(r.environment.as_str());
    }
    for ((from, to), envs) in &seen {
        let _ = writeln!(out, "  {from} -> {to} ({})", envs.join(", "));
    }
    let _ = writeln!(out, "\nNot carried over (Configuration 2.0 has no equivalent):");
    let mut lost = std::collections::BTreeMap::<(String, String, &str), Vec<&str>>::new();
    for u in &c.unconverted {
        lost.entry((u.owner.clone(), u.keys.join(", "), u.why.as_str())).or_default().push(u.environment.as_str());
    }
    if lost.is_empty() {
        let _ = writeln!(out, "  nothing");
    }
    for ((owner, keys, why), envs) in &lost {
        let _ = writeln!(out, "  {owner}: {keys} ({}): {why}", envs.join(", "));
    }
    let _ = writeln!(out);
    match (written, c.mismatches.is_empty()) {
        (_, false) => {
            let _ = writeln!(out, "Nothing written: the proof found differences (above).");
        }
        (Some(w), true) => {
            let _ = writeln!(out, "Converted: {w}.");
        }
        (None, true) => {
            let _ = writeln!(out, "Nothing written (a preview): add --output DIR for a converted copy, or --in-place.");
        }
    }
    out
}

fn serve_command(args: ServeCommand) -> Result<ExitCode> {
    let settings = crate::server::settings::Settings::resolve(args.settings, args.config.as_deref())
        .context("honua serve cannot start")?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("HONUA_LOG").unwrap_or_else(|_| "info".into()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr)
        .init();
    tracing::info!(settings = ?settings, "starting");
    raise_descriptor_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(crate::server::run(settings))?;
    Ok(ExitCode::SUCCESS)
}

/// Each long-polling agent and event stream holds a connection, so the soft limit on open descriptors
/// (often 1,024) is raised to the hard one, as Go's runtime does: a fleet of agents should meet the
/// service's capacity, not a default meant for interactive shells.
fn raise_descriptor_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit and setrlimit only read and write the struct given.
        let raised = unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= limit.rlim_max {
                None
            } else {
                let before = limit.rlim_cur;
                limit.rlim_cur = limit.rlim_max.min(1 << 20);
                (libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0).then_some(before)
            }
        };
        match raised {
            Some(before) => tracing::info!(from = before, to = limit.rlim_cur, "open-descriptor limit raised"),
            None => tracing::info!(limit = limit.rlim_cur, "open-descriptor limit"),
        }
    }
}

fn token_create_command(args: TokenCreateArgs) -> Result<ExitCode> {
    with_database(&args.database_url, |store| async move {
        let token = crate::controller::tokens::create(
            store.as_ref(),
            &args.name,
            &args.role,
            args.environment.as_deref(),
            "cli",
            crate::store::now_ms(),
        )
        .await?;
        eprintln!("Token `{}` ({}) created. It is shown once; keep it in a secret store:", args.name, args.role);
        crate::outln!("{token}");
        Ok(ExitCode::SUCCESS)
    })
}

fn token_command(command: TokenCommand) -> Result<ExitCode> {
    use crate::controller::tokens;
    match command {
        TokenCommand::Create(args) => token_create_command(args),
        TokenCommand::List { database, output } => with_database(&database.database_url, |store| async move {
            let list = tokens::list(store.as_ref()).await?;
            if output == client::Output::Json {
                crate::outln!("{}", serde_json::to_string_pretty(&serde_json::json!({ "tokens": list }))?);
            } else {
                crate::out!("{}", client::tokens_table(&list, chrono::Utc::now().timestamp_millis()));
            }
            Ok(ExitCode::SUCCESS)
        }),
        TokenCommand::Revoke { name, database } => with_database(&database.database_url, |store| async move {
            tokens::revoke(store.as_ref(), &name, "cli", crate::store::now_ms()).await?;
            crate::outln!("Token `{name}` revoked.");
            Ok(ExitCode::SUCCESS)
        }),
        TokenCommand::Rotate { name, grace_hours, database } => {
            with_database(&database.database_url, |store| async move {
                let grace_ms = grace_hours.min(24 * 365) as i64 * 3_600_000;
                let token = tokens::rotate(store.as_ref(), &name, grace_ms, "cli", crate::store::now_ms()).await?;
                eprintln!(
                    "Token `{name}` rotated; the previous secret works for {grace_hours} h more. The new one is shown once:"
                );
                crate::outln!("{token}");
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

/// Runs `work` against the service's database, opened (and migrated) from `url`.
fn with_database<F, Fut>(url: &str, work: F) -> Result<ExitCode>
where
    F: FnOnce(std::sync::Arc<dyn crate::store::Store>) -> Fut,
    Fut: std::future::Future<Output = Result<ExitCode>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let store = crate::store::open(url)
            .await
            .with_context(|| format!("cannot open the database {}", crate::settings::redact_url(url)))?;
        work(store).await
    })
}

/// `honua agent` (and the `honua-agent` binary): runs the edge agent with its settings.
pub fn agent_command(args: AgentCommand) -> Result<ExitCode> {
    let child = std::env::var_os(crate::agent::isolate::ISOLATED_WORK_ENV).is_some();
    let mut config = args.settings.resolve(args.config.as_deref()).context("honua agent cannot start")?;
    if child {
        // The parent logged them when it started.
        config.notices.clear();
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("HONUA_LOG").unwrap_or_else(|_| "info".into()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut agent = crate::agent::Agent::new(config).context("honua agent cannot start")?;
        if child {
            crate::agent::isolate::serve_one(&agent).await.context("the agent's child process could not answer")?;
            return Ok(ExitCode::SUCCESS);
        }
        if args.check {
            let mut failed = false;
            for (what, result) in agent.check().await {
                match result {
                    Ok(detail) => crate::outln!("ok    {what}: {detail}"),
                    Err(problem) => {
                        failed = true;
                        crate::outln!("FAIL  {what}: {problem}");
                    }
                }
            }
            return Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS });
        }
        // Git and applies run in a child process, so the long-lived poller stays small and a crash in
        // them does not end it (see `agent::isolate`).
        if let Some(isolation) = crate::agent::isolate::Isolation::of_this_process() {
            agent.isolate_work(isolation);
        }
        if args.once {
            let outcome = agent.poll_once(0).await?;
            crate::outln!("{outcome:?}");
            return Ok(ExitCode::SUCCESS);
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            crate::server::shutdown_signal().await;
            let _ = stop.send(true);
        });
        tracing::info!("honua agent: polling");
        agent.run(stopped).await;
        Ok(ExitCode::SUCCESS)
    })
}
