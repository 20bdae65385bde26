//! `k8sdoctor fix`: plans the host fixes from the facts the checks read, previews them (dry run), applies them
//! with a journal, verifies by running the checks again, and undoes them from the journal.

mod apply;
pub mod edit;
pub mod fsops;
pub mod journal;
pub mod plan;
mod render;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::{
    core::check::Status,
    core::config::{Config, RoleChoice, Selection},
    core::engine,
    core::host::Host,
    core::source::{Facts, Io},
    report::{Report, Tool},
};

use plan::{Action, CheckFix, Files, Step};

pub use render::render;

/// Bump when a field of [`FixReport`] is renamed or removed.
pub const SCHEMA_VERSION: &str = "1";
/// Where journals go under the root unless `--journal-dir` says otherwise.
pub const JOURNAL_DIR: &str = "/var/lib/k8sdoctor/fix";

/// What `fix` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    DryRun,
    Apply,
    /// Undo a journal: the one named, or the newest in the journal directory.
    Undo(Option<PathBuf>),
}

/// Output formats of `fix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixFormat {
    Table,
    Json,
}

/// Everything a `fix` run needs to know; built by `main.rs` from flags.
#[derive(Debug, Clone)]
pub struct FixOptions {
    pub root: PathBuf,
    /// Checks to fix; empty means every failing or warning check that has a fix.
    pub ids: Vec<String>,
    pub mode: Mode,
    pub journal_dir: Option<PathBuf>,
    pub timeout: Duration,
    /// The role the checks are run for (the control-plane checks fix only on control-plane nodes).
    pub role: RoleChoice,
}

impl Default for FixOptions {
    fn default() -> Self {
        FixOptions {
            root: "/".into(),
            ids: vec![],
            mode: Mode::DryRun,
            journal_dir: None,
            timeout: Duration::from_secs(10),
            role: RoleChoice::Auto,
        }
    }
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Planned,
    Applied,
    /// The change was already in place (a firewall rule `iptables -C` found).
    AlreadyDone,
    /// A runtime step under `--root` other than `/`.
    Skipped,
    Failed,
    RolledBack,
    /// Not reached: an earlier step failed.
    NotRun,
}

/// One step of a fix as reported: the step, a preview (command line or unified diff), and its state.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    #[serde(flatten)]
    pub step: Step,
    pub preview: String,
    pub state: StepState,
    pub detail: Option<String>,
}

/// The fix of one check as reported.
#[derive(Debug, Clone, Serialize)]
pub struct FixResult {
    pub id: String,
    pub before: Status,
    pub message: String,
    pub steps: Vec<StepResult>,
    pub notes: Vec<String>,
}

/// One entry of an undo.
#[derive(Debug, Clone, Serialize)]
pub struct Reversal {
    pub check: String,
    pub action: String,
    pub ok: bool,
    pub detail: Option<String>,
}

/// A check's status before and after the run.
#[derive(Debug, Clone, Serialize)]
pub struct Verify {
    pub id: String,
    pub before: Status,
    pub after: Status,
    pub message: String,
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    NothingToDo,
    Planned,
    Declined,
    Applied,
    /// A step failed and every change of the run was reversed.
    RolledBack,
    /// A step could not be made (a path leaves the root, a file changed since the plan): nothing was changed.
    Refused,
    /// A step failed and some change could not be reversed, or an undo was incomplete.
    Failed,
    Undone,
}

/// The `fix` report: the JSON contract of `fix -o json`.
#[derive(Debug, Clone, Serialize)]
pub struct FixReport {
    pub schema_version: String,
    pub tool: Tool,
    pub mode: &'static str,
    pub root: String,
    /// Whether runtime steps act on this machine (`--root /`).
    pub live: bool,
    pub fixes: Vec<FixResult>,
    pub reversals: Vec<Reversal>,
    pub journal: Option<String>,
    pub verify: Vec<Verify>,
    pub outcome: Outcome,
    pub message: String,
}

impl FixReport {
    /// Steps that would change something here (runtime steps under another root do not).
    pub fn changes(&self) -> usize {
        self.fixes
            .iter()
            .flat_map(|f| &f.steps)
            .filter(|s| self.live || !s.step.action.is_runtime())
            .count()
    }

    /// Exit 1 when a step failed or an undo was incomplete.
    pub fn failed(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::RolledBack | Outcome::Refused | Outcome::Failed
        )
    }
}

/// The preview of a step, masked like every report: a file may hold a token.
fn preview(step: &Step) -> String {
    crate::mask::mask_secrets(&render::preview(&step.action))
}

/// The checks' config for `fix`: offline (no kubeconfig read, no exec plugin, no API request)
/// unless a check that talks to the cluster is named; host fixes need only host facts.
fn config(opts: &FixOptions, ids: Vec<String>) -> Config {
    let network = crate::checks::registry().any(|c| {
        c.needs.iter().any(|s| s.io() == Io::Network)
            && ids.iter().any(|id| id.eq_ignore_ascii_case(c.id))
    });
    Config {
        offline: !network,
        root: opts.root.clone(),
        selection: Selection {
            only: ids,
            skip: vec![],
        },
        timeout: opts.timeout,
        role: opts.role,
        ..Config::default()
    }
}

