//! `honua watch [ENV]`: a live terminal dashboard fed by the service's event stream
//! (`GET /api/v1/events`): each environment's current deployment and its phase, every agent's health,
//! sync status and last check-in, and recent deployments. It reconnects by itself (the stream's first
//! event is the whole state, so nothing is missed) and exits cleanly on `q`, Esc or Ctrl-C.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use super::client::ClientArgs;
use crate::deployment::wire::{EnvironmentView, Environments};
use crate::deployment::{duration_text, Status, Tone};
use anyhow::{Context, Result};
use crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::layout::{Constraint, Direction, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};

/// What the dashboard shows; the stream reader replaces it as events arrive.
#[derive(Clone, Default)]
struct Model {
    environments: Vec<EnvironmentView>,
    connected: bool,
    problem: Option<String>,
    updated: Option<chrono::DateTime<chrono::Utc>>,
}

/// Reads the event stream into `model` forever, reconnecting with a growing pause (1 s … 15 s).
async fn follow(url: String, token: String, model: tokio::sync::watch::Sender<Model>) {
    let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build().expect("HTTP client");
    let mut pause = Duration::from_secs(1);
    loop {
        match http.get(&url).bearer_auth(&token).header("Accept", "text/event-stream").send().await {
            Ok(mut response) if response.status().is_success() => {
                pause = Duration::from_secs(1);
                let mut buffer = String::new();
                let mut data = String::new();
                while let Ok(Some(chunk)) = response.chunk().await {
                    buffer.push_str(&String::from_utf8_lossy(&chunk));
                    while let Some(end) = buffer.find('\n') {
                        let line = buffer[..end].trim_end_matches('\r').to_string();
                        buffer.drain(..=end);
                        if let Some(rest) = line.strip_prefix("data:") {
                            data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
                        } else if line.is_empty() && !data.is_empty() {
                            if let Ok(event) = serde_json::from_str::<Environments>(&data) {
                                model.send_modify(|m| {
                                    m.environments = event.environments;
                                    m.connected = true;
                                    m.problem = None;
                                    m.updated = Some(chrono::Utc::now());
                                });
                            }
                            data.clear();
                        }
                    }
                }
                model.send_modify(|m| {
                    m.connected = false;
                    m.problem = Some("the stream ended; reconnecting".into());
                });
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let hint = match status {
                    401 => "the token is refused: check HONUA_TOKEN",
                    403 => "the token may not read: a viewer token is enough",
                    _ => "the service answered with an error",
                };
                model.send_modify(|m| {
                    m.connected = false;
                    m.problem = Some(format!("HTTP {status}: {hint}; retrying"));
                });
            }
            Err(_) => model.send_modify(|m| {
                m.connected = false;
                m.problem = Some("the service is unreachable; retrying".into());
            }),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(15));
    }
}

/// A status in its tone's colour, in words (`awaiting approval`).
fn styled(status: impl Status) -> Span<'static> {
    let style = match status.tone() {
        Tone::Good => Style::default().fg(Color::Green),
        Tone::Bad => Style::default().fg(Color::Red),
        Tone::Waiting => Style::default().fg(Color::Yellow),
        Tone::Plain => Style::default(),
    };
    Span::styled(status.name().replace('_', " "), style)
}

fn age(seen: Option<chrono::DateTime<chrono::Utc>>) -> String {
    let Some(at) = seen else {
        return "-".into();
    };
    let secs = (chrono::Utc::now() - at).num_seconds().max(0);
    if secs < 120 {
        format!("{secs}s ago")
    } else {
        format!("{}m ago", secs / 60)
    }
}

/// How much room each environment gets. The dashboard degrades with the terminal instead of
/// overprinting: side-by-side panels with the agents' table when it is wide and tall enough, a compact
/// box of three lines per environment when not, one line per environment at the least.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Density {
    Full,
    Compact,
    Lines,
}

