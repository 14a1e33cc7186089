//! A stand-in Honua server for tests and `honua demo`, modelled on Honua's own source: the JSON era,
//! Honua.Server `f210059` (`../shared/honua/REAL-SERVER.md` §1-4). It refuses what the real one refuses,
//! in the order its middleware pipeline does (`Extensions/WebApplicationExtensions.cs`,
//! `UseHonuaMiddlewarePipeline`):
//!
//! 1. `Middleware/LegacyApiRedirectMiddleware.cs`: an un-versioned `/admin`, `/ogc`, `/api`, `/stac`,
//!    `/records`, `/wfs`, … path answers 308 to `/v1{path}` (problem+json), unless
//!    `ApiVersioning:AllowLegacyUrls` is false ([`HonuaSettings::allow_legacy_urls`]).
//! 2. Routing: the admin routes exist only under `/v1` (`Extensions/VersionedEndpointExtensions.cs`).
//! 3. Authentication and authorization (`Extensions/AuthenticationExtensions.cs`): with
//!    `honua:authentication:enforce`, `RequireAdministrator` wants a bearer JWT or HTTP Basic
//!    (`Authentication/LocalBasicAuthenticationHandler.cs`: over HTTPS only, challenge `Basic
//!    realm="Honua"`) with the `administrator` role: 401 with challenges when unauthenticated, 403 for
//!    another role. QuickStart mode requires nothing here (see 5).
//! 4. `Middleware/CsrfValidationMiddleware.cs`: a POST outside `/healthz`, `/livez`, `/readyz`,
//!    `/metrics`, `/swagger`, `/api-docs` without an `X-API-Key` header is 403 "CSRF Token Validation
//!    Failed".
//! 5. In QuickStart mode every admin endpoint answers a bare 401: an endpoint filter on the group
//!    (`Metadata/MetadataAdministrationEndpointRouteBuilderExtensions.cs`), so it comes after CSRF, an
//!    unknown admin path stays a 404, and a snapshot body that is not read stays a 415 or 400 (the
//!    minimal API reads the body before it runs filters).
//!
//!    The endpoints: `POST /v1/admin/metadata/reload` (200 `{"status":"reloaded"}`; metadata Honua
//!    refuses is a 500 problem+json, "An unexpected error occurred while processing your request.", and
//!    the previous snapshot stays: `Metadata/MetadataRegistry.cs`,
//!    `ExceptionHandlers/GlobalExceptionHandler.cs`); `GET|POST /v1/admin/metadata/snapshots`,
//!    `GET …/snapshots/{label}`, `POST …/snapshots/{label}/restore`
//!    (`Metadata/Snapshots/FileMetadataSnapshotStore.cs`: the metadata file copied to
//!    `<dir of the metadata path>/<stem>-snapshots/<label>/`, the path not resolved, so through `current`
//!    into the live release; a body without a JSON content type is a bare 415, one that does not bind a
//!    bare 400, as `RequestDelegateFactory.TryReadBodyAsync` answers); `POST /api/auth/local/login`
//!    (`Authentication/LocalAuthController.cs`: `{token, roles}`, a uniform 401, a body that does not
//!    bind or validate a 400 in any mode, then 503 outside Local mode; un-versioned, so with legacy
//!    redirects on it is redirected to `/v1/api/auth/local/login`, where no route exists); local tokens
//!    are HS256 JWTs that expire after `Local:SessionLifetime`, 30 minutes
//!    (`Authentication/LocalTokenService.cs`); `GET /healthz/ready` (200 Healthy, 503 Unhealthy);
//!    `GET /v1/ogc/collections` and `GET /v1/ogc/collections/{id}` by Honua's collection rule
//!    (`crate::config::served`). Request bodies bind as ASP.NET Core's do (.NET 9): property names match
//!    without case.
//!
//! **Configuration 2.0** ([`HonuaSettings::configuration_2_0`]): Honua.Server at HEAD (`00710654`,
//! REAL-SERVER.md §6). It reads one HCL file (`HONUA_CONFIG_PATH`, here `<dir>/honua.config.hcl`) with
//! `HclParser` and `ConfigurationProcessor` (a parse error, an unknown setting or an undefined `var.x`
//! is refused and the previous configuration stays); `HclConfigurationWatcher` re-reads it after a
//! change seen in its directory and 500 ms of quiet (a `FileSystemWatcher` on the directory as it was
//! resolved at start, so a swapped parent link is never seen); `POST /v1/admin/metadata/reload`
//! answers 200 and rebuilds from what is held, reading nothing from disk; the snapshot routes are gone
//! (404, "Metadata snapshot store removed"); collections are `HclMetadataProvider`'s
//! ([`crate::config::hcl::served_collections`]). Deviation: the watcher runs even when the file does not
//! exist yet, where Honua's throws at start and a restart is needed.
//!
//! Metadata Honua refuses is what this project's validator reports as errors (its errors are Honua's
//! refusals; stricter checks are warnings). Deviations, for tests: [`StandIn::start`] listens before a
//! metadata file exists (answering 503 on readiness) where Honua would not start at all;
//! [`StandIn::start_when`] models the real start-up. Switches make it fail reloads, turn unhealthy, hang,
//! or hide a collection. Not modelled: OIDC, browsers' antiforgery tokens, rate limits, the JSON schema
//! of `/admin/metadata/validate`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use crate::config::node::Node;

