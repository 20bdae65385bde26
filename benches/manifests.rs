//! Benchmark: `k8sdoctor manifests` on 10,000 documents (the real manifests of fixtures/manifests,
//! repeated into 100 files), against loading the same files with PyYAML's C loader in the same run.
//! Goal: at most half PyYAML's time. Not a test; `cargo bench --bench manifests`.

mod common;

use std::{path::Path, process::Command};

const RUNS: usize = 11;
const FILES: usize = 100;
const DOCS_PER_FILE: usize = 100;

fn main() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/manifests");
    // The YAML fixtures of real manifests, document by document.
    let mut docs: Vec<String> = Vec::new();
    for f in [
        "guide/multicast-test-deployment.yaml",
        "guide/dashboard-clusterrolebinding.yml",
        "flannel-v0.10.0/kube-flannel.yml",
        "ingress-nginx-0.20.0/mandatory.yaml",
        "ingress-nginx-0.20.0/dashboard-ingress.yaml",
        "ingress-nginx-v0.34.1/cookie-affinity-ingress.yaml",
        "ingress-nginx-v0.34.1/deploy-excerpt.yaml",
        "written/current-and-crd.yaml",
    ] {
        let text = std::fs::read_to_string(fixtures.join(f)).unwrap();
        docs.extend(
            text.split("\n---\n")
                .map(|d| d.trim_start_matches("---\n").to_string())
                .filter(|d| d.contains("kind:")),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut n = 0;
    for i in 0..FILES {
        let mut text = String::new();
        for _ in 0..DOCS_PER_FILE {
            text.push_str("---\n");
            text.push_str(&docs[n % docs.len()]);
            text.push('\n');
            n += 1;
        }
        let p = dir.path().join(format!("m{i:03}.yaml"));
        std::fs::write(&p, text).unwrap();
        files.push(p.display().to_string());
    }
    let bin = env!("CARGO_BIN_EXE_k8sdoctor");
    let ours = || {
        let mut c = Command::new(bin);
        c.args(["manifests", "--offline", "-o", "json"])
            .arg(dir.path())
            .env_remove("KUBECONFIG");
        c
    };
    // Count what k8sdoctor saw, and warm the page cache.
    let (_, out, _) = common::run_capture(&mut ours());
    let report: serde_json::Value = serde_json::from_str(&out).expect("a JSON report");
    let objects = report["results"].as_array().map_or(0, Vec::len);
    let pyyaml = || {
        let mut c = Command::new("python3");
        c.args([
            "-c",
            "import sys, yaml\nn = 0\nfor f in sys.argv[1:]:\n    with open(f) as h:\n        n += sum(1 for _ in yaml.load_all(h, Loader=yaml.CSafeLoader))\nprint(n)",
        ])
        .args(&files);
        c
    };
    let (status, py_count, _) = common::run_capture(&mut pyyaml());
    if !status.success() {
        println!("python3 with PyYAML's C loader (python3-yaml) is needed for the reference");
        return;
    }
    let ours_s = common::median(RUNS, ours);
    let py_s = common::median(RUNS, pyyaml);
    println!(
        "{objects} objects judged by k8sdoctor, {} documents loaded by PyYAML, {FILES} files, {RUNS} runs each",
        py_count.trim()
    );
    common::report(
        "k8sdoctor manifests -o json",
        ours_s,
        "PyYAML CSafeLoader load_all",
        py_s,
    );
    let ratio = ours_s.wall.as_secs_f64() / py_s.wall.as_secs_f64();
    println!(
        "target: <= 0.5x PyYAML's time ({:.2}x, {})",
        ratio,
        if ratio <= 0.5 { "met" } else { "MISSED" }
    );
}
