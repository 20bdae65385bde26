//! A bundle's members, read with the tar and gzip crates as any tool would (the tests' view of it).

use std::{collections::BTreeMap, io::Read};

use serde_json::Value;

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

/// A tar.gz of raw entries, names written as given (`..` and absolute names too), any entry type.
pub fn pack(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut t = tar::Builder::new(gz);
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        if *kind == tar::EntryType::Symlink {
            h.set_link_name("/etc/passwd").unwrap();
        }
        h.set_cksum();
        t.append(&h, *data).unwrap();
    }
    t.into_inner().unwrap().finish().unwrap()
}

/// A bundle rebuilt from members (manifest.json first), as the writer lays them out.
pub fn repack(members: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut list: Vec<(&str, tar::EntryType, &[u8])> = vec![(
        "manifest.json",
        tar::EntryType::Regular,
        &members["manifest.json"][..],
    )];
    list.extend(
        members
            .iter()
            .filter(|(n, _)| *n != "manifest.json")
            .map(|(n, b)| (n.as_str(), tar::EntryType::Regular, &b[..])),
    );
    pack(&list)
}

/// A bundle as an older k8sdoctor would have made it had it not gathered `source`: its members, its
/// manifest entries and its name in `sources` gone.
pub fn without_source(bundle: &[u8], source: &str) -> Vec<u8> {
    let mut members = unpack(bundle);
    members.retain(|name, _| !name.starts_with(&format!("inputs/{source}/")));
    let mut m: Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    m["sources"].as_array_mut().unwrap().retain(|s| s != source);
    m["members"]
        .as_array_mut()
        .unwrap()
        .retain(|x| x["source"] != source);
    members.insert("manifest.json".into(), serde_json::to_vec(&m).unwrap());
    repack(&members)
}
