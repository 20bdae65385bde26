//! Bench: the cluster checks against the test API server, side by side with the pinned
//! `kubectl.1.32 get nodes -o json` against the same server in the same run, at 5,000 nodes + 100
//! bootstrap tokens and at 50,000 nodes; then the doctor's peak RSS at 10k/30k/50k nodes (growth per
//! 10k). Every command is started from a small launcher (this binary re-executed), so the server's
//! memory is not counted as the child's; RSS is the measured command's whole process tree.
//! Median of 3 runs each (after one warm-up). Run: `cargo bench --bench cluster`
//! (`K8SDOCTOR_BENCH_MAX_NODES=5000` for the small size only; `K8SDOCTOR_BENCH_KUBECTL=/path` pins
//! another kubectl 1.32).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};

use common::{Launched, launch};
use serde_json::Value;
use support::apiserver::{ApiServer, Scenario};

const RUNS: usize = 3;
/// The cluster checks that only read the API: no local binary is run (the tree is the doctor alone).
const API_IDS: &str = "cluster.api-reachable,version.kubelet-skew,token.expiry,cluster.nodes-ready,cluster.dns,cluster.cni,cluster.dashboard-admin";
/// All nine: adds version.kubectl-skew and version.local-binaries, which run `kubectl version --client`.
const ALL_IDS: &str = "cluster.api-reachable,version.kubectl-skew,version.kubelet-skew,version.local-binaries,token.expiry,cluster.nodes-ready,cluster.dns,cluster.cni,cluster.dashboard-admin";

/// kubectl 1.32 by path: the `kubectl` on PATH may be a dispatcher that runs another version.
fn pinned_kubectl() -> PathBuf {
    if let Some(p) = std::env::var_os("K8SDOCTOR_BENCH_KUBECTL") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("kubectl"))
        .find(|p| p.exists());
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(k) = on_path {
        dirs.extend(k.parent().map(Path::to_path_buf));
        if let Ok(real) = std::fs::canonicalize(&k) {
            dirs.extend(real.parent().map(Path::to_path_buf));
        }
    }
    dirs.push("/usr/local/bin".into());
    dirs.into_iter()
        .map(|d| d.join("kubectl.1.32"))
        .find(|p| p.exists())
        .expect("no kubectl.1.32 beside the kubectl on PATH (set K8SDOCTOR_BENCH_KUBECTL)")
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A server with `nodes` Ready nodes and `tokens` bootstrap tokens valid for 12 h.
fn server(nodes: usize, tokens: usize) -> ApiServer {
    let mut scenario = Scenario::healthy().nodes(nodes, "v1.33.2");
    let in_12h = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(12);
    for i in 0..tokens {
        scenario = scenario.bootstrap_token(
            &format!("tok{i:03}"),
            &format!("{i:016}"),
            Some(in_12h),
            &["authentication", "signing"],
        );
    }
    ApiServer::start(scenario)
}

struct Setup {
    dir: tempfile::TempDir,
    kubeconfig: String,
    root: String,
}

impl Setup {
    fn new(server: &ApiServer) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = server.kubeconfig(dir.path()).display().to_string();
        // A root that is not the live host: the kube-dns Service IP (10.96.0.10) is never dialled.
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        Setup {
            kubeconfig,
            root: root.display().to_string(),
            dir,
        }
    }

    /// One doctor run; checks that it read every node.
    fn doctor(&self, ids: &str, nodes: usize) -> Launched {
        let out = self.dir.path().join("report.json");
        let l = launch(
            env!("CARGO_BIN_EXE_k8sdoctor"),
            &[
                "--kubeconfig",
                &self.kubeconfig,
                "--only",
                ids,
                "-o",
                "json",
                "--timeout",
                "300",
                "--root",
                &self.root,
            ],
            &[("HOME", self.dir.path())],
            Some(&out),
        );
        assert!(l.code <= 1, "k8sdoctor exited {}", l.code);
        let report: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let ready = report["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == "cluster.nodes-ready")
            .expect("nodes-ready in the report");
        let want = format!("all {} node(s) are Ready with no pressure", nodes + 3);
        assert_eq!(ready["message"], want.as_str(), "{ready:#}");
        l
    }

    fn kubectl(&self, kubectl: &Path, nodes: usize) -> Launched {
        let out = self.dir.path().join("nodes.json");
        let cache = self.dir.path().join("kube-cache").display().to_string();
        let l = launch(
            kubectl.to_str().unwrap(),
            &[
                "--kubeconfig",
                &self.kubeconfig,
                "--cache-dir",
                &cache,
                "get",
                "nodes",
                "-o",
                "json",
            ],
            &[("HOME", self.dir.path())],
            Some(&out),
        );
        assert_eq!(l.code, 0, "kubectl failed");
        let len = std::fs::metadata(&out).unwrap().len() as usize;
        assert!(len > nodes * 1000, "kubectl printed only {len} bytes");
        l
    }
}

