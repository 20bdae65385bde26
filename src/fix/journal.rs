//! The journal of an apply: every step done and every backup taken, saved after each step; undo and rollback read it.
//!
//! Every path in a journal is a host path inside the root the run changed, and the journal itself lives in a
//! directory resolved the same confined way. An undo trusts a journal only when it is a regular file in that
//! directory, owned by root (or the user running), writable by nobody else, written for this same root, and
//! every path in it plain and inside the root; runtime commands are never run for a root that is not `/`.

use std::{
    io::Read,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use pathrs::{Root, flags::OpenFlags};
use serde::{Deserialize, Serialize};

use crate::core::host::{Host, MAX_FILE, io_error, run_command};

use super::{
    fsops,
    plan::{Content, NftRuleStep, RuleStep},
};

/// How long one runtime command (or its reversal) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
const VERSION: u32 = 2;

/// One change that was made, with what is needed to reverse it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    File {
        check: String,
        /// The host path (as on the host, resolved inside the root).
        path: String,
        /// The original, kept beside the file (a host path too); absent when the fix created the file.
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

    /// Whether reversing it runs a command (never done for a root that is not the live host).
    pub fn is_runtime(&self) -> bool {
        !matches!(self, Entry::File { .. })
    }

    /// Reverses the entry inside `tree`; `live` says whether commands may run. A command without an undo
    /// is an error saying what the operator must do.
    pub fn reverse(&self, tree: &Root, live: bool) -> Result<(), String> {
        if self.is_runtime() && !live {
            return Err(format!(
                "not run: `{}` is a runtime command and the root is not the live host",
                self.describe_reverse()
            ));
        }
        match self {
            Entry::File {
                path,
                backup,
                written,
                ..
            } => fsops::restore(tree, Path::new(path), backup.as_deref(), written),
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
    /// The root the run changed, absolute and canonical (`/` for the live host).
    pub root: String,
    pub entries: Vec<Entry>,
    /// Directories the run created for files (host paths inside the root), removed again by an undo.
    pub created_dirs: Vec<PathBuf>,
    /// Directories the run created for the journal itself (inside the journal directory's tree).
    #[serde(default)]
    pub journal_dirs: Vec<PathBuf>,
}

/// Where journals are kept: a directory resolved inside a root (the host's own, or `/` for `--journal-dir`).
pub struct JournalDir {
    tree: Root,
    /// The directory, as a path inside `tree`.
    dir: PathBuf,
    /// Where it is on this machine (for messages and to match a journal named on the command line).
    shown: PathBuf,
}

/// Makes a path of the operator's absolute (against the working directory) and free of `.`/`..` and links
/// where it exists, so it compares with the journal directory.
fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p)
        .with_context(|| format!("{} cannot be made absolute", p.display()))?;
    Ok(std::fs::canonicalize(&abs).unwrap_or(abs))
}

impl JournalDir {
    /// `--journal-dir DIR` (the operator's own path), else `dir` under the host's root.
    pub fn new(host: &Host, explicit: Option<&Path>, dir: &str) -> Result<JournalDir> {
        match explicit {
            Some(d) => {
                let abs = absolute(d)?;
                fsops::plain(&abs).map_err(anyhow::Error::msg)?;
                Ok(JournalDir {
                    tree: Root::open("/").map_err(io_error).context("cannot open /")?,
                    dir: abs.clone(),
                    shown: abs,
                })
            }
            None => Ok(JournalDir {
                tree: host
                    .tree()?
                    .try_clone()
                    .map_err(io_error)
                    .context("cannot open the root")?,
                dir: dir.into(),
                shown: host.canonical().join(dir.trim_start_matches('/')),
            }),
        }
    }

    /// Where the journal `name` is on this machine.
    pub fn shown(&self, name: &str) -> PathBuf {
        self.shown.join(name)
    }

    /// Checks, before anything changes, that a journal can be written here.
    pub fn check(&self) -> Result<(), String> {
        fsops::missing_parents(&self.tree, &self.dir.join("fix-.json"))
            .map(|_| ())
            .map_err(|e| format!("cannot keep the journal in {}: {e}", self.shown.display()))
    }

    /// A free journal name for this run.
    pub fn free_name(&self, stamp: &str) -> String {
        (0..)
            .map(|n| match n {
                0 => format!("fix-{stamp}.json"),
                n => format!("fix-{stamp}-{n}.json"),
            })
            .find(|name| {
                self.tree
                    .resolve_nofollow(self.dir.join(name))
                    .is_err_and(|e| io_error(e).kind() == std::io::ErrorKind::NotFound)
            })
            .expect("an unbounded range yields a free name")
    }

