//! A bundle's members, read with the tar and gzip crates as any tool would (the tests' view of it).

use std::{collections::BTreeMap, io::Read};

/// Every member of a tar.gz by name.
pub fn unpack(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut tar)
        .unwrap();
    let mut a = tar::Archive::new(&tar[..]);
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().to_vec()).unwrap();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        out.insert(name, b);
    }
    out
}

/// Runs `k8sdoctor ARGS` (a replay of `bundle`) under strace and asserts it touched nothing but the
/// bundle: no open but it (and the C library reading /proc/self/maps as a program starts), no
/// socket, no connect, no exec but its own. Hands back its output.
pub fn replay_under_strace(
    args: &[&str],
    bundle: &std::path::Path,
    dir: &std::path::Path,
) -> std::process::Output {
    let log = dir.join("strace.log");
    let out = std::process::Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&log)
        .args([
            "-e",
            "trace=open,openat,openat2,creat,socket,connect,execve,execveat",
        ])
        .arg(super::bin())
        .args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent-home")
        .output()
        .unwrap();
    let trace = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = trace.lines().collect();
    let execs = calls.iter().filter(|l| l.contains("execve")).count();
    assert_eq!(execs, 1, "{trace}");
    for call in ["socket(", "connect(", "openat2("] {
        assert!(!trace.contains(call), "{call}: {trace}");
    }
    let bundle = bundle.to_str().unwrap();
    for l in calls.iter().filter(|l| l.contains("open")) {
        assert!(
            l.contains(&format!("\"{bundle}\"")) || l.contains("\"/proc/self/maps\""),
            "opened outside the bundle: {l}\n{trace}"
        );
    }
    out
}