/// Honua's authentication mode (`honua:authentication:mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Admin routes answer 401 to everyone; the local login answers 503.
    QuickStart,
    /// Local users; with `enforce`, admin routes need an administrator.
    Local { enforce: bool },
}

/// A local Honua user.
#[derive(Debug, Clone)]
pub struct LocalUser {
    pub name: String,
    pub password: String,
    pub roles: Vec<String>,
}

/// The appsettings the stand-in honours.
#[derive(Debug, Clone)]
pub struct HonuaSettings {
    pub mode: AuthMode,
    /// `ApiVersioning:AllowLegacyUrls` (Honua's default: true).
    pub allow_legacy_urls: bool,
    /// Reached over HTTPS (or from a trusted proxy that terminates it): HTTP Basic is accepted.
    pub https: bool,
    /// `honua:authentication:local:sessionLifetime` (Honua's default: 30 minutes).
    pub session_lifetime: Duration,
    pub users: Vec<LocalUser>,
    /// Configuration 2.0 (Honua at HEAD): the HCL file name in the stand-in's directory. `None`: the
    /// JSON era, `<dir>/current/metadata.json`.
    pub hcl_file: Option<String>,
}

/// The administrator [`HonuaSettings::supported`] creates, and [`StandIn::serving`] gives the agent.
pub const ADMIN_USER: &str = "honua-agent";
pub const ADMIN_PASSWORD: &str = "stand-in-admin-password";

impl HonuaSettings {
    /// Honua as the README's "Supported Honua servers" configures it for the agent: Local mode,
    /// enforced, one administrator, and `ApiVersioning:AllowLegacyUrls: false` (so the un-versioned local
    /// login is reachable).
    pub fn supported() -> HonuaSettings {
        HonuaSettings {
            mode: AuthMode::Local { enforce: true },
            allow_legacy_urls: false,
            https: false,
            session_lifetime: Duration::from_secs(30 * 60),
            users: vec![LocalUser {
                name: ADMIN_USER.into(),
                password: ADMIN_PASSWORD.into(),
                roles: vec!["administrator".into()],
            }],
            hcl_file: None,
        }
    }

    /// Honua at HEAD, reading Configuration 2.0 from `<dir>/honua.config.hcl` (the name Honua looks for
    /// and the agent writes by default), otherwise as [`HonuaSettings::supported`].
    pub fn configuration_2_0() -> HonuaSettings {
        HonuaSettings { hcl_file: Some("honua.config.hcl".into()), ..HonuaSettings::supported() }
    }

    /// Honua's own defaults: as [`HonuaSettings::supported`], but un-versioned paths are redirected.
    pub fn shipped() -> HonuaSettings {
        HonuaSettings { allow_legacy_urls: true, ..HonuaSettings::supported() }
    }
}