fn density(width: u16, height: u16, environments: usize) -> Density {
    let room = usize::from(height.saturating_sub(2));
    let n = environments.max(1);
    if width >= 100 && n * 8 <= room {
        Density::Full
    } else if n * 5 <= room {
        Density::Compact
    } else {
        Density::Lines
    }
}

fn draw(frame: &mut ratatui::Frame, model: &Model, server: &str) {
    let envs = &model.environments;
    let area = frame.area();
    let density = density(area.width, area.height, envs.len());
    let per_env = match density {
        Density::Full => Constraint::Min(8),
        Density::Compact => Constraint::Length(5),
        Density::Lines => Constraint::Length(1),
    };
    let mut constraints = vec![Constraint::Length(1)];
    constraints.extend(envs.iter().map(|_| per_env));
    constraints.push(Constraint::Min(if envs.is_empty() { 1 } else { 0 }));
    constraints.push(Constraint::Length(1));
    let areas = Layout::default().direction(Direction::Vertical).constraints(constraints).split(area);

    let link = if model.connected {
        Span::styled("● live", Style::default().fg(Color::Green))
    } else {
        Span::styled("○ reconnecting", Style::default().fg(Color::Yellow))
    };
    let mut header = vec![Span::styled("Honua GitOps ", Style::default().add_modifier(Modifier::BOLD)), link];
    if let Some(at) = model.updated {
        header.push(Span::raw(format!("  updated {}", at.format("%H:%M:%S"))));
    }
    if let Some(problem) = &model.problem {
        header.push(Span::styled(format!("  {problem}"), Style::default().fg(Color::Yellow)));
    }
    header.push(Span::raw(format!("  {server}")));
    frame.render_widget(Paragraph::new(Line::from(header)), areas[0]);

    if envs.is_empty() {
        let text =
            if model.updated.is_some() { "No environment has a deployment yet." } else { "Waiting for the service…" };
        frame.render_widget(Paragraph::new(text), areas[1]);
    }
    for (env, area) in envs.iter().zip(areas.iter().skip(1)) {
        match density {
            Density::Full => full(frame, env, *area),
            Density::Compact => compact(frame, env, *area),
            Density::Lines => frame.render_widget(Paragraph::new(one_line(env)), *area),
        }
    }
    let footer = Paragraph::new("q quit · reconnects by itself");
    frame.render_widget(footer, areas[areas.len() - 1]);
}

fn status_line(env: &EnvironmentView) -> Line<'static> {
    let mut spans = vec![
        Span::raw("Status "),
        styled(env.status),
        Span::raw("  Sync "),
        styled(env.sync),
        Span::raw("  Health "),
        styled(env.health),
    ];
    if env.paused.is_some() {
        spans.push(Span::styled("  paused", Style::default().fg(Color::Yellow)));
    }
    Line::from(spans)
}

fn title(env: &EnvironmentView) -> String {
    format!(" {} · {} ", env.environment, env.repository)
}