/// Reads the files the planners may edit, as they are now.
fn read_files(host: &Host, facts: &Facts) -> Files {
    let mut files = Files::default();
    for fix in crate::checks::fixes() {
        for p in (fix.edits)(facts) {
            let state = match host.tree() {
                Ok(t) => {
                    fsops::plain(Path::new(&p)).and_then(|_| fsops::read_state(t, Path::new(&p)))
                }
                Err(e) => Err(format!("cannot open the root: {e}")),
            };
            files.insert(&p, state);
        }
    }
    files
}

/// Plans the fixes of the failing and warning checks (or of the named ones): pure, given the facts and files.
/// A file two fixes edit (sysctl.d) is planned in sequence: the later fix starts from the earlier one's result.
pub fn plan(report: &Report, facts: &Facts, files: &Files, explicit: bool) -> Vec<CheckFix> {
    let mut files = files.clone();
    let mut out = vec![];
    for r in &report.results {
        let problem = matches!(r.status, Status::Warn | Status::Fail);
        let mut fix = CheckFix::new(&r.id, r.status, &r.message);
        match crate::checks::fix(&r.id).map(|f| f.plan) {
            None if explicit => fix.note(format!(
                "{} has no automatic fix; `k8sdoctor explain {}` says what to do",
                r.id, r.id
            )),
            None => continue,
            Some(_) if !problem && explicit => fix.note(format!(
                "nothing to fix: the check is {}",
                r.status.as_str()
            )),
            Some(_) if !problem => continue,
            Some(p) => {
                if let Err(e) = p(facts, &files, &mut fix) {
                    fix.note(format!("cannot plan this fix: {e}"));
                }
                for s in &fix.steps {
                    if let Action::File { path, new, .. } = &s.action {
                        files.insert(path, Ok(new.clone()));
                    }
                }
            }
        }
        out.push(fix);
    }
    out
}

fn new_report(mode: &'static str, host: &Host) -> FixReport {
    FixReport {
        schema_version: SCHEMA_VERSION.into(),
        tool: Tool::default(),
        mode,
        root: host.root().display().to_string(),
        live: host.is_live(),
        fixes: vec![],
        reversals: vec![],
        journal: None,
        verify: vec![],
        outcome: Outcome::NothingToDo,
        message: String::new(),
    }
}

/// Runs the checks named and pairs their status with the one before.
fn verify(opts: &FixOptions, before: &[(String, Status)]) -> Result<Vec<Verify>> {
    if before.is_empty() {
        return Ok(vec![]);
    }
    let ids = before.iter().map(|(id, _)| id.clone()).collect();
    let after = engine::run(&config(opts, ids)).context("cannot run the checks again")?;
    Ok(before
        .iter()
        .filter_map(|(id, b)| {
            let r = after.results.iter().find(|r| &r.id == id)?;
            Some(Verify {
                id: id.clone(),
                before: *b,
                after: r.status,
                message: r.message.clone(),
            })
        })
        .collect())
}

fn stamp() -> (String, String) {
    let now = jiff::Timestamp::now();
    (
        now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        now.strftime("%Y%m%dT%H%M%SZ").to_string(),
    )
}

