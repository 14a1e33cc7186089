//! Read-only web pages served by `honua serve`, rendered on the server (maud; no JavaScript): the
//! environments overview (`/`), a deployment (`/deployments/{id}`, where GitHub's deployment statuses
//! link), and a PR head's plan (`/plans/{owner}/{repo}/{number}/{sha}`, the check runs' details link).
//!
//! Pages need a viewer token (or higher), entered once on `/login` and kept in an HttpOnly,
//! SameSite=Strict cookie (Secure when the public URL is https), unless the operator sets
//! `HONUA_PUBLIC_PAGES=true`. They show what the API shows: secrets never reach the service.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use maud::{html, Markup, DOCTYPE};

use super::api;
use crate::controller::Controller;
use crate::deployment::wire::{DeploymentView, PlanView};
use crate::deployment::{duration_text, short_sha, Status, Tone};
use crate::store::Role;

const COOKIE: &str = "honua_session";

#[derive(Clone)]
pub struct Pages {
    pub controller: Arc<Controller>,
    /// `HONUA_PUBLIC_PAGES=true`: no token needed.
    pub public: bool,
}

pub fn router(pages: Pages) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/deployments/{id}", get(deployment))
        .route("/plans/{owner}/{repo}/{number}/{sha}", get(plan))
        .route("/login", get(login_form).post(login))
        .route("/logout", get(logout))
        .route(STYLESHEET, get(stylesheet))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(pages)
}

/// The pages' own stylesheet, served from the same origin so the policy below needs no `unsafe-inline`.
const STYLESHEET: &str = "/assets/honua.css";

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], STYLE)
        .into_response()
}

/// Pages load nothing from elsewhere, run no script, are never framed (clickjacking an approval page)
/// and never sniffed into another type; links out do not carry the page's address.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, axum::http::HeaderValue::from_static(value));
    }
    response
}

