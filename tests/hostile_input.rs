//! Malformed and hostile input: clear errors, never a panic, bounded time and memory.

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use honua_gitops::config::ConfigRepo;
use honua_gitops::validate::validate_repo;
use proptest::prelude::*;

const VALID: &str = "catalog: {id: c}\nfolders: [{id: f}]\ndataSources: [{id: d, provider: postgis, connectionString: \"Host=x\"}]\nservices: [{id: s, folderId: f, serviceType: feature, dataSourceId: d}]\nlayers:\n  - id: l\n    serviceId: s\n    geometryType: Point\n    idField: id\n    geometryField: geom\n    storage: {table: t}\n";

fn findings(content: &[u8]) -> Vec<(String, u32, u32, String)> {
    let mut rf = honua_gitops::config::source::RepoFiles::default();
    rf.env_dirs.push("production".into());
    rf.files.insert("environments/production/metadata.yaml".into(), content.to_vec());
    let repo = ConfigRepo::from_files(rf, "t".into());
    validate_repo(&repo, None).into_iter().map(|d| (d.code, d.line, d.column, d.message)).collect()
}

#[test]
fn truncated_yaml_is_a_syntax_error_with_a_position() {
    let f = findings(b"catalog:\n  id: c\nlayers:\n  - id: [unterminated\n");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, "yaml.syntax");
    assert!(f[0].1 >= 4, "{f:?}");
}

#[test]
fn wrong_types_are_errors_at_the_value() {
    let f = findings(VALID.replace("geometryType: Point", "geometryType: [Point]").as_bytes());
    let e = f.iter().find(|x| x.0 == "type.mismatch").expect("type error");
    assert_eq!((e.1, e.2), (8, 19), "{f:?}");
    assert!(e.3.contains("must be a string, found a list"), "{}", e.3);
}

#[test]
fn an_alias_bomb_is_refused_quickly() {
    let mut bomb = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
    }
    let f = findings(bomb.as_bytes());
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, "yaml.limit");
    assert!(f[0].3.contains("safety limit"), "{f:?}");
}

#[test]
fn binary_garbage_is_refused_as_not_text() {
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let f = findings(&garbage);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, "file.encoding");
}

#[test]
fn a_50_mb_file_and_a_symlink_to_etc_passwd_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let prod = dir.path().join("environments/production");
    let staging = dir.path().join("environments/staging");
    fs::create_dir_all(&prod).unwrap();
    fs::create_dir_all(&staging).unwrap();
    let big = fs::File::create(prod.join("metadata.yaml")).unwrap();
    big.set_len(50 * 1024 * 1024).unwrap();
    symlink("/etc/passwd", staging.join("metadata.yaml")).unwrap();
    let repo = ConfigRepo::load_dir(dir.path()).unwrap();
    let d = validate_repo(&repo, None);
    let codes: Vec<(&str, &str)> = d.iter().map(|d| (d.code.as_str(), d.file.as_str())).collect();
    assert!(codes.contains(&("file.too_large", "environments/production/metadata.yaml")), "{codes:?}");
    assert!(codes.contains(&("file.symlink", "environments/staging/metadata.yaml")), "{codes:?}");
    assert!(!repo.sources.get("environments/staging/metadata.yaml").is_some_and(|f| f.text.contains("root:")));

    let out = common::honua(&["validate", "--path", dir.path().to_str().unwrap()]);
    assert_eq!(common::code(&out), 1);
    assert!(common::stdout(&out).contains("symbolic link"));
}

/// A lone carriage return is a line break to the YAML parser but not to the files a reviewer sees: a
/// syntax error after one still points inside the file (found by `mutated_documents_never_panic`).
#[test]
fn a_syntax_error_after_a_lone_carriage_return_points_inside_the_file() {
    // `{id: c}` becomes `{i\r: c}`, and the file ends inside an unclosed flow mapping.
    let mut doc = VALID.as_bytes()[..291].to_vec();
    doc[11] = b'\r';
    let lines = doc.split(|b| *b == b'\n').count() as u32;
    let f = findings(&doc);
    assert!(f.iter().any(|(code, ..)| code == "yaml.syntax"), "{f:?}");
    for (code, line, ..) in &f {
        assert!(*line <= lines, "{code} at line {line} of {lines}");
    }
}