/// The stand-in's state: what it loaded, counters, switches.
pub struct Honua {
    pub settings: HonuaSettings,
    /// The metadata loaded by the last successful reload (or at start), as parsed.
    pub loaded: Option<Value>,
    /// The collections the loaded metadata serves, worked out once per load (Honua builds its catalog
    /// at load too): every collection request would otherwise walk all the layers again.
    served: Vec<String>,
    /// `served`, lowercased, for the by-id lookup (ids are matched ignoring ASCII case).
    served_ids: std::collections::HashSet<String>,
    pub reloads: u32,
    /// Configuration 2.0: loads made by the file watcher.
    pub watcher_loads: u32,
    pub snapshots: u32,
    pub logins: u32,
    /// Every request: method, path, whether it carried `X-API-Key`, and the `Authorization` scheme.
    pub requests: Vec<(String, String, bool, Option<String>)>,
    /// Tokens issued, and those revoked (an administrator ended the sessions).
    issued: Vec<String>,
    revoked: std::collections::HashSet<String>,
    pub fail_reloads: bool,
    pub unhealthy: bool,
    pub hide_collection: Option<String>,
    /// A collection every later load keeps serving whatever the metadata says: a reload that does not
    /// drop a layer the new metadata removed.
    pub keep_collection: Option<String>,
    /// Every request waits this long before it is answered (a hung server).
    pub hang: Option<Duration>,
    /// The metadata file (`honua:metadata:path`), through `current`.
    metadata_path: PathBuf,
    signing_key: Vec<u8>,
}

#[derive(Clone)]
pub struct StandIn {
    pub url: String,
    pub state: Arc<Mutex<Honua>>,
}

const LEGACY_PREFIXES: [&str; 14] = [
    "/ogc",
    "/stac",
    "/api",
    "/records",
    "/carto",
    "/wms",
    "/wfs",
    "/wmts",
    "/wcs",
    "/csw",
    "/print",
    "/raster",
    "/openrosa",
    "/admin",
];
const CSRF_EXCLUDED: [&str; 6] = ["/healthz", "/livez", "/readyz", "/metrics", "/swagger", "/api-docs"];

