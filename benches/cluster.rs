//! Bench: every cluster check against the test API server holding 5,000 nodes and 100 bootstrap
//! tokens, side by side with `kubectl get nodes -o json` against the same server in the same run.
//! Reports median wall time and peak RSS (wait4 rusage of each child) and their ratios.
//! Run: `cargo bench --bench cluster`.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::{process::Command, time::Duration};

use support::apiserver::{ApiServer, Scenario};

const RUNS: usize = 5;
const IDS: &str = "cluster.api-reachable,version.kubectl-skew,version.kubelet-skew,version.local-binaries,token.expiry,cluster.nodes-ready,cluster.dns,cluster.cni,cluster.dashboard-admin";

/// Runs a command to completion; returns (wall time, peak RSS in KiB, exit code).
fn measure(cmd: &mut Command) -> (Duration, i64, i32) {
    let (status, _, s) = common::run_capture(cmd);
    (s.wall, s.maxrss_kib, status.code().unwrap_or(-1))
}

use common::median_of as median;

fn main() {
    let mut scenario = Scenario::healthy().nodes(5000, "v1.33.2");
    let in_12h = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(12);
    for i in 0..100 {
        scenario = scenario.bootstrap_token(
            &format!("tok{i:03}"),
            &format!("{i:016}"),
            Some(in_12h),
            &["authentication", "signing"],
        );
    }
    let server = ApiServer::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let kc = server.kubeconfig(dir.path());
    let kc = kc.to_str().unwrap();
    let cache = dir.path().join("kube-cache");
    let doctor = env!("CARGO_BIN_EXE_k8sdoctor");
    // A root that is not the live host: the kube-dns Service IP (10.96.0.10) is never dialled.
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let root = root.to_str().unwrap();

    let (mut dw, mut dr, mut kw, mut kr) = (vec![], vec![], vec![], vec![]);
    for _ in 0..RUNS {
        let (w, r, code) = measure(
            Command::new(doctor)
                .args([
                    "--kubeconfig",
                    kc,
                    "--only",
                    IDS,
                    "-o",
                    "json",
                    "--timeout",
                    "60",
                    "--root",
                    root,
                ])
                .env("HOME", dir.path()),
        );
        assert!(code <= 1, "k8sdoctor exited {code}");
        dw.push(w.as_secs_f64());
        dr.push(r as f64);
        let (w, r, code) = measure(
            Command::new("kubectl")
                .args([
                    "--kubeconfig",
                    kc,
                    "--cache-dir",
                    cache.to_str().unwrap(),
                    "get",
                    "nodes",
                    "-o",
                    "json",
                ])
                .env("HOME", dir.path()),
        );
        assert_eq!(code, 0, "kubectl failed");
        kw.push(w.as_secs_f64());
        kr.push(r as f64);
    }
    let (dw, dr, kw, kr) = (median(dw), median(dr), median(kw), median(kr));
    println!("cluster bench: 5,000 nodes, 100 bootstrap tokens, median of {RUNS} runs each");
    println!(
        "  k8sdoctor (all 9 cluster checks)  wall {:>8.1} ms   peak RSS {:>8.1} MiB",
        dw * 1e3,
        dr / 1024.0
    );
    println!(
        "  kubectl get nodes -o json         wall {:>8.1} ms   peak RSS {:>8.1} MiB",
        kw * 1e3,
        kr / 1024.0
    );
    println!(
        "  ratio (target <= 0.50)            wall {:>8.2}x     peak RSS {:>8.2}x",
        dw / kw,
        dr / kr
    );
}
