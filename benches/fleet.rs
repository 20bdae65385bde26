//! Bench: `fleet check` over 100 emulated nodes (test API server + process kubelet: each node a
//! network namespace whose pod runs the doctor on its fixture root) against `fleet check` over one
//! node in the same run — the slowest single node run plus pod start-up and the API round trips.
//! Reports median wall times, their ratio, and the API requests the CLI made per node.
//! Needs root (network and mount namespaces). Run: `cargo bench --bench fleet`.
//!
//! Then the CLI's own cost at scale: `fleet check` over 500, 2,000 and 4,000 emulated nodes whose
//! kubelet is an in-process stand-in (no processes: each pod is Pending, then Running with an IP,
//! then Succeeded, and its log is one recorded node report). Reports API requests per node, the
//! CLI's CPU per node, its peak RSS with `-o json` (every node's whole report streamed to the
//! output) and with `-o table` (the matrix only), and how long after the cluster's last pod ended
//! the CLI ended.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use support::{
    apiserver::{ApiServer, Request, Scenario, Workloads, status},
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

/// A kubelet stand-in: pods live in memory and move through their phases by the clock.
struct Fake {
    report: Vec<u8>,
    pods: Mutex<BTreeMap<String, (Value, Instant)>>,
    /// When the last pod created ends (by the clock).
    last_end: Mutex<Option<Instant>>,
    namespaces: Mutex<BTreeMap<String, Value>>,
}

/// How long a fake pod is Pending, then Running.
const PENDING: Duration = Duration::from_millis(300);
const RUNNING: Duration = Duration::from_millis(300);

impl Fake {
    fn with_status(pod: &Value, born: Instant, ip: usize) -> Value {
        let mut p = pod.clone();
        let age = born.elapsed();
        let c = |state: Value| {
            json!([{"name": "doctor", "ready": false, "restartCount": 0,
            "image": "k8sdoctor", "imageID": "", "state": state}])
        };
        p["status"] = if age < PENDING {
            json!({"phase": "Pending"})
        } else if age < PENDING + RUNNING {
            json!({"phase": "Running", "podIP": format!("10.244.{}.{}", ip / 250, ip % 250 + 1),
                "containerStatuses": c(json!({"running": {}}))})
        } else {
            json!({"phase": "Failed", "containerStatuses": c(json!({"terminated": {"exitCode": 1, "reason": "Error"}}))})
        };
        p
    }

    /// When the last pod ended (ends by the clock).
    fn last_end(&self) -> Option<Instant> {
        *self.last_end.lock().unwrap()
    }
}

impl Workloads for Fake {
    fn handle(&self, req: &Request) -> Option<(u16, Vec<u8>)> {
        let segs: Vec<&str> = req.path.strip_prefix("/api/v1/")?.split('/').collect();
        let ok = |code: u16, v: &Value| Some((code, serde_json::to_vec(v).unwrap()));
        let dry = req.query.get("dryRun").is_some();
        match (req.method, segs.as_slice()) {
            ("GET", ["namespaces", ns]) => match self.namespaces.lock().unwrap().get(*ns) {
                Some(v) => ok(200, v),
                None => Some((
                    404,
                    status(
                        404,
                        "NotFound",
                        &format!("namespaces \"{ns}\" not found"),
                        None,
                    ),
                )),
            },
            ("POST", ["namespaces"]) => {
                let v: Value = serde_json::from_slice(req.body).ok()?;
                let name = v["metadata"]["name"].as_str()?.to_string();
                self.namespaces.lock().unwrap().insert(name, v.clone());
                ok(201, &v)
            }
            ("POST", ["namespaces", _, "pods"]) => {
                let mut v: Value = serde_json::from_slice(req.body).ok()?;
                if !dry {
                    let name = v["metadata"]["name"].as_str()?.to_string();
                    v["metadata"]["uid"] = json!(format!("uid-{name}"));
                    let now = Instant::now();
                    self.pods.lock().unwrap().insert(name, (v.clone(), now));
                    *self.last_end.lock().unwrap() = Some(now + PENDING + RUNNING);
                }
                ok(201, &v)
            }
            ("GET", ["namespaces", _, "pods"]) => {
                let pods = self.pods.lock().unwrap();
                let items: Vec<Value> = pods
                    .values()
                    .enumerate()
                    .map(|(i, (p, t))| Fake::with_status(p, *t, i))
                    .collect();
                ok(
                    200,
                    &json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}),
                )
            }
            ("DELETE", ["namespaces", _, "pods"]) => {
                let sel = req.query.get("labelSelector").cloned().unwrap_or_default();
                let mut pods = self.pods.lock().unwrap();
                let run = sel
                    .split(',')
                    .find_map(|t| t.strip_prefix("k8sdoctor.io/run="));
                let gone: Vec<String> = pods
                    .iter()
                    .filter(|(_, (p, _))| {
                        run.is_none_or(|r| p["metadata"]["labels"]["k8sdoctor.io/run"] == r)
                    })
                    .filter(|(_, (p, t))| {
                        Fake::with_status(p, *t, 0)["status"]["phase"] == "Failed"
                    })
                    .map(|(n, _)| n.clone())
                    .collect();
                for n in &gone {
                    pods.remove(n);
                }
                ok(
                    200,
                    &json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []}),
                )
            }
            ("GET", ["namespaces", _, "pods", _, "log"]) => Some((200, self.report.clone())),
            ("POST", ["namespaces", _, "configmaps"]) => {
                let mut v: Value = serde_json::from_slice(req.body).ok()?;
                v["metadata"]["uid"] = json!("cm-uid");
                ok(201, &v)
            }
            ("DELETE", ["namespaces", _, "configmaps", name]) => {
                ok(200, &json!({"metadata": {"name": name}}))
            }
            _ => None,
        }
    }
}