fn problem(status: StatusCode, title: &str, detail: &str, instance: &str) -> Response {
    let body = json!({
        "type": "https://tools.ietf.org/html/rfc7231",
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "instance": instance,
    });
    (status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response()
}

/// How ASP.NET Core binds a JSON body (System.Text.Json's web defaults, .NET 9): property names match
/// without case and unknown ones are ignored; a body that is not a JSON object, or a property of the
/// wrong type, does not bind (400). `T`'s fields are named in lower case. A body sent without a JSON
/// content type is not read at all (415): `json_types` says which the endpoint reads.
fn bind_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    json_types: fn(&str) -> bool,
) -> Result<T, StatusCode> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    if !essence.is_some_and(|t| json_types(&t)) {
        return Err(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let object: serde_json::Map<String, Value> = serde_json::from_slice(body).map_err(|_| StatusCode::BAD_REQUEST)?;
    serde_json::from_value(Value::Object(object.into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect()))
        .map_err(|_| StatusCode::BAD_REQUEST)
}

/// A minimal API's JSON body (`HttpRequestJsonExtensions.HasJsonContentType`): `application/json` or
/// any `+json` type.
fn minimal_api_json(essence: &str) -> bool {
    essence == "application/json" || essence.ends_with("+json")
}

/// A controller's (`SystemTextJsonInputFormatter`): `application/json`, `text/json`, `application/*+json`.
fn controller_json(essence: &str) -> bool {
    matches!(essence, "application/json" | "text/json")
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// `LocalAuthController.LocalLoginRequest`: both `[Required]`, with lengths; absent reads as empty
/// here, which the length check refuses as `[Required]` would.
#[derive(Debug, Default, serde::Deserialize)]
struct LocalLoginRequest {
    username: Option<String>,
    password: Option<String>,
}

/// The snapshot route's `SnapshotCreateRequest?` parameter: no body (`Content-Length: 0`), or `null`, is a
/// request without label or notes. The minimal API does not throw outside Development: a failure is a
/// bare status.
fn snapshot_request(headers: &HeaderMap, body: &[u8]) -> Result<SnapshotCreateRequest, StatusCode> {
    if body.is_empty() {
        return Ok(SnapshotCreateRequest::default());
    }
    match bind_json(headers, body, minimal_api_json) {
        Err(StatusCode::BAD_REQUEST) if body.trim_ascii() == b"null" => Ok(SnapshotCreateRequest::default()),
        bound => bound,
    }
}

/// `MetadataAdministrationEndpointRouteBuilderExtensions.SnapshotCreateRequest(string? Label, string? Notes)`.
#[derive(Debug, Default, serde::Deserialize)]
struct SnapshotCreateRequest {
    label: Option<String>,
    notes: Option<String>,
}

fn starts_with_segment(path: &str, prefix: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower == prefix || lower.starts_with(&format!("{prefix}/"))
}

/// Why Honua would refuse its metadata file: what its reload answers with (a 500 problem).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    sub: String,
    /// Random per token, as Honua's `LocalTokenService` writes one: two logins never share a token.
    jti: String,
    iss: String,
    aud: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    honua_role: Vec<String>,
}

/// Who a request is, after authentication.
enum Identity {
    Anonymous,
    /// A scheme was sent and failed: 401 with challenges.
    Failed,
    User(Vec<String>),
}

impl Honua {
    fn issue_token(&self, user: &LocalUser) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut jti = [0u8; 16];
        let _ = getrandom::fill(&mut jti);
        let claims = Claims {
            sub: user.name.clone(),
            jti: hex::encode(jti),
            iss: "honua-local".into(),
            aud: "honua-local".into(),
            iat: now,
            nbf: now,
            exp: now + self.settings.session_lifetime.as_secs() as i64,
            honua_role: user.roles.clone(),
        };
        let key = jsonwebtoken::EncodingKey::from_secret(&self.signing_key);
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key)
            .expect("an HS256 token encodes")
    }

    fn authenticate(&self, headers: &HeaderMap) -> Identity {
        let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return Identity::Anonymous;
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
            validation.set_issuer(&["honua-local"]);
            validation.set_audience(&["honua-local"]);
            validation.leeway = 0;
            let key = jsonwebtoken::DecodingKey::from_secret(&self.signing_key);
            return match jsonwebtoken::decode::<Claims>(rest.trim(), &key, &validation) {
                Ok(t) if !self.revoked.contains(rest.trim()) => Identity::User(t.claims.honua_role),
                _ => Identity::Failed,
            };
        }
        if scheme.eq_ignore_ascii_case("basic") {
            // LocalBasicAuthenticationHandler: HTTPS only, Local mode only.
            if !self.settings.https || !matches!(self.settings.mode, AuthMode::Local { .. }) {
                return Identity::Failed;
            }
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).unwrap_or_default();
            let text = String::from_utf8_lossy(&decoded);
            let Some((name, password)) = text.split_once(':') else { return Identity::Failed };
            return match self.settings.users.iter().find(|u| u.name == name && u.password == password) {
                Some(user) => Identity::User(user.roles.clone()),
                None => Identity::Failed,
            };
        }
        Identity::Anonymous
    }

    /// Reads the metadata file as Honua's reload does; `Err` when Honua would refuse it.
    fn load(&self) -> Result<(Value, Node), Refused> {
        if self.settings.hcl_file.is_some() {
            return load_hcl_file(&self.metadata_path);
        }
        let file = crate::config::load_single_file(&self.metadata_path).map_err(|e| Refused(e.to_string()))?;
        let errors: Vec<String> = crate::validate::validate_single(&file)
            .into_iter()
            .filter(crate::validate::refused_by_honua)
            .map(|d| d.message)
            .collect();
        if !errors.is_empty() {
            return Err(Refused(errors.join("; ")));
        }
        let node = file.metadata.ok_or_else(|| Refused("the metadata file is empty".into()))?;
        let text = std::fs::read(&self.metadata_path).map_err(|e| Refused(e.to_string()))?;
        let value = serde_json::from_slice(&text).map_err(|e| Refused(format!("not JSON: {e}")))?;
        Ok((value, node))
    }

    /// What a successful load serves from now on.
    fn set_loaded(&mut self, value: Value, node: &Node) {
        self.served = if self.settings.hcl_file.is_some() {
            crate::config::hcl::served_collections(node)
        } else {
            crate::config::served::collections(node)
        };
        self.served_ids = self.served.iter().map(|id| id.to_ascii_lowercase()).collect();
        if let Some(kept) = &self.keep_collection {
            if self.served_ids.insert(kept.to_ascii_lowercase()) {
                self.served.push(kept.clone());
            }
        }
        self.loaded = Some(value);
    }

    fn collections(&self) -> impl Iterator<Item = &String> {
        self.served.iter().filter(|id| !self.hidden(id))
    }

    fn serves(&self, id: &str) -> bool {
        self.served_ids.contains(&id.to_ascii_lowercase()) && !self.hidden(id)
    }

    fn hidden(&self, id: &str) -> bool {
        self.hide_collection.as_deref().is_some_and(|hidden| hidden.eq_ignore_ascii_case(id))
    }

    fn snapshots_root(&self) -> PathBuf {
        let stem = self.metadata_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        self.metadata_path.parent().unwrap_or(&self.metadata_path).join(format!("{stem}-snapshots"))
    }

    /// `FileMetadataSnapshotStore.CreateAsync`: the file copied under a sanitized, unique label.
    fn create_snapshot(&mut self, request: SnapshotCreateRequest) -> Response {
        if !self.metadata_path.exists() {
            return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "Metadata file not found."}))).into_response();
        }
        let requested = request.label.unwrap_or_default();
        let sanitized: String = requested
            .trim()
            .chars()
            .filter_map(|c| match c {
                c if c.is_whitespace() => Some('-'),
                '/' | '\\' | '\0' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => None,
                c => Some(c),
            })
            .collect();
        let label = if sanitized.is_empty() {
            format!("snapshot-{}", chrono::Utc::now().format("%Y%m%d%H%M%S"))
        } else {
            sanitized
        };
        let root = self.snapshots_root();
        let mut folder = label.clone();
        let mut counter = 1;
        while root.join(&folder).exists() {
            folder = format!("{label}-{counter}");
            counter += 1;
        }
        let dir = root.join(&folder);
        let copied =
            std::fs::create_dir_all(&dir).and_then(|_| std::fs::copy(&self.metadata_path, dir.join("metadata.json")));
        let size = match copied {
            Ok(size) => size,
            Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", &e.to_string(), ""),
        };
        use sha2::Digest as _;
        let checksum =
            hex::encode_upper(sha2::Sha256::digest(std::fs::read(dir.join("metadata.json")).unwrap_or_default()));
        let descriptor = json!({
            "label": folder,
            "createdAtUtc": chrono::Utc::now().to_rfc3339(),
            "sizeBytes": size,
            "notes": request.notes,
            "checksum": checksum,
        });
        let _ = std::fs::write(dir.join("manifest.json"), descriptor.to_string());
        self.snapshots += 1;
        let location = format!("/admin/metadata/snapshots/{folder}");
        (StatusCode::CREATED, [(header::LOCATION, location)], axum::Json(json!({ "snapshot": descriptor })))
            .into_response()
    }
}

