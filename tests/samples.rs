//! Honua's own metadata samples: every valid file validates, every invalid file fails with a
//! diagnostic naming its defect at the right line and column.

mod common;

use common::{code, honua, shared, stdout};
use honua_gitops::config::load_single_file;
use honua_gitops::diagnostic::Severity;
use honua_gitops::validate::validate_single;

#[test]
fn every_valid_sample_validates_with_exit_0() {
    let dir = shared().join("metadata/valid");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let out = honua(&["validate", "--path", path.to_str().unwrap()]);
        assert_eq!(code(&out), 0, "{}:\n{}", path.display(), stdout(&out));
        let file = load_single_file(&path).unwrap();
        let errors: Vec<_> = validate_single(&file).into_iter().filter(|d| d.severity == Severity::Error).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        seen += 1;
    }
    assert!(seen >= 3);
}

#[test]
fn literal_password_in_a_lone_file_is_a_warning_with_its_position() {
    let file = load_single_file(&shared().join("metadata/valid/valid-complete.json")).unwrap();
    let secret = validate_single(&file).into_iter().find(|d| d.code == "secret.literal").expect("warned");
    assert_eq!(secret.severity, Severity::Warning);
    assert_eq!((secret.line, secret.column), (73, 27));
}

/// (file, code, line, column, a word the message must contain)
const INVALID: [(&str, &str, u32, u32, &str); 6] = [
    ("invalid-bbox.json", "honua.extent", 33, 11, "Layer 'layer1' extent contains an invalid bounding box."),
    ("invalid-broken-references.json", "reference.unknown_folder", 20, 19, "reference"),
    ("invalid-cors-config.json", "cors.credentials_with_wildcard", 9, 27, "CORS"),
    ("invalid-duplicate-ids.json", "duplicate_id", 11, 13, "duplicate"),
    ("invalid-missing-catalog-id.json", "honua.required", 2, 14, "Metadata catalog must include an 'id'."),
    (
        "invalid-temporal-format.json",
        "honua.temporal",
        34,
        14,
        "Layer 'layer1' temporal extent boundary 'not-a-valid-date' is not a valid date/time value.",
    ),
];

#[test]
fn every_invalid_sample_fails_with_its_defect_at_the_right_place() {
    let dir = shared().join("metadata/invalid");
    let count = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(count, INVALID.len(), "a new invalid sample needs an expectation here");
    for (name, code_expected, line, column, word) in INVALID {
        let path = dir.join(name);
        let file = load_single_file(&path).unwrap();
        let diagnostics = validate_single(&file);
        let found =
            diagnostics.iter().find(|d| d.code == code_expected).unwrap_or_else(|| panic!("{name}: {diagnostics:#?}"));
        assert_eq!((found.line, found.column), (line, column), "{name}: {found:?}");
        assert!(found.message.contains(word), "{name}: {}", found.message);
        assert!(found.severity == Severity::Error);

        let out = honua(&["validate", "--path", path.to_str().unwrap()]);
        assert_eq!(code(&out), 1, "{name}");
        assert!(stdout(&out).contains(&format!("{name}:{line}:{column}: error[{code_expected}]")), "{}", stdout(&out));
    }
}

#[test]
fn json_and_github_formats_carry_the_same_findings() {
    let path = shared().join("metadata/invalid/invalid-cors-config.json");
    let out = honua(&["validate", "--path", path.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code(&out), 1);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["code"], "cors.credentials_with_wildcard");
    assert_eq!(list[0]["line"], 9);
    assert_eq!(list[0]["column"], 27);
    assert_eq!(list[0]["severity"], "error");
    assert!(list[0]["file"].as_str().unwrap().ends_with("invalid-cors-config.json"));

    let out = honua(&["validate", "--path", path.to_str().unwrap(), "--format", "github"]);
    let text = stdout(&out);
    assert!(text.starts_with("::error file="), "{text}");
    assert!(text.contains(",line=9,col=27,title=cors.credentials_with_wildcard::"), "{text}");
}

#[test]
fn embedded_schema_is_the_servers_schema() {
    let shipped = std::fs::read_to_string(shared().join("schema/metadata-schema.json")).unwrap();
    assert_eq!(shipped, honua_gitops::validate::schema::SCHEMA_JSON, "refresh src/validate/metadata-schema.json");
}
