//! The REST API, `/api/v1`: environments, deployments, approvals, rejections and the audit log, for
//! the CLI, scripts and release bots. Every route but the signing key needs a bearer token; tokens
//! are stored as SHA-256 hashes and carry a role (viewer < approver < admin; an agent token serves
//! its environment's agent routes only). Errors are `{"error": code, "message": sentence}`.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::controller::agents::Look;
use crate::controller::{Controller, DecisionError};
use crate::deployment::wire::{
    Agents, AuditLog, DeploymentDetail, DeploymentSummary, Deployments, DesiredState, EnvironmentDetail, Environments,
    Heartbeat, PhaseReport, PullApprovals, ReportedPhase, Resumed, RollbackPreview, RotatedToken, SigningKey, Tokens,
};
use crate::deployment::{Phase, Via};
use crate::store::{ApiToken, DeploymentFilter, DeploymentState, Role, StoreError};

/// Largest JSON body the API reads (approve/reject bodies are a few bytes).
const MAX_BODY: usize = 64 * 1024;

pub fn router(controller: Arc<Controller>) -> Router {
    let (routes, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(signing_key))
        .routes(routes!(environments))
        .routes(routes!(deployments))
        .routes(routes!(deployment))
        .routes(routes!(pull))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(rollback, rollback_preview))
        .routes(routes!(resume))
        .routes(routes!(tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(rotate_token))
        .routes(routes!(audit))
        .routes(routes!(agents))
        .routes(routes!(agent_desired))
        .routes(routes!(agent_report))
        .routes(routes!(agent_heartbeat))
        .routes(routes!(environment))
        .routes(routes!(events))
        .split_for_parts();
    // The document is built from the routes themselves: a route cannot exist without its entry.
    let openapi = Arc::new(with_common_errors(openapi));
    routes
        .route("/api/v1/openapi.json", get(move || async move { Json(openapi.as_ref().clone()) }))
        .route("/api/{*rest}", axum::routing::any(unknown_route))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(controller)
}

/// The errors that whole kinds of routes answer, documented in one place so that no route forgets one:
/// a route behind a token reads the store to authenticate its caller (503 while the database is out of
/// reach), a route with parameters or a body refuses what does not parse (400), and a body over
/// [`MAX_BODY`] is refused before it is read (413). A route's own annotation, where it has one, stays.
fn with_common_errors(mut openapi: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
        ResponseBuilder::new().description(description).content("application/json", content).build()
    };
    for item in openapi.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.post].into_iter().flatten() {
            let mut common = Vec::new();
            if op.security.is_some() {
                common.push(("503", "the database is out of reach; try again"));
            }
            if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) || op.request_body.is_some() {
                common.push(("400", "a parameter or the body does not parse"));
            }
            if op.request_body.is_some() {
                common.push(("413", "the body is over the API's 64 KiB limit"));
            }
            for (status, description) in common {
                op.responses.responses.entry(status.to_string()).or_insert_with(|| error(description).into());
            }
        }
    }
    openapi
}

async fn unknown_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("there is no API route `{}`; GET /api/v1/openapi.json lists them", uri.path()),
    )
}

/// Every client error of the API in the one JSON shape, `{"error": code, "message": sentence}`: axum's
/// own rejections (a query string or path that does not parse, a body that cannot be read, a method the
/// route does not take) answer in plain text, and scripts should not have to parse two shapes.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !status.is_client_error() || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let (code, default) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this route does not take that method"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the body is over the API's 64 KiB limit"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "send the body as application/json"),
        StatusCode::REQUEST_TIMEOUT => ("body_timeout", "the request body did not arrive in time"),
        _ => ("bad_request", "the request is malformed"),
    };
    let message = if text.is_empty() { default.to_string() } else { text };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    let body = serde_json::to_string(&ErrorBody { error: code.into(), message }).expect("JSON encodes");
    Response::from_parts(parts, axum::body::Body::from(body))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Honua GitOps API",
        version = "1",
        description = "Environments, deployments, approvals, rollbacks and the audit log of Honua GitOps. Every route but the signing key needs `Authorization: Bearer TOKEN` (`honua token create`)."
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

use crate::deployment::wire::ErrorBody;

pub use crate::controller::tokens::{new_token, token_hash};

pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.code.into(), message: self.message })).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "API: store error");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "the database is not reachable; try again")
    }
}

