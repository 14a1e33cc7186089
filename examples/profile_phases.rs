//! Times each phase of validating and diffing a synthetic repository (a development aid):
//! `cargo run --release --example profile_phases -- 10000`.

// The shipped binary uses mimalloc; measure with the same allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use honua_gitops::config::{node::FileId, synthetic, yaml, ConfigRepo, EnvName};

fn main() {
    let layers: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let files = synthetic::generate(layers, true);
    let text = std::str::from_utf8(&files.files["environments/production/metadata.yaml"]).unwrap().to_string();
    let t = Instant::now();
    println!("raw events {} in {:?}", raw_events(&text), t.elapsed());
    let t = Instant::now();
    let node = yaml::parse(&text, FileId(0)).unwrap();
    println!("parse {:?} ({} nodes)", t.elapsed(), node.count());
    let t = Instant::now();
    let json = node.to_json();
    println!("to_json {:?} ({})", t.elapsed(), json.is_object());
    let t = Instant::now();
    let repo = ConfigRepo::from_files(files.clone(), "x".into());
    println!("load repo {:?}", t.elapsed());
    let env = EnvName::new("production");
    let t = Instant::now();
    let eff = repo.effective(&env).unwrap();
    println!("effective {:?}", t.elapsed());
    let mut out = Vec::new();
    let t = Instant::now();
    honua_gitops::validate::schema::check(&eff.metadata, &repo.sources, &mut out);
    println!("schema {:?}", t.elapsed());
    let t = Instant::now();
    honua_gitops::validate::check_metadata(&eff.metadata, &repo.sources, &mut out);
    println!("all metadata checks {:?}", t.elapsed());
    let t = Instant::now();
    for (_, doc) in repo.documents() {
        honua_gitops::validate::rules::unique_ids(&doc.root, &repo.sources, &mut out);
    }
    println!("unique ids {:?}", t.elapsed());
    let t = Instant::now();
    for (_, doc) in repo.documents() {
        honua_gitops::validate::rules::literal_secrets(
            &doc.root,
            &repo.sources,
            honua_gitops::diagnostic::Severity::Error,
            &mut out,
        );
    }
    println!("secrets {:?}", t.elapsed());
    let t = Instant::now();
    let d = honua_gitops::validate::validate_repo(&repo, None);
    println!("validate_repo {:?} ({} findings)", t.elapsed(), d.len());
    let base = ConfigRepo::from_files(synthetic::generate(layers, false), "y".into());
    let t = Instant::now();
    let cs = honua_gitops::diff::diff_environment(&env, base.effective(&env), Some(eff));
    println!("diff {:?} ({} changes)", t.elapsed(), cs.changes.len());
}

#[allow(dead_code)]
fn raw_events(text: &str) -> usize {
    let mut p = saphyr_parser::Parser::new_from_str(text);
    let mut n = 0;
    while let Some(Ok((_ev, _span))) = p.next() {
        n += 1;
    }
    n
}
