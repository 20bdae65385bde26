//! The journal of an apply: every step done and every backup taken, saved after each step; undo and rollback read it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::core::host::run_command;

use super::{
    fsops,
    plan::{Content, NftRuleStep, RuleStep},
};

/// How long one runtime command (or its reversal) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
const VERSION: u32 = 1;

/// One change that was made, with what is needed to reverse it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    File {
        check: String,
        /// The host path (as on the host) and where it is on this filesystem (under the root).
        path: String,
        fs_path: PathBuf,
        /// The original, kept beside the file; absent when the fix created the file.
        backup: Option<PathBuf>,
        /// What the fix wrote, so an undo never overwrites a later edit.
        written: Content,
    },
    Command {
        check: String,
        argv: Vec<String>,
        undo: Option<Vec<String>>,
    },
    Rule {
        check: String,
        rule: RuleStep,
    },
    NftRule {
        check: String,
        rule: NftRuleStep,
        handle: u64,
    },
}

impl Entry {
    pub fn check(&self) -> &str {
        match self {
            Entry::File { check, .. }
            | Entry::Command { check, .. }
            | Entry::Rule { check, .. }
            | Entry::NftRule { check, .. } => check,
        }
    }

    /// What reversing this entry does, as shown to the operator.
    pub fn describe_reverse(&self) -> String {
        match self {
            Entry::File {
                path,
                backup: Some(_),
                ..
            } => format!("restore {path} from its backup"),
            Entry::File { path, .. } => format!("remove {path} (the fix created it)"),
            Entry::Command { undo: Some(u), .. } => shell_line(u),
            Entry::Command {
                argv, undo: None, ..
            } => format!("cannot be reversed: {}", shell_line(argv)),
            Entry::Rule { rule, .. } => shell_line(&rule.delete_argv()),
            Entry::NftRule { rule, handle, .. } => shell_line(&rule.delete_argv(*handle)),
        }
    }

    /// Reverses the entry. A command without an undo is an error saying what the operator must do.
    pub fn reverse(&self) -> Result<(), String> {
        match self {
            Entry::File {
                fs_path,
                backup,
                written,
                ..
            } => fsops::restore(fs_path, backup.as_deref(), written),
            Entry::Command { undo: Some(u), .. } => run(u),
            Entry::Command {
                argv, undo: None, ..
            } => Err(format!(
                "`{}` has no automatic reversal; its file changes are undone, redo it by hand if needed",
                shell_line(argv)
            )),
            Entry::Rule { rule, .. } => run(&rule.delete_argv()),
            Entry::NftRule { rule, handle, .. } => run(&rule.delete_argv(*handle)),
        }
    }
}

/// Runs a runtime command with the deadline; the error names the command and what it said.
pub fn run(argv: &[String]) -> Result<(), String> {
    output(argv).map(|_| ())
}

/// Like [`run`], returning what the command printed.
pub fn output(argv: &[String]) -> Result<String, String> {
    let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
    run_command(&argv[0], &args, COMMAND_TIMEOUT)
        .map_err(|e| format!("`{}`: {e}", shell_line(argv)))
}

/// A command line as a shell would take it back.
pub fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A journal: the run it belongs to and its entries in the order they were applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    pub started_at: String,
    /// The root the run changed (`/` for the live host).
    pub root: String,
    pub entries: Vec<Entry>,
    /// Directories the run created (for files and for the journal itself), removed again by an undo.
    pub created_dirs: Vec<PathBuf>,
}

impl Journal {
    pub fn new(started_at: String, root: &Path) -> Journal {
        Journal {
            version: VERSION,
            started_at,
            root: root.display().to_string(),
            entries: vec![],
            created_dirs: vec![],
        }
    }

    /// Saves the journal atomically, creating its directory (and recording that) the first time.
    pub fn save(&mut self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            let mut missing = vec![];
            let mut d = dir;
            while !d.exists() {
                missing.push(d.to_path_buf());
                d = d.parent().unwrap_or(Path::new("/"));
            }
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            missing.reverse();
            self.created_dirs.extend(missing);
        }
        let text = serde_json::to_vec_pretty(self)?;
        fsops::write_private(path, &text)
            .with_context(|| format!("cannot write the journal {}", path.display()))
    }

    pub fn load(path: &Path) -> Result<Journal> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the journal {}", path.display()))?;
        let j: Journal = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a k8sdoctor fix journal", path.display()))?;
        if j.version != VERSION {
            bail!(
                "{}: journal version {} is not {VERSION}",
                path.display(),
                j.version
            );
        }
        Ok(j)
    }

    /// After every entry is reversed: the journal and the directories the run made go too.
    pub fn discard(&self, path: &Path) {
        let _ = std::fs::remove_file(path);
        fsops::remove_dirs(&self.created_dirs);
    }
}

/// The time stamp and sequence number in a journal name (`fix-STAMP.json`, `fix-STAMP-N.json`).
fn journal_key(name: &str) -> Option<(String, u32)> {
    let core = name.strip_prefix("fix-")?.strip_suffix(".json")?;
    Some(match core.split_once('-') {
        Some((stamp, n)) => (stamp.to_string(), n.parse().ok()?),
        None => (core.to_string(), 0),
    })
}

/// The newest journal in a directory, by the time stamp and sequence number in its name.
pub fn latest(dir: &Path) -> Result<PathBuf> {
    std::fs::read_dir(dir)
        .with_context(|| format!("no journal to undo: cannot read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((journal_key(e.file_name().to_str()?)?, e.path())))
        .max()
        .map(|(_, p)| p)
        .with_context(|| format!("no journal to undo in {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_lines_quote_what_a_shell_would_split() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shell_line(&a(&["sysctl", "-w", "net.ipv4.ip_forward=1"])),
            "sysctl -w net.ipv4.ip_forward=1"
        );
        assert_eq!(
            shell_line(&a(&["swapoff", "/swap file", "it's"])),
            r"swapoff '/swap file' 'it'\''s'"
        );
    }

    #[test]
    fn journals_round_trip_and_the_latest_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("var/lib/k8sdoctor/fix");
        let mut j = Journal::new("2026-01-01T00:00:00Z".into(), dir.path());
        j.entries.push(Entry::Command {
            check: "swap.active".into(),
            argv: vec!["swapoff".into(), "/dev/dm-1".into()],
            undo: Some(vec!["swapon".into(), "/dev/dm-1".into()]),
        });
        j.save(&jdir.join("fix-20260101T000000Z.json")).unwrap();
        assert_eq!(j.created_dirs.len(), 4);
        j.save(&jdir.join("fix-20260102T000000Z.json")).unwrap();
        j.save(&jdir.join("fix-20260102T000000Z-1.json")).unwrap();
        let l = latest(&jdir).unwrap();
        assert!(l.ends_with("fix-20260102T000000Z-1.json"), "{l:?}");
        std::fs::remove_file(&l).unwrap();
        let l = latest(&jdir).unwrap();
        assert!(l.ends_with("fix-20260102T000000Z.json"));
        let back = Journal::load(&l).unwrap();
        assert_eq!(back.entries[0].describe_reverse(), "swapon /dev/dm-1");
        std::fs::remove_file(jdir.join("fix-20260101T000000Z.json")).unwrap();
        back.discard(&l);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