impl From<DecisionError> for ApiError {
    fn from(e: DecisionError) -> Self {
        let status = match &e {
            DecisionError::NotFound(_) => StatusCode::NOT_FOUND,
            DecisionError::Failed(_) => StatusCode::BAD_GATEWAY,
            DecisionError::BadReport(_) => StatusCode::BAD_REQUEST,
            DecisionError::Forbidden(_) => StatusCode::FORBIDDEN,
            DecisionError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::CONFLICT,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

/// The caller, authenticated by its bearer token.
pub struct Caller(pub ApiToken);

impl Caller {
    fn require(&self, role: Role) -> Result<(), ApiError> {
        let token = &self.0;
        if token.role == Role::Agent || token.role < role {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "token `{}` has the {} role; this needs {} or above",
                    token.name,
                    token.role.as_str(),
                    role.as_str()
                ),
            ));
        }
        Ok(())
    }
}

impl Caller {
    /// An agent token of `environment`. Nothing else: an admin reading the desired state would register
    /// as one of the environment's agents, and completing a deployment would then wait for it.
    fn require_agent_of(&self, environment: &str) -> Result<(), ApiError> {
        let token = &self.0;
        match token.role {
            Role::Agent if token.environment.as_deref() == Some(environment) => Ok(()),
            Role::Agent => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "token `{}` is the agent token of `{}`, not of `{environment}`",
                    token.name,
                    token.environment.as_deref().unwrap_or("-")
                ),
            )),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("token `{}` is not an agent token; agent routes take only agent tokens: create one with `honua token create --role agent --environment {environment}`", token.name),
            )),
        }
    }

    /// The environment of an agent token; any other token is refused.
    fn agent_environment(&self, what: &str) -> Result<String, ApiError> {
        match (&self.0.role, &self.0.environment) {
            (Role::Agent, Some(env)) => Ok(env.to_string()),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("only an agent token {what}; token `{}` is not one", self.0.name),
            )),
        }
    }
}

impl FromRequestParts<Arc<Controller>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, controller: &Arc<Controller>) -> Result<Self, Self::Rejection> {
        let unauthorised = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let Some(token) = header.and_then(bearer_token) else {
            return Err(unauthorised("send `Authorization: Bearer TOKEN`; create one with `honua token create`"));
        };
        if token.is_empty() || token.len() > 256 {
            return Err(unauthorised("the token is not valid"));
        }
        match controller.store.token(&token_hash(token), crate::store::now_ms()).await? {
            Some(t) => Ok(Caller(t)),
            None => Err(unauthorised("the token is not valid (unknown or revoked)")),
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header; the scheme is case-insensitive (RFC 7235).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once([' ', '\t'])?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The public key agents pin to verify signed deployment records.
#[utoipa::path(get, path = "/api/v1/signing-key", tag = "deployments",
    responses((status = 200, description = "the key agents pin", body = SigningKey)))]
async fn signing_key(State(c): State<Arc<Controller>>) -> Json<SigningKey> {
    Json(SigningKey { algorithm: "ed25519".into(), public_key: c.signer.public_key() })
}

/// Per repository and environment: status, sync, health, the deployment that runs (`current`), the one
/// pending, the last, and the environment's agents.
#[utoipa::path(get, path = "/api/v1/environments", tag = "environments", security(("bearer" = [])),
    responses((status = 200, description = "every environment", body = Environments),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn environments(caller: Caller, State(c): State<Arc<Controller>>) -> Result<Json<Environments>, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(Json(Environments { environments: c.views().environment_views(None).await? }))
}

