//! The operator's commands against the service's API: `status`, `deployments`, `deployment
//! show|approve|reject`, `rollback`, `agents`. The server and token come from `--server`/`--token`,
//! `HONUA_SERVER`/`HONUA_TOKEN`, or a client file (`$HONUA_CLIENT_CONFIG`, else
//! `~/.config/honua/client.yaml`, keys `server` and `token`). Every command takes `--output json`.
//!
//! Rendering is separate from fetching (pure functions of the API's JSON) so every table and the
//! status box are snapshot-tested.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use comfy_table::{presets, Cell, Color, ContentArrangement, Table};
use serde_json::Value;

use crate::deployment::wire::{
    AgentView, Agents, DeploymentDetail, DeploymentView, Deployments, EnvironmentDetail, EnvironmentView, Environments,
    Health, PlanView, Resumed, RollbackPreview, Sync,
};
use crate::deployment::{duration_text, short_sha as short};
use crate::deployment::{DeploymentState, Status, Tone};

/// Tables and the box fit this many columns.
pub const WIDTH: u16 = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The service's URL.
    #[arg(long, env = "HONUA_SERVER", global = true)]
    pub server: Option<String>,
    /// An API token (`honua token create`).
    #[arg(long, env = "HONUA_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// `text` (tables for people) or `json` (the API's answer, for scripts).
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub output: Output,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    server: Option<String>,
    token: Option<String>,
}

fn client_file_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HONUA_CLIENT_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let home = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(home.join("honua/client.yaml"))
}

/// Colour only on a terminal, and never with `NO_COLOR`.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub struct Client {
    server: String,
    token: String,
    http: reqwest::Client,
    pub output: Output,
}

impl Client {
    pub fn new(args: &ClientArgs) -> Result<Client> {
        let file = match client_file_path().filter(|p| p.exists()) {
            Some(path) => {
                let text =
                    std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
                let node = crate::config::yaml::parse(&text, crate::config::node::FileId(0))
                    .map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))?;
                serde_json::from_value(node.to_json())
                    .with_context(|| format!("{}: expected `server:` and `token:`", path.display()))?
            }
            None => ClientFile::default(),
        };
        let server = args.server.clone().or(file.server).context(
            "no server: set HONUA_SERVER (e.g. https://gitops.example.org), pass --server, or put `server:` in ~/.config/honua/client.yaml",
        )?;
        let token = args.token.clone().or(file.token).context(
            "no token: set HONUA_TOKEN (create one with `honua token create --role viewer`), pass --token, or put `token:` in ~/.config/honua/client.yaml",
        )?;
        let http =
            reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).user_agent("honua-cli").build()?;
        Ok(Client { server: server.trim_end_matches('/').to_string(), token, http, output: args.output })
    }

    /// The server's URL and the token, for callers that stream.
    pub fn endpoint(&self) -> (&str, &str) {
        (&self.server, &self.token)
    }

    /// Calls the API; an error answer becomes an error that says what the service said.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{path}", self.server);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{}: unreachable; is `honua serve` running there?", self.server))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let answer = serde_json::from_value::<crate::deployment::wire::ErrorBody>(body).ok();
        let message = answer.as_ref().map_or("no explanation given", |a| a.message.as_str());
        match status.as_u16() {
            401 => bail!("the token is refused ({message}): check HONUA_TOKEN"),
            403 => bail!("not allowed: {message}"),
            _ => {
                bail!("{message} (HTTP {}, {})", status.as_u16(), answer.as_ref().map_or("error", |a| a.error.as_str()))
            }
        }
    }
}

impl Client {
    /// Calls the API and reads its answer as the contract's type `T`; the raw answer comes along for
    /// `--output json`, which prints exactly what the service said.
    pub async fn fetch<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(Value, T)> {
        let raw = self.call(method, path, body).await?;
        let typed = serde_json::from_value(raw.clone()).with_context(|| {
            format!(
                "{}{path} answered a body this CLI does not read: is the service the same version as `honua` ({})?",
                self.server,
                env!("CARGO_PKG_VERSION")
            )
        })?;
        Ok((raw, typed))
    }

