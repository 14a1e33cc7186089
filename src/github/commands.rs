//! Comment commands: `/honua approve [ENV...] [--breaking]`, `/honua reject ENV [reason]`,
//! `/honua plan`, `/honua help`. A command is a line of its own that starts with `/honua`, outside
//! code blocks, quotes and HTML comments, so quoting or showing a command never runs it. The first
//! command line of a comment counts; the rest of the comment is prose.

/// GitHub's own limit for a comment body; anything longer is not read past it.
pub const MAX_COMMENT_CHARS: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentCommand {
    Approve {
        environments: Vec<String>,
        breaking: bool,
    },
    Reject {
        environment: String,
        reason: String,
    },
    Plan,
    /// `/honua promote FROM TO` on a merged pull request: a pull request carrying FROM's configuration
    /// to TO.
    Promote {
        from: String,
        to: String,
    },
    Help,
    /// A `/honua` line that is not a valid command: the reply says what is wrong and shows the help.
    Invalid(String),
}

pub const HELP: &str = "\
`/honua approve [ENV...] [--breaking]`: approve the plan of this pull request (or, once merged, its deployments) \
for the named environments, or for every environment that needs approval; `--breaking` acknowledges breaking \
changes where the policy does not allow them.\n\
`/honua reject ENV [reason]`: reject the environment's deployment of this pull request (or withdraw an approval).\n\
`/honua plan`: plan the pull request again.\n\
`/honua promote FROM TO`: once merged, open a pull request that makes TO's configuration equal FROM's \
(connections and server settings stay), as `honua promote` does.\n\
`/honua help`: this text.\n\n\
Only new comments count (an edit is never a command), and only from people with write access to the \
repository or listed in the environment's `approvers`.";

fn valid_environment(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The command line of a comment, if any: the first line that is a `/honua` command, outside fenced
/// and indented code, block quotes and HTML comments.
fn command_line(body: &str) -> Option<&str> {
    let body = match body.char_indices().nth(MAX_COMMENT_CHARS) {
        Some((end, _)) => &body[..end],
        None => body,
    };
    let mut fence: Option<&str> = None;
    let mut in_html_comment = false;
    for line in body.lines() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let text = line.trim_start_matches(' ');
        if in_html_comment {
            in_html_comment = !line.contains("-->");
            continue;
        }
        if let Some(marker) = fence {
            if indent < 4 && text.starts_with(marker) {
                fence = None;
            }
            continue;
        }
        if indent < 4 && (text.starts_with("```") || text.starts_with("~~~")) {
            fence = Some(&text[..3]);
            continue;
        }
        if text.starts_with("<!--") {
            in_html_comment = !text.contains("-->");
            continue;
        }
        // Four spaces or a tab make an indented code block; `>` a quote.
        if indent >= 4 || line.starts_with('\t') || text.starts_with('>') {
            continue;
        }
        let text = text.trim_end();
        if text == "/honua" || text.starts_with("/honua ") || text.starts_with("/honua\t") {
            return Some(text);
        }
    }
    None
}

/// Whether a comment holds a command (used to decide if an edited comment deserves an answer).
pub fn has_command(body: &str) -> bool {
    command_line(body).is_some()
}