const STYLE: &str = "
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2733;background:#f5f7fa}
header{background:#1d2733;color:#fff;padding:.8em 1.5em}header a{color:#fff;text-decoration:none;font-weight:600}
main{padding:1.2em 1.5em;max-width:1200px}h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;background:#fff;margin:.5em 0}
th,td{border:1px solid #dde3ea;padding:.35em .6em;text-align:left;vertical-align:top}th{background:#eef2f6}
.ok{color:#17803d;font-weight:600}.bad{color:#b42318;font-weight:600}.wait{color:#a15c00;font-weight:600}
.card{background:#fff;border:1px solid #dde3ea;border-radius:6px;padding:1em;margin:1em 0}
code{background:#eef2f6;padding:0 .25em;border-radius:3px}.breaking{background:#fdecea}
form input{font:inherit;padding:.4em;width:32em}form button{font:inherit;padding:.4em 1em}
";

fn page(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · Honua GitOps" }
                    link rel="stylesheet" href=(STYLESHEET);
                }
                body {
                    header { a href="/" { "Honua GitOps" } }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

/// Text in a tone's class (`ok` green, `bad` red, `wait` amber), in words (`awaiting approval`).
fn label(text: &str, tone: Tone) -> Markup {
    let class = match tone {
        Tone::Good => "ok",
        Tone::Bad => "bad",
        Tone::Waiting => "wait",
        Tone::Plain => "",
    };
    html! { span class=(class) { (text.replace('_', " ")) } }
}

fn status(status: impl Status) -> Markup {
    label(status.name(), status.tone())
}

fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

fn deployment_link(d: Option<&DeploymentView>) -> Markup {
    match d {
        Some(d) => html! { a href={ "/deployments/" (d.summary.id) } { code { (d.summary.id) } } },
        None => html! { "-" },
    }
}

/// The token from the session cookie.
fn session(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// `Ok(())` when the pages may be shown; otherwise the login page's redirect.
async fn allowed(pages: &Pages, headers: &HeaderMap, here: &str) -> Result<(), Response> {
    if pages.public {
        return Ok(());
    }
    let login = || Redirect::to(&format!("/login?next={}", urlencode(here))).into_response();
    let Some(token) = session(headers).filter(|t| !t.is_empty() && t.len() <= 256) else { return Err(login()) };
    match pages.controller.store.token(&api::token_hash(&token), crate::store::now_ms()).await {
        Ok(Some(t)) if t.role != Role::Agent && t.role >= Role::Viewer => Ok(()),
        Ok(_) => Err(login()),
        Err(_) => Err((StatusCode::SERVICE_UNAVAILABLE, "the database is not reachable; try again").into_response()),
    }
}

fn urlencode(path: &str) -> String {
    url::form_urlencoded::byte_serialize(path.as_bytes()).collect()
}

fn failed(status: StatusCode, message: &str) -> Response {
    (status, page("Error", html! { h1 { "Not available" } p { (message) } })).into_response()
}

async fn overview(State(pages): State<Pages>, headers: HeaderMap) -> Response {
    if let Err(r) = allowed(&pages, &headers, "/").await {
        return r;
    }
    let views = match pages.controller.views().environment_views(None).await {
        Ok(v) => v,
        Err(_) => return failed(StatusCode::SERVICE_UNAVAILABLE, "the database is not reachable; try again"),
    };
    let body = html! {
        h1 { "Environments" }
        @if views.is_empty() {
            p { "No deployment yet: merge a change to the default branch of a configured repository." }
        }
        table {
            tr { th { "Environment" } th { "Repository" } th { "Status" } th { "Sync" } th { "Health" }
                 th { "Current" } th { "Pending" } th { "Last deployment" } th { "Agents" } }
            @for e in &views {
                tr {
                    td { strong { (e.environment) } }
                    td { (e.repository) }
                    td {
                        (status(e.status))
                        @if let Some(pause) = &e.paused {
                            div class="paused" {
                                (label("paused", Tone::Waiting)) " after the rollback " a href={ "/deployments/" (urlencode(&pause.deployment)) } { (pause.deployment) }
                                " by " (pause.actor) ": automatic deployments wait for a commit newer than "
                                code { (pause.commit.short()) } " or "
                                code { "honua resume " (e.environment) }
                            }
                        }
                    }
                    td { (status(e.sync)) }
                    td { (status(e.health)) }
                    td { (deployment_link(e.current.as_ref())) " " (or_dash(e.current.as_ref().map(|d| d.summary.short_commit()))) }
                    td { (deployment_link(e.pending.as_ref())) " " @if let Some(p) = &e.pending { (status(p.summary.state)) } }
                    td { (deployment_link(e.last.as_ref())) " " (e.last.as_ref().map_or(label("unknown", Tone::Plain), |l| status(l.summary.state)))
                         " by " (or_dash(e.last.as_ref().and_then(|l| l.by.as_deref()))) }
                    td {
                        @if e.agents.is_empty() { "none yet" }
                        @for a in &e.agents {
                            div { (a.name) ": " (status(a.health)) ", " (status(a.sync)) }
                        }
                    }
                }
            }
        }
    };
    page("Environments", body).into_response()
}

fn changes_table(plan: &PlanView) -> Markup {
    html! {
        table {
            tr { th { "" } th { "Type" } th { "Id" } th { "Details" } }
            @for c in plan.changes_for_review() {
                tr class=[(!c.breaking.is_empty()).then_some("breaking")] {
                    td { (c.sign()) }
                    td { (c.kind) }
                    td { code { (c.id) } }
                    td {
                        @for b in &c.breaking { div class="bad" { "BREAKING " (b.code) ": " (b.reason) } }
                        @for f in &c.fields {
                            div { code { (f.path) } ": " (f.from.to_string()) " → " (f.to.to_string()) }
                        }
                        @if c.fields.is_empty() && c.breaking.is_empty() { (c.action) }
                    }
                }
            }
        }
    }
}

async fn deployment(State(pages): State<Pages>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = allowed(&pages, &headers, &format!("/deployments/{id}")).await {
        return r;
    }
    let d = match api::detail(&pages.controller, &id).await {
        Ok(d) => d,
        Err(_) => return failed(StatusCode::NOT_FOUND, &format!("no deployment `{id}`")),
    };
    let plan = PlanView::of(&d.plan);
    let (v, s) = (&d.view, &d.view.summary);
    let body = html! {
        h1 { "Deployment " code { (id) } }
        div class="card" {
            p { (s.repository) " → " strong { (s.environment) } " · " (status(s.state))
                " · commit " code { (s.short_commit()) } @if let Some(from) = &s.from_commit { " (from " code { (from.short()) } ")" } }
            p { "Duration " (duration_text(v.duration_ms)) " · by " (or_dash(v.by.as_deref())) " · gate " (s.gate.as_str()) }
            @for r in &s.reasons { p class="wait" { (r) } }
            @if let Some(at) = s.expires_while_waiting() {
                p class="wait" { "Expires " (at.format("%Y-%m-%d %H:%M UTC")) " without an approval (approvalTimeout)" }
            }
        }
        h2 { "Plan (" (plan.changes.len()) " changes, digest " code { (s.plan_digest) } ")" }
        (changes_table(&plan))
        h2 { "Approvals" }
        @if d.approvals.is_empty() { p { "None." } }
        @for a in &d.approvals {
            p { (a.actor) " via " (a.via) @if a.breaking { " (breaking changes acknowledged)" } }
        }
        h2 { "Transitions" }
        table {
            tr { th { "When (UTC)" } th { "To" } th { "Who" } th { "What" } }
            @for e in &d.transitions {
                tr {
                    td { (chrono::DateTime::from_timestamp_millis(e.at).map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()) }
                    td { (e.to_state.map_or_else(|| label(&e.action, Tone::Plain), status)) }
                    td { (e.actor) }
                    td { (e.message) }
                }
            }
        }
        h2 { "Agents" }
        @if d.reports.is_empty() { p { "No agent has reported on it." } }
        table {
            @for r in &d.reports {
                tr { td { (r.agent) } td { (status(r.phase)) } td { (r.message) } }
            }
        }
    };
    page(&format!("Deployment {id}"), body).into_response()
}

async fn plan(
    State(pages): State<Pages>,
    headers: HeaderMap,
    Path((owner, repo, number, sha)): Path<(String, String, u64, String)>,
) -> Response {
    let here = format!("/plans/{owner}/{repo}/{number}/{sha}");
    if let Err(r) = allowed(&pages, &headers, &here).await {
        return r;
    }
    if !sha.chars().all(|c| c.is_ascii_hexdigit()) || sha.len() < 7 || sha.len() > 64 {
        return failed(StatusCode::BAD_REQUEST, "not a commit id");
    }
    let plans = match pages.controller.plan_of_head(&owner, &repo, &sha).await {
        Ok(p) => p,
        Err(e) => return failed(StatusCode::NOT_FOUND, &format!("no plan for {owner}/{repo} at {sha}: {e}")),
    };
    let body = html! {
        h1 { "Plan of " (owner) "/" (repo) " #" (number) " at " code { (short_sha(&sha)) } }
        p { "Against the default branch, judged by its policy; the same plan the PR comment shows." }
        @for p in &plans {
            div class="card" {
                h2 { (p.environment) " · " (status(p.decision.decision)) }
                @for r in &p.decision.reasons { p class="wait" { (r) } }
                (changes_table(p))
                p { "digest " code { (p.digest) } }
            }
        }
    };
    page(&format!("Plan {owner}/{repo}#{number}"), body).into_response()
}

#[derive(serde::Deserialize)]
struct Next {
    next: Option<String>,
}

/// Only a path on this site: never an open redirect.
fn local(next: Option<String>) -> String {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\')).unwrap_or_else(|| "/".into())
}

fn login_page(next: &str, problem: Option<&str>) -> Html<String> {
    page(
        "Sign in",
        html! {
            h1 { "Sign in" }
            p { "Paste an API token with the viewer role or above (" code { "honua token create --role viewer" } "). It is kept in a cookie only this site can read." }
            @if let Some(problem) = problem { p class="bad" { (problem) } }
            form method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                input type="password" name="token" autocomplete="off" placeholder="honua_…" required;
                " " button type="submit" { "Sign in" }
            }
        },
    )
}

async fn login_form(Query(q): Query<Next>) -> Html<String> {
    login_page(&local(q.next), None)
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

async fn login(State(pages): State<Pages>, Form(form): Form<LoginForm>) -> Response {
    let next = local(form.next);
    let token = form.token.trim();
    let known = if token.is_empty() || token.len() > 256 {
        None
    } else {
        pages.controller.store.token(&api::token_hash(token), crate::store::now_ms()).await.ok().flatten()
    };
    match known {
        Some(t) if t.role != Role::Agent && t.role >= Role::Viewer => {
            let secure = pages.controller.public_url.as_deref().is_some_and(|u| u.starts_with("https://"));
            let cookie = format!(
                "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000{}",
                if secure { "; Secure" } else { "" }
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
        }
        Some(_) => (
            StatusCode::FORBIDDEN,
            login_page(&next, Some("This token may not read the pages: use a viewer, approver or admin token.")),
        )
            .into_response(),
        None => (StatusCode::UNAUTHORIZED, login_page(&next, Some("Unknown or revoked token."))).into_response(),
    }
}

async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}