    /// GETs `path` and prints the answer: as the service sent it with `--output json`, else as `render`
    /// writes it for a person.
    async fn print<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        render: impl FnOnce(T) -> String,
    ) -> Result<ExitCode> {
        let (raw, typed) = self.fetch::<T>(reqwest::Method::GET, path, None).await?;
        if self.output == Output::Json {
            return print_json(&raw);
        }
        crate::out!("{}", render(typed));
        Ok(ExitCode::SUCCESS)
    }
}

fn print_json(value: &Value) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------- render

fn title_case(state: &str) -> String {
    let spaced = state.replace('_', " ");
    let mut chars = spaced.chars();
    chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}

/// A status in its tone's colour (the table drops colours without a terminal).
fn status_cell(status: impl Status, text: String) -> Cell {
    let cell = Cell::new(text);
    match status.tone() {
        Tone::Good => cell.fg(Color::Green),
        Tone::Bad => cell.fg(Color::Red),
        Tone::Waiting => cell.fg(Color::Yellow),
        Tone::Plain => cell,
    }
}

fn table(header: &[&str], colour: bool) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(WIDTH)
        .set_header(header.to_vec());
    if colour {
        t.enforce_styling();
    } else {
        t.force_no_tty();
    }
    t
}

/// `honua deployments ENV`: id, state, duration, by.
pub fn deployments_table(list: &[DeploymentView], colour: bool) -> String {
    let mut t = table(&["Deployment ID", "State", "Duration", "By"], colour);
    for d in list {
        t.add_row(vec![
            Cell::new(&d.summary.id),
            status_cell(d.summary.state, title_case(d.summary.state.as_str())),
            Cell::new(duration_text(d.duration_ms)),
            Cell::new(d.by.as_deref().unwrap_or("-")),
        ]);
    }
    t.to_string()
}

/// `honua agents`: name, environment, health, sync, commit, last seen.
pub fn agents_table(list: &[AgentView], colour: bool) -> String {
    let mut t = table(&["Agent", "Environment", "Health", "Sync", "Commit", "Last seen"], colour);
    for a in list {
        t.add_row(vec![
            Cell::new(&a.name),
            Cell::new(&a.environment),
            status_cell(a.health, a.health.to_string()),
            status_cell(a.sync, a.sync.to_string()),
            Cell::new(a.commit.as_deref().map(short).unwrap_or("-")),
            Cell::new(a.last_seen.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_else(|| "-".into())),
        ]);
    }
    t.to_string()
}

/// `honua token list`: name, role, environment, created, last used, state (live, revoked, or the
/// rotation grace of its previous secret). Times are UTC, to the minute.
pub fn tokens_table(list: &[crate::deployment::TokenInfo], now: i64) -> String {
    let when = |ms: Option<i64>| {
        ms.and_then(chrono::DateTime::from_timestamp_millis)
            .map_or_else(|| "-".to_string(), |t| t.format("%Y-%m-%d %H:%M").to_string())
    };
    let mut t = table(&["Token", "Role", "Environment", "Created", "Last used", "State"], false);
    for k in list {
        let state = match (k.revoked_at, k.previous_valid_until) {
            (Some(at), _) => format!("revoked {}", when(Some(at))),
            (None, Some(until)) if until > now => format!("rotated; old secret until {}", when(Some(until))),
            _ => "live".to_string(),
        };
        t.add_row(vec![
            Cell::new(&k.name),
            Cell::new(k.role.as_str()),
            Cell::new(k.environment.as_deref().unwrap_or("-")),
            Cell::new(when(Some(k.created_at))),
            Cell::new(when(k.last_used_at)),
            Cell::new(state),
        ]);
    }
    if list.is_empty() {
        return "No token yet: `honua token create --name NAME --role ROLE`.\n".to_string();
    }
    t.to_string() + "\n"
}

fn mark(ok: bool, colour: bool) -> &'static str {
    match (ok, colour) {
        (true, true) => "\x1b[32m✓\x1b[0m",
        (true, false) => "✓",
        (false, true) => "\x1b[31m✗\x1b[0m",
        (false, false) => "✗",
    }
}

