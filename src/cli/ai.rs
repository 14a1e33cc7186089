//! `honua ai` and `honua promote`: changes the tool writes, reviewed as pull requests.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Args;

use crate::author::change::{FileChange, LayerText, Scalar, Scope, Workspace};
use crate::author::intent::{self, Intent};
use crate::author::introspect::{self, TableInfo};
use crate::author::llm::{self, Llm, Proposal, Provider};
use crate::author::publish::{self, GithubAccess};
use crate::author::{new_errors, patch, promote};
use crate::config::source::RepoFiles;
use crate::config::{ConfigFormat, ConfigRepo, EnvName};
use crate::plan::{self, render};
use crate::{out, outln};

/// Where the change is made and how it is published (shared by `ai` and `promote`).
#[derive(Args, Debug, Clone)]
pub struct PublishArgs {
    /// The config repository: a Git clone (the change is made on top of its HEAD, the work tree is not
    /// touched).
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub repo: PathBuf,
    /// Print the patch and the plan; change nothing (no branch, no push, no pull request).
    #[arg(long)]
    pub dry_run: bool,
    /// The remote the branch is pushed to.
    #[arg(long, default_value = "origin")]
    pub remote: String,
    /// The branch the pull request targets (default: the branch checked out).
    #[arg(long, value_name = "BRANCH")]
    pub base: Option<String>,
    /// `owner/name` on GitHub (default: read from the remote's URL).
    #[arg(long, value_name = "OWNER/NAME", env = "HONUA_GITHUB_REPOSITORY")]
    pub github_repo: Option<String>,
}

#[derive(Args, Debug)]
#[command(after_help = "What it understands without an LLM:\n  \
    honua ai \"Add a new layer for bike lanes from table public.bike_lanes\"\n  \
    honua ai \"add a layer called lanes from public.bike_lanes to the transportation service in staging\"\n  \
    honua ai \"set the cache ttl of parcels to 10 minutes in production\"\n  \
    honua ai \"set the title of roads to \\\"Streets\\\"\"   (and: set the description of …)\n  \
    honua ai \"disable zoning\"   /   honua ai \"remove tree_canopy from staging\"\n  \
    honua ai \"add field surface to bike_lanes\"\n\n\
    With an LLM configured (ANTHROPIC_API_KEY; AZURE_OPENAI_API_KEY + AZURE_OPENAI_ENDPOINT; OPENAI_API_KEY; \
    OLLAMA_HOST, in that order), free wording is read as one of these, and a new layer's title, description \
    and keywords are proposed. Only names and types are sent: never a connection string, a password or a row.\n\n\
    A new layer is read from the database of its data source (placeholders such as ${DB_PASSWORD} from the \
    environment or --secrets-file; or --database-url), in a read-only transaction.\n\n\
    The change is validated and planned here, then committed on a branch `honua/ai-…`, pushed, and opened as \
    a pull request through the GitHub App (HONUA_GITHUB_APP_ID + HONUA_GITHUB_PRIVATE_KEY_PATH) or GITHUB_TOKEN; \
    with neither, the branch is pushed and the command says how to open the review.")]
