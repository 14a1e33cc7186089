//! Work in a child process. When the agent runs as a command (`honua-agent`, `honua agent`), reading
//! the Git ledger and applying a record run in a short-lived child: the same binary, started again with
//! the same arguments and environment plus [`ISOLATED_WORK_ENV`], told the work on its standard input
//! and answering on its standard output. The long-lived poller then never loads libgit2 and OpenSSL,
//! the YAML, JSON-schema and CQL2 code or their heaps: it idles on what polling needs, which is what
//! the agent does for days (BENCHMARKS.md, agent footprint). A crash in that work (a bug, an abort, a
//! stack overflow in a parser) ends the child, not the poller; the journal makes an interrupted apply
//! converge at the next poll, as after any crash.
//!
//! An [`Agent`] made in a test (or by a program embedding it) does the same work in its own process
//! unless [`Agent::isolate_work`] is called.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{apply_err, Agent, AgentError, PollOutcome};
use crate::plan::signing::SignedRecord;

/// Set in a child's environment: the process does the one piece of work on its standard input.
pub const ISOLATED_WORK_ENV: &str = "HONUA_AGENT_ISOLATED_WORK";

/// The most a child may answer: a ledger record or an outcome is a few KiB.
const MAX_ANSWER: u64 = 1 << 20;

/// How the agent starts a child: its own program and arguments.
#[derive(Debug, Clone)]
pub struct Isolation {
    program: PathBuf,
    args: Vec<OsString>,
}

impl Isolation {
    /// A child started as `program args…` (tests start stand-ins this way).
    pub fn new(program: PathBuf, args: Vec<OsString>) -> Isolation {
        Isolation { program, args }
    }

    /// This process's own program and arguments, as the child is to be started.
    pub fn of_this_process() -> Option<Isolation> {
        let program = std::env::current_exe().ok()?;
        Some(Isolation { program, args: std::env::args_os().skip(1).collect() })
    }
}

/// One piece of work for a child.
#[derive(Debug, Serialize, Deserialize)]
pub enum Work {
    /// The newest record of the Git ledger this agent may run (`Agent::desired_from_ledger`).
    Ledger,
    /// Apply a verified record (`Agent::apply_once`).
    Apply { record: Box<SignedRecord>, etag: Option<String> },
}

/// What a child answers.
#[derive(Debug, Serialize, Deserialize)]
pub enum Answer {
    Ledger(Option<SignedRecord>),
    Applied(PollOutcome),
    /// The work failed; the error as the agent would have said it.
    Failed(String),
}

impl Agent {
    /// From now on, the Git ledger is read and records are applied in a child process (see the module).
    pub fn isolate_work(&mut self, isolation: Isolation) {
        self.isolation = Some(isolation);
    }

    /// Does `work` in this process: what a child runs, and what the agent does without isolation.
    async fn do_work(&self, work: &Work) -> Result<Answer, AgentError> {
        Ok(match work {
            Work::Ledger => Answer::Ledger(self.desired_from_ledger().await?),
            Work::Apply { record, etag } => Answer::Applied(self.apply_once(record, etag.clone()).await?),
        })
    }

    /// Does `work` in a child when work is isolated, else here.
    async fn run_work(&self, work: Work) -> Result<Answer, AgentError> {
        match &self.isolation {
            Some(isolation) => self.in_child(isolation, &work).await,
            None => self.do_work(&work).await,
        }
    }

    /// The Git ledger's newest record for this agent, read in a child when work is isolated.
    pub(super) async fn read_ledger(&self) -> Result<Option<SignedRecord>, AgentError> {
        match self.run_work(Work::Ledger).await? {
            Answer::Ledger(record) => Ok(record),
            other => Err(unexpected(&other)),
        }
    }

    /// Applies `record`, in a child when work is isolated.
    pub(super) async fn apply_record(
        &self,
        record: &SignedRecord,
        etag: Option<String>,
    ) -> Result<PollOutcome, AgentError> {
        match self.run_work(Work::Apply { record: Box::new(record.clone()), etag }).await? {
            Answer::Applied(outcome) => Ok(outcome),
            other => Err(unexpected(&other)),
        }
    }

    async fn in_child(&self, isolation: &Isolation, work: &Work) -> Result<Answer, AgentError> {
        let mut command = tokio::process::Command::new(&isolation.program);
        command
            .args(&isolation.args)
            .env(ISOLATED_WORK_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // A stop that lands mid-apply is as a crash of the child: the journal converges later.
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                // The program was replaced or removed (an upgrade in place): do the work here.
                tracing::warn!(program = %isolation.program.display(), error = %e, "could not start a child for the work; doing it in this process");
                return self.do_work(work).await;
            }
        };
        let request = serde_json::to_vec(work).expect("work encodes");
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        // A failed write shows as a child that ends without an answer.
        let (_written, read) = tokio::join!(
            async move {
                stdin.write_all(&request).await?;
                stdin.shutdown().await
            },
            async move {
                let mut answer = Vec::new();
                (&mut stdout).take(MAX_ANSWER).read_to_end(&mut answer).await.map(|_| answer)
            }
        );
        let status = child.wait().await.map_err(|e| apply_err(format!("the child process: {e}")))?;
        let answer = read.ok().and_then(|bytes| serde_json::from_slice::<Answer>(&bytes).ok());
        match answer {
            Some(Answer::Failed(message)) => Err(AgentError::Apply(message)),
            Some(answer) => Ok(answer),
            None => Err(apply_err(format!(
                "the child process doing the work ended ({status}) without an answer; its log is above, and the next poll converges from the journal"
            ))),
        }
    }
}

/// The child is killed when the poller dies, however it dies (SIGKILL included): an orphan finishing
/// an apply while a restarted agent recovers from the journal would be two writers of one release.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut tokio::process::Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before the signal was armed.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the agent ended while its child started"));
            }
            Ok(())
        });
    }
}

/// Elsewhere the child outlives a parent killed outright, until its own work ends.
#[cfg(not(target_os = "linux"))]
fn die_with_parent(_: &mut tokio::process::Command) {}

fn unexpected(answer: &Answer) -> AgentError {
    apply_err(format!("the child process answered another work's result: {answer:?}"))
}

/// The child's side: reads one [`Work`] from standard input, does it, writes the [`Answer`].
pub async fn serve_one(agent: &Agent) -> std::io::Result<()> {
    use std::io::{Read, Write};
    // The parent writes the work and closes the pipe at once: a short blocking read.
    let mut request = Vec::new();
    std::io::stdin().take(MAX_ANSWER).read_to_end(&mut request)?;
    let answer = match serde_json::from_slice::<Work>(&request) {
        Ok(work) => agent.do_work(&work).await.unwrap_or_else(|e| Answer::Failed(e.to_string())),
        Err(e) => Answer::Failed(format!("the work for this child could not be read: {e}")),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&serde_json::to_vec(&answer).expect("answers encode"))?;
    stdout.flush()
}