    /// The name of a journal the operator named: it must be a journal file directly in this directory.
    pub fn name_of(&self, named: &Path) -> Result<String> {
        let abs = absolute(named)?;
        let name = abs
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| journal_key(n).is_some())
            .map(String::from);
        match name {
            Some(n) if abs.parent() == Some(self.shown.as_path()) => Ok(n),
            _ => bail!(
                "{} is not a journal in {}: only journals this tool wrote there are undone (name it with --journal-dir, or --root)",
                named.display(),
                self.shown.display()
            ),
        }
    }

    /// The newest journal in the directory, by the time stamp and sequence number in its name.
    pub fn latest(&self) -> Result<String> {
        let no = || format!("no journal to undo in {}", self.shown.display());
        let dir = self
            .tree
            .open_subpath(&self.dir, OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY)
            .map_err(io_error)
            .with_context(|| format!("no journal to undo: cannot read {}", self.shown.display()))?;
        rustix::fs::Dir::read_from(&dir)
            .with_context(no)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_str().ok()?.to_string();
                Some((journal_key(&name)?, name))
            })
            .max()
            .map(|(_, n)| n)
            .with_context(no)
    }
}

impl Journal {
    pub fn new(started_at: String, root: &Path) -> Journal {
        Journal {
            version: VERSION,
            started_at,
            root: root.display().to_string(),
            entries: vec![],
            created_dirs: vec![],
            journal_dirs: vec![],
        }
    }

    /// Saves the journal atomically as `name` in `jd`, creating its directory (and recording that) the first time.
    pub fn save(&mut self, jd: &JournalDir, name: &str) -> Result<()> {
        let path = jd.dir.join(name);
        let shown = jd.shown(name);
        let made = fsops::make_parents(&jd.tree, &path)
            .with_context(|| format!("cannot create {}", jd.shown.display()))?;
        self.journal_dirs.extend(made);
        let text = serde_json::to_vec_pretty(self)?;
        fsops::write_private(&jd.tree, &path, &text)
            .with_context(|| format!("cannot write the journal {}", shown.display()))
    }

    /// Loads the journal `name` from `jd` for an undo of `host`, trusting it only as far as the module says.
    pub fn load(jd: &JournalDir, name: &str, host: &Host) -> Result<Journal> {
        let shown = jd.shown(name);
        let s = shown.display();
        let handle = jd
            .tree
            .resolve_nofollow(jd.dir.join(name))
            .map_err(io_error)
            .with_context(|| format!("cannot read the journal {s}"))?;
        let st = rustix::fs::fstat(&handle).with_context(|| format!("cannot inspect {s}"))?;
        let untrusted =
            |why: &str| anyhow::anyhow!("{s} is not trusted: {why}; nothing was undone");
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(untrusted("it is not a regular file"));
        }
        let me = rustix::process::geteuid().as_raw();
        if st.st_uid != 0 && st.st_uid != me {
            return Err(untrusted(&format!(
                "it is owned by uid {}, not root",
                st.st_uid
            )));
        }
        if st.st_mode & 0o022 != 0 {
            return Err(untrusted(&format!(
                "others may write it (mode {:o})",
                st.st_mode & 0o7777
            )));
        }
        let mut text = Vec::new();
        let file = jd
            .tree
            .open_subpath(
                jd.dir.join(name),
                OpenFlags::O_RDONLY | OpenFlags::O_NONBLOCK | OpenFlags::O_NOFOLLOW,
            )
            .map_err(io_error)
            .with_context(|| format!("cannot read the journal {s}"))?;
        // The file read must be the one inspected, not one swapped in since.
        let opened = rustix::fs::fstat(&file).with_context(|| format!("cannot inspect {s}"))?;
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) {
            return Err(untrusted("it was replaced while being read"));
        }
        file.take(MAX_FILE + 1)
            .read_to_end(&mut text)
            .with_context(|| format!("cannot read the journal {s}"))?;
        if text.len() as u64 > MAX_FILE {
            return Err(untrusted("it is larger than a journal can be"));
        }
        let j: Journal = serde_json::from_slice(&text)
            .with_context(|| format!("{s} is not a k8sdoctor fix journal"))?;
        if j.version != VERSION {
            bail!(
                "{s}: journal version {} is not {VERSION} (written by another k8sdoctor); undo by hand from the backups it lists",
                j.version
            );
        }
        let root = host.canonical().display().to_string();
        if j.root != root {
            return Err(untrusted(&format!(
                "it was written for the root {}, and this run is on {root}",
                j.root
            )));
        }
        j.check_paths(host.is_live()).map_err(|e| untrusted(&e))?;
        Ok(j)
    }

    /// Every path plain and where the fix puts it (a backup beside its file); no runtime entry off the live host.
    fn check_paths(&self, live: bool) -> Result<(), String> {
        for e in &self.entries {
            if e.is_runtime() && !live {
                return Err(format!(
                    "it holds a runtime command (`{}`) but runs under --root never record any",
                    e.describe_reverse()
                ));
            }
            if let Entry::File { path, backup, .. } = e {
                let p = Path::new(path);
                fsops::plain(p)?;
                if let Some(b) = backup {
                    fsops::plain(b)?;
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    let beside = b.parent() == p.parent()
                        && b.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(&format!("{name}.k8sdoctor-")));
                    if !beside {
                        return Err(format!(
                            "the backup {} of {path} is not one the fix takes",
                            b.display()
                        ));
                    }
                }
            }
        }
        for d in self.created_dirs.iter().chain(&self.journal_dirs) {
            fsops::plain(d)?;
        }
        Ok(())
    }

    /// After every entry is reversed: the journal and the directories the run made go too.
    pub fn discard(&self, tree: &Root, jd: &JournalDir, name: &str) {
        let _ = jd.tree.remove_file(jd.dir.join(name));
        fsops::remove_dirs(tree, &self.created_dirs);
        fsops::remove_dirs(&jd.tree, &self.journal_dirs);
    }
}