pub struct AiArgs {
    /// What to change, in plain words.
    pub request: String,
    /// Environments to write the change for (default: those the request names, else `common/`, i.e.
    /// every environment).
    #[arg(long = "env", value_name = "ENV")]
    pub envs: Vec<String>,
    /// The service a new layer joins (metadata), or the one protocol service that serves it (HCL).
    #[arg(long, value_name = "ID")]
    pub service: Option<String>,
    /// The data source a new layer reads (Configuration 2.0; default: the only one).
    #[arg(long, value_name = "ID")]
    pub data_source: Option<String>,
    /// Read the table here instead of through the data source's connection string.
    #[arg(long, value_name = "URL", env = "HONUA_AI_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// `NAME=value` lines for the connection string's placeholders (before the environment).
    #[arg(long, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,
    /// Never call an LLM, even when one is configured.
    #[arg(long)]
    pub no_llm: bool,
    /// The LLM provider (default: the first configured, in this order: anthropic, azure, openai, ollama).
    #[arg(long, value_enum)]
    pub provider: Option<Provider>,
    /// The model (Azure: the deployment).
    #[arg(long)]
    pub model: Option<String>,
    /// Seconds an LLM call may take.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub llm_timeout: u64,
    #[command(flatten)]
    pub publish: PublishArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  honua promote staging production --dry-run\n  \
    honua promote staging production --only parcels --only roads\n\n\
    Every entity (catalog, service, layer, folder, style; HCL service and layer blocks) whose effective \
    configuration differs is written into TO's own file so that TO equals FROM for it: FROM's override \
    replaces TO's, or TO's is removed when FROM has none. Data sources (connection strings) and server \
    settings are never promoted; they are listed as kept. The result is proved, planned for TO, and opened \
    as a pull request as `honua ai` does.")]
pub struct PromoteArgs {
    pub from: String,
    pub to: String,
    /// Only these entities (layer, service, … ids, or `catalog`).
    #[arg(long = "only", value_name = "ID")]
    pub only: Vec<String>,
    #[command(flatten)]
    pub publish: PublishArgs,
}

/// The repository at the commit the change is made on (HEAD of a clone; the directory itself when it
/// is not a Git repository and nothing will be committed).
struct Base {
    files: RepoFiles,
    repo: ConfigRepo,
    commit: Option<String>,
}

fn load_base(args: &PublishArgs) -> Result<Base> {
    let dir = &args.repo;
    match git2::Repository::open(dir) {
        Ok(_) => {
            let rev = args.base.as_deref().unwrap_or("HEAD");
            let (commit, files) = crate::config::commit::read_commit(dir, rev)?;
            let repo = ConfigRepo::from_files(files.clone(), commit.sha.clone());
            Ok(Base { files, repo, commit: Some(commit.sha) })
        }
        Err(_) if args.dry_run => {
            let files = crate::config::source::read_dir(dir)?;
            let repo = ConfigRepo::from_files(files.clone(), "working tree".into());
            Ok(Base { files, repo, commit: None })
        }
        Err(e) => bail!(
            "{}: not a Git repository ({}); `honua ai` commits its change on a branch of the config repository's clone. Give --repo DIR, or --dry-run to only see the change",
            dir.display(),
            e.message()
        ),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn step(text: impl std::fmt::Display) {
    eprintln!("{}", crate::cli::output::terminal_safe(&format!("→ {text}")));
}

pub fn ai(args: AiArgs) -> Result<ExitCode> {
    let base = load_base(&args.publish)?;
    let known: Vec<String> = base.repo.environments().map(|e| e.to_string()).collect();
    let rt = runtime()?;
    let llm = if args.no_llm {
        None
    } else {
        Llm::from_env(args.provider, args.model.clone(), Duration::from_secs(args.llm_timeout))?
    };
    if llm.is_none() && !args.no_llm {
        step("no LLM is configured: the request is read by the built-in parser");
    }
    let mut intent = match intent::parse(&args.request, &known) {
        Ok(i) => i,
        Err(intent::IntentError::NotUnderstood(_)) if llm.is_some() => {
            let llm = llm.as_ref().expect("checked");
            step(format!("asking {} ({}) what the request means", llm.provider.name(), llm.model));
            let (services, layers) = names(&base.repo);
            let message = llm::intent_message(&args.request, &known, &services, &layers);
            let answer = rt.block_on(llm.complete(llm::INTENT_PROMPT, &message))?;
            intent::from_answer(&answer, &known, intent::table_named(&args.request).as_deref())
                .map_err(|e| anyhow::anyhow!("{}'s answer is refused: {e}. Nothing was changed", llm.provider.name()))?
        }
        Err(e) => return Err(e.into()),
    };
    if !args.envs.is_empty() {
        *intent.environments_mut() = args.envs.clone();
    }
    if let (Some(s), Intent::AddLayer { service, .. }) = (&args.service, &mut intent) {
        *service = Some(s.clone());
    }
    intent.check(&known)?;
    step(format!("understood: {}{}", intent.summary(), scope_text(&intent)));

    let mut ws = Workspace::new(&base.repo, &base.files.files);
    let mut notes: Vec<String> = Vec::new();
    let mut introspected: Option<TableInfo> = None;
    let scopes = Scope::of(&intent);
    match &intent {
        Intent::AddLayer { table, layer, service, title, .. } => {
            let (schema, name) = intent::split_table(table)?;
            let target = target_of(&base.repo, &scopes[0], service.as_deref(), args.data_source.as_deref())?;
            let info = read_table(&rt, &target, schema, name, &args)?;
            let mut target = target;
            let mut text = LayerText {
                id: layer.clone().unwrap_or_else(|| name.to_string()),
                title: title.clone().unwrap_or_else(|| title_of(name)),
                description: info.comment.clone().map(|c| one_line(&c, intent::MAX_DESCRIPTION)),
                keywords: Vec::new(),
            };
            intent::check_name("the layer id", &text.id)?;
            if let Some(llm) = &llm {
                let choose = if target.service.is_none() && base.repo.format(&target.env) == ConfigFormat::Metadata {
                    target.services.clone()
                } else {
                    Vec::new()
                };
                if let Some(p) = proposal(&rt, llm, &args.request, &info, &choose, &mut notes)? {
                    if title.is_none() {
                        text.title = p.title.unwrap_or(text.title);
                    }
                    text.description = p.description.or(text.description);
                    text.keywords = p.keywords;
                    target.service = p.service.or(target.service);
                }
            }
            if target.service.is_none() && base.repo.format(&target.env) == ConfigFormat::Metadata {
                bail!("{}", which_service(&target.env, &target.services));
            }
            for scope in &scopes {
                notes.extend(ws.add_layer(
                    scope,
                    &text,
                    &info,
                    target.service.as_deref(),
                    target.data_source.as_deref(),
                )?);
            }
            introspected = Some(info);
        }
        Intent::SetCacheTtl { layer, seconds, .. } => {
            for scope in &scopes {
                ws.set_cache_ttl(scope, layer, *seconds)?;
            }
        }
        Intent::SetTitle { layer, title, .. } => {
            for scope in &scopes {
                ws.set_layer_value(scope, layer, &["title"], Scalar::Str(title.clone()))?;
            }
        }
        Intent::SetDescription { layer, description, .. } => {
            for scope in &scopes {
                ws.set_layer_value(scope, layer, &["description"], Scalar::Str(description.clone()))?;
            }
        }
        Intent::DisableLayer { layer, .. } => {
            for scope in &scopes {
                ws.disable_layer(scope, layer)?;
            }
        }
        Intent::RemoveLayer { layer, .. } => {
            for scope in &scopes {
                ws.remove_layer(scope, layer)?;
            }
        }
        Intent::AddField { layer, field, .. } => {
            let (table, target) = layer_table(&base.repo, layer)?;
            let (schema, name) = intent::split_table(&table)
                .map_err(|_| anyhow::anyhow!("layer `{layer}` reads `{table}`, which is not `schema.table`"))?;
            let info = read_table(&rt, &target, schema, name, &args)?;
            let Some(column) = info.column(field) else {
                let have: Vec<&str> = info.columns.iter().map(|c| c.name.as_str()).collect();
                bail!("table `{table}` has no column `{field}`; its columns: {}", have.join(", "));
            };
            let path = ws.add_field(layer, column)?;
            notes.push(format!("the field is added where `{layer}` lists its fields: {path}"));
            introspected = Some(info);
        }
    }
    let changes = ws.changes();
    let mut body = String::new();
    if let Some(info) = &introspected {
        body.push_str(&introspection_markdown(info));
    }
    finish(&base, ws.files(), changes, &notes, &intent.summary(), "ai", body, &args.publish, &rt)
}

/// Asks the LLM for a new layer's title, description and keywords, and for its service among `choose`
/// when there is a choice to make. A proposal that is not of the exact shape is refused and noted (the
/// layer is then written from the request and the table); a service that was not offered ends the
/// command.
fn proposal(
    rt: &tokio::runtime::Runtime,
    llm: &Llm,
    request: &str,
    info: &TableInfo,
    choose: &[String],
    notes: &mut Vec<String>,
) -> Result<Option<Proposal>> {
    let provider = llm.provider.name();
    step(format!("asking {provider} ({}) for a title, description and keywords", llm.model));
    let message = llm::proposal_message(request, info, choose);
    let answer = rt
        .block_on(llm.complete(llm::PROPOSAL_PROMPT, &message))
        .map_err(anyhow::Error::from)
        .and_then(|answer| Ok(Proposal::from_answer(&answer)?));
    let mut proposal = match answer {
        Ok(p) => p,
        Err(e) => {
            notes.push(format!(
                "{provider}'s proposal is refused ({e}); the layer's title and description come from the request and the table"
            ));
            return Ok(None);
        }
    };
    match proposal.service.take() {
        Some(s) if choose.contains(&s) => {
            notes.push(format!("{provider} chose the service `{s}`"));
            proposal.service = Some(s);
        }
        Some(s) if !choose.is_empty() => bail!(
            "{provider}'s answer is refused: it chose the service `{s}`, which is not one of {}. Nothing was changed",
            choose.join(", ")
        ),
        // A service where none was asked for is not taken.
        _ => {}
    }
    Ok(Some(proposal))
}

fn scope_text(intent: &Intent) -> String {
    let envs = intent.environments();
    if envs.is_empty() {
        " (in common/: every environment)".into()
    } else {
        format!(" (in {})", envs.join(", "))
    }
}

/// Services (metadata) or service blocks (HCL) and layers, for the LLM: names only.
fn names(repo: &ConfigRepo) -> (Vec<String>, Vec<String>) {
    let mut services = std::collections::BTreeSet::new();
    let mut layers = std::collections::BTreeSet::new();
    for env in repo.environments() {
        let Some(eff) = repo.effective(env) else { continue };
        let m = &eff.metadata;
        for (list, set) in [("services", &mut services), ("layers", &mut layers)] {
            for item in m.get(list).and_then(|n| n.as_seq()).unwrap_or_default() {
                if let Some(id) = item.get_str("id") {
                    set.insert(id.to_string());
                }
            }
        }
        for (kind, set) in [("service", &mut services), ("layer", &mut layers)] {
            if let Some(map) = m.get(kind).and_then(|n| n.as_map()) {
                set.extend(map.iter().map(|(k, _)| k.to_string()));
            }
        }
    }
    (services.into_iter().collect(), layers.into_iter().collect())
}

/// Where a new layer goes and whose connection reads its table.
struct Target {
    /// The environment whose connection string is used.
    env: EnvName,
    service: Option<String>,
    data_source: Option<String>,
    connection: Option<String>,
    /// The services a new metadata layer may join (to choose among when none is named).
    services: Vec<String>,
}

fn which_service(env: &EnvName, ids: &[impl AsRef<str>]) -> String {
    format!(
        "which service should serve the layer? `{env}` has {}: {}. Say `… to the SERVICE service`, or give --service",
        ids.len(),
        ids.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ")
    )
}

fn target_of(repo: &ConfigRepo, scope: &Scope, service: Option<&str>, data_source: Option<&str>) -> Result<Target> {
    let env = match scope {
        Scope::Env(e) => e.clone(),
        Scope::Common => repo.environments().next().cloned().context("the repository has no environment")?,
    };
    let eff = repo.effective(&env).with_context(|| format!("environment `{env}` not found"))?;
    let m = &eff.metadata;
    match eff.format {
        ConfigFormat::Metadata => {
            let services: Vec<&crate::config::node::Node> =
                m.get("services").and_then(|n| n.as_seq()).unwrap_or_default().iter().collect();
            let ids: Vec<&str> = services.iter().filter_map(|s| s.get_str("id")).collect();
            let chosen = match service {
                Some(s) => Some(
                    services.iter().find(|n| n.get_str("id").is_some_and(|i| i.eq_ignore_ascii_case(s))).with_context(
                        || format!("there is no service `{s}` in `{env}`; services: {}", ids.join(", ")),
                    )?,
                ),
                None if services.len() == 1 => Some(&services[0]),
                None if services.is_empty() => {
                    bail!("`{env}` has no service to add the layer to; add one to the metadata first")
                }
                None => None,
            };
            // Several services and none named: the table can still be read when they share one data
            // source; the service is then chosen after (by an LLM, among these, or by the person).
            let ds_id = match chosen {
                Some(c) => c.get_str("dataSourceId").map(String::from),
                None => {
                    let sources: std::collections::BTreeSet<&str> =
                        services.iter().filter_map(|s| s.get_str("dataSourceId")).collect();
                    match sources.len() {
                        1 => sources.into_iter().next().map(String::from),
                        _ => bail!("{}", which_service(&env, &ids)),
                    }
                }
            };
            let service_id = chosen.and_then(|c| c.get_str("id")).map(String::from);
            let connection = ds_id.as_deref().and_then(|id| {
                m.get("dataSources")?
                    .as_seq()?
                    .iter()
                    .find(|d| d.get_str("id") == Some(id))?
                    .get_str("connectionString")
                    .map(String::from)
            });
            let services = ids.iter().map(|s| s.to_string()).collect();
            Ok(Target { env, service: service_id, data_source: ds_id, connection, services })
        }
        ConfigFormat::Hcl => {
            let sources: Vec<String> = m
                .get("data_source")
                .and_then(|n| n.as_map())
                .map(|d| d.iter().map(|(k, _)| k.to_string()).collect())
                .unwrap_or_default();
            let ds = match data_source {
                Some(d) if sources.iter().any(|s| s == d) => d.to_string(),
                Some(d) => bail!("there is no data_source `{d}` in `{env}`; data sources: {}", sources.join(", ")),
                None if sources.len() == 1 => sources[0].clone(),
                None if sources.is_empty() => bail!("`{env}` has no data_source for the layer to read; add one first"),
                None => {
                    bail!("which data source holds the table? `{env}` has {}; give --data-source", sources.join(", "))
                }
            };
            if let Some(s) = service {
                if m.get("service").and_then(|n| n.get(s)).is_none() {
                    bail!("there is no service `{s}` in `{env}` (Configuration 2.0 services are protocols: ogc_api, wfs, …)");
                }
            }
            let connection =
                m.get("data_source").and_then(|n| n.get(&ds)).and_then(|d| d.get_str("connection")).map(String::from);
            Ok(Target {
                env,
                service: service.map(String::from),
                data_source: Some(ds),
                connection,
                services: Vec::new(),
            })
        }
    }
}

/// The table and connection of an existing layer (for `add field`).
fn layer_table(repo: &ConfigRepo, layer: &str) -> Result<(String, Target)> {
    for env in repo.environments() {
        let Some(eff) = repo.effective(env) else { continue };
        let m = &eff.metadata;
        match eff.format {
            ConfigFormat::Metadata => {
                let Some(l) = m
                    .get("layers")
                    .and_then(|n| n.as_seq())
                    .and_then(|s| s.iter().find(|l| l.get_str("id").is_some_and(|i| i.eq_ignore_ascii_case(layer))))
                else {
                    continue;
                };
                let table = l
                    .get_path(&["storage", "table"])
                    .and_then(|n| n.as_str())
                    .context("the layer has no storage.table")?;
                let target = target_of(repo, &Scope::Env(env.clone()), l.get_str("serviceId"), None)?;
                return Ok((table.to_string(), target));
            }
            ConfigFormat::Hcl => {
                let Some(l) = m.get("layer").and_then(|n| n.get(layer)) else { continue };
                let table = l.get_str("table").context("the layer has no table")?;
                let ds = l.get_str("data_source").map(|d| d.trim_start_matches("data_source.").to_string());
                let target = target_of(repo, &Scope::Env(env.clone()), None, ds.as_deref())?;
                return Ok((table.to_string(), target));
            }
        }
    }
    bail!("there is no layer `{layer}` in any environment")
}

fn read_table(
    rt: &tokio::runtime::Runtime,
    target: &Target,
    schema: &str,
    name: &str,
    args: &AiArgs,
) -> Result<TableInfo> {
    let connection = match (&args.database_url, &target.connection) {
        (Some(url), _) => url.clone(),
        (None, Some(c)) => {
            crate::agent::secrets::resolve_secrets_in(c, args.secrets_file.as_deref(), |v| v.to_string()).map_err(
                |e| {
                    anyhow::anyhow!(
                        "the connection string of data source `{}` in `{}`: {e}",
                        target.data_source.as_deref().unwrap_or("?"),
                        target.env
                    )
                },
            )?
        }
        (None, None) => bail!(
            "data source `{}` of `{}` has no connection string here; give --database-url",
            target.data_source.as_deref().unwrap_or("?"),
            target.env
        ),
    };
    let options = introspect::connect_options(&connection)?;
    step(format!("reading {schema}.{name} from {} (read-only)", introspect::describe(&options)));
    Ok(rt.block_on(introspect::introspect(&options, schema, name))?)
}

/// `bike_lanes` → `Bike Lanes`.
fn title_of(table: &str) -> String {
    table
        .split(['_', '-'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A comment on one line, bounded.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.chars().filter(|c| !c.is_control()).take(max).collect()
}

fn introspection_markdown(info: &TableInfo) -> String {
    use crate::markdown::code;
    let g = &info.geometry;
    let mut out = format!(
        "### What was read from `{}`\n\n- geometry: {} {} (SRID {}){}\n- id field: {}\n",
        info.qualified().replace('`', ""),
        code(&g.column),
        code(&g.geometry_type),
        g.srid,
        if g.geography { ", geography" } else { "" },
        code(&info.primary_key)
    );
    match (info.extent, info.extent_source) {
        (Some([a, b, c, d]), Some(how)) => out.push_str(&format!("- extent (CRS84, {how}): {a}, {b}, {c}, {d}\n")),
        _ => out.push_str("- extent: none (the table is empty or has no SRID)\n"),
    }
    out.push_str("\n| column | PostgreSQL | Honua | nullable |\n|---|---|---|---|\n");
    for c in &info.columns {
        out.push_str(&format!(
            "| {} | {} | {}{} | {} |\n",
            crate::markdown::code_in_table(&c.name),
            crate::markdown::code_in_table(&c.pg_type),
            crate::markdown::code_in_table(&c.field_type),
            if c.as_text { " (served as text)" } else { "" },
            if c.nullable { "yes" } else { "no" }
        ));
    }
    if !info.other_geometry_columns.is_empty() {
        out.push_str(&format!(
            "\nOther geometry columns, not served: {}\n",
            info.other_geometry_columns.iter().map(|c| code(c)).collect::<Vec<_>>().join(", ")
        ));
    }
    out
}

pub fn promote(args: PromoteArgs) -> Result<ExitCode> {
    let base = load_base(&args.publish)?;
    let from = EnvName::new(args.from.clone());
    let to = EnvName::new(args.to.clone());
    let promotion = promote::promote(&base.repo, &base.files, &from, &to, &args.only)?;
    let mut notes: Vec<String> = Vec::new();
    let mut body = format!("### Promoted from `{from}` to `{to}`\n\n");
    if promotion.promoted.is_empty() {
        outln!("`{to}` already equals `{from}` in everything a promotion carries; nothing to do.");
        for k in &promotion.kept {
            outln!("  kept: {k}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    for (e, what) in &promotion.promoted {
        notes.push(format!("{e}: {what}"));
        body.push_str(&format!("- {}: {what}\n", crate::markdown::code(&e.to_string())));
    }
    body.push_str("\nKept as they are (never promoted):\n");
    for k in &promotion.kept {
        notes.push(format!("kept: {k}"));
        body.push_str(&format!("- {}\n", crate::markdown::prose(k)));
    }
    let rt = runtime()?;
    let summary = format!("promote {from} to {to}");
    finish(
        &base,
        promotion.files.clone(),
        promotion.changes.clone(),
        &notes,
        &summary,
        "promote",
        body,
        &args.publish,
        &rt,
    )
}

/// Validates and plans the changed files, then prints (`--dry-run`) or publishes them.
#[allow(clippy::too_many_arguments)]
fn finish(
    base: &Base,
    files: std::collections::BTreeMap<String, Vec<u8>>,
    changes: Vec<FileChange>,
    notes: &[String],
    summary: &str,
    kind: &str,
    extra_body: String,
    args: &PublishArgs,
    rt: &tokio::runtime::Runtime,
) -> Result<ExitCode> {
    if changes.is_empty() {
        outln!("Nothing to change: the repository already says this.");
        return Ok(ExitCode::SUCCESS);
    }
    let after = ConfigRepo::from_files(RepoFiles { files, ..base.files.clone() }, "change".into());
    // The plan validates the changed repository once; its findings are what the change is judged by.
    let set = plan::build(&base.repo, &after, None, Utc::now());
    let errors = new_errors(&base.repo, &set.diagnostics);
    if !errors.is_empty() {
        let text = crate::validate::report::text(&errors, &after.sources, "");
        bail!(
            "the change is refused: it does not validate ({} error(s)); nothing was written\n{}",
            errors.len(),
            text.trim_end()
        );
    }
    for note in notes {
        step(note);
    }
    if args.dry_run {
        for c in &changes {
            out!("{}", patch(&c.path, c.before.as_deref(), &c.after));
        }
        outln!();
        outln!("{}", render::plan_text(&set.plans, super::width()).trim_end());
        outln!();
        outln!("Dry run: nothing was written, committed or pushed.");
        return Ok(ExitCode::SUCCESS);
    }
    let base_commit = base.commit.clone().context("not a Git repository")?;
    let has_remote = git2::Repository::open(&args.repo).is_ok_and(|r| r.find_remote(&args.remote).is_ok());
    if !has_remote {
        bail!(
            "{}: there is no remote `{}` to push the branch to; add it (`git remote add {} URL`) or name another with --remote. Nothing was committed",
            args.repo.display(),
            args.remote,
            args.remote
        );
    }
    let branch = format!("honua/{kind}-{}", publish::slug(summary.trim_start_matches("promote ")));
    let message = format!("{summary}\n\nWritten by `honua {kind}`; the plan is in the pull request.");
    let (branch, commit) = publish::commit(&args.repo, &base_commit, &branch, &message, &changes)?;
    step(format!("committed {} on branch {branch}", crate::config::short_sha(&commit)));
    let github = GithubAccess::from_env()?;
    let remote_url = git2::Repository::open(&args.repo)
        .ok()
        .and_then(|r| r.find_remote(&args.remote).ok().and_then(|rm| rm.url().map(String::from)));
    let target_repo = match &args.github_repo {
        Some(s) => Some(
            s.split_once('/').map(|(o, n)| (o.to_string(), n.to_string())).context("--github-repo is OWNER/NAME")?,
        ),
        None => remote_url.as_deref().and_then(publish::github_repo_of),
    };
    let base_branch = match &args.base {
        Some(b) => b.clone(),
        None => current_branch(&args.repo).unwrap_or_else(|| "main".into()),
    };
    let mut body = format!("{summary}\n\n");
    body.push_str(&extra_body);
    body.push_str("\n### Plan\n\n");
    body.push_str(&render::plan_markdown(&set.plans));
    body.push_str(&format!("\n\n*Written by `honua {kind}`.*\n"));
    match (github, target_repo) {
        (Some(access), Some((owner, name))) => {
            let (client, token) = rt.block_on(access.repo(&owner, &name))?;
            let url = publish::push(&args.repo, &args.remote, &branch, Some(&token))?;
            step(format!("pushed {branch} to {url}"));
            let title = format!("honua {kind}: {summary}");
            let (number, page) =
                rt.block_on(client.open_pull_request(&title, &branch, &base_branch, &publish::bounded_body(&body)))?;
            outln!("Opened pull request #{number}: {page}");
        }
        (access, repo) => {
            let url = publish::push(&args.repo, &args.remote, &branch, None)?;
            step(format!("pushed {branch} to {url}"));
            match (access, repo) {
                (_, Some((owner, name))) => outln!(
                    "Pushed {branch}. Open the review: https://github.com/{owner}/{name}/compare/{base_branch}...{branch}?expand=1\n(set GITHUB_TOKEN or the GitHub App to have it opened for you)"
                ),
                (Some(_), None) => outln!(
                    "Pushed {branch} to {url}. GitHub access is configured but `{url}` is not a GitHub remote: give --github-repo OWNER/NAME (or HONUA_GITHUB_REPOSITORY) to have the pull request opened, or open a review of {branch} against {base_branch} on your Git host"
                ),
                (None, None) => outln!(
                    "Pushed {branch} to {url}. Open a review of it against {base_branch} on your Git host, or merge it: git merge {branch}"
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn current_branch(dir: &Path) -> Option<String> {
    let repo = git2::Repository::open(dir).ok()?;
    let head = repo.head().ok()?;
    head.shorthand().filter(|s| *s != "HEAD").map(String::from)
}