/// One environment (per repository that deploys it): status, sync, health, current, pending, the ten
/// most recent deployments, and each agent with its last heartbeat (commit, health, version, sync).
#[utoipa::path(get, path = "/api/v1/environments/{env}", tag = "environments", security(("bearer" = [])),
    params(("env" = String, Path, description = "environment name")),
    responses((status = 200, description = "the environment per repository, and its agents", body = EnvironmentDetail),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn environment(
    caller: Caller,
    State(c): State<Arc<Controller>>,
    Path(env): Path<String>,
) -> Result<Json<EnvironmentDetail>, ApiError> {
    caller.require(Role::Viewer)?;
    let views = c.views().environment_views(Some(&env)).await?;
    let agents_only = c.views().agent_views(Some(&env)).await?;
    if views.is_empty() && agents_only.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no deployment or agent of `{env}` is known; `GET /api/v1/environments` lists them"),
        ));
    }
    Ok(Json(EnvironmentDetail { environment: env.into(), repositories: views, agents: agents_only }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Only this environment.
    environment: Option<String>,
}

/// A live feed for dashboards (`honua watch`): server-sent `environments` events whose data is the body
/// of `GET /api/v1/environments` (only `environment`'s entries when given), sent at once and after every
/// change (decisions, agent reports, heartbeats; staleness is re-evaluated every 5 s). A comment line
/// every 15 s keeps proxies from closing an idle stream. Reconnecting clients simply get the current state.
#[utoipa::path(get, path = "/api/v1/events", tag = "environments", security(("bearer" = [])), params(EventsQuery),
    responses((status = 200, description = "`text/event-stream` of `environments` events", content_type = "text/event-stream", body = String),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn events(
    caller: Caller,
    State(c): State<Arc<Controller>>,
    Query(q): Query<EventsQuery>,
) -> Result<
    axum::response::Sse<impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>>,
    ApiError,
> {
    caller.require(Role::Viewer)?;
    let stream = futures_util::stream::unfold((c, q.environment, None::<String>), |(c, env, last)| async move {
        let events = c.events.clone();
        loop {
            // Registered before looking, so a change in between is not missed.
            let changed = events.notified();
            tokio::pin!(changed);
            // Enabled now, so a change between this look and the wait below is not missed.
            changed.as_mut().enable();
            if let Ok(views) = c.views().environment_views(env.as_deref()).await {
                let body = serde_json::to_string(&Environments { environments: views }).expect("views encode");
                if last.as_deref() != Some(body.as_str()) {
                    let event = axum::response::sse::Event::default().event("environments").data(body.clone());
                    return Some((Ok(event), (c, env, Some(body))));
                }
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            }
        }
    });
    Ok(axum::response::Sse::new(stream).keep_alive(
        axum::response::sse::KeepAlive::new().interval(std::time::Duration::from_secs(15)).text("keep-alive"),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    environment: Option<String>,
    repository: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

/// Deployments, newest first.
#[utoipa::path(get, path = "/api/v1/deployments", tag = "deployments", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, description = "deployments, newest first", body = Deployments),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn deployments(
    caller: Caller,
    State(c): State<Arc<Controller>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Deployments>, ApiError> {
    caller.require(Role::Viewer)?;
    let states = match q.state.as_deref() {
        None => Vec::new(),
        Some(s) => vec![DeploymentState::parse(s).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_state", format!("`{s}` is not a deployment state"))
        })?],
    };
    let filter =
        DeploymentFilter { repository: q.repository, environment: q.environment, states, limit: q.limit.unwrap_or(20) };
    Ok(Json(Deployments { deployments: c.views().deployment_views(&filter).await? }))
}

pub(crate) async fn detail(c: &Controller, id: &str) -> Result<DeploymentDetail, ApiError> {
    c.views()
        .deployment_detail(id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no deployment `{id}`")))
}

/// One deployment with its plan, approvals, transitions and signed record.
#[utoipa::path(get, path = "/api/v1/deployments/{id}", tag = "deployments", security(("bearer" = [])),
    params(("id" = String, Path, description = "e.g. prod-20261125101500-abc1234")),
    responses((status = 200, description = "the deployment", body = DeploymentDetail),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn deployment(
    caller: Caller,
    State(c): State<Arc<Controller>>,
    Path(id): Path<String>,
) -> Result<Json<DeploymentDetail>, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(Json(detail(&c, &id).await?))
}

/// A pull request's approvals: per environment, who approved which plan of its newest head, and who may
/// still approve by the default branch's policy (as the service's mirror has it).
#[utoipa::path(get, path = "/api/v1/pulls/{owner}/{repo}/{number}", tag = "deployments", security(("bearer" = [])),
    params(("owner" = String, Path), ("repo" = String, Path), ("number" = u64, Path, description = "the pull request")),
    responses((status = 200, description = "the pull request's approvals", body = PullApprovals),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn pull(
    caller: Caller,
    State(c): State<Arc<Controller>>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
) -> Result<Json<PullApprovals>, ApiError> {
    caller.require(Role::Viewer)?;
    match c.pull_approvals(&owner, &repo, number).await? {
        Some(pull) => Ok(Json(pull)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no pull request {owner}/{repo}#{number} is known here; is the App installed on {owner}/{repo}?"),
        )),
    }
}

/// GitHub's Deployments mirror is updated after the answer, not before it.
fn mirror_later(c: &Arc<Controller>, repository: &str) {
    let (c, repository) = (c.clone(), repository.to_string());
    tokio::spawn(async move { c.decided(&repository).await });
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    #[serde(default)]
    breaking: bool,
    /// `api` (default) or `cli`: how the approval is recorded.
    #[serde(default)]
    via: Option<String>,
}

fn body<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.to_string()))
}

/// A caller without the role to decide is refused, and the attempt is audited: who tried to approve
/// a production deployment matters even when it failed.
async fn require_decider(c: &Controller, caller: &Caller, id: &str, action: &str) -> Result<(), ApiError> {
    let refused = caller.require(Role::Approver);
    if let Err(e) = &refused {
        let (forbidden, now) = (format!("{action}.forbidden"), crate::store::now_ms());
        c.decisions().record_refusal(&caller.0.name, &forbidden, id, None, &e.message, now).await?;
    }
    refused
}

/// Approves a deployment awaiting approval (or blocked by breaking changes, with `breaking: true`),
/// bound to its plan digest, and signs it. Approver or admin.
#[utoipa::path(post, path = "/api/v1/deployments/{id}/approve", tag = "deployments", security(("bearer" = [])),
    params(("id" = String, Path)), request_body(content = ApproveBody, description = "optional"),
    responses((status = 200, description = "the approved deployment", body = DeploymentDetail),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn approve(
    caller: Caller,
    State(c): State<Arc<Controller>>,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Json<DeploymentDetail>, ApiError> {
    require_decider(&c, &caller, &id, "approve").await?;
    let b: ApproveBody = body(&bytes)?;
    let via = match b.via.as_deref() {
        None | Some("api") => Via::Api,
        Some("cli") => Via::Cli,
        Some(other) => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_body", format!("via `{other}`: use api or cli")))
        }
    };
    let d = match c.decisions().approve(&id, &caller.0.name, via, b.breaking, chrono::Utc::now()).await {
        Ok(d) => d,
        Err(refused) => {
            // Refused because it came too late: the deployment expired just now, which is published too.
            if matches!(refused, DecisionError::Expired { .. }) {
                if let Ok(Some(d)) = c.store.deployment(&id).await {
                    mirror_later(&c, &d.repository);
                }
            }
            return Err(refused.into());
        }
    };
    mirror_later(&c, &d.repository);
    Ok(Json(detail(&c, &id).await?))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RejectBody {
    #[serde(default)]
    reason: String,
}

/// Rejects a deployment that has not started. Approver or admin.
#[utoipa::path(post, path = "/api/v1/deployments/{id}/reject", tag = "deployments", security(("bearer" = [])),
    params(("id" = String, Path)), request_body(content = RejectBody, description = "optional"),
    responses((status = 200, description = "the rejected deployment", body = DeploymentDetail),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn reject(
    caller: Caller,
    State(c): State<Arc<Controller>>,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Json<DeploymentDetail>, ApiError> {
    require_decider(&c, &caller, &id, "reject").await?;
    let b: RejectBody = body(&bytes)?;
    let d = c.decisions().reject(&id, &caller.0.name, &b.reason, chrono::Utc::now()).await?;
    mirror_later(&c, &d.repository);
    Ok(Json(detail(&c, &id).await?))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    /// A completed deployment to go back to; the last completed earlier commit by default.
    #[serde(default)]
    to: Option<String>,
    /// Needed only when the environment is deployed from several repositories.
    #[serde(default)]
    repository: Option<String>,
}

/// Deploys the last completed earlier commit (or `to`) again, approved by the caller, and pauses
/// automatic deployments of the environment until a newer commit lands. Approver or admin.
#[utoipa::path(post, path = "/api/v1/environments/{env}/rollback", tag = "environments", security(("bearer" = [])),
    params(("env" = String, Path)), request_body(content = RollbackBody, description = "optional"),
    responses((status = 201, description = "the rollback deployment", body = DeploymentDetail),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 502, description = "the config repository could not be fetched or read, or GitHub did not answer", body = ErrorBody)))]
async fn rollback(
    caller: Caller,
    State(c): State<Arc<Controller>>,
    Path(env): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<DeploymentDetail>), ApiError> {
    require_decider(&c, &caller, "", "rollback").await?;
    let b: RollbackBody = body(&bytes)?;
    let d = c
        .rollbacks()
        .rollback(b.repository.as_deref(), &env, b.to.as_deref(), &caller.0.name, chrono::Utc::now())
        .await?;
    mirror_later(&c, &d.repository);
    Ok((StatusCode::CREATED, Json(detail(&c, &d.id).await?)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RollbackQuery {
    /// A completed deployment to go back to; what ran before what runs now by default.
    to: Option<String>,
    /// Needed only when the environment is deployed from several repositories.
    repository: Option<String>,
}

/// What `POST /api/v1/environments/{env}/rollback` would do, without doing it: what runs, what it
/// restores, and the plan of the change back. Viewer or above.
#[utoipa::path(get, path = "/api/v1/environments/{env}/rollback", tag = "environments", security(("bearer" = [])),
    params(("env" = String, Path), RollbackQuery),
    responses((status = 200, description = "what a rollback would restore", body = RollbackPreview),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 502, description = "the config repository could not be read", body = ErrorBody)))]
async fn rollback_preview(
    caller: Caller,
    State(c): State<Arc<Controller>>,
    Path(env): Path<String>,
    Query(q): Query<RollbackQuery>,
) -> Result<Json<RollbackPreview>, ApiError> {
    caller.require(Role::Viewer)?;
    let now = chrono::Utc::now();
    let p = c.rollbacks().plan_rollback(q.repository.as_deref(), &env, q.to.as_deref(), now).await?;
    let (plan, breaking) = (
        crate::plan::render::plan_text(std::slice::from_ref(&p.plan), 100),
        p.plan.changes.changes.iter().any(|c| !c.breaking.is_empty()),
    );
    Ok(Json(RollbackPreview {
        repository: p.repository,
        environment: env.into(),
        current: DeploymentSummary::of(&p.current, now),
        target: DeploymentSummary::of(&p.target, now),
        plan,
        breaking,
    }))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ResumeBody {
    /// Needed only when the environment is deployed from several repositories.
    #[serde(default)]
    repository: Option<String>,
}

/// Lifts the pause a rollback left on the environment and plans the branch head again, as a push would.
/// Approver or admin.
#[utoipa::path(post, path = "/api/v1/environments/{env}/resume", tag = "environments", security(("bearer" = [])),
    params(("env" = String, Path)), request_body(content = ResumeBody, description = "optional"),
    responses((status = 200, description = "the pause lifted and the deployment planned", body = Resumed),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 502, description = "the config repository could not be fetched or read, or GitHub did not answer", body = ErrorBody)))]