/// The time stamp and sequence number in a journal name (`fix-STAMP.json`, `fix-STAMP-N.json`).
fn journal_key(name: &str) -> Option<(String, u32)> {
    let core = name.strip_prefix("fix-")?.strip_suffix(".json")?;
    if core.contains('/') {
        return None;
    }
    Some(match core.split_once('-') {
        Some((stamp, n)) => (stamp.to_string(), n.parse().ok()?),
        None => (core.to_string(), 0),
    })
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
        let host = Host::new(dir.path()).unwrap();
        let jd = JournalDir::new(&host, None, "/var/lib/k8sdoctor/fix").unwrap();
        let mut j = Journal::new("2026-01-01T00:00:00Z".into(), host.canonical());
        j.entries.push(Entry::File {
            check: "swap.persistent".into(),
            path: "/etc/fstab".into(),
            backup: Some("/etc/fstab.k8sdoctor-T.bak".into()),
            written: Content::Text("x".into()),
        });
        j.save(&jd, "fix-20260101T000000Z.json").unwrap();
        assert_eq!(j.journal_dirs.len(), 4);
        j.save(&jd, "fix-20260102T000000Z.json").unwrap();
        j.save(&jd, "fix-20260102T000000Z-1.json").unwrap();
        assert_eq!(
            jd.free_name("20260102T000000Z"),
            "fix-20260102T000000Z-2.json"
        );
        let l = jd.latest().unwrap();
        assert_eq!(l, "fix-20260102T000000Z-1.json");
        let jdir = dir.path().join("var/lib/k8sdoctor/fix");
        std::fs::remove_file(jdir.join(&l)).unwrap();
        let l = jd.latest().unwrap();
        assert_eq!(l, "fix-20260102T000000Z.json");
        assert_eq!(jd.name_of(&jdir.join(&l)).unwrap(), l);
        assert!(jd.name_of(&dir.path().join(&l)).is_err());
        let back = Journal::load(&jd, &l, &host).unwrap();
        assert_eq!(
            back.entries[0].describe_reverse(),
            "restore /etc/fstab from its backup"
        );
        std::fs::remove_file(jdir.join("fix-20260101T000000Z.json")).unwrap();
        back.discard(host.tree().unwrap(), &jd, &l);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_planted_journal_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path()).unwrap();
        let jd = JournalDir::new(&host, None, "/j").unwrap();
        let jdir = dir.path().join("j");
        std::fs::create_dir(&jdir).unwrap();
        let plant = |name: &str, j: &Journal, mode: u32| {
            let p = jdir.join(name);
            std::fs::write(&p, serde_json::to_vec(j).unwrap()).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        let root = host.canonical();
        let err = |name: &str| Journal::load(&jd, name, &host).unwrap_err().to_string();
        let mut cmd = Journal::new("t".into(), root);
        cmd.entries.push(Entry::Command {
            check: "swap.active".into(),
            argv: vec!["true".into()],
            undo: Some(vec!["sh".into(), "-c".into(), "touch /pwned".into()]),
        });
        plant("fix-1.json", &cmd, 0o600);
        assert!(err("fix-1.json").contains("runtime command"));
        let mut far = Journal::new("t".into(), root);
        far.entries.push(Entry::File {
            check: "swap.persistent".into(),
            path: "/etc/../../../etc/shadow".into(),
            backup: None,
            written: Content::Absent,
        });
        plant("fix-2.json", &far, 0o600);
        assert!(err("fix-2.json").contains("`..`"));
        let mut swap = Journal::new("t".into(), root);
        swap.entries.push(Entry::File {
            check: "swap.persistent".into(),
            path: "/etc/shadow".into(),
            backup: Some("/tmp/mine".into()),
            written: Content::Absent,
        });
        plant("fix-3.json", &swap, 0o600);
        assert!(err("fix-3.json").contains("not one the fix takes"));
        plant("fix-4.json", &Journal::new("t".into(), root), 0o666);
        assert!(err("fix-4.json").contains("others may write"));
        plant(
            "fix-5.json",
            &Journal::new("t".into(), Path::new("/")),
            0o600,
        );
        assert!(err("fix-5.json").contains("written for the root /"));
        std::os::unix::fs::symlink("fix-5.json", jdir.join("fix-6.json")).unwrap();
        assert!(err("fix-6.json").contains("not a regular file"));
    }
}