#[test]
fn a_missing_path_is_exit_2_with_a_sentence() {
    let out = common::honua(&["validate", "--path", "/nonexistent/honua"]);
    assert_eq!(common::code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read this path"));
    let dir = tempfile::tempdir().unwrap();
    let out = common::honua(&["validate", "--path", dir.path().to_str().unwrap()]);
    assert_eq!(common::code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a config repository"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    /// Arbitrary bytes never panic the loader or the validator.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = findings(&bytes);
    }

    /// A valid document with a slice cut out or a byte replaced never panics, and every finding has
    /// a position inside the file.
    #[test]
    fn mutated_documents_never_panic(cut in 0..VALID.len(), len in 0..40usize, byte in any::<u8>(), at in 0..VALID.len()) {
        let mut doc = VALID.as_bytes().to_vec();
        doc.drain(cut..(cut + len).min(doc.len()));
        if at < doc.len() { doc[at] = byte; }
        let lines = doc.split(|b| *b == b'\n').count() as u32;
        for (code, line, _, _) in findings(&doc) {
            prop_assert!(line <= lines + 1, "{code} at line {line} of {lines}");
        }
    }
}

/// A layer whose unknown key nests `depth` levels (a block mapping per level), on top of VALID.
fn nested_layer(depth: usize) -> String {
    let mut deep = String::new();
    for level in 1..depth {
        deep.push_str(&format!("{}a:\n", " ".repeat(4 + 2 * level)));
    }
    deep.push_str(&format!("{}x: 1\n", " ".repeat(4 + 2 * depth)));
    VALID.replace("    idField: id\n", &format!("    idField: id\n    extra:\n{deep}"))
}

/// The deepest document the loader accepts goes through everything that walks it (validation with the
/// JSON schema, layering, diff, plan, rendering, the stored plan read back by serde_json) on a 512 KiB
/// stack, a quarter of a tokio worker's: no recursive walk over repository content can overflow.
#[test]
fn the_deepest_document_accepted_is_walked_on_a_small_stack() {
    use honua_gitops::config::yaml::MAX_DEPTH;
    // The root mapping, `layers` and the layer take three levels.
    let (base, deep) = (VALID.to_string(), nested_layer(MAX_DEPTH - 3));
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            let from = common::repo(&[("environments/production/metadata.yaml", &base)]);
            let to = common::repo(&[("environments/production/metadata.yaml", &deep)]);
            // The only finding: Honua does not read `extra` (a warning at its key).
            let findings = validate_repo(&to, None);
            assert_eq!(findings.len(), 1, "{findings:?}");
            assert_eq!((findings[0].code.as_str(), findings[0].line), ("key.unknown", 10), "{findings:?}");
            let at = chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap();
            let set = honua_gitops::plan::build(&from, &to, None, at);
            let json = honua_gitops::plan::render::plan_json(&set.plans);
            let _ = honua_gitops::plan::render::plan_markdown(&set.plans);
            // What the store keeps must read back: serde_json refuses nesting over 128.
            let back: serde_json::Value = serde_json::from_str(&json).expect("the plan reads back");
            assert!(back["plans"][0]["changes"][0]["fields"][0]["to"].is_object(), "{back}");
            let env = honua_gitops::config::EnvName::new("production");
            let _ = to.effective(&env).unwrap().metadata.to_json().to_string();
        })
        .unwrap()
        .join()
        .unwrap();
    // One level more is refused with a finding.
    let f = findings(nested_layer(MAX_DEPTH - 2).as_bytes());
    assert!(f.iter().any(|d| d.0 == "yaml.limit" && d.3.contains("nesting")), "{f:?}");
}

/// The examples' repository with production's database password, and an API key, committed by mistake.
fn with_leaked_secrets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::copy_tree(&common::examples().join("honua-config"), dir.path());
    let ds = dir.path().join("environments/production/datasources.yaml");
    let text = fs::read_to_string(&ds).unwrap().replace("Password=${DB_PASSWORD}", "Password=Tr0ub4dor&3");
    fs::write(&ds, text + "    auth: {apiKey: sk-live-51HxQ}\n").unwrap();
    dir
}

/// A literal secret is a validation finding that points at its line, and every command that would
/// print the value shows a mask instead: diff, plan (text and the PR comment's Markdown), render.
#[test]
fn a_secret_committed_by_mistake_is_never_printed() {
    let base = common::examples().join("honua-config");
    let leaked = with_leaked_secrets();
    let to = leaked.path().to_str().unwrap();
    let from = base.to_str().unwrap();
    let check = |args: &[&str]| {
        let out = common::honua(args);
        let all = format!("{}{}", common::stdout(&out), String::from_utf8_lossy(&out.stderr));
        for secret in ["Tr0ub4dor", "sk-live-51HxQ"] {
            assert!(!all.contains(secret), "`honua {}` printed {secret}:\n{all}", args.join(" "));
        }
        all
    };
    let validate = check(&["validate", "--path", to]);
    assert!(validate.contains("datasources.yaml:12:") && validate.contains("secret.literal"), "{validate}");
    let diff = check(&["diff", "--from-dir", from, "--to-dir", to, "--env", "production"]);
    assert!(diff.contains("Password=•••• (8-15 chars, sha256:"), "{diff}");
    check(&["diff", "--from-dir", from, "--to-dir", to, "--format", "json"]);
    check(&["plan", "--from-dir", from, "--to-dir", to, "--format", "markdown"]);
    check(&["plan", "--from-dir", from, "--to-dir", to]);
    let render = check(&["render", "--path", to, "--env", "production"]);
    assert!(render.contains("Password=••••"), "{render}");
    // Asked for explicitly, render prints what the agent would write.
    let shown = common::honua(&["render", "--path", to, "--env", "production", "--show-secrets"]);
    assert!(common::stdout(&shown).contains("Tr0ub4dor&3"));
}

/// A directory where a metadata or policy file belongs is one located finding (exit 1), not a failure
/// to read the whole repository (exit 2).
#[test]
fn a_directory_where_a_file_belongs_is_a_finding() {
    let dir = tempfile::tempdir().unwrap();
    common::copy_tree(&common::examples().join("honua-config"), dir.path());
    fs::remove_file(dir.path().join("environments/staging/metadata.yaml")).unwrap();
    fs::create_dir(dir.path().join("environments/staging/metadata.yaml")).unwrap();
    fs::remove_file(dir.path().join(".gitops/deployment-policy.yaml")).unwrap();
    fs::create_dir(dir.path().join(".gitops/deployment-policy.yaml")).unwrap();
    let out = common::honua(&["validate", "--path", dir.path().to_str().unwrap()]);
    let text = common::stdout(&out);
    assert_eq!(common::code(&out), 1, "{text}{}", String::from_utf8_lossy(&out.stderr));
    for path in ["environments/staging/metadata.yaml", ".gitops/deployment-policy.yaml"] {
        assert!(text.contains(&format!("error[file.not_a_file]: `{path}` is a directory")), "{text}");
    }
}
