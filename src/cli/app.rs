//! `honua app create --manifest FILE`: GitHub's "register an App from a manifest" flow, end to end. A
//! page on loopback posts the manifest to GitHub (the App is created under the signed-in account or
//! `--org`); GitHub redirects back with a one-time code, which is exchanged
//! (`POST /app-manifests/{code}/conversions`) for the App's id, private key and webhook secret. Those are
//! written where `honua serve` reads them: the key to `github-app.pem` and the id and webhook secret to
//! `github-app.env` (`HONUA_GITHUB_APP_ID`, `HONUA_GITHUB_WEBHOOK_SECRET`), both owner-only; nothing
//! secret is printed. Headless: `--code CODE` does the exchange alone, with a code copied from the
//! redirect.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

#[derive(clap::Args, Debug)]
pub struct AppCreateArgs {
    /// The App manifest (`deploy/github/app-manifest.json` has what the service needs).
    #[arg(long)]
    pub manifest: PathBuf,
    /// Create the App under this organization instead of the signed-in account.
    #[arg(long)]
    pub org: Option<String>,
    /// The service's public URL: the App's homepage and its webhook (`<URL>/webhooks/github`).
    #[arg(long, env = "HONUA_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Where the loopback page listens for GitHub's redirect.
    #[arg(long, default_value = "127.0.0.1:8765")]
    pub listen: SocketAddr,
    /// Skip the browser: exchange a code copied from GitHub's redirect (`…?code=CODE`).
    #[arg(long)]
    pub code: Option<String>,
    /// Where to write `github-app.pem` and `github-app.env`.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// GitHub's web address (GitHub Enterprise Server: `https://HOST`).
    #[arg(long, default_value = "https://github.com")]
    pub github_url: String,
    /// GitHub's API (GitHub Enterprise Server: `https://HOST/api/v3`).
    #[arg(long, env = "HONUA_GITHUB_API_URL", default_value = "https://api.github.com")]
    pub api_url: String,
}

/// GitHub's answer to the code exchange (only what is kept).
#[derive(Deserialize)]
struct Conversion {
    id: u64,
    slug: String,
    html_url: String,
    pem: String,
    webhook_secret: Option<String>,
}

pub fn create(args: AppCreateArgs) -> Result<std::process::ExitCode> {
    let text = std::fs::read_to_string(&args.manifest)
        .with_context(|| format!("cannot read the manifest {}", args.manifest.display()))?;
    let mut manifest: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!("{}: not JSON; start from deploy/github/app-manifest.json", args.manifest.display())
    })?;
    if !manifest.is_object() {
        bail!("{}: a manifest is a JSON object; start from deploy/github/app-manifest.json", args.manifest.display());
    }
    if let Some(public) = &args.public_url {
        let public = public.trim_end_matches('/');
        manifest["url"] = public.into();
        manifest["hook_attributes"]["url"] = format!("{public}/webhooks/github").into();
    }
    manifest["redirect_url"] = format!("http://{}/callback", args.listen).into();
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let code = match &args.code {
            Some(code) => code.clone(),
            None => browser_flow(&args, &manifest).await?,
        };
        let app = exchange(&args.api_url, &code).await?;
        write_credentials(&args.out, &app)?;
        eprintln!(
            "Created the GitHub App `{}` (id {}): {}\nWrote {} and {} (owner-only). Next: install the App on the config \
             repository ({}/installations/new), then run `honua serve` with the variables of github-app.env and \
             HONUA_GITHUB_PRIVATE_KEY_PATH={}.",
            app.slug,
            app.id,
            app.html_url,
            args.out.join("github-app.pem").display(),
            args.out.join("github-app.env").display(),
            app.html_url,
            args.out.join("github-app.pem").display(),
        );
        Ok(std::process::ExitCode::SUCCESS)
    })
}

/// Serves the page that posts the manifest to GitHub, and waits for GitHub's redirect with the code.
async fn browser_flow(args: &AppCreateArgs, manifest: &serde_json::Value) -> Result<String> {
    let mut state = [0u8; 16];
    getrandom::fill(&mut state).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    let state = hex::encode(state);
    let target = match &args.org {
        Some(org) => format!("{}/organizations/{org}/settings/apps/new?state={state}", args.github_url),
        None => format!("{}/settings/apps/new?state={state}", args.github_url),
    };
    let page = maud::html! {
        (maud::DOCTYPE)
        html {
            head { title { "Create the Honua GitOps GitHub App" } }
            body onload="document.forms[0].submit()" {
                form method="post" action=(target) {
                    input type="hidden" name="manifest" value=(manifest.to_string());
                    p { "Sending the App manifest to GitHub… " button type="submit" { "Continue" } }
                }
            }
        }
    }
    .into_string();
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<String>(1);
    let expected = state.clone();
    let app =
        axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(page) })).route(
            "/callback",
            axum::routing::get(move |axum::extract::Query(q): axum::extract::Query<Callback>| {
                let (sender, expected) = (sender.clone(), expected.clone());
                async move {
                    if q.state.as_deref() != Some(expected.as_str()) {
                        return (
                            axum::http::StatusCode::BAD_REQUEST,
                            "this redirect is not from the flow started here",
                        );
                    }
                    let Some(code) = q.code else {
                        return (axum::http::StatusCode::BAD_REQUEST, "GitHub's redirect carried no code");
                    };
                    let _ = sender.send(code).await;
                    (
                        axum::http::StatusCode::OK,
                        "The App is created; honua is storing its credentials. You may close this window.",
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}; choose another with --listen", args.listen))?;
    eprintln!(
        "Open http://{}/ in a browser signed in to GitHub: it sends the manifest to GitHub, which creates the App \
         and comes back here. (Waiting; Ctrl-C to stop.)",
        args.listen
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let code = receiver.recv().await.context("the loopback page stopped before GitHub came back")?;
    server.abort();
    Ok(code)
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
}

async fn exchange(api_url: &str, code: &str) -> Result<Conversion> {
    if code.is_empty() || !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        bail!("`{code}` is not a code from GitHub's redirect (letters, digits, - and _)");
    }
    let url = format!("{}/app-manifests/{code}/conversions", api_url.trim_end_matches('/'));
    let response = reqwest::Client::builder()
        .user_agent(concat!("honua-gitops/", env!("CARGO_PKG_VERSION")))
        .timeout(std::time::Duration::from_secs(30))
        .build()?
        .post(&url)
        .header("accept", "application/vnd.github+json")
        .send()
        .await
        .with_context(|| format!("cannot reach {api_url}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!(
            "GitHub refused the code ({status}): a code works once and for an hour; start again with `honua app create`"
        );
    }
    response.json().await.context("GitHub's answer to the code exchange is not what its documentation describes")
}

/// Writes the key and the settings owner-only (created so, never widened later), each fsynced.
fn write_credentials(out: &Path, app: &Conversion) -> Result<()> {
    let env = format!(
        "# The GitHub App `{}` ({}); keep this file secret.\nHONUA_GITHUB_APP_ID={}\nHONUA_GITHUB_WEBHOOK_SECRET={}\n",
        app.slug,
        app.html_url,
        app.id,
        app.webhook_secret.as_deref().unwrap_or_default()
    );
    for (name, content) in [("github-app.pem", app.pem.as_str()), ("github-app.env", env.as_str())] {
        let path = out.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).with_context(|| {
            format!("cannot create {} (it must not exist yet: move the old one away first)", path.display())
        })?;
        file.write_all(content.as_bytes())?;
        file.sync_all()?;
    }
    Ok(())
}
