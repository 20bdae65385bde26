//! Applying a plan at the edge: each step in order, journaled as it lands; a failed step rolls the run back.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use pathrs::Root;

use crate::core::host::Host;

use super::{
    FixResult, StepState, fsops,
    journal::{self, Entry, Journal, JournalDir},
    plan::{Action, Content},
};

/// How the run ended.
pub struct Applied {
    /// The journal, when anything was changed and not rolled back.
    pub journal: Option<PathBuf>,
    /// The step that failed, when one did; the run was rolled back then.
    pub failure: Option<String>,
    /// Whether the rollback reversed everything (only meaningful after a failure).
    pub rolled_back: bool,
    /// Whether the run stopped before its first change.
    pub refused: bool,
}

/// The fault-injection hook of debug and test builds: fail the step after `N` changes (`K8SDOCTOR_FIX_FAULT_AFTER=N`).
pub fn fault_after() -> Option<usize> {
    if cfg!(debug_assertions) {
        std::env::var("K8SDOCTOR_FIX_FAULT_AFTER")
            .ok()?
            .parse()
            .ok()
    } else {
        None
    }
}

fn apply_step(
    action: &Action,
    check: &str,
    tree: &Root,
    stamp: &str,
    journal: &mut Journal,
) -> Result<StepState, String> {
    match action {
        Action::Command { argv, undo } => {
            journal::run(argv)?;
            journal.entries.push(Entry::Command {
                check: check.into(),
                argv: argv.clone(),
                undo: undo.clone(),
            });
        }
        Action::Rule(rule) => {
            if journal::run(&rule.check_argv()).is_ok() {
                return Ok(StepState::AlreadyDone);
            }
            journal::run(&rule.insert_argv())?;
            journal.entries.push(Entry::Rule {
                check: check.into(),
                rule: rule.clone(),
            });
        }
        Action::NftRule(rule) => {
            if rule.find(&journal::output(&rule.list_argv())?).is_some() {
                return Ok(StepState::AlreadyDone);
            }
            journal::run(&rule.insert_argv())?;
            let handle = rule
                .find(&journal::output(&rule.list_argv())?)
                .ok_or_else(|| {
                    format!(
                        "inserted `{}` but cannot find it in the chain to journal its handle",
                        rule.rule.join(" ")
                    )
                })?;
            journal.entries.push(Entry::NftRule {
                check: check.into(),
                rule: rule.clone(),
                handle,
            });
        }
        Action::File { path, old, new } => {
            let changed = fsops::change(tree, Path::new(path), old, new, stamp)?;
            journal.created_dirs.extend(changed.created_dirs);
            journal.entries.push(Entry::File {
                check: check.into(),
                path: path.clone(),
                backup: changed.backup,
                written: new.clone(),
            });
        }
    }
    Ok(StepState::Applied)
}

/// Checks every file step before anything changes: each path plain and inside the root, the directories
/// above it directories inside the root, and the file still as planned (a file two fixes edit: as the earlier one leaves it).
fn preflight(fixes: &[FixResult], tree: &Root, jd: &JournalDir) -> Result<(), String> {
    jd.check()?;
    let mut after: BTreeMap<&str, &Content> = BTreeMap::new();
    for fix in fixes {
        for s in &fix.steps {
            let Action::File { path, old, new } = &s.step.action else {
                continue;
            };
            let checked = match after.get(path.as_str()) {
                Some(prev) if *prev != old => Err(format!(
                    "{path}: two fixes disagree about its contents; run the fix again"
                )),
                Some(_) => fsops::plain(Path::new(path)),
                None => fsops::can_change(tree, Path::new(path), old),
            };
            checked.map_err(|e| format!("{}: {e}", fix.id))?;
            after.insert(path, new);
        }
    }
    Ok(())
}

/// Applies every step of `fixes` in order, updating each step's state. Runtime steps are skipped unless the host
/// is live. Every file step is checked first, and the run stops before any change when one would fail. The
/// journal is saved after every change; when a step fails, the changes of this run are reversed newest first
/// and, when all of them are, the journal goes too.
pub fn apply(
    fixes: &mut [FixResult],
    host: &Host,
    jd: &JournalDir,
    journal_name: &str,
    started_at: &str,
    stamp: &str,
) -> Applied {
    let fault = fault_after();
    let journal_path = jd.shown(journal_name);
    let live = host.is_live();
    let tree = match host.tree() {
        Ok(t) => t,
        Err(e) => return refused(fixes, format!("cannot open the root: {e}")),
    };
    if let Err(e) = preflight(fixes, tree, jd) {
        return refused(fixes, e);
    }
    let mut journal = Journal::new(started_at.into(), host.canonical());
    // Which step each journal entry came from, to mark it rolled back.
    let mut origin: Vec<(usize, usize)> = vec![];
    let mut failure = None;
    'run: for (fi, fix) in fixes.iter_mut().enumerate() {
        for (si, s) in fix.steps.iter_mut().enumerate() {
            if s.step.action.is_runtime() && !live {
                continue;
            }
            let before = journal.entries.len();
            let result = if fault == Some(before) {
                Err(format!(
                    "fault injected after {before} change(s) (K8SDOCTOR_FIX_FAULT_AFTER)"
                ))
            } else {
                apply_step(&s.step.action, &fix.id, tree, stamp, &mut journal)
            };
            let result = result.and_then(|state| {
                if journal.entries.len() > before {
                    origin.push((fi, si));
                    journal
                        .save(jd, journal_name)
                        .map_err(|e| format!("{e:#}"))?;
                }
                Ok(state)
            });
            match result {
                Ok(state) => s.state = state,
                Err(e) => {
                    s.state = StepState::Failed;
                    s.detail = Some(e.clone());
                    failure = Some(format!("{}: {e}", fix.id));
                    break 'run;
                }
            }
        }
    }
    let Some(failure) = failure else {
        return Applied {
            journal: (!journal.entries.is_empty()).then_some(journal_path),
            failure: None,
            rolled_back: false,
            refused: false,
        };
    };
    not_run(fixes);
    let mut left = vec![];
    for (entry, (fi, si)) in journal.entries.iter().zip(&origin).rev() {
        let s = &mut fixes[*fi].steps[*si];
        match entry.reverse(tree, live) {
            Ok(()) => s.state = StepState::RolledBack,
            Err(e) if matches!(entry, Entry::Command { undo: None, .. }) => s.detail = Some(e),
            Err(e) => {
                left.insert(0, entry.clone());
                s.detail = Some(format!("rollback failed: {e}"));
            }
        }
    }
    let complete = left.is_empty();
    if complete {
        journal.discard(tree, jd, journal_name);
    } else {
        // Keep only what is still applied, so a later `--undo` reverses exactly that.
        journal.entries = left;
        let _ = journal.save(jd, journal_name);
    }
    Applied {
        journal: (!complete).then_some(journal_path),
        failure: Some(failure),
        rolled_back: complete,
        refused: false,
    }
}

fn not_run(fixes: &mut [FixResult]) {
    for f in fixes.iter_mut() {
        for s in &mut f.steps {
            if s.state == StepState::Planned {
                s.state = StepState::NotRun;
            }
        }
    }
}

/// A run stopped before any change.
fn refused(fixes: &mut [FixResult], why: String) -> Applied {
    not_run(fixes);
    Applied {
        journal: None,
        failure: Some(why),
        rolled_back: true,
        refused: true,
    }
}