/// Median wall (s) and median tree RSS (KiB) of `RUNS` launched runs after a warm-up.
fn median(mut run: impl FnMut() -> Launched) -> (f64, f64) {
    run();
    let (mut w, mut r) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let l = run();
        w.push(l.wall.as_secs_f64());
        r.push(l.tree_kib as f64);
    }
    (common::median_of(w), common::median_of(r))
}

fn line(name: &str, (w, r): (f64, f64)) {
    println!(
        "  {name:<44} wall {:>9.1} ms   peak RSS {:>8.1} MiB",
        w * 1e3,
        r / 1024.0
    );
}

/// One size: the doctor (API checks) and kubectl, and their ratios against the targets.
fn compare(nodes: usize, tokens: usize, kubectl: &Path, targets: (f64, f64)) -> f64 {
    let server = server(nodes, tokens);
    let setup = Setup::new(&server);
    let load_before = load();
    let ours = median(|| setup.doctor(API_IDS, nodes));
    let theirs = median(|| setup.kubectl(kubectl, nodes));
    println!(
        "cluster bench: {nodes} nodes, {tokens} bootstrap tokens, median of {RUNS} (load {load_before} → {})",
        load()
    );
    line("k8sdoctor (7 API cluster checks)", ours);
    line(&format!("{} get nodes -o json", kubectl.display()), theirs);
    println!(
        "  ratio                                        wall {:>8.3}x (target <= {})   peak RSS {:>6.3}x (target <= {})",
        ours.0 / theirs.0,
        targets.0,
        ours.1 / theirs.1,
        targets.1
    );
    if tokens > 0 {
        let all = median(|| setup.doctor(ALL_IDS, nodes));
        line("k8sdoctor (all 9, runs kubectl version)", all);
        println!(
            "  (informational: the tree includes the `kubectl version --client` child)   wall {:.3}x   peak RSS {:.3}x",
            all.0 / theirs.0,
            all.1 / theirs.1
        );
    }
    ours.1
}

fn main() {
    common::launcher_entry();
    let kubectl = pinned_kubectl();
    let max: usize = std::env::var("K8SDOCTOR_BENCH_MAX_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    {
        let floor = launch("/bin/true", &[], &[], None);
        println!(
            "launcher floor (peak RSS of `true` started by it): {:.1} MiB",
            floor.tree_kib as f64 / 1024.0
        );
    }
    compare(5_000, 100, &kubectl, (0.2, 0.1));
    if max < 50_000 {
        return;
    }
    let at_50k = compare(50_000, 0, &kubectl, (0.1, 0.02));
    let mut rss = Vec::new();
    for n in [10_000, 30_000] {
        let server = server(n, 0);
        let setup = Setup::new(&server);
        rss.push((n, median(|| setup.doctor(API_IDS, n)).1));
    }
    rss.push((50_000, at_50k));
    let growth = (rss[2].1 - rss[0].1) / 4.0;
    println!(
        "doctor peak RSS by node count (load {}): {}; growth {:.1} KiB per 10k nodes",
        load(),
        rss.iter()
            .map(|(n, r)| format!("{n}: {:.1} MiB", r / 1024.0))
            .collect::<Vec<_>>()
            .join(", "),
        growth
    );
}