fn full(frame: &mut ratatui::Frame, env: &EnvironmentView, area: ratatui::layout::Rect) {
    let block = Block::default().borders(Borders::ALL).title(title(env));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // A column between the panels, so the end of one never runs into the start of the other.
    let parts = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(55), Constraint::Length(1), Constraint::Min(0)])
        .split(inner);

    let mut lines = vec![
        status_line(env),
        Line::from(format!(
            "Current {} ({})",
            env.current.as_ref().map_or("-", |c| c.summary.id.as_str()),
            env.current.as_ref().map_or("-", |c| c.summary.commit.short())
        )),
    ];
    for (label, d) in [("Pending", &env.pending), ("Last", &env.last)] {
        if let Some(d) = d {
            lines.push(Line::from(vec![
                Span::raw(format!("{label} {} ", d.summary.id)),
                styled(d.summary.state),
                Span::raw(format!(" {} by {}", duration_text(d.duration_ms), d.by.as_deref().unwrap_or("-"))),
            ]));
        }
    }
    lines.push(Line::from(Span::styled("Recent", Style::default().add_modifier(Modifier::BOLD))));
    for d in env.recent.iter().take(4) {
        lines.push(Line::from(vec![Span::raw(format!("  {} ", d.id)), styled(d.state)]));
    }
    frame.render_widget(Paragraph::new(lines), parts[0]);

    let rows: Vec<Row> = env
        .agents
        .iter()
        .map(|a| {
            Row::new(vec![
                ratatui::text::Text::raw(a.name.clone()),
                styled(a.health).into(),
                styled(a.sync).into(),
                ratatui::text::Text::raw(format!(
                    "{} {}",
                    a.last_phase.map_or("-", |p| p.as_str()),
                    a.last_deployment.as_deref().unwrap_or("")
                )),
                ratatui::text::Text::raw(age(a.last_seen)),
            ])
        })
        .collect();
    let widths = [
        Constraint::Percentage(26),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Percentage(40),
        Constraint::Length(8),
    ];
    let table = Table::new(rows, widths).header(
        Row::new(vec!["Agent", "Health", "Sync", "Last phase", "Seen"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    );
    frame.render_widget(table, parts[2]);
}

/// Three lines in a box: status; what runs and what waits; the agents in a sentence.
fn compact(frame: &mut ratatui::Frame, env: &EnvironmentView, area: ratatui::layout::Rect) {
    let block = Block::default().borders(Borders::ALL).title(title(env));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut runs =
        vec![Span::raw(format!("Current {}", env.current.as_ref().map_or("-", |c| c.summary.commit.short())))];
    if let Some(p) = &env.pending {
        runs.push(Span::raw(format!("  Pending {} ", p.summary.id)));
        runs.push(styled(p.summary.state));
    }
    let agents = if env.agents.is_empty() {
        Line::from("Agents none yet")
    } else {
        let mut spans = vec![Span::raw("Agents")];
        for a in &env.agents {
            spans.push(Span::raw(format!("  {} ", a.name)));
            spans.push(styled(a.health));
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(vec![status_line(env), Line::from(runs), agents]), inner);
}

/// The least room: one line an environment.
fn one_line(env: &EnvironmentView) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{:<12} ", env.environment), Style::default().add_modifier(Modifier::BOLD)),
        styled(env.status),
        Span::raw("  "),
        styled(env.sync),
        Span::raw("  "),
        styled(env.health),
        Span::raw(format!(
            "  {}  {} agent(s)",
            env.current.as_ref().map_or("-", |c| c.summary.commit.short()),
            env.agents.len()
        )),
    ])
}

pub fn run(args: &ClientArgs, environment: Option<&str>, once: bool) -> Result<std::process::ExitCode> {
    let client = super::client::Client::new(args)?;
    let (server, token) = client.endpoint();
    let url = match environment {
        Some(env) => format!("{server}/api/v1/events?environment={env}"),
        None => format!("{server}/api/v1/events"),
    };
    if once || !std::io::stdout().is_terminal() {
        if !once {
            anyhow::bail!(
                "`honua watch` needs a terminal; for scripts, `honua watch --once --output json` prints the state once"
            );
        }
        return super::client::status(args, environment);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let (sender, mut model) = tokio::sync::watch::channel(Model::default());
    runtime.spawn(follow(url, token.to_string(), sender));

    let mut terminal = ratatui::try_init().context("`honua watch` needs a terminal")?;
    let outcome = (|| -> Result<()> {
        let mut drawn = Instant::now() - Duration::from_secs(10);
        loop {
            // Redraw on a change, and every second for the ages.
            if model.has_changed().unwrap_or(false) || drawn.elapsed() >= Duration::from_secs(1) {
                let current = model.borrow_and_update().clone();
                terminal.draw(|frame| draw(frame, &current, server))?;
                drawn = Instant::now();
            }
            if event::poll(Duration::from_millis(100))? {
                if let Event::Key(key) = event::read()? {
                    let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                    if ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) {
                        return Ok(());
                    }
                }
            }
        }
    })();
    ratatui::restore();
    runtime.shutdown_background();
    outcome?;
    Ok(std::process::ExitCode::SUCCESS)
}
