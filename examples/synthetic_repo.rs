//! Writes a synthetic config repository pair (base and changed) for whole-command measurements:
//! `cargo run --release --example synthetic_repo -- 10000 /tmp/synth` then
//! `/usr/bin/time -v target/release/honua plan --from-dir /tmp/synth/base --to-dir /tmp/synth/changed`.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let layers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "target/synthetic".into()));
    let _ = std::fs::remove_dir_all(&dir);
    honua_gitops::config::synthetic::write(
        &honua_gitops::config::synthetic::generate(layers, false),
        &dir.join("base"),
    )?;
    honua_gitops::config::synthetic::write(
        &honua_gitops::config::synthetic::generate(layers, true),
        &dir.join("changed"),
    )?;
    println!("wrote {layers} layers to {}/base and {}/changed", dir.display(), dir.display());
    Ok(())
}