/// Runs `fix`. `confirm` sees the plan before anything changes and says whether to go on.
pub fn run(
    opts: &FixOptions,
    confirm: &mut dyn FnMut(&FixReport) -> Result<bool>,
) -> Result<FixReport> {
    let host = Host::new(&opts.root).context("cannot read host files")?;
    let jd = journal::JournalDir::new(&host, opts.journal_dir.as_deref(), JOURNAL_DIR)?;
    if let Mode::Undo(named) = &opts.mode {
        let name = match named {
            Some(p) => jd.name_of(p)?,
            None => jd.latest()?,
        };
        return undo(opts, &host, &jd, &name, confirm);
    }
    let explicit = !opts.ids.is_empty();
    let (report, facts) = engine::run_with_facts(&config(opts, opts.ids.clone()))?;
    let files = read_files(&host, &facts);
    let planned = plan(&report, &facts, &files, explicit);
    let apply = opts.mode == Mode::Apply;
    let mut out = new_report(if apply { "apply" } else { "dry-run" }, &host);
    out.fixes = planned
        .into_iter()
        .map(|f| FixResult {
            id: f.id,
            before: f.before,
            message: f.message,
            steps: f
                .steps
                .into_iter()
                .map(|s| StepResult {
                    preview: preview(&s),
                    state: StepState::Planned,
                    detail: None,
                    step: s,
                })
                .collect(),
            notes: f.notes,
        })
        .collect();
    if !host.is_live() {
        for s in out.fixes.iter_mut().flat_map(|f| &mut f.steps) {
            if s.step.action.is_runtime() {
                s.state = StepState::Skipped;
                s.detail = Some(format!(
                    "runtime step: --root {} is not the live host",
                    host.root().display()
                ));
            }
        }
    }
    let changes = out.changes();
    let skipped = out.fixes.iter().flat_map(|f| &f.steps).count() - changes;
    let skipped_note = if skipped > 0 {
        format!(" ({skipped} runtime step(s) skipped: --root is not /)")
    } else {
        String::new()
    };
    if changes == 0 {
        out.message = format!("nothing to change{skipped_note}");
        return Ok(out);
    }
    if !apply {
        out.outcome = Outcome::Planned;
        out.message = format!(
            "dry run: {changes} change(s) planned, nothing was changed; apply with --apply{skipped_note}"
        );
        return Ok(out);
    }
    if !confirm(&out)? {
        out.outcome = Outcome::Declined;
        out.message = "not applied: declined".into();
        return Ok(out);
    }
    let (started_at, stamp) = stamp();
    let name = jd.free_name(&stamp);
    let done = apply::apply(&mut out.fixes, &host, &jd, &name, &started_at, &stamp);
    out.journal = done.journal.as_ref().map(|p| p.display().to_string());
    out.outcome = match (&done.failure, done.rolled_back) {
        (Some(_), _) if done.refused => Outcome::Refused,
        (None, _) => Outcome::Applied,
        (Some(_), true) => Outcome::RolledBack,
        (Some(_), false) => Outcome::Failed,
    };
    out.message = match (&done.failure, &done.journal) {
        (None, Some(j)) => format!(
            "{changes} change(s) applied{skipped_note}; undo with `{}`",
            undo_command(&host, opts, j)
        ),
        (None, None) => format!("nothing was changed{skipped_note}"),
        (Some(f), _) if done.refused => {
            format!("refused before any change, nothing was changed: {f}")
        }
        (Some(f), _) if done.rolled_back => {
            format!("a step failed, every change of this run was reversed: {f}")
        }
        (Some(f), _) => format!(
            "a step failed and some changes could not be reversed (see the steps; the journal keeps them): {f}"
        ),
    };
    let before: Vec<(String, Status)> =
        out.fixes.iter().map(|f| (f.id.clone(), f.before)).collect();
    out.verify = verify(opts, &before)?;
    Ok(out)
}

/// The command that undoes this run: the same root and journal directory, since only journals found there
/// are trusted.
fn undo_command(host: &Host, opts: &FixOptions, journal: &Path) -> String {
    let mut argv: Vec<String> = vec!["k8sdoctor".into(), "fix".into()];
    if !host.is_live() {
        argv.extend(["--root".into(), host.canonical().display().to_string()]);
    }
    if opts.journal_dir.is_some()
        && let Some(d) = journal.parent()
    {
        argv.extend(["--journal-dir".into(), d.display().to_string()]);
    }
    argv.extend(["--undo".into(), journal.display().to_string()]);
    journal::shell_line(&argv)
}

fn undo(
    opts: &FixOptions,
    host: &Host,
    jd: &journal::JournalDir,
    name: &str,
    confirm: &mut dyn FnMut(&FixReport) -> Result<bool>,
) -> Result<FixReport> {
    let mut j = journal::Journal::load(jd, name, host)?;
    let tree = host.tree()?;
    let path = jd.shown(name);
    let path = path.as_path();
    let mut out = new_report("undo", host);
    out.journal = Some(path.display().to_string());
    out.reversals = j
        .entries
        .iter()
        .rev()
        .map(|e| Reversal {
            check: e.check().into(),
            action: e.describe_reverse(),
            ok: false,
            detail: None,
        })
        .collect();
    if !confirm(&out)? {
        out.outcome = Outcome::Declined;
        out.message = "not undone: declined".into();
        return Ok(out);
    }
    let mut ids: Vec<String> = j.entries.iter().map(|e| e.check().to_string()).collect();
    ids.sort();
    ids.dedup();
    let before = engine::run(&config(opts, ids.clone()))?;
    let mut left = vec![];
    for (e, r) in j.entries.iter().rev().zip(&mut out.reversals) {
        match e.reverse(tree, host.is_live()) {
            Ok(()) => r.ok = true,
            Err(msg) => {
                // A command with no reversal is reported, not a failure of the undo.
                if !matches!(e, journal::Entry::Command { undo: None, .. }) {
                    left.insert(0, e.clone());
                }
                r.detail = Some(msg);
            }
        }
    }
    let total = j.entries.len();
    if left.is_empty() {
        j.discard(tree, jd, name);
        out.outcome = Outcome::Undone;
        out.message = format!("undone: {total} change(s) reversed; the journal was removed");
    } else {
        // Keep only what is still applied, so the next `--undo` retries exactly that.
        j.entries = left;
        j.save(jd, name)?;
        out.outcome = Outcome::Failed;
        out.message = format!(
            "undo incomplete: see the entries that failed; {} is kept",
            path.display()
        );
    }
    let b: Vec<(String, Status)> = before
        .results
        .iter()
        .map(|r| (r.id.clone(), r.status))
        .collect();
    out.verify = verify(opts, &b)?;
    Ok(out)
}