async fn resume(
    caller: Caller,
    State(c): State<Arc<Controller>>,
    Path(env): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Json<Resumed>, ApiError> {
    require_decider(&c, &caller, "", "resume").await?;
    let b: ResumeBody = body(&bytes)?;
    let now = chrono::Utc::now();
    let (paused, deployment) = c.rollbacks().resume(b.repository.as_deref(), &env, &caller.0.name, now).await?;
    if let Some(d) = &deployment {
        mirror_later(&c, &d.repository);
    }
    Ok(Json(Resumed { paused, deployment: deployment.map(|d| DeploymentSummary::of(&d, now)) }))
}

impl From<crate::controller::tokens::TokenError> for ApiError {
    fn from(e: crate::controller::tokens::TokenError) -> Self {
        use crate::controller::tokens::TokenError;
        match e {
            TokenError::Store(e) => e.into(),
            TokenError::Unknown(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            TokenError::Random(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()),
            _ => ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.to_string()),
        }
    }
}

/// Every API token: name, role, environment, created, last used (to the minute), revoked, and until when
/// a rotated token's previous secret works. Never a secret or a hash. Admin.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", security(("bearer" = [])),
    responses((status = 200, description = "every token", body = Tokens),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn tokens(caller: Caller, State(c): State<Arc<Controller>>) -> Result<Json<Tokens>, ApiError> {
    caller.require(Role::Admin)?;
    Ok(Json(Tokens { tokens: crate::controller::tokens::list(c.store.as_ref()).await? }))
}

/// Revokes a token (both secrets, when it was rotated). Admin.
#[utoipa::path(post, path = "/api/v1/tokens/{name}/revoke", tag = "tokens", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 204, description = "revoked"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_token(
    caller: Caller,
    State(c): State<Arc<Controller>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Admin)?;
    crate::controller::tokens::revoke(c.store.as_ref(), &name, &caller.0.name, crate::store::now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// How long the previous secret keeps working, in seconds (default a day).
    #[serde(default)]
    grace_seconds: Option<u64>,
}

/// Gives a token a new secret, answered once; the previous one keeps working for the grace period.
/// Admin.
#[utoipa::path(post, path = "/api/v1/tokens/{name}/rotate", tag = "tokens", security(("bearer" = [])),
    params(("name" = String, Path)), request_body(content = RotateBody, description = "optional"),
    responses((status = 200, description = "the new secret, shown once", body = RotatedToken),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn rotate_token(
    caller: Caller,
    State(c): State<Arc<Controller>>,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Json<RotatedToken>, ApiError> {
    caller.require(Role::Admin)?;
    let b: RotateBody = body(&bytes)?;
    let grace_ms = b.grace_seconds.unwrap_or(86_400).min(365 * 86_400) as i64 * 1000;
    let now = crate::store::now_ms();
    let token = crate::controller::tokens::rotate(c.store.as_ref(), &name, grace_ms, &caller.0.name, now).await?;
    Ok(Json(RotatedToken { name, token, previous_valid_until: now + grace_ms }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    after: Option<i64>,
    deployment: Option<String>,
    limit: Option<i64>,
}

/// The append-only audit log, oldest first, paged by `after` (the last id seen).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, description = "audit entries, oldest first", body = AuditLog),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn audit(
    caller: Caller,
    State(c): State<Arc<Controller>>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditLog>, ApiError> {
    caller.require(Role::Viewer)?;
    let entries = c.views().audit_log(q.after.unwrap_or(0), q.deployment.as_deref(), q.limit.unwrap_or(500)).await?;
    Ok(Json(AuditLog { entries }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AgentsQuery {
    environment: Option<String>,
}

/// Every agent's last check-in: environment, time, and the last phase it reported.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", security(("bearer" = [])), params(AgentsQuery),
    responses((status = 200, description = "every agent", body = Agents),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn agents(
    caller: Caller,
    State(c): State<Arc<Controller>>,
    Query(q): Query<AgentsQuery>,
) -> Result<Json<Agents>, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(Json(Agents { agents: c.views().agent_views(q.environment.as_deref()).await? }))
}

pub use crate::deployment::AGENT_STALE_AFTER_MS;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DesiredQuery {
    environment: String,
    repository: Option<String>,
    /// Seconds to wait for a change when `If-None-Match` names the current state (at most 60).
    wait: Option<u64>,
}

/// What the agent's environment should run: the signed record of the newest approved deployment whose
/// windows are open, or of what runs. With `If-None-Match` set to the last ETag, the answer waits up to
/// `wait` seconds for a change (304 if none). 204 when nothing was approved yet.
#[utoipa::path(get, path = "/api/v1/agent/desired", tag = "agents", security(("bearer" = [])), params(DesiredQuery),
    responses((status = 200, description = "the signed record to apply, with an ETag", body = DesiredState),
        (status = 204, description = "nothing approved yet"), (status = 304, description = "unchanged"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn agent_desired(
    caller: Caller,
    State(c): State<Arc<Controller>>,
    Query(q): Query<DesiredQuery>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    caller.require_agent_of(&q.environment)?;
    c.fleet().agent_seen(&caller.0.name, &q.environment).await?;
    let known = headers.get(axum::http::header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(str::to_string);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(q.wait.unwrap_or(0).min(60));
    let mut woken = false;
    loop {
        // Registered before looking, so a decision in between is not missed.
        let changed = c.feed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let (repository, agent, now) = (q.repository.as_deref(), Some(caller.0.name.as_str()), chrono::Utc::now());
        let look = if woken { Look::Woken } else { Look::First };
        let desired = c.fleet().desired(repository, &q.environment, agent, now, look).await?;
        woken = true;
        let etag = desired.as_ref().map(|d| format!("\"{}@{}\"", d.id, d.state)).unwrap_or_else(|| "\"none\"".into());
        if known.as_deref() != Some(etag.as_str()) || tokio::time::Instant::now() >= deadline {
            let mut response = match (&desired, known.as_deref() == Some(etag.as_str())) {
                (_, true) => StatusCode::NOT_MODIFIED.into_response(),
                (None, false) => StatusCode::NO_CONTENT.into_response(),
                (Some(d), false) => Json(DesiredState {
                    deployment: d.id.clone(),
                    repository: d.repository.clone(),
                    environment: d.environment.clone(),
                    commit: d.commit.clone(),
                    sequence: d.sequence,
                    state: d.state,
                    record: d.signed.as_ref().map(|s| s.record.clone()),
                    signature: d.signed.as_ref().map(|s| s.signature.clone()),
                })
                .into_response(),
            };
            if let Ok(value) = axum::http::HeaderValue::from_str(&etag) {
                response.headers_mut().insert(axum::http::header::ETAG, value);
            }
            return Ok(response);
        }
        // Woken by a decision of this replica, or every 5 s for those of other replicas and for windows.
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// An agent's heartbeat, sent on every poll: commit, health, version, sync status, last result.
#[utoipa::path(post, path = "/api/v1/agent/heartbeat", tag = "agents", security(("bearer" = [])),
    request_body = Heartbeat,
    responses((status = 204, description = "recorded"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn agent_heartbeat(
    caller: Caller,
    State(c): State<Arc<Controller>>,
    bytes: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let environment = caller.agent_environment("sends heartbeats")?;
    let mut b: Heartbeat = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.to_string()))?;
    // Bounded: a heartbeat is a status line, not a log.
    b.drifted.truncate(100);
    for text in b.drifted.iter_mut().chain(b.restored.iter_mut()).chain(b.last_result.iter_mut()) {
        *text = text.chars().take(500).collect();
    }
    if let Some(id) = &b.deployment {
        refuse_other_environment(&c, &caller, &environment, id, "heartbeat").await?;
    }
    c.fleet().agent_heartbeat(&caller.0.name, &environment, &b, chrono::Utc::now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An agent naming a deployment of another environment (a misconfigured agent, or a stolen token
/// probing) is refused with 403, and the attempt is audited.
async fn refuse_other_environment(
    c: &Controller,
    caller: &Caller,
    environment: &str,
    deployment: &str,
    what: &str,
) -> Result<(), ApiError> {
    let Some(d) = c.views().deployment(deployment).await? else { return Ok(()) };
    if d.environment == environment {
        return Ok(());
    }
    let message = format!(
        "agent `{}` of `{environment}` sent a {what} naming {}, a deployment of `{}`; refused",
        caller.0.name, d.id, d.environment
    );
    let action = format!("agent.{what}.forbidden");
    c.decisions()
        .record_refusal(&caller.0.name, &action, &d.id, Some(environment), &message, crate::store::now_ms())
        .await?;
    tracing::warn!(agent = %caller.0.name, environment, deployment = %d.id, "{message}");
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("{} deploys `{}`; this agent serves `{environment}`", d.id, d.environment),
    ))
}

/// An agent reports a phase of a deployment of its environment. Idempotent: a re-sent report is
/// accepted and changes nothing.
#[utoipa::path(post, path = "/api/v1/agent/report", tag = "agents", security(("bearer" = [])),
    request_body = PhaseReport,
    responses((status = 200, description = "the deployment after the report", body = DeploymentSummary),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn agent_report(
    caller: Caller,
    State(c): State<Arc<Controller>>,
    bytes: axum::body::Bytes,
) -> Result<Json<DeploymentSummary>, ApiError> {
    let b: PhaseReport = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.to_string()))?;
    let environment = caller.agent_environment("reports deployments")?;
    refuse_other_environment(&c, &caller, &environment, &b.deployment, "report").await?;
    let phase = match b.phase {
        ReportedPhase::Known(phase) => phase,
        ReportedPhase::Unknown(name) => {
            let known: Vec<&str> = Phase::ALL.iter().map(|p| p.as_str()).collect();
            let message = format!("`{name}` is not a phase; use one of {}", known.join(", "));
            return Err(DecisionError::BadReport(message).into());
        }
    };
    let d = c
        .fleet()
        .agent_report(&caller.0.name, &environment, &b.deployment, phase, &b.message, chrono::Utc::now())
        .await?;
    // An agent's report never waits for GitHub or the ledger.
    mirror_later(&c, &d.repository);
    Ok(Json(DeploymentSummary::of(&d, chrono::Utc::now())))
}
