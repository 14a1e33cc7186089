//! The layering in ARCHITECTURE.md holds: no module of `src/` uses (`crate::x`) a module above it. The
//! `layers` block there is the source; this test reads it, so the document and the code cannot drift.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Layer of each top-level module, 0 the lowest, from the `layers` block (highest first).
fn layers(document: &str) -> BTreeMap<String, usize> {
    let block = document.split("```layers\n").nth(1).expect("a ```layers block").split("```").next().unwrap();
    let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        for module in line.split_whitespace() {
            out.insert(module.to_string(), lines.len() - 1 - i);
        }
    }
    out
}

/// The Rust files of a module (`src/x.rs` or everything under `src/x/`).
fn files(module: &str) -> Vec<PathBuf> {
    let single = root().join("src").join(format!("{module}.rs"));
    if single.exists() {
        return vec![single];
    }
    let mut out = Vec::new();
    let mut stack = vec![root().join("src").join(module)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// Modules a file names as `crate::x`, in its code before any `#[cfg(test)]` item.
fn uses(path: &Path) -> Vec<(String, usize)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let code = line.split("//").next().unwrap_or("");
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if !name.is_empty() {
                out.push((name, n + 1));
            }
        }
    }
    out
}

fn lib_modules() -> Vec<String> {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    lib.lines().filter_map(|l| l.strip_prefix("pub mod ")).map(|m| m.trim_end_matches(';').to_string()).collect()
}

fn violations(layers: &BTreeMap<String, usize>) -> Vec<String> {
    let mut found = Vec::new();
    for module in lib_modules() {
        let own = layers[&module];
        for file in files(&module) {
            for (used, line) in uses(&file) {
                let Some(&theirs) = layers.get(&used) else { continue };
                if theirs > own {
                    let shown = file.strip_prefix(root()).unwrap().display().to_string();
                    found.push(format!("{shown}:{line}: `{module}` uses `{used}`, a layer above it"));
                }
            }
        }
    }
    found
}

#[test]
fn no_module_uses_one_above_it() {
    let document = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let layers = layers(&document);
    for module in lib_modules() {
        assert!(layers.contains_key(&module), "`{module}` (src/lib.rs) is missing from ARCHITECTURE.md's layers");
    }
    let found = violations(&layers);
    assert!(found.is_empty(), "back edges:\n{}", found.join("\n"));
}

#[test]
fn the_check_finds_a_back_edge() {
    // The same code against a layering that puts `config` above `cli`: every use of config is a back edge.
    let document = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let mut layers = layers(&document);
    let top = layers.values().max().copied().unwrap();
    layers.insert("config".into(), top + 1);
    let found = violations(&layers);
    assert!(found.iter().any(|v| v.contains("`cli` uses `config`")), "{found:?}");
}
