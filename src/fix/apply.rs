//! Applying a plan at the edge: each step in order, journaled as it lands; a failed step rolls the run back.

use std::path::{Path, PathBuf};

use crate::core::host::Host;

use super::{
    FixResult, StepState, fsops,
    journal::{self, Entry, Journal},
    plan::Action,
};

/// How the run ended.
pub struct Applied {
    /// The journal, when anything was changed and not rolled back.
    pub journal: Option<PathBuf>,
    /// The step that failed, when one did; the run was rolled back then.
    pub failure: Option<String>,
    /// Whether the rollback reversed everything (only meaningful after a failure).
    pub rolled_back: bool,
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
    host: &Host,
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
            let fs_path = host.path(path);
            let changed = fsops::change(&fs_path, old, new, stamp)?;
            journal.created_dirs.extend(changed.created_dirs);
            journal.entries.push(Entry::File {
                check: check.into(),
                path: path.clone(),
                fs_path,
                backup: changed.backup,
                written: new.clone(),
            });
        }
    }
    Ok(StepState::Applied)
}

/// Applies every step of `fixes` in order, updating each step's state. Runtime steps are skipped unless the host
/// is live. The journal is saved after every change; when a step fails, the changes of this run are reversed
/// newest first and, when all of them are, the journal goes too.
pub fn apply(
    fixes: &mut [FixResult],
    host: &Host,
    journal_path: &Path,
    started_at: &str,
    stamp: &str,
) -> Applied {
    let fault = fault_after();
    let mut journal = Journal::new(started_at.into(), host.root());
    // Which step each journal entry came from, to mark it rolled back.
    let mut origin: Vec<(usize, usize)> = vec![];
    let mut failure = None;
    'run: for (fi, fix) in fixes.iter_mut().enumerate() {
        for (si, s) in fix.steps.iter_mut().enumerate() {
            if s.step.action.is_runtime() && !host.is_live() {
                continue;
            }
            let before = journal.entries.len();
            let result = if fault == Some(before) {
                Err(format!(
                    "fault injected after {before} change(s) (K8SDOCTOR_FIX_FAULT_AFTER)"
                ))
            } else {
                apply_step(&s.step.action, &fix.id, host, stamp, &mut journal)
            };
            let result = result.and_then(|state| {
                if journal.entries.len() > before {
                    origin.push((fi, si));
                    journal.save(journal_path).map_err(|e| format!("{e:#}"))?;
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
            journal: (!journal.entries.is_empty()).then(|| journal_path.to_path_buf()),
            failure: None,
            rolled_back: false,
        };
    };
    for f in fixes.iter_mut() {
        for s in &mut f.steps {
            if s.state == StepState::Planned {
                s.state = StepState::NotRun;
            }
        }
    }
    let mut left = vec![];
    for (entry, (fi, si)) in journal.entries.iter().zip(&origin).rev() {
        let s = &mut fixes[*fi].steps[*si];
        match entry.reverse() {
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
        journal.discard(journal_path);
    } else {
        // Keep only what is still applied, so a later `--undo` reverses exactly that.
        journal.entries = left;
        let _ = journal.save(journal_path);
    }
    Applied {
        journal: (!complete).then(|| journal_path.to_path_buf()),
        failure: Some(failure),
        rolled_back: complete,
    }
}
