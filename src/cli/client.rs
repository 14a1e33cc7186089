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
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| "-".into()),
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
        t.add_row(vec![sign, c["type"].as_str().unwrap_or("?"), c["id"].as_str().unwrap_or("?"), &details]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(sync: &str, health: &str, agents: Value) -> Value {
        json!({
            "repository": "city/gis-config",
            "environment": "production",
            "status": "in_sync",
            "sync": sync,
            "health": health,
            "current": {"id": "prod-20261125101500-a1b2c3d", "commit": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", "state": "completed"},
            "pending": null,
            "last": {"id": "prod-20261125101500-a1b2c3d", "state": "completed", "duration_ms": 2300, "by": "mike"},
            "agents": agents,
        })
    }

    #[test]
    fn the_status_box_shows_commit_sync_health_and_the_last_deployment() {
        let healthy = env("synced", "healthy", json!([{"name": "prod-1", "stale": false}]));
        insta::assert_snapshot!("status_synced", status_box(&healthy, false));
        let drifted = env(
            "drifted",
            "healthy",
            json!([{"name": "prod-1", "stale": false, "drifted": ["metadata.json"]}, {"name": "prod-2", "stale": true}]),
        );
        insta::assert_snapshot!("status_drifted", status_box(&drifted, false));
        let mut waiting = env("unknown", "unknown", json!([]));
        waiting["pending"] = json!({"id": "prod-20261125120000-0f1e2d3", "state": "awaiting_approval"});
        insta::assert_snapshot!("status_pending_no_agents", status_box(&waiting, false));
        for text in [status_box(&healthy, true), status_box(&drifted, false)] {
            assert!(text.lines().all(|l| visible(l) <= WIDTH as usize), "wider than 80 columns:\n{text}");
        }
        // A very long id is cut, not allowed to break the box.
        let mut long = healthy.clone();
        long["last"]["id"] = json!("x".repeat(200));
        assert!(status_box(&long, false).lines().all(|l| visible(l) <= WIDTH as usize));
    }

    #[test]
    fn the_deployments_and_agents_tables_fit_80_columns() {
        let list = json!([
            {"id": "prod-20241004123456-abc1234", "state": "completed", "duration_ms": 2300, "by": "mike"},
            {"id": "prod-20241004120000-def4567", "state": "completed", "duration_ms": 1800, "by": "ai-agent"},
            {"id": "prod-20241003180000-0a1b2c3", "state": "failed", "duration_ms": 500, "by": "jane"},
            {"id": "prod-20241003170000-9f8e7d6", "state": "awaiting_approval", "duration_ms": null, "by": "alice"},
            {"id": "prod-20241003160000-1234567", "state": "rolled_back", "duration_ms": 95000, "by": "alice, bob"},
        ]);
        let table = deployments_table(&list, false);
        insta::assert_snapshot!("deployments", table);
        assert!(table.lines().all(|l| l.chars().count() <= 80));
        let agents = json!([
            {"name": "production-agent-1", "environment": "production", "health": "healthy", "sync": "synced",
             "commit": "a1b2c3d4e5f6", "last_seen": "2026-11-25T10:15:00Z"},
            {"name": "production-agent-2", "environment": "production", "health": "stale", "sync": "unknown",
             "commit": null, "last_seen": "2026-11-25T09:00:00Z"},
            {"name": "staging-agent", "environment": "staging", "health": "healthy", "sync": "drifted",
             "commit": "0f1e2d3c4b5a", "last_seen": "2026-11-25T10:15:02Z"},
        ]);
        let table = agents_table(&agents, false);
        insta::assert_snapshot!("agents", table);
        assert!(table.lines().all(|l| l.chars().count() <= 80));
        assert!(!deployments_table(&list, false).contains('\u{1b}'), "no colour when asked for none");
        assert!(deployments_table(&list, true).contains('\u{1b}'), "colour when asked for it");
    }

    #[test]
    fn a_deployment_shows_breaking_changes_first_then_approvals_transitions_and_agents() {
        let d = json!({
            "id": "prod-20261125101500-a1b2c3d", "repository": "city/gis-config", "environment": "production",
            "state": "completed", "commit": "a1b2c3d4e5f6", "from_commit": "0f1e2d3c4b5a", "duration_ms": 2300,
            "by": "mike", "reasons": ["autoApprove is false for this environment"], "plan_digest": "sha256:00ff",
            "plan": {"changes": [
                {"type": "layer", "id": "transportation::bike_lanes", "action": "added", "breaking": []},
                {"type": "layer", "id": "cadastre::parcels", "action": "modified",
                 "breaking": [{"code": "field.removed"}],
                 "fields": [{"path": "fields.owner_name", "from": {"type": "string"}, "to": null}]},
                {"type": "layer", "id": "cadastre::parcels_ttl", "action": "modified", "breaking": [],
                 "fields": [{"path": "caching.ttl", "from": 3600, "to": 7200}]},
            ]},
            "approvals": [{"actor": "mike", "via": "comment", "breaking": true}],
            "transitions": [
                {"at": 1764065700000i64, "to_state": "awaiting_approval", "actor": "alice", "message": "planned from commit a1b2c3d of main"},
                {"at": 1764065760000i64, "to_state": "approved", "actor": "mike", "message": "approved by mike via comment"},
                {"at": 1764065761000i64, "to_state": "applying", "actor": "production-agent", "message": "production-agent: fetching"},
                {"at": 1764065763300i64, "to_state": "completed", "actor": "production-agent", "message": "production-agent: completed"},
            ],
            "reports": [
                {"agent": "production-agent", "phase": "fetching", "message": "commit a1b2c3d"},
                {"agent": "production-agent", "phase": "completed", "message": "reloaded; healthy, every expected collection served"},
            ],
        });
        insta::assert_snapshot!("deployment_show", deployment_detail(&d, false));
    }

    #[test]
    fn durations_read_like_the_readme() {
        assert_eq!(duration(&json!(2300)), "2.3s");
        assert_eq!(duration(&json!(65_000)), "1m 05s");
        assert_eq!(duration(&Value::Null), "-");
        assert_eq!(title_case("awaiting_approval"), "Awaiting approval");
    }
}