/// The boxed view of one environment (per repository), as in the product README.
pub fn status_box(env: &EnvironmentView, colour: bool) -> String {
    let sync = match env.sync {
        Sync::Synced => format!("{} Synced", mark(true, colour)),
        Sync::Drifted => {
            let paths: Vec<&str> =
                env.agents.iter().flat_map(|a| a.drifted.iter().flatten()).map(String::as_str).collect();
            format!("{} Drifted ({})", mark(false, colour), paths.join(", "))
        }
        Sync::Unknown => "? Unknown (no agent has reported)".into(),
    };
    let health = match env.health {
        Health::Healthy => format!("{} Healthy", mark(true, colour)),
        Health::Unknown => "? Unknown (no agent has reported)".into(),
        other => format!("{} {}", mark(false, colour), title_case(other.as_str())),
    };
    let current = env.current.as_ref().map_or("-", |c| c.summary.short_commit());
    let mut lines = vec![
        String::new(),
        format!("Environment: {}", env.environment),
        format!("Repository: {}", env.repository),
        format!("Current Commit: {current}"),
        format!("Sync Status: {sync}"),
        format!("Health: {health}"),
    ];
    let agents = env.agents.len();
    let stale = env.agents.iter().filter(|a| a.stale).count();
    lines.push(format!("Agents: {agents}{}", if stale > 0 { format!(" ({stale} stale)") } else { String::new() }));
    if let Some(pause) = &env.paused {
        lines.push(String::new());
        lines.push(format!(
            "{} Paused after the rollback {} by {}",
            mark(false, colour),
            pause.deployment,
            pause.actor
        ));
        lines.push(format!("  Automatic deployments wait for a commit newer than {}", pause.commit.short()));
        lines.push(format!("  or `honua resume {}`", env.environment));
    }
    if let Some(p) = &env.pending {
        lines.push(String::new());
        lines.push(format!("Pending: {} ({})", p.summary.id, title_case(p.summary.state.as_str())));
    }
    if let Some(last) = &env.last {
        lines.push(String::new());
        lines.push("Last Deployment:".into());
        lines.push(format!("  ID: {}", last.summary.id));
        lines.push(format!("  State: {}", title_case(last.summary.state.as_str())));
        lines.push(format!("  Duration: {}", duration_text(last.duration_ms)));
        lines.push(format!("  By: {}", last.by.as_deref().unwrap_or("-")));
    }
    lines.push(String::new());
    boxed(" Honua GitOps Status ", &lines)
}

/// Visible width: ANSI colour sequences take no room.
fn visible(text: &str) -> usize {
    let mut width = 0;
    let mut escape = false;
    for c in text.chars() {
        match (escape, c) {
            (false, '\x1b') => escape = true,
            (true, 'm') => escape = false,
            (true, _) => {}
            (false, _) => width += 1,
        }
    }
    width
}

fn boxed(title: &str, lines: &[String]) -> String {
    let max_inner = WIDTH as usize - 4;
    let inner = lines.iter().map(|l| visible(l)).max().unwrap_or(0).clamp(45, max_inner);
    let mut out = format!("╭─{title}{}╮\n", "─".repeat(inner + 1 - visible(title)));
    for line in lines {
        let line =
            if visible(line) > inner { line.chars().take(inner - 1).collect::<String>() + "…" } else { line.clone() };
        out.push_str(&format!("│ {line}{} │\n", " ".repeat(inner - visible(&line))));
    }
    out.push_str(&format!("╰{}╯\n", "─".repeat(inner + 2)));
    out
}