pub fn parse(body: &str) -> Option<CommentCommand> {
    let line = command_line(body)?;
    let mut words = line.split_ascii_whitespace().skip(1);
    let verb = words.next().unwrap_or("help");
    let rest: Vec<&str> = words.collect();
    let invalid_env = |e: &str| {
        CommentCommand::Invalid(format!(
            "`{}` is not an environment name (letters, digits, `-` and `_`)",
            e.escape_default()
        ))
    };
    Some(match verb {
        "approve" => {
            let mut environments = Vec::new();
            let mut breaking = false;
            for word in rest {
                match word {
                    "--breaking" => breaking = true,
                    flag if flag.starts_with("--") => {
                        return Some(CommentCommand::Invalid(format!("unknown option `{}`", flag.escape_default())))
                    }
                    env if valid_environment(env) => {
                        if !environments.iter().any(|e| e == env) {
                            environments.push(env.to_string())
                        }
                    }
                    env => return Some(invalid_env(env)),
                }
            }
            CommentCommand::Approve { environments, breaking }
        }
        "reject" => match rest.split_first() {
            Some((env, reason)) if valid_environment(env) => {
                CommentCommand::Reject { environment: env.to_string(), reason: reason.join(" ") }
            }
            Some((env, _)) => invalid_env(env),
            None => CommentCommand::Invalid("`/honua reject` needs an environment".into()),
        },
        "plan" if rest.is_empty() => CommentCommand::Plan,
        "promote" => match rest.as_slice() {
            [from, to] if valid_environment(from) && valid_environment(to) => {
                CommentCommand::Promote { from: from.to_string(), to: to.to_string() }
            }
            [from, to] => invalid_env(if valid_environment(from) { to } else { from }),
            _ => CommentCommand::Invalid("`/honua promote` needs two environments: `/honua promote FROM TO`".into()),
        },
        "help" => CommentCommand::Help,
        other => CommentCommand::Invalid(format!("unknown command `{}`", other.escape_default())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approve(envs: &[&str], breaking: bool) -> Option<CommentCommand> {
        Some(CommentCommand::Approve { environments: envs.iter().map(|e| e.to_string()).collect(), breaking })
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse("/honua approve production"), approve(&["production"], false));
        assert_eq!(
            parse("LGTM\n\n/honua approve staging production --breaking\nthanks"),
            approve(&["staging", "production"], true)
        );
        assert_eq!(parse("/honua approve"), approve(&[], false));
        assert_eq!(
            parse("/honua reject production too risky before the release"),
            Some(CommentCommand::Reject {
                environment: "production".into(),
                reason: "too risky before the release".into()
            })
        );
        assert_eq!(parse("/honua plan"), Some(CommentCommand::Plan));
        assert_eq!(parse("/honua help"), Some(CommentCommand::Help));
        assert_eq!(parse("/honua"), Some(CommentCommand::Help));
        assert!(matches!(parse("/honua deploy production"), Some(CommentCommand::Invalid(_))));
        assert!(matches!(parse("/honua approve --force"), Some(CommentCommand::Invalid(_))));
        assert!(matches!(parse("/honua reject"), Some(CommentCommand::Invalid(_))));
    }

    #[test]
    fn quoted_shown_or_hidden_commands_never_count() {
        for body in [
            "> /honua approve production",
            "```\n/honua approve production\n```",
            "~~~md\n/honua approve production\n~~~",
            "    /honua approve production",
            "\t/honua approve production",
            "<!--\n/honua approve production\n-->",
            "<!-- /honua approve production -->",
            "Run `/honua approve production` when ready",
            "please /honua approve production",
            "/honuaapprove production",
            "／honua approve production",
        ] {
            assert_eq!(parse(body), None, "{body:?}");
        }
        // After a closed fence, a command counts again.
        assert_eq!(parse("```\nx\n```\n/honua approve dev"), approve(&["dev"], false));
    }

    #[test]
    fn unicode_tricks_in_names_are_refused() {
        for body in [
            "/honua approve prod\u{200B}uction",
            "/honua approve producti\u{043E}n",
            "/honua approve \u{202E}noitcudorp",
        ] {
            assert!(matches!(parse(body), Some(CommentCommand::Invalid(_))), "{body:?}");
        }
        // A non-breaking space does not split words: the whole token is refused, not half-read.
        assert!(matches!(parse("/honua approve production\u{00A0}--breaking"), Some(CommentCommand::Invalid(_))));
    }

    #[test]
    fn only_the_first_65536_characters_are_read() {
        let long = format!("{}\n/honua approve production", "x".repeat(MAX_COMMENT_CHARS));
        assert_eq!(parse(&long), None);
        let early = format!("/honua approve production\n{}", "é".repeat(MAX_COMMENT_CHARS));
        assert_eq!(parse(&early), approve(&["production"], false));
    }
}
