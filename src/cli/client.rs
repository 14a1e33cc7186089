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
        let message = body["message"].as_str().unwrap_or("no explanation given");
        match status.as_u16() {
            401 => bail!("the token is refused ({message}): check HONUA_TOKEN"),
            403 => bail!("not allowed: {message}"),
            _ => bail!("{message} (HTTP {}, {})", status.as_u16(), body["error"].as_str().unwrap_or("error")),
        }
    }
}

fn print_json(value: &Value) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------- render

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

fn title_case(state: &str) -> String {
    let spaced = state.replace('_', " ");
    let mut chars = spaced.chars();
    chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}

/// `2.3s`, `1m 05s`, `-` when it has not run.
pub fn duration(ms: &Value) -> String {
    match ms.as_i64() {
        None => "-".into(),
        Some(ms) if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        Some(ms) => format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

fn state_colour(state: &str) -> Option<Color> {
    match state {
        "completed" => Some(Color::Green),
        "failed" | "rolled_back" | "rejected" => Some(Color::Red),
        "awaiting_approval" | "blocked" | "applying" | "approved" => Some(Color::Yellow),
        _ => None,
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

fn state_cell(state: &str) -> Cell {
    let cell = Cell::new(title_case(state));
    match state_colour(state) {
        Some(c) => cell.fg(c),
        None => cell,
    }
}

/// `honua deployments ENV`: id, state, duration, by.
pub fn deployments_table(list: &Value, colour: bool) -> String {
    let mut t = table(&["Deployment ID", "State", "Duration", "By"], colour);
    for d in list.as_array().into_iter().flatten() {
        t.add_row(vec![
            Cell::new(d["id"].as_str().unwrap_or("?")),
            state_cell(d["state"].as_str().unwrap_or("?")),
            Cell::new(duration(&d["duration_ms"])),
            Cell::new(d["by"].as_str().unwrap_or("-")),
        ]);
    }
    t.to_string()
}

/// `honua agents`: name, environment, health, sync, commit, last seen.
pub fn agents_table(list: &Value, colour: bool) -> String {
    let mut t = table(&["Agent", "Environment", "Health", "Sync", "Commit", "Last seen"], colour);
    for a in list.as_array().into_iter().flatten() {
        let health = a["health"].as_str().unwrap_or("unknown");
        let health_cell = match health {
            "healthy" => Cell::new(health).fg(Color::Green),
            "unknown" => Cell::new(health),
            _ => Cell::new(health).fg(Color::Red),
        };
        let sync = a["sync"].as_str().unwrap_or("unknown");
        let sync_cell = if sync == "drifted" { Cell::new(sync).fg(Color::Red) } else { Cell::new(sync) };
        t.add_row(vec![
            Cell::new(a["name"].as_str().unwrap_or("?")),
            Cell::new(a["environment"].as_str().unwrap_or("?")),
            if colour { health_cell } else { Cell::new(health) },
            if colour { sync_cell } else { Cell::new(sync) },
            Cell::new(a["commit"].as_str().map(short).unwrap_or("-")),
            Cell::new(
                a["last_seen"]
                    .as_str()
                    .map(|t| t.replace('T', " ").trim_end_matches('Z').to_string())
                    .unwrap_or("-".into()),
            ),
        ]);
    }
    t.to_string()
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
pub fn status_box(env: &Value, colour: bool) -> String {
    let sync = match env["sync"].as_str().unwrap_or("unknown") {
        "synced" => format!("{} Synced", mark(true, colour)),
        "drifted" => {
            let paths: Vec<String> = env["agents"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|a| a["drifted"].as_array().cloned().unwrap_or_default())
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect();
            format!("{} Drifted ({})", mark(false, colour), paths.join(", "))
        }
        _ => "? Unknown (no agent has reported)".into(),
    };
    let health = match env["health"].as_str().unwrap_or("unknown") {
        "healthy" => format!("{} Healthy", mark(true, colour)),
        "unknown" => "? Unknown (no agent has reported)".into(),
        other => format!("{} {}", mark(false, colour), title_case(other)),
    };
    let current = env["current"]["commit"].as_str().map(short).unwrap_or("-");
    let mut lines = vec![
        String::new(),
        format!("Environment: {}", env["environment"].as_str().unwrap_or("?")),
        format!("Repository: {}", env["repository"].as_str().unwrap_or("?")),
        format!("Current Commit: {current}"),
        format!("Sync Status: {sync}"),
        format!("Health: {health}"),
    ];
    let agents = env["agents"].as_array().map_or(0, Vec::len);
    let stale = env["agents"].as_array().into_iter().flatten().filter(|a| a["stale"] == true).count();
    lines.push(format!("Agents: {agents}{}", if stale > 0 { format!(" ({stale} stale)") } else { String::new() }));
    if let Some(p) = env["pending"].as_object() {
        lines.push(String::new());
        lines.push(format!(
            "Pending: {} ({})",
            p.get("id").and_then(Value::as_str).unwrap_or("?"),
            p.get("state").and_then(Value::as_str).map(title_case).unwrap_or_default()
        ));
    }
    let last = &env["last"];
    if last.is_object() {
        lines.push(String::new());
        lines.push("Last Deployment:".into());
        lines.push(format!("  ID: {}", last["id"].as_str().unwrap_or("?")));
        lines.push(format!("  State: {}", title_case(last["state"].as_str().unwrap_or("?"))));
        lines.push(format!("  Duration: {}", duration(&last["duration_ms"])));
        lines.push(format!("  By: {}", last["by"].as_str().unwrap_or("-")));
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
pub fn deployment_detail(d: &Value, colour: bool) -> String {
    let mut out = String::new();
    let state = d["state"].as_str().unwrap_or("?");
    out.push_str(&format!("Deployment {}\n", d["id"].as_str().unwrap_or("?")));
    out.push_str(&format!(
        "  {} → {} · {} · commit {}{}\n",
        d["repository"].as_str().unwrap_or("?"),
        d["environment"].as_str().unwrap_or("?"),
        title_case(state),
        d["commit"].as_str().map(short).unwrap_or("?"),
        d["from_commit"].as_str().map(|f| format!(" (from {})", short(f))).unwrap_or_default(),
    ));
    out.push_str(&format!("  Duration: {} · By: {}\n", duration(&d["duration_ms"]), d["by"].as_str().unwrap_or("-")));
    for reason in d["reasons"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        out.push_str(&format!("  Reason: {reason}\n"));
    }
    let mut changes: Vec<&Value> = d["plan"]["changes"].as_array().into_iter().flatten().collect();
    changes.sort_by_key(|c| c["breaking"].as_array().is_none_or(|b| b.is_empty()));
    out.push_str(&format!("\nPlan ({} changes, digest {})\n", changes.len(), d["plan_digest"].as_str().unwrap_or("?")));
    let mut t = table(&["", "Type", "Id", "Details"], colour);
    for c in &changes {
        let breaking: Vec<&str> =
            c["breaking"].as_array().into_iter().flatten().filter_map(|b| b["code"].as_str()).collect();
        let action = c["action"].as_str().unwrap_or("?");
        let sign = match (breaking.is_empty(), action) {
            (false, _) => "!",
            (_, "added") => "+",
            (_, "removed") => "-",
            _ => "~",
        };
        let fields: Vec<String> = c["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| format!("{}: {} → {}", f["path"].as_str().unwrap_or("?"), f["from"], f["to"]))
            .collect();
        let mut details =
            if breaking.is_empty() { String::new() } else { format!("BREAKING {}; ", breaking.join(", ")) };
        details.push_str(&if fields.is_empty() { action.to_string() } else { fields.join("; ") });
        t.add_row(vec![sign, c["kind"].as_str().unwrap_or("?"), c["id"].as_str().unwrap_or("?"), &details]);
    }
    out.push_str(&t.to_string());
    out.push('\n');
    out.push_str("\nApprovals\n");
    let approvals = d["approvals"].as_array().cloned().unwrap_or_default();
    if approvals.is_empty() {
        out.push_str("  none\n");
    }
    for a in approvals {
        out.push_str(&format!(
            "  {} via {}{}\n",
            a["actor"].as_str().unwrap_or("?"),
            a["via"].as_str().unwrap_or("?"),
            if a["breaking"] == true { " (breaking changes acknowledged)" } else { "" }
        ));
    }
    out.push_str("\nTransitions\n");
    for e in d["transitions"].as_array().into_iter().flatten() {
        let at = e["at"].as_i64().and_then(chrono::DateTime::from_timestamp_millis);
        out.push_str(&format!(
            "  {} {:<18} {} {}\n",
            at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default(),
            e["to_state"].as_str().or(e["action"].as_str()).unwrap_or("?"),
            e["actor"].as_str().unwrap_or("?"),
            e["message"].as_str().unwrap_or(""),
        ));
    }
    let reports = d["reports"].as_array().cloned().unwrap_or_default();
    if !reports.is_empty() {
        out.push_str("\nAgents\n");
        for r in reports {
            out.push_str(&format!(
                "  {:<22} {:<12} {}\n",
                r["agent"].as_str().unwrap_or("?"),
                r["phase"].as_str().unwrap_or("?"),
                r["message"].as_str().unwrap_or("")
            ));
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
        let (envs, path) = match environment {
            Some(env) => (None, format!("/api/v1/environments/{env}")),
            None => (Some(()), "/api/v1/environments".to_string()),
        };
        let body = client.call(reqwest::Method::GET, &path, None).await?;
        if client.output == Output::Json {
            return print_json(&body);
        }
        let list = if envs.is_some() { &body["environments"] } else { &body["repositories"] };
        let list = list.as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            println!(
                "No environment has a deployment yet: merge a change to the default branch of a configured repository."
            );
        }
        let colour = colour();
        for env in list {
            print!("{}", status_box(&env, colour));
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn deployments(args: &ClientArgs, environment: &str, limit: u32) -> Result<ExitCode> {
    let client = Client::new(args)?;
    runtime()?.block_on(async {
        let body = client
            .call(reqwest::Method::GET, &format!("/api/v1/deployments?environment={environment}&limit={limit}"), None)
            .await?;
        if client.output == Output::Json {
            return print_json(&body);
        }
        if body["deployments"].as_array().is_none_or(|l| l.is_empty()) {
            println!("No deployment of `{environment}` yet.");
            return Ok(ExitCode::SUCCESS);
        }
        println!("{}", deployments_table(&body["deployments"], colour()));
        Ok(ExitCode::SUCCESS)
    })
}

pub fn show(args: &ClientArgs, id: &str) -> Result<ExitCode> {
    let client = Client::new(args)?;
    runtime()?.block_on(async {
        let body = client.call(reqwest::Method::GET, &format!("/api/v1/deployments/{id}"), None).await?;
        if client.output == Output::Json {
            return print_json(&body);
        }
        print!("{}", deployment_detail(&body, colour()));
        Ok(ExitCode::SUCCESS)
    })
}

pub fn decide(args: &ClientArgs, id: &str, approve: bool, breaking: bool, reason: Option<&str>) -> Result<ExitCode> {
    let client = Client::new(args)?;
    runtime()?.block_on(async {
        let (path, body) = if approve {
            (format!("/api/v1/deployments/{id}/approve"), serde_json::json!({ "breaking": breaking }))
        } else {
            (format!("/api/v1/deployments/{id}/reject"), serde_json::json!({ "reason": reason }))
        };
        let d = client.call(reqwest::Method::POST, &path, Some(body)).await?;
        if client.output == Output::Json {
            return print_json(&d);
        }
        println!(
            "{} {}: {}",
            if approve { "Approved" } else { "Rejected" },
            d["id"].as_str().unwrap_or(id),
            title_case(d["state"].as_str().unwrap_or("?"))
        );
        Ok(ExitCode::SUCCESS)
    })
}

pub fn rollback(args: &ClientArgs, environment: &str, to: Option<&str>, yes: bool) -> Result<ExitCode> {
    let client = Client::new(args)?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!("rolling back `{environment}` needs a confirmation: pass --yes (no terminal to ask on)");
        }
        print!(
            "Roll `{environment}` back to {}? Automatic deployments pause until a newer commit lands. [y/N] ",
            to.unwrap_or("its previous completed deployment")
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("Nothing done.");
            return Ok(ExitCode::from(1));
        }
    }
    runtime()?.block_on(async {
        let body = serde_json::json!({ "to": to });
        let d = client
            .call(reqwest::Method::POST, &format!("/api/v1/environments/{environment}/rollback"), Some(body))
            .await?;
        if client.output == Output::Json {
            return print_json(&d);
        }
        println!(
            "Rollback {} of `{environment}` to commit {}: {}",
            d["id"].as_str().unwrap_or("?"),
            d["commit"].as_str().map(short).unwrap_or("?"),
            title_case(d["state"].as_str().unwrap_or("?"))
        );
        Ok(ExitCode::SUCCESS)
    })
}

pub fn agents(args: &ClientArgs, environment: Option<&str>) -> Result<ExitCode> {
    let client = Client::new(args)?;
    runtime()?.block_on(async {
        let path = match environment {
            Some(env) => format!("/api/v1/agents?environment={env}"),
            None => "/api/v1/agents".to_string(),
        };
        let body = client.call(reqwest::Method::GET, &path, None).await?;
        if client.output == Output::Json {
            return print_json(&body);
        }
        if body["agents"].as_array().is_none_or(|l| l.is_empty()) {
            println!("No agent has checked in yet: see `honua agent --help`.");
            return Ok(ExitCode::SUCCESS);
        }
        println!("{}", agents_table(&body["agents"], colour()));
        Ok(ExitCode::SUCCESS)
    })
}