/// `honua deployment show ID`: the deployment, its plan's changes (breaking first), approvals,
/// transitions and what each agent reported.
pub fn deployment_detail(detail: &DeploymentDetail, colour: bool) -> String {
    let mut out = String::new();
    let (view, d) = (&detail.view, &detail.view.summary);
    out.push_str(&format!("Deployment {}\n", d.id));
    out.push_str(&format!(
        "  {} → {} · {} · commit {}{}\n",
        d.repository,
        d.environment,
        title_case(d.state.as_str()),
        d.short_commit(),
        d.from_commit.as_deref().map(|f| format!(" (from {})", short(f))).unwrap_or_default(),
    ));
    out.push_str(&format!(
        "  Duration: {} · By: {}\n",
        duration_text(view.duration_ms),
        view.by.as_deref().unwrap_or("-")
    ));
    for reason in &d.reasons {
        out.push_str(&format!("  Reason: {reason}\n"));
    }
    if let Some(at) = d.expires_while_waiting() {
        out.push_str(&format!(
            "  Expires: {} without an approval (approvalTimeout)\n",
            at.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    let plan = PlanView::of(&detail.plan);
    out.push_str(&format!("\nPlan ({} changes, digest {})\n", plan.changes.len(), d.plan_digest));
    let mut t = table(&["", "Type", "Id", "Details"], colour);
    for c in plan.changes_for_review() {
        let breaking: Vec<&str> = c.breaking.iter().map(|b| b.code.as_str()).collect();
        let fields: Vec<String> = c.fields.iter().map(|f| format!("{}: {} → {}", f.path, f.from, f.to)).collect();
        let mut details =
            if breaking.is_empty() { String::new() } else { format!("BREAKING {}; ", breaking.join(", ")) };
        details.push_str(&if fields.is_empty() { c.action.to_string() } else { fields.join("; ") });
        t.add_row(vec![c.sign(), &c.kind.to_string(), &c.id, &details]);
    }
    out.push_str(&t.to_string());
    out.push('\n');
    out.push_str("\nApprovals\n");
    if detail.approvals.is_empty() {
        out.push_str("  none\n");
    }
    for a in &detail.approvals {
        out.push_str(&format!(
            "  {} via {}{}\n",
            a.actor,
            a.via,
            if a.breaking { " (breaking changes acknowledged)" } else { "" }
        ));
    }
    out.push_str("\nTransitions\n");
    for e in &detail.transitions {
        let at = chrono::DateTime::from_timestamp_millis(e.at);
        out.push_str(&format!(
            "  {} {:<18} {} {}\n",
            at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default(),
            e.to_state.map_or(e.action.as_str(), |s| s.as_str()),
            e.actor,
            e.message,
        ));
    }
    if !detail.reports.is_empty() {
        out.push_str("\nAgents\n");
        for r in &detail.reports {
            out.push_str(&format!("  {:<22} {:<12} {}\n", r.agent, r.phase, r.message));
        }
    }
    out
}

// -------------------------------------------------------------------------------------------- commands

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

pub fn status(args: &ClientArgs, environment: Option<&str>) -> Result<ExitCode> {
    let client = Client::new(args)?;
    runtime()?.block_on(async {
        match environment {
            Some(env) => {
                let path = format!("/api/v1/environments/{env}");
                client.print(&path, |e: EnvironmentDetail| status_boxes(&e.repositories, colour())).await
            }
            None => {
                client.print("/api/v1/environments", |e: Environments| status_boxes(&e.environments, colour())).await
            }
        }
    })
}

fn status_boxes(list: &[EnvironmentView], colour: bool) -> String {
    if list.is_empty() {
        return "No environment has a deployment yet: merge a change to the default branch of a configured repository.\n"
            .into();
    }
    list.iter().map(|env| status_box(env, colour)).collect()
}

pub fn deployments(args: &ClientArgs, environment: &str, limit: u32) -> Result<ExitCode> {
    let client = Client::new(args)?;
    runtime()?.block_on(async {
        let path = format!("/api/v1/deployments?environment={environment}&limit={limit}");
        client
            .print(&path, |list: Deployments| {
                if list.deployments.is_empty() {
                    format!("No deployment of `{environment}` yet.\n")
                } else {
                    format!("{}\n", deployments_table(&list.deployments, colour()))
                }
            })
            .await
    })
}

pub fn show(args: &ClientArgs, id: &str) -> Result<ExitCode> {
    let client = Client::new(args)?;
    runtime()?.block_on(async {
        let path = format!("/api/v1/deployments/{id}");
        client.print(&path, |detail: DeploymentDetail| deployment_detail(&detail, colour())).await
    })
}

pub fn decide(
    args: &ClientArgs,
    id: &str,
    approve: bool,
    breaking: bool,
    reason: Option<&str>,
    wait: Option<u64>,
) -> Result<ExitCode> {
    let client = Client::new(args)?;
    runtime()?.block_on(async {
        let (path, body) = if approve {
            (format!("/api/v1/deployments/{id}/approve"), serde_json::json!({ "breaking": breaking }))
        } else {
            (format!("/api/v1/deployments/{id}/reject"), serde_json::json!({ "reason": reason }))
        };
        let (raw, d) = client.fetch::<DeploymentDetail>(reqwest::Method::POST, &path, Some(body)).await?;
        if client.output == Output::Json {
            return print_json(&raw);
        }
        let d = &d.view.summary;
        crate::outln!("{} {}: {}", if approve { "Approved" } else { "Rejected" }, d.id, title_case(d.state.as_str()));
        match wait {
            Some(limit) => follow(&client, &d.id, limit).await,
            None => Ok(ExitCode::SUCCESS),
        }
    })
}

pub fn rollback(
    args: &ClientArgs,
    environment: &str,
    to: Option<&str>,
    yes: bool,
    wait: Option<u64>,
) -> Result<ExitCode> {
    let client = Client::new(args)?;
    if !yes && !std::io::stdin().is_terminal() {
        bail!("rolling back `{environment}` needs a confirmation: pass --yes (no terminal to ask on)");
    }
    if client.output == Output::Text {
        // What it restores, before anything is asked or done.
        let mut path = format!("/api/v1/environments/{environment}/rollback");
        if let Some(to) = to {
            let to: String = url::form_urlencoded::byte_serialize(to.as_bytes()).collect();
            path += &format!("?to={to}");
        }
        let (_, preview) = runtime()?.block_on(client.fetch::<RollbackPreview>(reqwest::Method::GET, &path, None))?;
        crate::out!("{}", rollback_preview(&preview));
    }
    if !yes {
        crate::out!(
            "Roll `{environment}` back? Automatic deployments pause until a newer commit lands or `honua resume {environment}`. [y/N] "
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            crate::outln!("Nothing done.");
            return Ok(ExitCode::from(1));
        }
    }
    runtime()?.block_on(async {
        let body = serde_json::json!({ "to": to });
        let path = format!("/api/v1/environments/{environment}/rollback");
        let (raw, d) = client.fetch::<DeploymentDetail>(reqwest::Method::POST, &path, Some(body)).await?;
        if client.output == Output::Json {
            return print_json(&raw);
        }
        let d = &d.view.summary;
        crate::outln!(
            "Rollback {} of `{environment}` to commit {}: {}",
            d.id,
            d.short_commit(),
            title_case(d.state.as_str())
        );
        match wait {
            Some(limit) => follow(&client, &d.id, limit).await,
            None => Ok(ExitCode::SUCCESS),
        }
    })
}

/// The preview `honua rollback` shows before it asks.
pub fn rollback_preview(p: &RollbackPreview) -> String {
    let line = |what: &str, d: &crate::deployment::wire::DeploymentSummary| {
        format!(
            "  {what} {} (commit {}, {})\n",
            d.id,
            d.short_commit(),
            d.updated_at.map_or_else(|| "-".to_string(), |t| format!("{} ago", age(chrono::Utc::now() - t)))
        )
    };
    let mut out = format!("Rollback of `{}` ({}):\n", p.environment, p.repository);
    out += &line("runs now:", &p.current);
    out += &line("restores:", &p.target);
    out += "\nThe change back:\n";
    out += &p.plan;
    if !out.ends_with('\n') {
        out.push('\n');
    }
    if p.breaking {
        out += "It has breaking changes; the rollback acknowledges them (it restores what ran).\n";
    }
    out
}

/// `3 min`, `2 h`, `5 d`: how long ago, to the unit that reads.
fn age(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

pub fn resume(args: &ClientArgs, environment: &str, wait: Option<u64>) -> Result<ExitCode> {
    let client = Client::new(args)?;
    runtime()?.block_on(async {
        let path = format!("/api/v1/environments/{environment}/resume");
        let (raw, r) = client.fetch::<Resumed>(reqwest::Method::POST, &path, Some(serde_json::json!({}))).await?;
        if client.output == Output::Json {
            return print_json(&raw);
        }
        crate::outln!(
            "Resumed automatic deployments of `{environment}` (paused after the rollback {}).",
            r.paused.deployment
        );
        match (&r.deployment, wait) {
            (Some(d), Some(limit)) => {
                crate::outln!(
                    "The branch head planned {} (commit {}): {}",
                    d.id,
                    d.short_commit(),
                    title_case(d.state.as_str())
                );
                follow(&client, &d.id, limit).await
            }
            (Some(d), None) => {
                crate::outln!(
                    "The branch head planned {} (commit {}): {}",
                    d.id,
                    d.short_commit(),
                    title_case(d.state.as_str())
                );
                Ok(ExitCode::SUCCESS)
            }
            (None, _) => {
                crate::outln!("The branch head changes nothing in `{environment}`: nothing to deploy.");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// Follows deployment `id` to its end, a line per change of state or agent phase, for at most `limit`
/// seconds. Exit 0 only on `completed`; 1 on any other end; 3 when the time is up first.
async fn follow(client: &Client, id: &str, limit: u64) -> Result<ExitCode> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(limit);
    let path = format!("/api/v1/deployments/{id}");
    let mut last = String::new();
    loop {
        let (_, d) = client.fetch::<DeploymentDetail>(reqwest::Method::GET, &path, None).await?;
        let state = d.view.summary.state;
        let phase = d.reports.last().map(|r| format!(" · {} {}", r.agent, r.phase)).unwrap_or_default();
        let schedule = &d.view.summary.schedule;
        let waiting = match (&schedule.reason, state) {
            (Some(why), DeploymentState::Approved) if !schedule.allowed_now => format!(" · {why}"),
            _ => String::new(),
        };
        let line = format!("  {}{phase}{waiting}", title_case(state.as_str()));
        if line != last {
            crate::outln!("{line}");
            last = line;
        }
        if state == DeploymentState::Completed {
            return Ok(ExitCode::SUCCESS);
        }
        if state.is_final() {
            let why = d.reports.last().map(|r| r.message.clone()).filter(|m| !m.is_empty());
            eprintln!("{id} ended {}{}", state.as_str(), why.map(|w| format!(": {w}")).unwrap_or_default());
            return Ok(ExitCode::from(1));
        }
        if std::time::Instant::now() >= deadline {
            eprintln!(
                "{id} is still {} after {limit} s; follow it with `honua deployment show {id}` or `honua watch`",
                state.as_str()
            );
            return Ok(ExitCode::from(3));
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

pub fn agents(args: &ClientArgs, environment: Option<&str>) -> Result<ExitCode> {
    let client = Client::new(args)?;
    runtime()?.block_on(async {
        let path = match environment {
            Some(env) => format!("/api/v1/agents?environment={env}"),
            None => "/api/v1/agents".to_string(),
        };
        client
            .print(&path, |list: Agents| {
                if list.agents.is_empty() {
                    "No agent has checked in yet: see `honua agent --help`.\n".to_string()
                } else {
                    format!("{}\n", agents_table(&list.agents, colour()))
                }
            })
            .await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::wire::{DeploymentSummary, Health, Sync};
    use crate::deployment::{DeploymentState, Gate};
    use serde_json::json;

    fn summary(id: &str, commit: &str, state: DeploymentState) -> DeploymentSummary {
        DeploymentSummary {
            id: id.into(),
            repository: "city/gis-config".into(),
            environment: "production".into(),
            sequence: 1,
            commit: commit.into(),
            from_commit: None,
            state,
            gate: Gate::Approval,
            reasons: Vec::new(),
            plan_digest: "sha256:00ff".into(),
            schedule: crate::policy::window::Schedule { allowed_now: true, reason: None, next_allowed: None },
            cause: crate::deployment::Cause::Push,
            expires_at: None,
            created_at: None,
            updated_at: None,
        }
    }

    fn view(id: &str, state: DeploymentState, duration_ms: Option<i64>, by: &str) -> DeploymentView {
        DeploymentView {
            summary: summary(id, "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", state),
            started_at: None,
            finished_at: None,
            duration_ms,
            by: Some(by.into()),
        }
    }

    fn agent(name: &str, environment: &str, health: Health, sync: Sync, commit: Option<&str>, seen: &str) -> AgentView {
        AgentView {
            name: name.into(),
            environment: environment.into(),
            last_seen: chrono::DateTime::parse_from_rfc3339(seen).ok().map(|t| t.with_timezone(&chrono::Utc)),
            last_deployment: None,
            last_phase: None,
            last_message: None,
            stale: health == Health::Stale,
            healthy: health == Health::Healthy,
            health,
            sync,
            drifted: None,
            commit: commit.map(Into::into),
            deployment: None,
            version: None,
            last_result: None,
        }
    }

    fn env(sync: Sync, health: Health, agents: Vec<AgentView>) -> EnvironmentView {
        let current = view("prod-20261125101500-a1b2c3d", DeploymentState::Completed, Some(2300), "mike");
        EnvironmentView {
            repository: "city/gis-config".into(),
            environment: "production".into(),
            status: crate::deployment::EnvironmentStatus::InSync,
            sync,
            health,
            current: Some(current.clone()),
            pending: None,
            last: Some(current),
            recent: Vec::new(),
            agents,
            paused: None,
        }
    }

    #[test]
    fn the_status_box_shows_commit_sync_health_and_the_last_deployment() {
        let seen = "2026-11-25T10:15:00Z";
        let prod_1 = agent("prod-1", "production", Health::Healthy, Sync::Synced, None, seen);
        let healthy = env(Sync::Synced, Health::Healthy, vec![prod_1.clone()]);
        insta::assert_snapshot!("status_synced", status_box(&healthy, false));
        let drifted_agent = AgentView { drifted: Some(vec!["metadata.json".into()]), ..prod_1 };
        let stale_agent = agent("prod-2", "production", Health::Stale, Sync::Unknown, None, seen);
        let drifted = env(Sync::Drifted, Health::Healthy, vec![drifted_agent, stale_agent]);
        insta::assert_snapshot!("status_drifted", status_box(&drifted, false));
        let mut waiting = env(Sync::Unknown, Health::Unknown, Vec::new());
        waiting.pending = Some(view("prod-20261125120000-0f1e2d3", DeploymentState::AwaitingApproval, None, "alice"));
        insta::assert_snapshot!("status_pending_no_agents", status_box(&waiting, false));
        for text in [status_box(&healthy, true), status_box(&drifted, false)] {
            assert!(text.lines().all(|l| visible(l) <= WIDTH as usize), "wider than 80 columns:\n{text}");
        }
        // A very long id is cut, not allowed to break the box.
        let mut long = healthy.clone();
        long.last.as_mut().unwrap().summary.id = "x".repeat(200).into();
        assert!(status_box(&long, false).lines().all(|l| visible(l) <= WIDTH as usize));
    }

    #[test]
    fn the_deployments_and_agents_tables_fit_80_columns() {
        use DeploymentState::*;
        let list = vec![
            view("prod-20241004123456-abc1234", Completed, Some(2300), "mike"),
            view("prod-20241004120000-def4567", Completed, Some(1800), "ai-agent"),
            view("prod-20241003180000-0a1b2c3", Failed, Some(500), "jane"),
            view("prod-20241003170000-9f8e7d6", AwaitingApproval, None, "alice"),
            view("prod-20241003160000-1234567", RolledBack, Some(95000), "alice, bob"),
        ];
        let table = deployments_table(&list, false);
        insta::assert_snapshot!("deployments", table);
        assert!(table.lines().all(|l| l.chars().count() <= 80));
        let agents = vec![
            agent(
                "production-agent-1",
                "production",
                Health::Healthy,
                Sync::Synced,
                Some("a1b2c3d4e5f6"),
                "2026-11-25T10:15:00Z",
            ),
            agent("production-agent-2", "production", Health::Stale, Sync::Unknown, None, "2026-11-25T09:00:00Z"),
            agent(
                "staging-agent",
                "staging",
                Health::Healthy,
                Sync::Drifted,
                Some("0f1e2d3c4b5a"),
                "2026-11-25T10:15:02Z",
            ),
        ];
        let table = agents_table(&agents, false);
        insta::assert_snapshot!("agents", table);
        assert!(table.lines().all(|l| l.chars().count() <= 80));
        assert!(!deployments_table(&list, false).contains('\u{1b}'), "no colour when asked for none");
        assert!(deployments_table(&list, true).contains('\u{1b}'), "colour when asked for it");
    }

    #[test]
    fn a_deployment_shows_breaking_changes_first_then_approvals_transitions_and_agents() {
        let mut shown = view("prod-20261125101500-a1b2c3d", DeploymentState::Completed, Some(2300), "mike");
        shown.summary.commit = "a1b2c3d4e5f6".into();
        shown.summary.from_commit = Some("0f1e2d3c4b5a".into());
        shown.summary.reasons = vec!["autoApprove is false for this environment".into()];
        let transition = |at: i64, to: &str, actor: &str, message: &str| crate::store::AuditEntry {
            id: at,
            at,
            actor: actor.into(),
            action: "transition".into(),
            repository: None,
            environment: None,
            deployment: None,
            from_state: None,
            to_state: crate::deployment::DeploymentState::parse(to),
            message: message.into(),
        };
        let report = |phase: &str, message: &str| crate::store::AgentReport {
            deployment: shown.summary.id.clone(),
            agent: "production-agent".into(),
            environment: "production".into(),
            phase: crate::deployment::Phase::parse(phase).expect("a phase"),
            message: message.into(),
            at: 0,
        };
        let d = DeploymentDetail {
            plan: json!({"changes": [
                {"type": "layer", "id": "transportation::bike_lanes", "action": "added", "breaking": []},
                {"type": "layer", "id": "cadastre::parcels", "action": "modified",
                 "breaking": [{"code": "field.removed"}],
                 "fields": [{"path": "fields.owner_name", "from": {"type": "string"}, "to": null}]},
                {"type": "layer", "id": "cadastre::parcels_ttl", "action": "modified", "breaking": [],
                 "fields": [{"path": "caching.ttl", "from": 3600, "to": 7200}]},
            ]}),
            approvals: vec![crate::store::Approval {
                actor: "mike".into(),
                via: crate::deployment::Via::Comment,
                plan_digest: "sha256:00ff".into(),
                breaking: true,
                at: 0,
            }],
            transitions: vec![
                transition(1764065700000, "awaiting_approval", "alice", "planned from commit a1b2c3d of main"),
                transition(1764065760000, "approved", "mike", "approved by mike via comment"),
                transition(1764065761000, "applying", "production-agent", "production-agent: fetching"),
                transition(1764065763300, "completed", "production-agent", "production-agent: completed"),
            ],
            signed: None,
            reports: vec![
                report("fetching", "commit a1b2c3d"),
                report("completed", "reloaded; healthy, every expected collection served"),
            ],
            view: shown.clone(),
        };
        insta::assert_snapshot!("deployment_show", deployment_detail(&d, false));
    }

    #[test]
    fn a_deployment_waiting_for_its_approval_says_when_it_expires() {
        let detail = |view: DeploymentView| DeploymentDetail {
            view,
            plan: Value::Null,
            approvals: Vec::new(),
            transitions: Vec::new(),
            signed: None,
            reports: Vec::new(),
        };
        let mut waiting = view("prod-1", DeploymentState::AwaitingApproval, None, "alice");
        waiting.summary.expires_at = chrono::DateTime::from_timestamp_millis(1_764_065_700_000);
        let shown = deployment_detail(&detail(waiting.clone()), false);
        assert!(shown.contains("  Expires: 2025-11-25 10:15 UTC without an approval (approvalTimeout)\n"), "{shown}");
        let mut done = waiting;
        done.summary.state = DeploymentState::Completed;
        assert!(!deployment_detail(&detail(done), false).contains("Expires"), "only while it waits");
    }

    #[test]
    fn durations_read_like_the_readme() {
        assert_eq!(duration_text(Some(2300)), "2.3s");
        assert_eq!(duration_text(Some(65_000)), "1m 05s");
        assert_eq!(duration_text(None), "-");
        assert_eq!(title_case("awaiting_approval"), "Awaiting approval");
    }
}
