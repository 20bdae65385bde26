//! Benchmark: the default node check set on a fixture root, against `cat` of the same files, in one run.

mod common;

use std::{path::Path, process::Command};

const RUNS: usize = 201;

fn files_under(dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p.display().to_string());
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hosts/centos7-seed-broken");
    let bin = env!("CARGO_BIN_EXE_k8sdoctor");
    let mut files = Vec::new();
    files_under(&root, &mut files);
    // Warm the page cache and the binary.
    common::median(5, || {
        let mut c = Command::new(bin);
        c.args(["--root", root.to_str().unwrap(), "-o", "json", "--offline"]);
        c
    });
    let ours = common::median(RUNS, || {
        let mut c = Command::new(bin);
        c.args(["--root", root.to_str().unwrap(), "-o", "json", "--offline"]);
        c.env_remove("KUBECONFIG");
        c
    });
    let cat = common::median(RUNS, || {
        let mut c = Command::new("cat");
        c.args(&files);
        c
    });
    println!(
        "host checks on {} ({} files), {RUNS} runs each",
        root.display(),
        files.len()
    );
    common::report("k8sdoctor check", ours, "cat", cat);
    let ms = ours.wall.as_secs_f64() * 1e3;
    let mb = ours.maxrss_kib as f64 / 1024.0;
    println!(
        "targets: <= 5 ms ({}), <= 10 MB ({})",
        if ms <= 5.0 { "met" } else { "MISSED" },
        if mb <= 10.0 { "met" } else { "MISSED" }
    );
}
