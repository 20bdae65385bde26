//! Shared test support: the privileged-test gate and network namespaces that always clean up.
#![allow(dead_code)]

use std::{
    path::PathBuf,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

/// Whether privileged tests must run (CI sets K8SDOCTOR_PRIVILEGED_TESTS=1): then a missing prerequisite fails.
pub fn privileged_required() -> bool {
    std::env::var("K8SDOCTOR_PRIVILEGED_TESTS").is_ok_and(|v| v == "1")
}

/// Returns true when the live test can run: root and every tool present. Otherwise prints why and
/// returns false, or panics when K8SDOCTOR_PRIVILEGED_TESTS=1.
pub fn can_run_privileged(tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root".to_string());
    }
    for t in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            missing.push(t.to_string());
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("live test needs {}", missing.join(", "));
    assert!(
        !privileged_required(),
        "{msg} (K8SDOCTOR_PRIVILEGED_TESTS=1)"
    );
    eprintln!("SKIPPED: {msg}");
    false
}

/// Runs a command and panics with its output when it fails.
pub fn sh(args: &[&str]) -> Output {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace the test owns; deleted (with its interfaces and rules) on drop, even on panic.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `k8sd-<tag>-<pid>-<n>` with loopback up.
    pub fn new(tag: &str) -> Netns {
        let name = format!(
            "k8sd-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace; panics when it fails.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// A command ready to run inside the namespace (for spawning or checking the status yourself).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// Joins two namespaces with a veth pair and gives each end an address (CIDR notation).
pub fn veth(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let (va, vb) = (
        format!("va{}x{n}", std::process::id() % 100000),
        format!("vb{}x{n}", std::process::id() % 100000),
    );
    sh(&[
        "ip", "link", "add", &va, "netns", &a.name, "type", "veth", "peer", "name", &vb, "netns",
        &b.name,
    ]);
    a.exec(&["ip", "addr", "add", a_addr, "dev", &va]);
    a.exec(&["ip", "link", "set", &va, "up"]);
    b.exec(&["ip", "addr", "add", b_addr, "dev", &vb]);
    b.exec(&["ip", "link", "set", &vb, "up"]);
}

/// The built binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_k8sdoctor"))
}

/// The repository's fixtures directory.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Runs `f` on a thread that has entered the network namespace `ns` (its sockets live there); the rest of
/// the process stays where it is.
pub fn in_netns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    use std::os::fd::AsRawFd;
    let path = format!("/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}
