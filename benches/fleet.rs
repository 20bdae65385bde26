//! Bench: `fleet check` over 100 emulated nodes (test API server + process kubelet: each node a
//! network namespace whose pod runs the doctor on its fixture root) against `fleet check` over one
//! node in the same run — the slowest single node run plus pod start-up and the API round trips.
//! Reports median wall times, their ratio, and the API requests the CLI made per node.
//! Needs root (network and mount namespaces). Run: `cargo bench --bench fleet`.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::{process::Command, sync::Arc};

use support::{
    apiserver::{ApiServer, Scenario},
    bin, fixtures,
    kubelet::{NodeSpec, ProcessKubelet},
};

const RUNS: usize = 3;
const FIXTURES: [&str; 3] = [
    "centos7-seed-broken",
    "ubuntu2204-kubeadm-healthy",
    "debian12-tricky",
];

/// A cluster of `n` nodes cycling through the fixture roots; the fleet command for it.
fn cluster(n: usize) -> (Arc<ProcessKubelet>, ApiServer, tempfile::TempDir) {
    let nodes = (0..n)
        .map(|i| {
            NodeSpec::new(
                &format!("node-{i:03}"),
                fixtures().join("hosts").join(FIXTURES[i % FIXTURES.len()]),
            )
        })
        .collect();
    let k = Arc::new(ProcessKubelet::new(bin(), nodes));
    let server = ApiServer::start(k.scenario(Scenario::empty()));
    (k, server, tempfile::tempdir().unwrap())
}

fn fleet(kc: &std::path::Path) -> Command {
    let mut c = Command::new(bin());
    c.args([
        "fleet",
        "check",
        "-o",
        "json",
        "--timeout",
        "120",
        "--kubeconfig",
    ])
    .arg(kc)
    .env_remove("KUBECONFIG");
    c
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: the fleet bench needs root (network and mount namespaces)");
        return;
    }
    let (_k1, one, d1) = cluster(1);
    let kc1 = one.kubeconfig(d1.path());
    let (_k100, many, d100) = cluster(100);
    let kc100 = many.kubeconfig(d100.path());
    let mut t1 = Vec::new();
    let mut t100 = Vec::new();
    let mut requests = Vec::new();
    for _ in 0..RUNS {
        let (st, out, s) = common::run_capture(&mut fleet(&kc1));
        assert!(
            out.contains("\"reported\""),
            "1-node run failed ({st}): {out}"
        );
        t1.push(s.wall.as_secs_f64() * 1000.0);
        let before = many.requests().len();
        let (st, out, s) = common::run_capture(&mut fleet(&kc100));
        let v: serde_json::Value = serde_json::from_str(&out).expect("fleet JSON");
        assert_eq!(
            v["summary"]["reported"], 100,
            "100-node run ({st}): {}",
            v["summary"]
        );
        t100.push(s.wall.as_secs_f64() * 1000.0);
        requests.push((many.requests().len() - before) as f64 / 100.0);
    }
    let (m1, m100) = (common::median_of(t1), common::median_of(t100));
    println!("fleet check, 1 node (slowest single node + pod start-up): {m1:8.1} ms");
    println!("fleet check, 100 nodes:                                   {m100:8.1} ms");
    println!(
        "ratio 100 nodes / 1 node: {:.2}×; API requests per node: {:.2}",
        m100 / m1,
        common::median_of(requests)
    );
}
