//! A Git smart-HTTP server for tests: Git's own `git http-backend` run as a CGI program behind a small
//! axum server on loopback, refusing every request that does not carry `x-access-token:<token>` basic
//! credentials, as github.com does for a private repository.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncWriteExt;

#[derive(Clone)]
struct Backend {
    root: PathBuf,
    expected_auth: String,
    /// Requests that came with the right credentials: a test can see Git really used HTTP.
    authorised: Arc<Mutex<usize>>,
}

pub struct GitHttp {
    pub url: String,
    authorised: Arc<Mutex<usize>>,
}

impl GitHttp {
    /// Serves the repositories under `root` at `{url}/<path>`.
    pub async fn start(root: PathBuf, token: &str) -> GitHttp {
        use base64::Engine;
        let authorised = Arc::new(Mutex::new(0));
        let backend = Backend {
            root,
            expected_auth: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
            ),
            authorised: authorised.clone(),
        };
        let app = axum::Router::new().fallback(serve).with_state(backend);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        GitHttp { url, authorised }
    }

    pub fn authorised_requests(&self) -> usize {
        *self.authorised.lock().unwrap()
    }
}

async fn serve(State(backend): State<Backend>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if parts.headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(backend.expected_auth.as_str()) {
        let mut response = (StatusCode::UNAUTHORIZED, "credentials required").into_response();
        response.headers_mut().insert("www-authenticate", HeaderValue::from_static("Basic realm=\"git\""));
        return response;
    }
    *backend.authorised.lock().unwrap() += 1;
    let body = to_bytes(body, 64 << 20).await.unwrap();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &backend.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("git http-backend runs");
    let mut stdin = child.stdin.take().unwrap();
    tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let output = child.wait_with_output().await.unwrap();
    cgi_response(&output.stdout)
}

/// A CGI answer: header lines, a blank line, the body; `Status:` sets the status.
fn cgi_response(out: &[u8]) -> Response {
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    let split = split.or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (end, gap) = split.expect("CGI headers");
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    for line in String::from_utf8_lossy(&out[..end]).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            status = StatusCode::from_u16(value[..3].parse().unwrap()).unwrap();
        } else {
            headers.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
    }
    let mut response = Response::new(Body::from(out[end + gap..].to_vec()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
