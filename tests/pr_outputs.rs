//! What a pull request shows: check-run conclusions and annotations, and the sticky plan comment
//! (snapshot for the README example; split into balanced parts when over GitHub's limit).

mod common;

use chrono::{DateTime, Utc};
use honua_gitops::config::{synthetic, ConfigRepo};
use honua_gitops::github::checks::{
    diff_check, plan_comment, plan_comment_part, validate_check, Conclusion, MAX_COMMENT_CHARS, PLAN_MARKER,
};
use honua_gitops::plan;

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z").unwrap().with_timezone(&Utc)
}

fn example_plans() -> plan::PlanSet {
    let from = ConfigRepo::load_dir(&common::examples().join("honua-config")).unwrap();
    let to = ConfigRepo::load_dir(&common::examples().join("honua-config-pr")).unwrap();
    plan::build(&from, &to, None, at())
}

#[test]
fn the_readme_example_comment() {
    let set = example_plans();
    let bodies = plan_comment(&set.plans, Some("https://honua.example.org/plans/42"), &[]);
    assert_eq!(bodies.len(), 1);
    assert_eq!(plan_comment_part(&bodies[0]), Some((1, 1)));
    insta::assert_snapshot!(bodies[0]);
}

#[test]
fn diff_check_conclusions_follow_the_plans() {
    let set = example_plans();
    let check = diff_check(&set.plans);
    assert_eq!(check.conclusion, Conclusion::ActionRequired, "production is blocked");
    assert!(check.title.contains("production"), "{}", check.title);
    assert!(check.summary.contains("--breaking"));

    let dev_only: Vec<_> = set.plans.iter().filter(|p| p.environment.as_str() == "development").cloned().collect();
    assert_eq!(diff_check(&dev_only).conclusion, Conclusion::Success);

    let base = ConfigRepo::load_dir(&common::examples().join("honua-config")).unwrap();
    let same = plan::build(&base, &base, None, at());
    let check = diff_check(&same.plans);
    assert_eq!(check.conclusion, Conclusion::Neutral);
    assert_eq!(check.title, "No changes to any environment");
}

#[test]
fn validate_check_fails_with_annotations_at_the_lines_of_the_findings() {
    let repo = ConfigRepo::load_dir(&common::shared().join("gitops-sample/gitops")).unwrap();
    let diagnostics = honua_gitops::validate::validate_repo(&repo, None);
    let check = validate_check(&diagnostics);
    assert_eq!(check.conclusion, Conclusion::Failure);
    assert_eq!(check.annotations.len(), diagnostics.len());
    let a = check
        .annotations
        .iter()
        .find(|a| {
            a.path == "environments/production/metadata.yaml"
                && a.message.contains("Layer 'roads' is missing geometryType.")
        })
        .expect("annotation for the roads layer");
    assert_eq!((a.start_line, a.start_column, a.annotation_level), (44, Some(9), "failure"));
    assert!(check.summary.contains("| `honua.required` |"));
}

#[test]
fn an_oversized_plan_comment_is_split_into_balanced_parts() {
    let base = synthetic::generate(3000, false);
    let mut changed = base.clone();
    let path = "environments/production/metadata.yaml";
    let text = String::from_utf8(changed.files[path].clone())
        .unwrap()
        .replace("ttl: 3600", "ttl: 7200")
        .replace("title: Layer", "title: Renamed layer");
    changed.files.insert(path.into(), text.into_bytes());
    let from = ConfigRepo::from_files(base, "a".into());
    let to = ConfigRepo::from_files(changed, "b".into());
    let set = plan::build(&from, &to, None, at());
    assert_eq!(set.plans[0].changes.summary.modified, 3000);

    let bodies = plan_comment(&set.plans, None, &[]);
    assert!(bodies.len() > 1, "3,000 modified layers do not fit one comment");
    for (i, body) in bodies.iter().enumerate() {
        assert!(body.chars().count() <= MAX_COMMENT_CHARS, "part {i} is {} chars", body.chars().count());
        assert!(body.starts_with(PLAN_MARKER));
        assert_eq!(plan_comment_part(body), Some((i + 1, bodies.len())));
        assert_eq!(body.matches("<details>").count(), body.matches("</details>").count(), "part {i} is balanced");
        // A table continued in this part starts with its header again.
        let first_row = body.lines().find(|l| l.starts_with('|'));
        assert_eq!(first_row, Some("| | Type | Id | Change |"), "part {i}");
    }
    let rows: usize = bodies.iter().map(|b| b.lines().filter(|l| l.starts_with("| ✏️")).count()).sum();
    assert_eq!(rows, 3000, "every change appears exactly once across the parts");
}
