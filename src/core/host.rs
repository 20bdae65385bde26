//! The one source of host data: files read under a root (`/` or `--root DIR`) and commands run with a deadline.

use std::{
    io::{self, Read},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use thiserror::Error;

use super::facts::FactError;

/// Host files as seen from a root directory; `/` means the live host.
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
}

#[derive(Debug, Error)]
pub enum HostError {
    #[error("--root {0}: no such directory")]
    NoRoot(String),
    #[error("--root {0}: not a directory")]
    NotDir(String),
}

impl Host {
    /// Opens a root; fails when it is not a directory, since every read below would be meaningless.
    pub fn new(root: impl Into<PathBuf>) -> Result<Host, HostError> {
        let root = root.into();
        match std::fs::metadata(&root) {
            Ok(m) if m.is_dir() => Ok(Host { root }),
            Ok(_) => Err(HostError::NotDir(root.display().to_string())),
            Err(_) => Err(HostError::NoRoot(root.display().to_string())),
        }
    }

    /// The live host (`/`).
    pub fn live() -> Host {
        Host { root: "/".into() }
    }

    /// Whether this is the running host, so its /proc and commands describe the same machine.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where an absolute host path lives under the root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    pub fn exists(&self, abs: &str) -> bool {
        self.path(abs).exists()
    }

    /// Reads a text file; bytes that are not UTF-8 are replaced, so a stray byte never hides a line.
    pub fn read(&self, abs: &str) -> Result<String, FactError> {
        match self.read_opt(abs)? {
            Some(s) => Ok(s),
            None => Err(FactError::Missing(format!("{abs} does not exist"))),
        }
    }

    /// Like [`Host::read`], but a missing file is `Ok(None)` rather than an error.
    pub fn read_opt(&self, abs: &str) -> Result<Option<String>, FactError> {
        let p = self.path(abs);
        match std::fs::read(&p) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FactError::Unreadable(format!("cannot read {abs}: {e}"))),
        }
    }

    /// Where a symbolic link points, or `None` when the path is not a link.
    pub fn link_target(&self, abs: &str) -> Option<PathBuf> {
        std::fs::read_link(self.path(abs)).ok()
    }

    /// File names in a directory, sorted; a missing directory is empty.
    pub fn list_dir(&self, abs: &str) -> Result<Vec<String>, FactError> {
        let p = self.path(abs);
        match std::fs::read_dir(&p) {
            Ok(rd) => {
                let mut names: Vec<String> = rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                Ok(names)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(FactError::Unreadable(format!("cannot list {abs}: {e}"))),
        }
    }
}

/// Why a command gave no usable output.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CmdError {
    #[error("{0} is not installed (not found in PATH)")]
    NotFound(String),
    #[error("{0} did not finish within {1:?}")]
    Timeout(String, Duration),
    #[error("{program} exited with {code}: {stderr}")]
    Failed {
        program: String,
        code: String,
        stderr: String,
    },
    #[error("cannot run {0}: {1}")]
    Spawn(String, String),
    #[error(
        "{program} was refused access ({said}): run k8sdoctor as root (in a container, root with CAP_NET_ADMIN)"
    )]
    NeedsRoot { program: String, said: String },
}

/// Whether a tool's complaint means it lacked privilege (iptables-save, nft, ss ... say it in
/// their own words).
fn refused_for_privilege(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    [
        "permission denied",
        "operation not permitted",
        "must be root",
        "you must be root",
    ]
    .iter()
    .any(|p| s.contains(p))
}

impl From<CmdError> for FactError {
    fn from(e: CmdError) -> Self {
        match e {
            CmdError::NotFound(_) => FactError::Missing(e.to_string()),
            _ => FactError::Unreadable(e.to_string()),
        }
    }
}

/// Runs a command with no stdin and returns its stdout; the child is killed at the deadline.
pub fn run_command(program: &str, args: &[&str], timeout: Duration) -> Result<String, CmdError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                CmdError::NotFound(program.to_string())
            } else {
                CmdError::Spawn(program.to_string(), e.to_string())
            }
        })?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_t = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let err_t = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CmdError::Timeout(program.to_string(), timeout));
            }
            Ok(None) => thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(CmdError::Spawn(program.to_string(), e.to_string())),
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr).trim().to_string();
        if refused_for_privilege(&stderr) {
            return Err(CmdError::NeedsRoot {
                program: program.to_string(),
                said: stderr,
            });
        }
        return Err(CmdError::Failed {
            program: program.to_string(),
            code: status
                .code()
                .map_or_else(|| "a signal".to_string(), |c| c.to_string()),
            stderr,
        });
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tool refused for lack of privilege is told apart from one that failed, in our words.
    #[test]
    fn a_tool_refused_for_privilege_says_run_as_root() {
        let e = run_command(
            "sh",
            &["-c", "echo 'iptables-save v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)' >&2; exit 4"],
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(matches!(e, CmdError::NeedsRoot { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.starts_with("sh was refused access (iptables-save"),
            "{text}"
        );
        assert!(text.contains("run k8sdoctor as root"), "{text}");
        let other = run_command(
            "sh",
            &["-c", "echo 'no such table' >&2; exit 1"],
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(matches!(other, CmdError::Failed { .. }), "{other:?}");
    }

    #[test]
    fn reads_under_root_and_reports_missing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/hostname"), b"node\xff1\n").unwrap();
        let h = Host::new(dir.path()).unwrap();
        assert_eq!(h.read("/etc/hostname").unwrap(), "node\u{fffd}1\n");
        assert!(matches!(h.read("/etc/nope"), Err(FactError::Missing(_))));
        assert_eq!(h.read_opt("/etc/nope").unwrap(), None);
        // A directory where a file is expected cannot be read: an error, not a skip.
        assert!(matches!(h.read("/etc"), Err(FactError::Unreadable(_))));
        assert!(!h.is_live());
    }

    #[test]
    fn rejects_a_missing_root() {
        let e = Host::new("/nonexistent/root").unwrap_err();
        assert!(e.to_string().contains("no such directory"));
    }

    #[test]
    fn commands_report_missing_failure_and_timeout() {
        assert!(matches!(
            run_command("k8sdoctor-no-such-tool", &[], Duration::from_secs(1)),
            Err(CmdError::NotFound(_))
        ));
        assert_eq!(
            run_command("sh", &["-c", "echo hi"], Duration::from_secs(5)).unwrap(),
            "hi\n"
        );
        assert!(matches!(
            run_command("sh", &["-c", "echo boom >&2; exit 3"], Duration::from_secs(5)),
            Err(CmdError::Failed { ref code, ref stderr, .. }) if code == "3" && stderr == "boom"
        ));
        let t = Instant::now();
        assert!(matches!(
            run_command("sleep", &["5"], Duration::from_millis(200)),
            Err(CmdError::Timeout(..))
        ));
        assert!(t.elapsed() < Duration::from_secs(3));
    }
}
