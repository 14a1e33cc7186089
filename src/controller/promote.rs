//! `/honua promote FROM TO` on a merged pull request: what `honua promote` does, run by the service on
//! its mirror of the repository. The promotion is computed on the base branch as it is now (the merge
//! included), proved and validated, committed on a branch `honua/promote-FROM-to-TO-<sha>` pushed with
//! the installation's token, and opened as a pull request whose body is TO's plan; the reply links it.

use super::comments::{CommentEvent, Comments};
use super::JobError;
use crate::author::{new_errors, promote, publish};
use crate::config::source::RepoFiles;
use crate::config::{short_sha, ConfigRepo, EnvName};
use crate::markdown;

/// The promotion computed on the mirror: pushed and ready to be opened as a pull request, or refused
/// with the reason.
enum Prepared {
    Pushed { branch: String, base_ref: String, body: String },
    Refused(String),
}

/// What the promotion came to, for the reply.
pub(super) enum Promoted {
    Opened { number: u64, url: String, branch: String },
    Refused(String),
}

impl Comments<'_> {
    pub(super) async fn promote_by_comment(
        &self,
        c: &CommentEvent,
        base_ref: &str,
        from: &str,
        to: &str,
    ) -> Result<Promoted, JobError> {
        let gh = self.gh;
        let token = gh.git_token().await.ok();
        let held = self.mirrors.lock(&c.repo.full_name()).await;
        let url = self.mirrors.url_of(&c.repo.full_name());
        let (from_env, to_env) = (EnvName::new(from), EnvName::new(to));
        let (base_ref, number, author) = (base_ref.to_string(), c.number, c.author.clone());
        let outcome = self.mirrors.run(&url, move |mirror| -> Result<Prepared, JobError> {
            let head_ref = format!("refs/heads/{base_ref}");
            mirror.fetch(&[&head_ref], token.as_deref())?;
            let base = mirror.resolve(&head_ref)?;
            let (_, files) = crate::config::commit::read_commit(mirror.path(), &base)?;
            let repo = ConfigRepo::from_files(files.clone(), base.clone());
            let promotion = match promote::promote(&repo, &files, &from_env, &to_env, &[]) {
                Ok(p) => p,
                Err(e) => return Ok(Prepared::Refused(e.to_string())),
            };
            if promotion.changes.is_empty() {
                return Ok(Prepared::Refused(format!(
                    "`{to_env}` already equals `{from_env}` in everything a promotion carries: there is nothing to promote"
                )));
            }
            let after = ConfigRepo::from_files(RepoFiles { files: promotion.files.clone(), ..files }, "promote".into());
            let errors = new_errors(&repo, &crate::validate::validate_repo(&after, None));
            if !errors.is_empty() {
                let first = &errors[0];
                return Ok(Prepared::Refused(format!(
                    "the promotion does not validate ({} error(s); first: {}:{}: {})",
                    errors.len(),
                    first.file,
                    first.line,
                    first.message
                )));
            }
            let plan = crate::plan::build(&repo, &after, Some(&to_env), chrono::Utc::now());
            let message = format!("promote {from_env} to {to_env}\n\nRequested by {author} on #{number}.");
            let git_repo = git2::Repository::open_bare(mirror.path())?;
            let oid = publish::build_commit(&git_repo, &base, &message, &promotion.changes)?;
            let branch = format!("honua/promote-{from_env}-to-{to_env}-{}", short_sha(&base));
            let local = format!("refs/honua/promote/{branch}");
            git_repo.reference(&local, oid, true, "promotion")?;
            if !mirror.push(&format!("{local}:refs/heads/{branch}"), token.as_deref())? {
                return Ok(Prepared::Refused(format!("the branch `{branch}` already exists with other content; delete it and ask again")));
            }
            let mut body = format!("Promotes `{from_env}` to `{to_env}`, as asked by @{author} on #{number}.\n\n");
            for (e, what) in &promotion.promoted {
                body.push_str(&format!("- {}: {}\n", markdown::code(&e.to_string()), markdown::prose(what)));
            }
            body.push_str("\nKept as they are (never promoted):\n");
            for k in &promotion.kept {
                body.push_str(&format!("- {}\n", markdown::prose(k)));
            }
            body.push_str("\n### Plan\n\n");
            body.push_str(&crate::plan::render::plan_markdown(&plan.plans));
            Ok(Prepared::Pushed { branch, base_ref, body: publish::bounded_body(&body) })
        })
        .await?;
        drop(held);
        let (branch, base_ref, body) = match outcome {
            Prepared::Pushed { branch, base_ref, body } => (branch, base_ref, body),
            Prepared::Refused(why) => return Ok(Promoted::Refused(why)),
        };
        let title = format!("Promote {from} to {to}");
        let (number, url) = gh.open_pull_request(&title, &branch, &base_ref, &body).await?;
        Ok(Promoted::Opened { number, url, branch })
    }
}