/// What one scale run measured.
struct Scale {
    requests_per_node: f64,
    cpu_ms_per_node: f64,
    rss_json_mib: f64,
    rss_table_mib: f64,
    lag_s: f64,
}

/// `fleet check` over `n` fake nodes.
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which also yields the rusage
fn scale(n: usize, report: &[u8]) -> Scale {
    let fake = Arc::new(Fake {
        report: report.to_vec(),
        pods: Mutex::new(BTreeMap::new()),
        last_end: Mutex::new(None),
        namespaces: Mutex::new(BTreeMap::new()),
    });
    let server = ApiServer::start(
        Scenario::empty()
            .nodes(n, "v1.33.2")
            .workloads(fake.clone()),
    );
    let dir = tempfile::tempdir().unwrap();
    let kc = server.kubeconfig(dir.path());
    let kcs = kc.to_str().unwrap();
    let args = [
        "fleet",
        "check",
        "-o",
        "json",
        "--timeout",
        "120",
        "--kubeconfig",
        kcs,
    ];
    // CPU, requests and the end: one direct run, reaped with wait4.
    let before = server.requests().len();
    let child = Command::new(bin())
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut st = 0;
    // SAFETY: rusage is plain data; wait4 reaps the child spawned above.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    assert_eq!(unsafe { libc::wait4(pid, &mut st, 0, &mut ru) }, pid);
    let ended = Instant::now();
    let lag = ended
        .duration_since(fake.last_end().expect("pods ran"))
        .as_secs_f64();
    let requests = (server.requests().len() - before) as f64 / n as f64;
    let cpu = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    let cpu_ms = (cpu(ru.ru_utime) + cpu(ru.ru_stime)) / n as f64;
    // Peak RSS: a second run from the small launcher (a child forked from this bench, which holds
    // the API server, would start from the bench's RSS).
    fake.pods.lock().unwrap().clear();
    let out = dir.path().join("out.json");
    let l = common::launch(bin().to_str().unwrap(), &args, &[], Some(&out));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).expect("fleet JSON");
    let odd: Vec<&Value> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["state"] != "reported")
        .take(3)
        .collect();
    assert_eq!(
        v["summary"]["reported"], n,
        "{n} nodes (exit {}): {} {odd:?}",
        l.code, v["summary"]
    );
    // The same with the table: the matrix only, nothing streamed.
    fake.pods.lock().unwrap().clear();
    let mut table_args = args.to_vec();
    table_args[3] = "table";
    let table_out = dir.path().join("out.txt");
    let t = common::launch(bin().to_str().unwrap(), &table_args, &[], Some(&table_out));
    let text = std::fs::read_to_string(&table_out).unwrap();
    assert!(
        text.contains(&format!("{n} nodes: {n} reported")),
        "table run (exit {}): {}",
        t.code,
        text.lines().last().unwrap_or_default()
    );
    Scale {
        requests_per_node: requests,
        cpu_ms_per_node: cpu_ms,
        rss_json_mib: l.maxrss_kib as f64 / 1024.0,
        rss_table_mib: t.maxrss_kib as f64 / 1024.0,
        lag_s: lag,
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    common::launcher_entry();
    let report = Command::new(bin())
        .args(["check", "--offline", "-o", "json", "--root"])
        .arg(fixtures().join("hosts").join("centos7-seed-broken"))
        .output()
        .expect("record a node report")
        .stdout;
    println!(
        "node report: {} KiB; load average before: {}",
        report.len() / 1024,
        loadavg()
    );
    for n in [500, 2000, 4000] {
        let s = scale(n, &report);
        println!(
            "fleet check, {n:5} fake nodes: {:.2} API requests/node (goal ≤ 3.5), {:.2} ms CPU/node (≤ 2), \
             peak RSS -o json {:.1} MiB, -o table {:.1} MiB (≤ 96, flat), ended {:.2} s after the last pod (≤ 3); load {}",
            s.requests_per_node,
            s.cpu_ms_per_node,
            s.rss_json_mib,
            s.rss_table_mib,
            s.lag_s,
            loadavg()
        );
    }
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