type Shared = Arc<Mutex<Honua>>;

/// The whole pipeline, in Honua's order (see the module header).
async fn pipeline(
    axum::extract::State(state): axum::extract::State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let delay = state.lock().expect("stand-in state").hang;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut s = state.lock().expect("stand-in state");
    let path = uri.path().to_string();
    let scheme = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_whitespace().next())
        .map(str::to_string);
    s.requests.push((method.to_string(), path.clone(), headers.contains_key("x-api-key"), scheme));
    if s.requests.len() > 10_000 {
        s.requests.drain(..5_000);
    }

    // 1. Legacy redirect.
    let versioned = path.len() > 2
        && path[1..].to_ascii_lowercase().starts_with('v')
        && path[2..].chars().next().is_some_and(|c| c.is_ascii_digit());
    if s.settings.allow_legacy_urls
        && !versioned
        && LEGACY_PREFIXES.iter().any(|p| path.to_ascii_lowercase().starts_with(p))
    {
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        let location = format!("/v1{path}{query}");
        let body = json!({
            "type": "https://tools.ietf.org/html/rfc7538",
            "title": "API Endpoint Moved Permanently",
            "status": 308,
            "detail": format!("This endpoint has moved to /v1{path}. Please update your client to use versioned URLs."),
            "instance": path,
            "newLocation": location,
        });
        return (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location), (header::CONTENT_TYPE, "application/problem+json".to_string())],
            body.to_string(),
        )
            .into_response();
    }

    // 2. Routing.
    let lower = path.to_ascii_lowercase();
    let admin = lower.strip_prefix("/v1/admin/metadata").map(str::to_string);
    let login = lower == "/api/auth/local/login";
    let known = admin.is_some()
        || login
        || lower == "/healthz/ready"
        || lower == "/v1/ogc/collections"
        || lower.starts_with("/v1/ogc/collections/");
    if !known {
        return StatusCode::NOT_FOUND.into_response();
    }

    // 3. Authentication and authorization (admin routes; QuickStart's filter runs at the endpoint).
    if admin.is_some() {
        match s.settings.mode {
            AuthMode::QuickStart => {}
            AuthMode::Local { enforce } => match (s.authenticate(&headers), enforce) {
                (Identity::User(roles), _) if !roles.iter().any(|r| r == "administrator") => {
                    return StatusCode::FORBIDDEN.into_response()
                }
                (Identity::User(_), _) | (Identity::Anonymous, false) => {}
                (Identity::Failed, _) | (Identity::Anonymous, true) => {
                    let mut response = StatusCode::UNAUTHORIZED.into_response();
                    let challenges = response.headers_mut();
                    challenges.append(header::WWW_AUTHENTICATE, "Bearer".parse().expect("a header value"));
                    challenges.append(
                        header::WWW_AUTHENTICATE,
                        "Basic realm=\"Honua\", charset=\"UTF-8\"".parse().expect("a header value"),
                    );
                    return response;
                }
            },
        }
    }

    // 4. CSRF.
    let safe = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE);
    let excluded = CSRF_EXCLUDED.iter().any(|p| starts_with_segment(&path, p));
    if !safe && !excluded && !headers.contains_key("x-api-key") {
        return problem(
            StatusCode::FORBIDDEN,
            "CSRF Token Validation Failed",
            "The CSRF token is missing, invalid, or expired. Please refresh the page and try again.",
            &path,
        );
    }

    // 5. Endpoints.
    if login {
        if method != Method::POST {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        // `[ApiController]` validates the bound body before the action runs, so a bad body is a 400 in
        // every mode; only then does `Login` look at the mode.
        let request = match bind_json::<LocalLoginRequest>(&headers, &body, controller_json) {
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE) if !body.is_empty() => {
                return problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type", "", &path)
            }
            bound => bound.unwrap_or_default(),
        };
        let (name, password) = (request.username.unwrap_or_default(), request.password.unwrap_or_default());
        if !(3..=256).contains(&name.chars().count()) || !(8..=128).contains(&password.chars().count()) {
            return problem(
                StatusCode::BAD_REQUEST,
                "One or more validation errors occurred.",
                "Username must be between 3 and 256 characters; password between 8 and 128",
                &path,
            );
        }
        if !matches!(s.settings.mode, AuthMode::Local { .. }) {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "Local authentication disabled",
                "Local authentication is not enabled on this server.",
                &path,
            );
        }
        let user = s.settings.users.iter().find(|u| u.name == name && u.password == password).cloned();
        return match user {
            Some(user) => {
                s.logins += 1;
                let token = s.issue_token(&user);
                s.issued.push(token.clone());
                axum::Json(json!({ "token": token, "roles": user.roles })).into_response()
            }
            None => problem(
                StatusCode::UNAUTHORIZED,
                "Authentication failed",
                "Authentication failed. Verify your credentials and try again.",
                &path,
            ),
        };
    }
    if lower == "/healthz/ready" {
        let healthy = s.loaded.is_some() && !s.unhealthy;
        let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        let body = json!({ "status": if healthy { "Healthy" } else { "Unhealthy" }, "entries": {} });
        return (status, axum::Json(body)).into_response();
    }
    if lower == "/v1/ogc/collections" {
        let list: Vec<Value> = s.collections().map(|id| json!({ "id": id, "title": id })).collect();
        return axum::Json(json!({ "collections": list, "links": [] })).into_response();
    }
    if let Some(id) = path.strip_prefix("/v1/ogc/collections/") {
        let id = percent_decode(id);
        return if s.serves(&id) {
            axum::Json(json!({ "id": id, "title": id, "links": [] })).into_response()
        } else {
            problem(StatusCode::NOT_FOUND, "Not Found", &format!("Collection '{id}' was not found."), &path)
        };
    }
    let hcl = s.settings.hcl_file.is_some();
    let route = admin.as_deref().unwrap_or_default();
    let endpoint =
        matches!((&method, route), (&Method::POST, "/reload") | (&Method::GET | &Method::POST, "/snapshots"));
    if admin.is_some() && endpoint && s.settings.mode == AuthMode::QuickStart {
        if method == Method::POST && route == "/snapshots" {
            if let Err(refused) = snapshot_request(&headers, &body) {
                return refused.into_response();
            }
        }
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match (method.clone(), route) {
        // Configuration 2.0: the reload rebuilds from the configuration held in memory.
        (Method::POST, "/reload") if hcl => {
            s.reloads += 1;
            axum::Json(json!({ "status": "reloaded" })).into_response()
        }
        (_, "/snapshots") if hcl => StatusCode::NOT_FOUND.into_response(),
        (Method::POST, "/reload") => {
            s.reloads += 1;
            if s.fail_reloads {
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error",
                    "An unexpected error occurred while processing your request.",
                    &path,
                );
            }
            match s.load() {
                Ok((value, node)) => {
                    s.set_loaded(value, &node);
                    axum::Json(json!({ "status": "reloaded" })).into_response()
                }
                // MetadataRegistry keeps the previous snapshot; the global handler hides the cause.
                Err(cause) => {
                    tracing::info!(cause = %cause, "the stand-in Honua refused the metadata");
                    problem(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Internal Server Error",
                        "An unexpected error occurred while processing your request.",
                        &path,
                    )
                }
            }
        }
        (Method::GET, "/snapshots") => {
            let root = s.snapshots_root();
            let labels: Vec<Value> = std::fs::read_dir(&root)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .filter_map(|e| std::fs::read_to_string(e.path().join("manifest.json")).ok())
                .filter_map(|m| serde_json::from_str(&m).ok())
                .collect();
            axum::Json(json!({ "snapshots": labels })).into_response()
        }
        (Method::POST, "/snapshots") => match snapshot_request(&headers, &body) {
            Ok(request) => s.create_snapshot(request),
            Err(refused) => refused.into_response(),
        },
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `HonuaConfigLoader.Load`: what its parser or processor throws on is refused; what only
/// `honua config validate` would flag is loaded.
fn load_hcl_file(path: &std::path::Path) -> Result<(Value, Node), Refused> {
    let file = crate::config::load_single_file(path).map_err(|e| Refused(e.to_string()))?;
    let refused: Vec<String> = crate::validate::validate_single(&file)
        .into_iter()
        .filter(|d| {
            d.is_error()
                && (d.code.starts_with("file.")
                    || matches!(d.code.as_str(), "hcl.syntax" | "hcl.unknown_attribute" | "hcl.variable_undefined"))
        })
        .map(|d| d.message)
        .collect();
    if !refused.is_empty() {
        return Err(Refused(refused.join("; ")));
    }
    let node = file.metadata.ok_or_else(|| Refused("HCL content cannot be empty.".into()))?;
    Ok((node.to_json(), node))
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl StandIn {
    /// `config` pointed at this stand-in: Honua's paths under its address, its administrator by the
    /// local login (HTTP Basic when it models HTTPS).
    pub fn serving(&self, config: crate::agent::AgentConfig) -> crate::agent::AgentConfig {
        let https = self.state.lock().expect("stand-in state").settings.https;
        let (user, password) = (ADMIN_USER.to_string(), ADMIN_PASSWORD.to_string());
        let admin = if https {
            crate::agent::AdminAuth::Basic { user, password }
        } else {
            crate::agent::AdminAuth::Login { user, password }
        };
        crate::agent::AgentConfig { admin, ..config.on_honua(&self.url) }
    }

    /// Honua with [`HonuaSettings::supported`] whose metadata path is `dir/current/metadata.json`,
    /// listening at once (see the module header for how that differs from Honua's start-up).
    pub async fn start(dir: PathBuf) -> StandIn {
        StandIn::start_with(dir, HonuaSettings::supported()).await
    }

    pub async fn start_with(dir: PathBuf, settings: HonuaSettings) -> StandIn {
        StandIn::start_on("127.0.0.1:0", dir, settings).await.expect("loopback binds")
    }

    /// [`StandIn::start_with`] on a chosen address.
    pub async fn start_on(addr: &str, dir: PathBuf, settings: HonuaSettings) -> std::io::Result<StandIn> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = StandIn::state(dir, settings);
        StandIn::serve(listener, state.clone());
        Ok(StandIn { url, state })
    }

    /// Honua's real start-up on `addr`: it starts (binds, loads its metadata) only once `ready()` holds
    /// and the metadata file exists and loads, as Honua refuses to start without valid metadata
    /// (`MetadataInitializationHostedService.cs`); until then the port is closed. `ready` models the
    /// service manager (a restart command, or systemd retrying).
    pub fn start_when(
        addr: std::net::SocketAddr,
        dir: PathBuf,
        settings: HonuaSettings,
        ready: impl Fn() -> bool + Send + 'static,
    ) -> StandIn {
        let state = StandIn::state(dir, settings);
        let url = format!("http://{addr}");
        let starting = state.clone();
        tokio::spawn(async move {
            loop {
                let loaded = ready().then(|| starting.lock().expect("stand-in state").load().ok()).flatten();
                if let Some((value, node)) = loaded {
                    {
                        let mut s = starting.lock().expect("stand-in state");
                        s.set_loaded(value, &node);
                    }
                    match tokio::net::TcpListener::bind(addr).await {
                        Ok(listener) => return StandIn::serve(listener, starting),
                        Err(e) => tracing::error!(error = %e, "the stand-in Honua cannot bind {addr}"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        StandIn { url, state }
    }

    fn state(dir: PathBuf, settings: HonuaSettings) -> Shared {
        let settings_hcl = settings.hcl_file.clone();
        let mut key = vec![0u8; 32];
        let _ = getrandom::fill(&mut key);
        let mut honua = Honua {
            settings,
            loaded: None,
            served: Vec::new(),
            served_ids: Default::default(),
            reloads: 0,
            watcher_loads: 0,
            snapshots: 0,
            logins: 0,
            requests: Vec::new(),
            issued: Vec::new(),
            revoked: Default::default(),
            fail_reloads: false,
            unhealthy: false,
            hide_collection: None,
            keep_collection: None,
            hang: None,
            metadata_path: match &settings_hcl {
                Some(name) => dir.join(name),
                None => dir.join("current").join("metadata.json"),
            },
            signing_key: key,
        };
        // Honua loads its metadata at start.
        if let Ok((value, node)) = honua.load() {
            honua.set_loaded(value, &node);
        }
        let shared = Arc::new(Mutex::new(honua));
        if let Some(name) = settings_hcl {
            StandIn::watch(dir, name, shared.clone());
        }
        shared
    }

    /// `HclConfigurationWatcher`: the file's directory, resolved once, is looked at every 100 ms; a
    /// change (time, size or inode) is loaded after 500 ms without another. A refused file is logged and
    /// the configuration held stays.
    fn watch(dir: PathBuf, name: String, state: Shared) {
        let path = std::fs::canonicalize(&dir).unwrap_or(dir).join(name);
        let signature = |p: &std::path::Path| {
            std::fs::metadata(p).ok().map(|m| {
                use std::os::unix::fs::MetadataExt as _;
                (m.modified().ok(), m.len(), m.ino())
            })
        };
        tokio::spawn(async move {
            let mut seen = signature(&path);
            let mut changed_at: Option<tokio::time::Instant> = None;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let now = signature(&path);
                if now != seen {
                    seen = now;
                    changed_at = Some(tokio::time::Instant::now());
                    continue;
                }
                if changed_at.is_some_and(|t| t.elapsed() >= Duration::from_millis(500)) {
                    changed_at = None;
                    let loaded = load_hcl_file(&path);
                    let mut s = state.lock().expect("stand-in state");
                    match loaded {
                        Ok((value, node)) => {
                            s.set_loaded(value, &node);
                            s.watcher_loads += 1;
                        }
                        Err(cause) => tracing::warn!(cause = %cause, "the stand-in Honua kept its configuration"),
                    }
                }
            }
        });
    }

    fn serve(listener: tokio::net::TcpListener, state: Shared) {
        let app = Router::new().fallback(pipeline).with_state(state);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the stand-in Honua stopped");
            }
        });
    }

    /// A token of the administrator, as an operator holding one would use it (scripts, restart commands).
    pub fn admin_token(&self) -> String {
        let s = self.state.lock().expect("stand-in state");
        let admin = s.settings.users.iter().find(|u| u.roles.iter().any(|r| r == "administrator")).cloned();
        s.issue_token(&admin.expect("the stand-in has an administrator"))
    }

    /// Revokes every session token issued so far (the next admin request with one is a 401).
    pub fn revoke_sessions(&self) {
        let mut s = self.state.lock().expect("stand-in state");
        let issued = std::mem::take(&mut s.issued);
        s.revoked.extend(issued);
    }
}
