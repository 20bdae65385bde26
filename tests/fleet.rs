//! `fleet check` and `fleet cleanup` against the test API server with the process kubelet: every
//! node a network namespace of its own whose pod runs the doctor on that node's fixture root.

mod support;

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    apiserver::{ApiServer, Scenario},
    bin, fixtures,
    harness::require,
    kubelet::{Fault, NodeSpec, ProcessKubelet, drop_udp_port, overlay_cluster},
};

const TOOLS: &[&str] = &["ip"];

fn host(name: &str) -> std::path::PathBuf {
    fixtures().join("hosts").join(name)
}

fn fleet(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(["fleet"])
        .args(args)
        .args(["--kubeconfig".as_ref(), kubeconfig.as_os_str()])
        .env_remove("KUBECONFIG")
        .output()
        .expect("run k8sdoctor fleet")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn node<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("node {name} in {report}"))
}

fn status_of(node: &Value, id: &str) -> String {
    node["report"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .map(|r| r["status"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("{id} in {node}"))
}

fn cluster(k: ProcessKubelet) -> (Arc<ProcessKubelet>, ApiServer, tempfile::TempDir) {
    let k = Arc::new(k);
    let server = ApiServer::start(k.scenario(Scenario::empty()));
    (k, server, tempfile::tempdir().unwrap())
}

fn every_node_reports_its_own_verdicts_and_the_pods_are_deleted() {
    require(TOOLS);
    let (k, server, tmp) = cluster(ProcessKubelet::new(
        bin(),
        vec![
            NodeSpec::new("cp1", host("centos7-seed-broken")),
            NodeSpec::new("w1", host("ubuntu2204-kubeadm-healthy")),
            NodeSpec::new("w2", host("debian12-tricky")),
        ],
    ));
    let kc = server.kubeconfig(tmp.path());
    let t = Instant::now();
    let out = fleet(&kc, &["check", "-o", "json", "--timeout", "60"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(1), "cp1 fails checks: {report}");
    assert!(t.elapsed() < Duration::from_secs(60));
    for n in ["cp1", "w1", "w2"] {
        assert_eq!(
            node(&report, n)["state"],
            "reported",
            "{n}: {}",
            node(&report, n)
        );
        assert_eq!(node(&report, n)["report"]["host"]["root"], "/host");
    }
    // Each verdict is the node's own: the guide's resolv.conf on cp1 only.
    assert_eq!(
        status_of(node(&report, "cp1"), "dns.loopback-nameserver"),
        "fail"
    );
    assert_eq!(
        status_of(node(&report, "w1"), "dns.loopback-nameserver"),
        "pass"
    );
    assert_eq!(status_of(node(&report, "cp1"), "swap.active"), "fail");
    assert_eq!(status_of(node(&report, "w1"), "swap.active"), "pass");
    let drift: Vec<&str> = report["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert!(drift.contains(&"swap.active"), "{drift:?}");
    assert_eq!(report["summary"]["reported"], 3);
    // One pod per node, pinned to it; none left afterwards.
    let mut created: Vec<String> = k.created().into_iter().map(|(_, _, n)| n).collect();
    created.sort();
    assert_eq!(created, ["cp1", "w1", "w2"]);
    assert!(k.pods().is_empty(), "pods left: {:?}", k.pods());
    assert_eq!(k.running(), 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("3 of 3 nodes done"), "{stderr}");
    // The report validates against `schema --fleet`.
    let schema: Value = serde_json::from_slice(
        &Command::new(bin())
            .args(["schema", "--fleet"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    assert!(v.is_valid(&report), "{:?}", v.iter_errors(&report).next());
    // The table shows the node × check matrix and what differs.
    let table = fleet(
        &kc,
        &[
            "check",
            "--timeout",
            "60",
            "--only",
            "swap.active,dns.loopback-nameserver",
        ],
    );
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("Differs between nodes:") && text.contains("swap.active: fail on cp1"),
        "{text}"
    );
}

fn a_node_whose_pod_cannot_run_is_absent_with_the_reason() {
    require(TOOLS);
    let ok = host("ubuntu2204-kubeadm-healthy");
    let (k, server, tmp) = cluster(
        ProcessKubelet::new(
            bin(),
            vec![
                NodeSpec::new("good", &ok),
                NodeSpec::new("hung", &ok).fault(Fault::StaysPending),
                NodeSpec::new("nopull", &ok).fault(Fault::ImagePullFails),
                NodeSpec::new("false", &ok).fault(Fault::Entrypoint("/bin/false".into())),
                NodeSpec::new("down", &ok).not_ready(),
                NodeSpec::new("tainted", &ok).no_execute("maintenance", "true"),
            ],
        )
        .strip_wildcard_tolerations(),
    );
    let kc = server.kubeconfig(tmp.path());
    let t = Instant::now();
    let out = fleet(
        &kc,
        &[
            "check",
            "-o",
            "json",
            "--timeout",
            "6",
            "--only",
            "swap.active",
        ],
    );
    let report = json(&out);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(1), "absent nodes count as errors");
    let reason = |n: &str| {
        node(&report, n)["reason"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(node(&report, "good")["state"], "reported");
    assert_eq!(node(&report, "hung")["state"], "absent");
    assert!(
        reason("hung").contains("not finished at the deadline"),
        "{}",
        reason("hung")
    );
    assert_eq!(node(&report, "nopull")["state"], "absent");
    assert!(
        reason("nopull").contains("image pull failed (ErrImagePull"),
        "{}",
        reason("nopull")
    );
    assert_eq!(node(&report, "false")["state"], "error");
    assert!(
        reason("false").contains("exited 1 without a report"),
        "{}",
        reason("false")
    );
    assert_eq!(node(&report, "down")["state"], "absent");
    assert!(reason("down").contains("NotReady"), "{}", reason("down"));
    assert_eq!(node(&report, "tainted")["state"], "absent");
    assert!(
        reason("tainted").contains("untolerated NoExecute taint"),
        "{}",
        reason("tainted")
    );
    assert!(k.pods().is_empty(), "pods left: {:?}", k.pods());
}

fn a_pod_security_rejection_stops_before_any_node_is_touched() {
    require(TOOLS);
    let (k, server, tmp) = cluster(
        ProcessKubelet::new(
            bin(),
            vec![NodeSpec::new("n1", host("ubuntu2204-kubeadm-healthy"))],
        )
        .namespace(
            "k8sdoctor",
            &[("pod-security.kubernetes.io/enforce", "baseline")],
        ),
    );
    let kc = server.kubeconfig(tmp.path());
    let out = fleet(&kc, &["check", "--timeout", "10"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("violates PodSecurity \"baseline:latest\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("kubectl label namespace k8sdoctor pod-security.kubernetes.io/enforce=privileged --overwrite"),
        "{stderr}"
    );
    assert!(k.created().is_empty(), "nothing was created");
}

fn keep_leaves_the_pods_and_cleanup_and_the_next_run_remove_them() {
    require(TOOLS);
    let (k, server, tmp) = cluster(ProcessKubelet::new(
        bin(),
        vec![NodeSpec::new("n1", host("ubuntu2204-kubeadm-healthy"))],
    ));
    let kc = server.kubeconfig(tmp.path());
    let args = [
        "check",
        "--timeout",
        "30",
        "--only",
        "swap.active",
        "--keep",
    ];
    assert_eq!(fleet(&kc, &args).status.code(), Some(0));
    assert_eq!(k.pods().len(), 1, "--keep keeps the pod");
    // The next run sweeps the finished pod of the earlier run first.
    assert_eq!(fleet(&kc, &args).status.code(), Some(0));
    let left = k.pods();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_ne!(left[0].1, k.created()[0].1, "the earlier run's pod is gone");
    let out = fleet(&kc, &["cleanup"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("deleted 1 doctor pod(s)"));
    assert!(k.pods().is_empty());
}

fn ctrl_c_deletes_the_runs_pods() {
    require(TOOLS);
    let ok = host("ubuntu2204-kubeadm-healthy");
    let (k, server, tmp) = cluster(ProcessKubelet::new(
        bin(),
        vec![
            NodeSpec::new("n1", &ok),
            NodeSpec::new("hung", &ok).fault(Fault::StaysPending),
        ],
    ));
    let kc = server.kubeconfig(tmp.path());
    let mut child = Command::new(bin())
        .args(["fleet", "check", "--timeout", "120", "--kubeconfig"])
        .arg(&kc)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while k.created().len() < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "pods were never created"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(!k.pods().is_empty());
    // SAFETY: signals a child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "no exit after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(
        k.pods().is_empty(),
        "pods left after SIGINT: {:?}",
        k.pods()
    );
}

fn multicast_across_four_nodes_names_the_node_whose_pods_drop_the_group() {
    require(&["ip", "iptables-restore"]);
    let ok = host("ubuntu2204-kubeadm-healthy");
    let drop_group = drop_udp_port(4700);
    let (k, cp, server) = overlay_cluster(
        ProcessKubelet::new(
            bin(),
            vec![
                NodeSpec::new("n1", &ok),
                NodeSpec::new("n2", &ok),
                NodeSpec::new("n3", &ok).pod_rules(&drop_group),
                NodeSpec::new("n4", &ok),
            ],
        )
        .pod_network(),
    );
    let tmp = tempfile::tempdir().unwrap();
    let kc = server.kubeconfig(tmp.path());
    let out = cp
        .command(bin().to_str().unwrap())
        .args([
            "fleet",
            "multicast",
            "-o",
            "json",
            "--count",
            "40",
            "--interval",
            "5",
        ])
        .args(["--port", "4700", "--timeout", "40", "--kubeconfig"])
        .arg(&kc)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let r = json(&out);
    assert_eq!(out.status.code(), Some(1), "{r:#}");
    assert_eq!(r["network"], "pod");
    for n in r["nodes"].as_array().unwrap() {
        assert_eq!(n["state"], "reported", "{n}");
        assert!(
            n["address"].as_str().unwrap().starts_with("10.244."),
            "pod IPs: {n}"
        );
    }
    let pairs = r["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 12, "{r:#}");
    for p in pairs {
        let into_n3 = p["receiver_node"] == "n3";
        assert_eq!(p["verdict"], if into_n3 { "fail" } else { "pass" }, "{p}");
        if into_n3 {
            assert_eq!(p["loss_pct"], 100.0, "{p}");
            let cause = p["cause"].to_string();
            assert!(
                cause.contains("firewall") && cause.contains("4700"),
                "{cause}"
            );
        }
    }
    assert!(k.pods().is_empty(), "pods left: {:?}", k.pods());
}

fn main() {
    support::harness::main(vec![
        trial!(every_node_reports_its_own_verdicts_and_the_pods_are_deleted),
        trial!(a_node_whose_pod_cannot_run_is_absent_with_the_reason),
        trial!(a_pod_security_rejection_stops_before_any_node_is_touched),
        trial!(keep_leaves_the_pods_and_cleanup_and_the_next_run_remove_them),
        trial!(ctrl_c_deletes_the_runs_pods),
        trial!(multicast_across_four_nodes_names_the_node_whose_pods_drop_the_group),
    ]);
}
