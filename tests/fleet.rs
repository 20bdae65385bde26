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
    apiserver::{ApiFaultKind, ApiServer, Scenario},
    archive::{self, unpack},
    bin, fixtures,
    harness::require,
    kubelet::{Fault, NodeSpec, ProcessKubelet, userland_image},
};

const TOOLS: &[&str] = &["ip"];

fn host(name: &str) -> std::path::PathBuf {
    fixtures().join("hosts").join(name)
}

/// A tool's path on this machine.
fn which(tool: &str) -> std::path::PathBuf {
    let o = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().into()
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

/// The report validates against `schema --fleet`.
fn assert_fleet_schema(report: &Value) {
    let schema: Value = serde_json::from_slice(
        &Command::new(bin())
            .args(["schema", "--fleet"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    assert!(v.is_valid(report), "{:?}", v.iter_errors(report).next());
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

/// The API server on the pod network (10.244.255.1:6443, in a namespace of its own that the CLI
/// runs in too), so pods reach it as in a cluster; the kubelet knows it.
struct OverlayCluster {
    cp: support::Netns,
    ip: String,
    kubeconfig: std::path::PathBuf,
    server: ApiServer,
    _tmp: tempfile::TempDir,
}

impl OverlayCluster {
    fn start(k: &Arc<ProcessKubelet>) -> OverlayCluster {
        Self::start_with(k, Scenario::empty())
    }

    /// The same with a scenario of its own (scripted API faults, say).
    fn start_with(k: &Arc<ProcessKubelet>, s: Scenario) -> OverlayCluster {
        let (cp, ip) = k.overlay_host(1);
        let server =
            ApiServer::start_in_at(k.scenario(s), &cp, format!("{ip}:6443").parse().unwrap());
        k.set_api(server.addr(), &server.ca.pem);
        let tmp = tempfile::tempdir().unwrap();
        let kubeconfig = server.kubeconfig(tmp.path());
        OverlayCluster {
            cp,
            ip,
            kubeconfig,
            server,
            _tmp: tmp,
        }
    }
}

impl OverlayCluster {
    /// `fleet ARGS` timed: its exit code, its JSON report, and how long it took.
    fn run_json(&self, args: &[&str]) -> (Option<i32>, Value, Duration) {
        let t = Instant::now();
        let out = self.fleet(args);
        let elapsed = t.elapsed();
        (out.status.code(), json(&out), elapsed)
    }

    /// `k8sdoctor fleet ARGS --kubeconfig ..` run from the API server's namespace.
    fn fleet(&self, args: &[&str]) -> Output {
        self.cp
            .command(bin().to_str().unwrap())
            .arg("fleet")
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap()
    }
}

/// `fleet multicast` as the multicast tests run it: 40 datagrams 5 ms apart on port 4700.
const MULTICAST: [&str; 11] = [
    "multicast",
    "-o",
    "json",
    "--count",
    "40",
    "--interval",
    "5",
    "--port",
    "4700",
    "--timeout",
    "40",
];

/// iptables-restore input: the filter table with one rule.
fn filter_table(rule: &str) -> String {
    format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{rule}\nCOMMIT\n"
    )
}

/// The image's own root (deploy/image/rootfs.sh: the pinned Debian iptables/nft userland the
/// Containerfile copies), which the check and probe pods read the live rules with.
fn probe_image() -> std::path::PathBuf {
    require(&["ip", "iptables-restore", "nft"]);
    support::image::rootfs()
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
    let elapsed = t.elapsed();
    let report = json(&out);
    assert_eq!(out.status.code(), Some(1), "cp1 fails checks: {report}");
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
    assert_cleaned_up(&k, elapsed, 60);
    assert_eq!(k.running(), 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("3 of 3 nodes done"), "{stderr}");
    assert_fleet_schema(&report);
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
    require(&["ip", "busybox"]);
    let ok = host("ubuntu2204-kubeadm-healthy");
    let busybox = which("busybox");
    let (k, server, tmp) = cluster(
        ProcessKubelet::new(
            bin(),
            vec![
                NodeSpec::new("good", &ok),
                NodeSpec::new("hung", &ok).fault(Fault::StaysPending),
                NodeSpec::new("nopull", &ok).fault(Fault::ImagePullFails),
                // A dynamically linked program cannot start in an image without its libraries.
                NodeSpec::new("false", &ok).fault(Fault::Entrypoint("/bin/false".into())),
                // A static one runs, called as k8sdoctor: busybox has no such applet.
                NodeSpec::new("wrongbin", &ok).fault(Fault::Entrypoint(busybox)),
                NodeSpec::new("down", &ok).not_ready(),
                NodeSpec::new("tainted", &ok).no_execute("maintenance", "true"),
            ],
        )
        .strip_wildcard_tolerations(),
    );
    let kc = server.kubeconfig(tmp.path());
    let t = Instant::now();
    let out = fleet(&kc, &swap_check("10"));
    let elapsed = t.elapsed();
    let report = json(&out);
    assert_eq!(out.status.code(), Some(1), "absent nodes count as errors");
    let reason = |n: &str| {
        node(&report, n)["reason"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(
        node(&report, "good")["state"],
        "reported",
        "{}",
        node(&report, "good")
    );
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
    assert_eq!(node(&report, "false")["state"], "absent");
    assert!(
        reason("false").contains("could not start (StartError)")
            && reason("false").contains("/usr/local/bin/k8sdoctor"),
        "{}",
        reason("false")
    );
    assert_eq!(node(&report, "wrongbin")["state"], "error");
    assert!(
        reason("wrongbin").contains("exited 127 without a report")
            && reason("wrongbin").contains("applet not found"),
        "{}",
        reason("wrongbin")
    );
    assert_eq!(node(&report, "down")["state"], "absent");
    assert!(reason("down").contains("NotReady"), "{}", reason("down"));
    assert_eq!(node(&report, "tainted")["state"], "absent");
    assert!(
        reason("tainted").contains("untolerated NoExecute taint"),
        "{}",
        reason("tainted")
    );
    assert_cleaned_up(&k, elapsed, 10);
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

/// `fleet check -o json --timeout SECS --only swap.active`: one quick check per node.
fn swap_check(secs: &str) -> [&str; 7] {
    [
        "check",
        "-o",
        "json",
        "--timeout",
        secs,
        "--only",
        "swap.active",
    ]
}

/// A quick `fleet check` that leaves its pods and ConfigMap behind.
const KEEP: [&str; 6] = [
    "check",
    "--timeout",
    "30",
    "--only",
    "swap.active",
    "--keep",
];

fn keep_leaves_the_pods_and_cleanup_and_the_next_run_remove_them() {
    require(TOOLS);
    let (k, server, tmp) = cluster(ProcessKubelet::new(
        bin(),
        vec![NodeSpec::new("n1", host("ubuntu2204-kubeadm-healthy"))],
    ));
    let kc = server.kubeconfig(tmp.path());
    let args = KEEP;
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

/// The test API server answers selectors as kube-apiserver does, so the product's real code
/// paths are what the tests prove: pod lists by `spec.nodeName`, `status.phase` (`=`, `!=`) and
/// `metadata.name`, an unsupported field refused with 400; ConfigMaps listed by label; and `fleet
/// cleanup` removes a kept run's ConfigMaps with its deletecollection.
fn fleet_field_selectors_and_configmap_collections_are_served_as_a_real_server_does() {
    require(TOOLS);
    let ok = host("ubuntu2204-kubeadm-healthy");
    let (k, server, tmp) = cluster(ProcessKubelet::new(
        bin(),
        vec![NodeSpec::new("n1", &ok), NodeSpec::new("n2", &ok)],
    ));
    let kc = server.kubeconfig(tmp.path());
    let args = KEEP;
    assert_eq!(fleet(&kc, &args).status.code(), Some(0));
    let admin = Some(support::apiserver::ADMIN_TOKEN);
    let names = |q: &str| -> Vec<String> {
        let (code, body) = server.get(&format!("/api/v1/namespaces/k8sdoctor/{q}"), admin);
        assert_eq!(code, 200, "{q}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let on_n2 = names("pods?fieldSelector=spec.nodeName%3Dn2");
    assert_eq!(on_n2.len(), 1, "{on_n2:?}");
    assert_eq!(
        names(&format!(
            "pods?fieldSelector=metadata.name%3D%3D{}",
            on_n2[0]
        )),
        on_n2
    );
    assert_eq!(
        names("pods?fieldSelector=status.phase%3DSucceeded").len(),
        2
    );
    assert!(
        names("pods?fieldSelector=status.phase%21%3DSucceeded,status.phase%21%3DFailed").is_empty()
    );
    assert_eq!(names("pods?fieldSelector=spec.hostNetwork%3Dtrue").len(), 2);
    for q in [
        "pods?fieldSelector=spec.containers%3Dx",
        "pods?fieldSelector=status.phase",
        "pods?watch=true&fieldSelector=metadata.labels%3Dx",
        "configmaps?fieldSelector=data.run%3Dx",
    ] {
        let (code, body) = server.get(&format!("/api/v1/namespaces/k8sdoctor/{q}"), admin);
        assert_eq!(code, 400, "{q}: {body}");
        assert!(
            body.contains("field label not supported") || body.contains("invalid selector"),
            "{body}"
        );
    }
    // A watch filters by fields too: the two finished pods, then nothing for a phase none has.
    let watch = |phase: &str| {
        let path = format!(
            "/api/v1/namespaces/k8sdoctor/pods?watch=true&timeoutSeconds=1&fieldSelector=status.phase%3D{phase}"
        );
        let (raw, _) = server.get_raw(&path, admin);
        String::from_utf8_lossy(&raw)
            .matches("\"type\":\"ADDED\"")
            .count()
    };
    assert_eq!((watch("Succeeded"), watch("Running")), (2, 0));
    let cms = names("configmaps?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dk8sdoctor");
    assert_eq!(cms.len(), 1, "the kept run's owner ConfigMap: {cms:?}");
    assert!(names("configmaps?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dother").is_empty());
    let out = fleet(&kc, &["cleanup"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(k.pods().is_empty());
    assert!(
        k.objects("configmaps").is_empty(),
        "{:?}",
        k.objects("configmaps")
    );
    let deleted = server.requests_to("/namespaces/k8sdoctor/configmaps?");
    assert!(
        deleted
            .iter()
            .any(|l| l.contains(" DELETE ") && l.ends_with(" 200")),
        "one deletecollection: {deleted:#?}"
    );
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
    // The probe reads its namespace's rules with the image's own iptables-save.
    let image = probe_image();
    let ok = host("ubuntu2204-kubeadm-healthy");
    let drop_group = filter_table("-A INPUT -p udp -m udp --dport 4700 -j DROP");
    let k = Arc::new(
        ProcessKubelet::new(
            bin(),
            vec![
                NodeSpec::new("n1", &ok),
                NodeSpec::new("n2", &ok),
                NodeSpec::new("n3", &ok).pod_rules(&drop_group),
                NodeSpec::new("n4", &ok),
            ],
        )
        .image_root(&image)
        .pod_network(),
    );
    // The API server and the CLI sit on the overlay too, so pods reach the API as in a cluster.
    let oc = OverlayCluster::start(&k);
    let (code, r, elapsed) = oc.run_json(&MULTICAST);
    assert_eq!(code, Some(1), "{r:#}");
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
    assert_cleaned_up(&k, elapsed, 40);
}

// ---- The test kubelet itself: as strict as containerd and runc ----

/// A pod on `node` whose container runs `script` with the image's busybox sh.
fn sh_pod(name: &str, node: &str, script: &str, sc: Value) -> Value {
    serde_json::json!({"metadata": {"name": name}, "spec": {"nodeName": node,
        "restartPolicy": "Never", "hostNetwork": true,
        "containers": [{"name": "c", "image": "test", "securityContext": sc,
            "command": ["/usr/bin/busybox", "sh", "-c", script]}]}})
}

/// `CapBnd`, `CapPrm`, `CapEff`, `CapInh`, `CapAmb` and `NoNewPrivs` from a /proc/self/status.
fn cap_lines(log: &str) -> std::collections::BTreeMap<String, u64> {
    log.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.starts_with("Cap") || *k == "NoNewPrivs")
        .map(|(k, v)| (k.to_string(), u64::from_str_radix(v.trim(), 16).unwrap()))
        .collect()
}

fn run(k: &Arc<ProcessKubelet>, pod: Value) -> (Value, String) {
    k.run_pod(pod, Duration::from_secs(20))
        .unwrap_or_else(|(code, body)| panic!("create refused: {code} {body}"))
}

/// Capabilities as containerd sets them (0xa80425fb is its default set, the same bits Docker
/// shows), securityContext add/drop and privileged, no_new_privs, and a root that is the image's
/// only: no host /usr, /lib or /bin, writable unless readOnlyRootFilesystem.
fn kubelet_gives_containerd_capabilities_and_the_images_root_only() {
    require(&["ip", "busybox"]);
    let image = userland_image(&["busybox"]);
    let root = tempfile::tempdir().unwrap();
    let k = Arc::new(
        ProcessKubelet::new(bin(), vec![NodeSpec::new("n1", root.path())]).image_root(image.path()),
    );
    let script = "busybox cat /proc/self/status; echo ROOT $(busybox ls /); echo USR $(busybox ls /usr); \
        busybox touch /probe && echo WROTE-ROOT; busybox ls /usr/local/bin";
    let (st, log) = run(&k, sh_pod("plain", "n1", script, Value::Null));
    assert_eq!(
        st["containerStatuses"][0]["state"]["terminated"]["exitCode"], 0,
        "{st} {log}"
    );
    let caps = cap_lines(&log);
    for set in ["CapBnd", "CapPrm", "CapEff"] {
        assert_eq!(caps[set], 0xa80425fb, "{set}: {log}");
    }
    assert_eq!(
        (caps["CapInh"], caps["CapAmb"], caps["NoNewPrivs"]),
        (0, 0, 0)
    );
    let line = |p: &str| {
        log.lines()
            .find(|l| l.starts_with(p))
            .unwrap_or("")
            .to_string()
    };
    let top = line("ROOT ");
    for host_only in [" lib", " lib64", " bin", " sbin", " home", " root"] {
        assert!(
            !format!("{top} ").contains(&format!("{host_only} ")),
            "{top}"
        );
    }
    assert_eq!(line("USR "), "USR bin local", "no host /usr: {log}");
    assert!(log.contains("WROTE-ROOT"), "{log}");
    assert!(
        log.contains("k8sdoctor"),
        "the binary at the image's path: {log}"
    );
    // What the doctor's pods ask for.
    let sc = serde_json::json!({"capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]},
        "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false});
    let (_, log) = run(&k, sh_pod("strict", "n1", script, sc));
    let caps = cap_lines(&log);
    for set in ["CapBnd", "CapPrm", "CapEff"] {
        assert_eq!(caps[set], 1 << 12, "{set} is NET_ADMIN alone: {log}");
    }
    assert_eq!(caps["NoNewPrivs"], 1);
    assert!(
        log.contains("Read-only file system") && !log.contains("WROTE-ROOT"),
        "{log}"
    );
    let sc = serde_json::json!({"privileged": true});
    let (st, log) = run(&k, sh_pod("priv", "n1", script, sc));
    assert!(log.contains("CapEff"), "{st} {log}");
    // Privileged: every capability the runtime (this test) holds.
    let ours = cap_lines(&std::fs::read_to_string("/proc/self/status").unwrap())["CapBnd"];
    assert_eq!(cap_lines(&log)["CapEff"], ours, "{log}");
    // A name runc does not know stops the container before it starts.
    let sc = serde_json::json!({"capabilities": {"add": ["NET_WIZARD"]}});
    let (st, _) = run(&k, sh_pod("bogus", "n1", script, sc));
    let t = &st["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["reason"], "StartError", "{st}");
}

/// `readOnly` makes the hostPath mount read-only but not the node's mounts under it;
/// `recursiveReadOnly` makes those read-only too (and the status says so); the API server
/// refuses `recursiveReadOnly` without `readOnly`.
fn kubelet_mounts_host_paths_read_only_and_recursively_when_asked() {
    require(&["ip", "busybox"]);
    let image = userland_image(&["busybox"]);
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("proc")).unwrap();
    let k = Arc::new(
        ProcessKubelet::new(bin(), vec![NodeSpec::new("n1", root.path())]).image_root(image.path()),
    );
    let pod = |name: &str, mount: Value| {
        let mut p = sh_pod(
            name,
            "n1",
            "busybox touch /host/top-level; busybox touch /host/proc/sub-mount; true",
            Value::Null,
        );
        p["spec"]["volumes"] = serde_json::json!([{"name": "host", "hostPath": {"path": "/"}}]);
        p["spec"]["containers"][0]["volumeMounts"] = serde_json::json!([mount]);
        p
    };
    let plain = serde_json::json!({"name": "host", "mountPath": "/host", "readOnly": true});
    let (st, log) = run(&k, pod("ro", plain));
    assert!(!root.path().join("top-level").exists(), "{log}");
    assert!(
        root.path().join("proc/sub-mount").exists(),
        "a plain read-only bind leaves the mount under it writable: {log}"
    );
    let vm = &st["containerStatuses"][0]["volumeMounts"][0];
    assert_eq!(vm["recursiveReadOnly"], "Disabled", "{st}");
    std::fs::remove_file(root.path().join("proc/sub-mount")).unwrap();
    let rro = serde_json::json!({"name": "host", "mountPath": "/host", "readOnly": true,
        "recursiveReadOnly": "IfPossible"});
    let (st, log) = run(&k, pod("rro", rro));
    assert!(!root.path().join("top-level").exists(), "{log}");
    assert!(!root.path().join("proc/sub-mount").exists(), "{log}");
    assert_eq!(log.matches("Read-only file system").count(), 2, "{log}");
    let vm = &st["containerStatuses"][0]["volumeMounts"][0];
    assert_eq!(vm["recursiveReadOnly"], "Enabled", "{st}");
    let bad = serde_json::json!({"name": "host", "mountPath": "/host",
        "recursiveReadOnly": "IfPossible"});
    let err = k
        .run_pod(pod("bad", bad), Duration::from_secs(5))
        .unwrap_err();
    assert_eq!(err.0, 422);
    assert!(
        err.1
            .contains("recursiveReadOnly: Forbidden: may only be specified when readOnly is true"),
        "{}",
        err.1
    );
}

/// A pod-network pod has its address, default route and a live link from its first instruction,
/// and the node's bridge (the pods' gateway) keeps one MAC however many pods come and go.
fn kubelet_wires_the_network_before_the_container_starts() {
    require(&["ip", "busybox"]);
    let image = userland_image(&["busybox"]);
    let root = tempfile::tempdir().unwrap();
    let k = Arc::new(
        ProcessKubelet::new(bin(), vec![NodeSpec::new("n1", root.path())])
            .image_root(image.path())
            .pod_network(),
    );
    let mac = k.node_bridge_mac(0);
    assert_eq!(mac, "02:00:0a:f4:00:01");
    let script = "busybox cat /sys/class/net/eth0/operstate; busybox ip -4 -o addr show eth0; \
        busybox ip route; busybox ping -c 1 -W 2 10.244.0.1 >/dev/null; busybox ip neigh";
    for n in 0..3 {
        let mut pod = sh_pod(&format!("p{n}"), "n1", script, Value::Null);
        pod["spec"]["hostNetwork"] = false.into();
        let (_, log) = run(&k, pod);
        let mut lines = log.lines();
        assert_eq!(lines.next(), Some("up"), "{log}");
        assert!(log.contains("inet 10.244.1."), "{log}");
        assert!(log.contains("default via 10.244.0.1 dev eth0"), "{log}");
        assert!(
            log.contains(&format!("10.244.0.1 dev eth0 lladdr {mac}")),
            "the gateway answers with the bridge's fixed MAC: {log}"
        );
        assert_eq!(k.node_bridge_mac(0), mac);
    }
}

/// The API-address faults as a pod sees them: dropped (a connect times out), refused (reset), and
/// refused only for the first seconds; pods on a healthy node connect; hostNetwork pods of a
/// faulty node are cut off too.
fn kubelet_api_address_faults_are_what_the_pods_see() {
    require(&["ip", "iptables", "busybox"]);
    let image = userland_image(&["busybox"]);
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let k = Arc::new(
        ProcessKubelet::new(
            bin(),
            vec![
                NodeSpec::new("ok", r),
                NodeSpec::new("dropped", r).fault(Fault::ApiDropped),
                NodeSpec::new("refused", r).fault(Fault::ApiRefused),
                NodeSpec::new("late", r).fault(Fault::ApiRefusedFor(Duration::from_secs(3))),
            ],
        )
        .image_root(image.path())
        .pod_network(),
    );
    let oc = OverlayCluster::start(&k);
    let ip = &oc.ip;
    let dial = format!("busybox nc -w 2 {ip} 6443 </dev/null; echo rc=$?");
    let pod = |name: &str, node: &str, script: &str, host: bool| {
        let mut p = sh_pod(name, node, script, Value::Null);
        p["spec"]["hostNetwork"] = host.into();
        p
    };
    let (_, log) = run(&k, pod("a", "ok", &dial, false));
    assert!(log.contains("rc=0"), "ok: {log}");
    let (_, log) = run(&k, pod("b", "dropped", &dial, false));
    assert!(
        log.contains("timed out") && log.contains("rc=1"),
        "dropped: {log}"
    );
    let (_, log) = run(&k, pod("c", "refused", &dial, false));
    assert!(log.contains("Connection refused"), "refused: {log}");
    let (_, log) = run(&k, pod("d", "refused", &dial, true));
    assert!(
        log.contains("Connection refused"),
        "hostNetwork, refused: {log}"
    );
    let twice = format!("{dial}; busybox sleep 4; {dial}");
    let (_, log) = run(&k, pod("e", "late", &twice, false));
    let first = log.find("Connection refused").expect(&log);
    let ok = log.rfind("rc=0").expect(&log);
    assert!(first < ok, "refused first, then reachable: {log}");
}

/// A node's live ruleset is in its own namespace only (nothing under its root says so): a
/// hostNetwork pod with NET_ADMIN and the image's iptables-save reads the REJECT there; with
/// containerd's default capabilities it cannot read it at all.
fn kubelet_node_rules_are_live_and_need_net_admin_to_read() {
    require(&["ip", "iptables-restore", "iptables-save"]);
    let image = userland_image(&["iptables-save"]);
    let root = tempfile::tempdir().unwrap();
    let reject =
        filter_table("-A INPUT -p tcp -m tcp --dport 10250 -j REJECT --reject-with tcp-reset");
    let k = Arc::new(
        ProcessKubelet::new(
            bin(),
            vec![NodeSpec::new("n1", root.path()).node_rules(&reject)],
        )
        .image_root(image.path()),
    );
    let pod = |name: &str, sc: Value| {
        serde_json::json!({"metadata": {"name": name}, "spec": {"nodeName": "n1",
            "restartPolicy": "Never", "hostNetwork": true, "containers": [{"name": "c",
            "image": "test", "securityContext": sc, "command": ["iptables-save"]}]}})
    };
    let sc = serde_json::json!({"capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]},
        "readOnlyRootFilesystem": true});
    let (st, log) = run(&k, pod("admin", sc));
    assert!(
        log.contains("--dport 10250 -j REJECT --reject-with tcp-reset"),
        "{st} {log}"
    );
    let (st, log) = run(&k, pod("default", Value::Null));
    let t = &st["containerStatuses"][0]["state"]["terminated"];
    assert_ne!(t["exitCode"], 0, "{log}");
    assert!(!log.contains("10250"), "{log}");
    assert!(std::fs::read_dir(root.path()).unwrap().next().is_none());
}

/// The termination message as a kubelet makes it: the container writes its file even with a
/// read-only root, the last 4096 bytes reach `state.terminated.message`; with
/// FallbackToLogsOnError a failed container that wrote nothing gets its log's tail instead.
fn kubelet_writes_the_termination_message_as_a_kubelet_does() {
    require(&["ip", "busybox"]);
    let image = userland_image(&["busybox"]);
    let root = tempfile::tempdir().unwrap();
    let k = Arc::new(
        ProcessKubelet::new(bin(), vec![NodeSpec::new("n1", root.path())]).image_root(image.path()),
    );
    let ro = serde_json::json!({"readOnlyRootFilesystem": true});
    // 5000 bytes: "a" then 4999 "b"s (busybox printf pads with spaces; tr makes them b).
    let script = "busybox printf a%4999s x | busybox tr ' x' 'bb' > /dev/termination-log";
    let (st, log) = run(&k, sh_pod("big", "n1", script, ro.clone()));
    let t = &st["containerStatuses"][0]["state"]["terminated"];
    let msg = t["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{st} {log}"));
    assert_eq!(msg.len(), 4096, "the last 4096 bytes");
    assert!(msg.bytes().all(|b| b == b'b'), "{msg}");
    let failing = "for i in $(busybox seq 1 100); do echo line-$i; done; exit 3";
    let mut pod = sh_pod("fallback", "n1", failing, ro.clone());
    pod["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError".into();
    let (st, _) = run(&k, pod);
    let msg = st["containerStatuses"][0]["state"]["terminated"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{st}"))
        .to_string();
    assert!(
        msg.starts_with("line-21\n") && msg.ends_with("line-100\n"),
        "the last 80 lines: {msg}"
    );
    let (st, _) = run(&k, sh_pod("file", "n1", failing, ro));
    let t = &st["containerStatuses"][0]["state"]["terminated"];
    assert!(
        t.get("message").is_none(),
        "policy File: nothing written, no message: {t}"
    );
}

/// The install guide's cluster: the API server cannot reach a node's kubelet (tcp/10250), so its
/// pod log cannot be read. The node is still `reported`, from the compact report in its pod's
/// termination message, with the same statuses as the same root checked where logs can be read;
/// the node entry says only the compact report arrived and names tcp/10250 and the pitfall; the
/// run ends within its timeout.
fn fleet_check_reports_a_node_whose_kubelet_port_is_unreachable_from_its_termination_message() {
    require(TOOLS);
    let broken = host("centos7-seed-broken");
    let (k, server, tmp) = cluster(ProcessKubelet::new(
        bin(),
        vec![
            NodeSpec::new("twin", &broken),
            NodeSpec::new("walled", &broken)
                .fault(Fault::KubeletUnreachable(Duration::from_secs(3))),
            NodeSpec::new("w1", host("ubuntu2204-kubeadm-healthy")),
        ],
    ));
    let kc = server.kubeconfig(tmp.path());
    let t = Instant::now();
    let out = fleet(&kc, &["check", "-o", "json", "--timeout", "30"]);
    let elapsed = t.elapsed();
    let r = json(&out);
    for n in ["twin", "walled", "w1"] {
        assert_eq!(node(&r, n)["state"], "reported", "{n}: {}", node(&r, n));
    }
    let walled = node(&r, "walled");
    let twin = node(&r, "twin");
    let why = walled["reason"].as_str().unwrap();
    assert!(why.contains("only the compact report arrived"), "{why}");
    assert!(
        why.contains("the API server cannot reach the kubelet on 10.244.0.2:10250")
            && why.contains("i/o timeout")
            && why.contains("firewall.kubelet-port pitfall"),
        "{why}"
    );
    assert!(twin["reason"].is_null(), "{twin}");
    let statuses = |n: &Value| -> Vec<(String, String)> {
        n["report"]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x["id"].to_string(), x["status"].to_string()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    assert!(statuses(twin).len() > 30);
    assert_eq!(statuses(walled), statuses(twin));
    assert_eq!(walled["report"]["summary"], twin["report"]["summary"]);
    // Nothing differs between the twins, so no drift names them apart.
    for d in r["drift"].as_array().unwrap() {
        let by: Vec<&Value> = d["statuses"].as_object().unwrap().values().collect();
        let apart = by.iter().any(|nodes| {
            let list = nodes.as_array().unwrap();
            list.contains(&"walled".into()) != list.contains(&"twin".into())
        });
        assert!(!apart, "{d}");
    }
    assert_fleet_schema(&r);
    assert_cleaned_up(&k, elapsed, 30);
}

/// `fleet multicast` on a cluster where one node's kubelet is unreachable from the API server:
/// that node's probe result still arrives, through its termination message, and every pair is
/// measured; the node entry names tcp/10250.
fn fleet_multicast_reads_a_probe_whose_kubelet_port_is_unreachable_from_its_termination_message() {
    let image = probe_image();
    let ok = host("ubuntu2204-kubeadm-healthy");
    let k = Arc::new(
        ProcessKubelet::new(
            bin(),
            vec![
                NodeSpec::new("n1", &ok),
                NodeSpec::new("n2", &ok),
                NodeSpec::new("walled", &ok)
                    .fault(Fault::KubeletUnreachable(Duration::from_secs(2))),
            ],
        )
        .image_root(&image)
        .pod_network(),
    );
    let oc = OverlayCluster::start(&k);
    let (code, r, elapsed) = oc.run_json(&MULTICAST);
    assert_eq!(code, Some(0), "{r:#}");
    for n in r["nodes"].as_array().unwrap() {
        assert_eq!(n["state"], "reported", "{n}");
    }
    let walled = node(&r, "walled");
    let why = walled["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("only the compact probe result arrived")
            && why.contains("cannot reach the kubelet on 10.244.0.3:10250"),
        "{why}"
    );
    let pairs = r["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 6, "{r:#}");
    assert!(pairs.iter().all(|p| p["verdict"] == "pass"), "{r:#}");
    assert_cleaned_up(&k, elapsed, 40);
}

// ---- Fleet runs on a sick cluster (faults the product already handles) ----

/// Check pods never talk to the API server: a node whose pods cannot reach the API address (the
/// CLI on the overlay, as in a cluster) is still reported, with its own verdicts.
fn fleet_check_reports_a_node_whose_pods_cannot_reach_the_api() {
    require(&["ip", "iptables"]);
    let ok = host("ubuntu2204-kubeadm-healthy");
    let k = Arc::new(
        ProcessKubelet::new(
            bin(),
            vec![
                NodeSpec::new("n1", &ok),
                NodeSpec::new("cut", host("centos7-seed-broken")).fault(Fault::ApiDropped),
            ],
        )
        .pod_network(),
    );
    let oc = OverlayCluster::start(&k);
    let t = Instant::now();
    let out = oc.fleet(&swap_check("30"));
    let elapsed = t.elapsed();
    let r = json(&out);
    assert_eq!(node(&r, "n1")["state"], "reported", "{r:#}");
    assert_eq!(node(&r, "cut")["state"], "reported", "{r:#}");
    assert_eq!(status_of(node(&r, "cut"), "swap.active"), "fail");
    assert_cleaned_up(&k, elapsed, 30);
}

/// The end of every fleet run on the test cluster: within `--timeout` + 5 s, and every pod and
/// ConfigMap of the run deleted (as the API server's state shows it).
fn assert_cleaned_up(k: &ProcessKubelet, elapsed: Duration, timeout_secs: u64) {
    assert!(
        elapsed < Duration::from_secs(timeout_secs + 5),
        "the run took {elapsed:?} with --timeout {timeout_secs}"
    );
    assert!(k.pods().is_empty(), "pods left: {:?}", k.pods());
    assert!(
        k.objects("configmaps").is_empty(),
        "ConfigMaps left: {:?}",
        k.objects("configmaps")
    );
}

/// The policy DROP of the forward-path tests: traffic from other nodes' pods (not n3's own
/// 10.244.3.0/24) to the group's port, in n3's own namespace.
const FORWARD_DROP: &str = "-A FORWARD ! -s 10.244.3.0/24 -p udp -m udp --dport 4700 -j DROP";

/// Healthy Ubuntu nodes named `names` on the pod network, the image's own root in every
/// container, then `last` (a sick one) if given.
fn pod_cluster(names: &[&str], last: Option<NodeSpec>) -> Arc<ProcessKubelet> {
    let image = probe_image();
    let ok = host("ubuntu2204-kubeadm-healthy");
    let nodes = names
        .iter()
        .map(|n| NodeSpec::new(n, &ok))
        .chain(last)
        .collect();
    Arc::new(
        ProcessKubelet::new(bin(), nodes)
            .image_root(&image)
            .pod_network(),
    )
}

/// n1, n2 and n3 on the pod network, n3's node namespace dropping the group's forwarded traffic.
fn forward_drop_cluster(n3_fault: Option<Fault>) -> Arc<ProcessKubelet> {
    let ok = host("ubuntu2204-kubeadm-healthy");
    let mut n3 = NodeSpec::new("n3", &ok).node_rules(&filter_table(FORWARD_DROP));
    if let Some(f) = n3_fault {
        n3 = n3.fault(f);
    }
    pod_cluster(&["n1", "n2"], Some(n3))
}

/// The pairs of a three-node run into n3, after asserting that they fail and that every other
/// pair passes with no cause claimed.
fn pairs_into_n3(r: &Value) -> Vec<&Value> {
    let pairs = r["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 6, "{r:#}");
    for p in pairs.iter().filter(|p| p["receiver_node"] != "n3") {
        assert_eq!(p["verdict"], "pass", "{p}");
        assert!(p["cause"].is_null(), "no cause for a healthy pair: {p}");
    }
    let into: Vec<&Value> = pairs
        .iter()
        .filter(|p| p["receiver_node"] == "n3")
        .collect();
    for p in &into {
        assert_eq!(p["verdict"], "fail", "{p}");
    }
    into
}

/// A policy engine's DROP in one node's FORWARD path (where bridged pod traffic is filtered, as
/// weave-npc and kube-router filter it), invisible from the probes' pods: the multicast into
/// that node's pods fails with the node's rule named as the cause (read live by the node's
/// observer pod), every other pair passes with no cause claimed.
fn fleet_multicast_fails_only_into_the_node_whose_forward_path_drops_the_group() {
    let k = forward_drop_cluster(None);
    let oc = OverlayCluster::start(&k);
    let (code, r, elapsed) = oc.run_json(&MULTICAST);
    assert_eq!(code, Some(1), "{r:#}");
    for p in pairs_into_n3(&r) {
        let cause = &p["cause"];
        assert_eq!(cause["code"], "firewall", "{p}");
        let m = cause["message"].as_str().unwrap();
        assert!(
            m.contains(&format!(
                "node n3 (the receiver's) drops the group's traffic from {}",
                p["sender"].as_str().unwrap()
            )) && m.contains(&format!("filter/FORWARD #1: {FORWARD_DROP}")),
            "{m}"
        );
        let ev = cause["evidence"].to_string();
        let sender = p["sender_node"].as_str().unwrap();
        assert!(
            ev.contains(&format!("node {sender}'s live ruleset drops nothing")),
            "the sender's node was read and drops nothing: {ev}"
        );
    }
    for n in r["nodes"].as_array().unwrap() {
        assert_eq!(n["state"], "reported", "{n}");
        assert_eq!(n["node_firewall"], "read live", "{n}");
    }
    // The observers ran as the pods' security context says: NET_ADMIN only, host network.
    let observers: Vec<_> = k
        .created()
        .into_iter()
        .filter(|(_, name, _)| name.contains("-fw-"))
        .collect();
    assert_eq!(
        observers.len(),
        3,
        "one observer per node: {:?}",
        k.created()
    );
    assert_cleaned_up(&k, elapsed, 40);
}

/// The same policy DROP on a node whose runtime withholds CAP_NET_ADMIN: neither its probe nor
/// its observer can read a rule, so the pairs into it fail with the unread firewall named (node
/// and reason), not "nothing explains it"; the other pairs still pass and say nothing.
fn fleet_multicast_names_a_node_whose_firewall_cannot_be_read() {
    let k = forward_drop_cluster(Some(Fault::NoNetAdmin));
    let oc = OverlayCluster::start(&k);
    let (code, r, elapsed) = oc.run_json(&MULTICAST);
    assert_eq!(code, Some(1), "{r:#}");
    let n3 = node(&r, "n3");
    assert_eq!(n3["state"], "reported", "{r:#}");
    let nf = n3["node_firewall"].as_str().unwrap();
    assert!(
        nf.starts_with("could not be read") && nf.contains("no CAP_NET_ADMIN"),
        "{nf}"
    );
    for n in ["n1", "n2"] {
        assert_eq!(node(&r, n)["node_firewall"], "read live", "{r:#}");
    }
    for p in pairs_into_n3(&r) {
        let m = p["cause"]["message"].as_str().unwrap();
        assert_ne!(p["cause"]["code"], "firewall", "no rule was read: {p}");
        assert!(
            m.contains("node n3's firewall could not be read") && m.contains("no CAP_NET_ADMIN"),
            "{m}"
        );
        assert!(!m.contains("nothing on this node explains it"), "{m}");
    }
    assert_cleaned_up(&k, elapsed, 40);
}

/// A fresh node whose Service rules are not programmed yet: the API address is refused on it for
/// its first seconds. Its probe and observer retry their reads of the participants, so the node
/// is measured like the others, not lost. When its probe comes up only after the others' rendezvous
/// (the retries' back-off decides), the pairs into it are `not-measured` saying so, never a loss.
fn fleet_multicast_measures_a_node_whose_api_address_is_refused_at_first() {
    let ok = host("ubuntu2204-kubeadm-healthy");
    let late = NodeSpec::new("late", &ok).fault(Fault::ApiRefusedFor(Duration::from_secs(8)));
    let k = pod_cluster(&["n1", "n2"], Some(late));
    let oc = OverlayCluster::start(&k);
    let (code, r, elapsed) = oc.run_json(&MULTICAST);
    assert!(
        k.api_fault_armed("late"),
        "the refusal was in place when late's first pod started"
    );
    for n in ["n1", "n2", "late"] {
        assert_eq!(node(&r, n)["state"], "reported", "{r:#}");
        assert_eq!(node(&r, n)["node_firewall"], "read live", "{r:#}");
    }
    let pairs = r["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 6, "{r:#}");
    // How much of the others' runs the late probe overlapped depends on when its reads got through
    // (a loaded machine starts it later): every pair is measured and passes, or is not measured
    // and says why, never a loss.
    for p in pairs {
        assert_not_blamed_on_the_network(p);
    }
    let all_pass = pairs.iter().all(|p| p["verdict"] == "pass");
    assert_eq!(code, Some(if all_pass { 0 } else { 1 }), "{r:#}");
    assert_cleaned_up(&k, elapsed, 40);
}

/// A pair passes, or — only with the late node in it — is not measured for one of the three
/// reasons a late start gives, with no loss figure and no cause.
fn assert_not_blamed_on_the_network(p: &Value) {
    assert!(p["cause"].is_null(), "{p}");
    if p["verdict"] == "pass" {
        return;
    }
    assert!(
        p["receiver_node"] == "late" || p["sender_node"] == "late",
        "only pairs with the late node: {p}"
    );
    assert_eq!(p["verdict"], "not-measured", "{p}");
    assert!(p["loss_pct"].is_null(), "{p}");
    let why = p["reason"].as_str().unwrap();
    let late_reasons = [
        "had sent all its datagrams before",
        "had stopped listening (it started late)",
        "were not up together long enough to measure it",
    ];
    assert!(late_reasons.iter().any(|r| why.contains(r)), "{why}");
}

/// The late node's API address is refused for longer than the others' probes run: its probe
/// starts only after theirs have ended, so neither side heard the other. The run places each
/// probe's run in time and reads every pair with the late node as not measured (the two were
/// not up together), not as "unicast fails too"; the other pairs pass.
fn fleet_multicast_does_not_blame_the_network_for_a_probe_that_came_up_after_the_others_ended() {
    let ok = host("ubuntu2204-kubeadm-healthy");
    let late = NodeSpec::new("late", &ok).fault(Fault::ApiRefusedFor(Duration::from_secs(18)));
    let k = pod_cluster(&["n1", "n2"], Some(late));
    let oc = OverlayCluster::start(&k);
    let (code, r, elapsed) = oc.run_json(&MULTICAST);
    for n in ["n1", "n2", "late"] {
        assert_eq!(node(&r, n)["state"], "reported", "{r:#}");
    }
    let pairs = r["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 6, "{r:#}");
    for p in pairs {
        let with_late = p["sender_node"] == "late" || p["receiver_node"] == "late";
        if !with_late {
            assert_eq!(p["verdict"], "pass", "{p}");
            continue;
        }
        assert_not_blamed_on_the_network(p);
        let why = p["reason"].as_str().unwrap();
        assert!(
            why.contains("were not up together long enough to measure it")
                && why.contains("listened from")
                && why.contains("ran from"),
            "both runs on the run's clock: {why}"
        );
    }
    assert_eq!(code, Some(1), "not-measured pairs are not a pass: {r:#}");
    assert_cleaned_up(&k, elapsed, 40);
}

/// Connections reset mid-body (a load balancer dropping them) on requests of the CLI (the node
/// list, a create of the run's ConfigMap whose answer is lost after the server stored it) and of
/// the probes and observers (their reads of the participants): the run completes with every pair
/// measured and passing.
fn fleet_multicast_survives_connections_reset_mid_body() {
    let k = pod_cluster(&["n1", "n2"], None);
    let reset = ApiFaultKind::ResetMidBody;
    let cms = "/api/v1/namespaces/k8sdoctor/configmaps";
    let oc = OverlayCluster::start_with(
        &k,
        Scenario::empty()
            .fault("GET", "/api/v1/nodes", 0, 1, reset)
            .fault("POST", cms, 0, 2, reset)
            .fault("GET", &format!("{cms}/*"), 0, 3, reset),
    );
    let server = &oc.server;
    let (code, r, elapsed) = oc.run_json(&MULTICAST);
    assert_eq!(
        server.faults_served(),
        6,
        "every scripted reset was served: {:#?}",
        server.requests()
    );
    assert_eq!(code, Some(0), "{r:#}");
    for n in ["n1", "n2"] {
        assert_eq!(node(&r, n)["state"], "reported", "{r:#}");
    }
    let pairs = r["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 2, "{r:#}");
    assert!(
        pairs
            .iter()
            .all(|p| p["verdict"] == "pass" && p["cause"].is_null()),
        "{r:#}"
    );
    assert_cleaned_up(&k, elapsed, 40);
}

/// `fleet check` with connections reset mid-body on the node list and on a pod-log read: the
/// reads are retried and every node reports its own verdicts in full.
fn fleet_check_survives_connections_reset_mid_body() {
    require(TOOLS);
    let k = Arc::new(ProcessKubelet::new(
        bin(),
        vec![
            NodeSpec::new("cp1", host("centos7-seed-broken")),
            NodeSpec::new("w1", host("ubuntu2204-kubeadm-healthy")),
        ],
    ));
    let reset = ApiFaultKind::ResetMidBody;
    let server = ApiServer::start(
        k.scenario(Scenario::empty())
            .fault("GET", "/api/v1/nodes", 0, 1, reset)
            .fault("GET", "/api/v1/namespaces/k8sdoctor/pods/*", 0, 1, reset),
    );
    let tmp = tempfile::tempdir().unwrap();
    let kc = server.kubeconfig(tmp.path());
    let t = Instant::now();
    let out = fleet(&kc, &swap_check("30"));
    let elapsed = t.elapsed();
    let r = json(&out);
    assert_eq!(server.faults_served(), 2, "{:#?}", server.requests());
    for (n, want) in [("cp1", "fail"), ("w1", "pass")] {
        let nd = node(&r, n);
        assert_eq!(nd["state"], "reported", "{r:#}");
        assert!(nd["reason"].is_null(), "the full report arrived: {nd}");
        assert_eq!(status_of(nd, "swap.active"), want, "{r:#}");
    }
    assert_cleaned_up(&k, elapsed, 30);
}

/// `fleet check --policy`: the policy travels in each pod's command line and every node judges it on its
/// own root; a bad policy stops the run before any pod.
fn a_policy_reaches_every_node() {
    require(TOOLS);
    let (k, server, tmp) = cluster(ProcessKubelet::new(
        bin(),
        vec![
            NodeSpec::new("cp1", host("centos7-seed-broken")),
            // Its live forwarding is on, as on a node that applied its sysctl.d (the check pods read the
            // node's network namespace live: --live-network).
            NodeSpec::new("w1", host("ubuntu2204-kubeadm-healthy"))
                .sysctl("net.ipv4.ip_forward", "1"),
        ],
    ));
    let kc = server.kubeconfig(tmp.path());
    let policy = tmp.path().join("site.yaml");
    std::fs::write(
        &policy,
        "sysctls:\n  - key: net.ipv4.ip_forward\n    value: 1\nfiles:\n  - name: dns\n    path: /etc/resolv.conf\n    must_not_match: '^nameserver\\s+127\\.0\\.0\\.1$'\n",
    )
    .unwrap();
    let p = policy.to_str().unwrap();
    let out = fleet(
        &kc,
        &[
            "check",
            "-o",
            "json",
            "--timeout",
            "60",
            "--policy",
            p,
            "--only",
            "policy.sysctl.net.ipv4.ip_forward,policy.file.dns",
        ],
    );
    let report = json(&out);
    // Each node's own verdict on the policy: cp1 forwards nothing and uses 127.0.0.1, w1 neither.
    let cp1 = node(&report, "cp1");
    assert_eq!(
        status_of(cp1, "policy.sysctl.net.ipv4.ip_forward"),
        "fail",
        "{cp1}"
    );
    assert_eq!(status_of(cp1, "policy.file.dns"), "fail", "{cp1}");
    let w1 = node(&report, "w1");
    assert_eq!(
        status_of(w1, "policy.sysctl.net.ipv4.ip_forward"),
        "pass",
        "{w1}"
    );
    assert_eq!(status_of(w1, "policy.file.dns"), "pass", "{w1}");
    assert!(
        cp1.to_string()
            .contains(&format!("required by the site policy at {p}:2")),
        "{cp1}"
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(k.pods().is_empty(), "pods left: {:?}", k.pods());
    // A bad policy: exit 2 naming the line, and no pod is created.
    let before = k.created().len();
    std::fs::write(
        &policy,
        "sysctls:\n  - key: net.ipv4.ip_forward\n    valeu: 1\n",
    )
    .unwrap();
    let out = fleet(&kc, &["check", "--timeout", "60", "--policy", p]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{p}:3: unknown field `valeu`")),
        "{err}"
    );
    assert_eq!(k.created().len(), before);
}

/// A node whose *running* ruleset rejects tcp/10250 (nothing saved under its root) and one whose
/// stale saved file allows it: the check pods read the node's live rules (hostNetwork,
/// --live-network, NET_ADMIN, the image's own iptables) and both fail `firewall.kubelet-port`
/// citing the live rule; a node without the rule passes.
fn fleet_check_reads_each_nodes_live_ruleset() {
    let image = probe_image();
    let reject =
        filter_table("-A INPUT -p tcp -m tcp --dport 10250 -j REJECT --reject-with tcp-reset");
    let bare = tempfile::tempdir().unwrap();
    let fixture = host("ubuntu2204-kubeadm-healthy");
    let copy = |dst: &std::path::Path| {
        let o = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", fixture.display()))
            .arg(dst)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
    };
    copy(bare.path());
    let stale = tempfile::tempdir().unwrap();
    copy(stale.path());
    std::fs::create_dir_all(stale.path().join("etc/iptables")).unwrap();
    std::fs::write(
        stale.path().join("etc/iptables/rules.v4"),
        filter_table("-A INPUT -p tcp -m tcp --dport 10250 -j ACCEPT"),
    )
    .unwrap();
    let k = Arc::new(
        ProcessKubelet::new(
            bin(),
            vec![
                NodeSpec::new("live", bare.path())
                    .nic("192.168.77.20/24")
                    .node_rules(&reject),
                NodeSpec::new("stale", stale.path())
                    .nic("192.168.77.21/24")
                    .node_rules(&reject),
                NodeSpec::new("open", bare.path()).nic("192.168.77.22/24"),
            ],
        )
        .image_root(&image),
    );
    let (server, tmp) = (
        ApiServer::start(k.scenario(Scenario::empty())),
        tempfile::tempdir().unwrap(),
    );
    let kc = server.kubeconfig(tmp.path());
    let out = fleet(
        &kc,
        &[
            "check",
            "-o",
            "json",
            "--timeout",
            "60",
            "--only",
            "firewall.kubelet-port",
        ],
    );
    let r = json(&out);
    for name in ["live", "stale"] {
        let n = node(&r, name);
        assert_eq!(n["state"], "reported", "{n}");
        assert_eq!(status_of(n, "firewall.kubelet-port"), "fail", "{n}");
        let text = n.to_string();
        assert!(
            text.contains("10250") && text.contains("REJECT"),
            "{name}: the live rule is not cited: {text}"
        );
    }
    let stale_text = node(&r, "stale").to_string();
    assert!(
        stale_text.contains("rules.v4"),
        "the saved file that disagrees is not named: {stale_text}"
    );
    assert_eq!(
        status_of(node(&r, "open"), "firewall.kubelet-port"),
        "pass",
        "{r:#}"
    );
    assert!(k.pods().is_empty(), "pods left: {:?}", k.pods());
}

fn api_faults_are_retried_the_pods_are_watched_and_nodes_without_an_image_are_named() {
    require(TOOLS);
    let ok = host("ubuntu2204-kubeadm-healthy");
    let k = Arc::new(ProcessKubelet::new(
        bin(),
        vec![NodeSpec::new("n1", &ok), NodeSpec::new("n2", &ok)],
    ));
    let platform = |name: &str, os: &str, arch: &str| {
        let mut n = support::apiserver::node(name, "v1.33.2", true, false);
        let l = n.metadata.labels.get_or_insert_default();
        l.insert("kubernetes.io/os".into(), os.into());
        l.insert("kubernetes.io/arch".into(), arch.into());
        n
    };
    // A busy API server: the node list, pod creates and a pod list refused for a while.
    let scenario = k
        .scenario(Scenario::empty())
        .with(platform("arm1", "linux", "arm64"))
        .with(platform("win1", "windows", "amd64"))
        .fail("GET", "/api/v1/nodes", 503, 2)
        .fail("POST", "/namespaces/k8sdoctor/pods", 429, 2)
        .fail("GET", "/namespaces/k8sdoctor/pods", 503, 1);
    let server = ApiServer::start(scenario);
    let tmp = tempfile::tempdir().unwrap();
    let kc = server.kubeconfig(tmp.path());
    let t = Instant::now();
    let out = fleet(
        &kc,
        &[
            "check",
            "-o",
            "json",
            "--timeout",
            "40",
            "--only",
            "swap.active",
            "--image",
            "amd64=registry.example/k8sdoctor:1",
            "--image-pull-secret",
            "regcred",
        ],
    );
    let elapsed = t.elapsed();
    let report = json(&out);
    assert_eq!(out.status.code(), Some(1), "arm1 is absent: {report}");
    for n in ["n1", "n2"] {
        assert_eq!(node(&report, n)["state"], "reported", "{report}");
    }
    assert_eq!(node(&report, "arm1")["state"], "absent");
    assert!(
        node(&report, "arm1")["reason"]
            .as_str()
            .unwrap()
            .contains("no image for arm64"),
        "{report}"
    );
    assert!(
        report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["name"] != "win1"),
        "only Linux nodes are selected: {report}"
    );
    let log = server.requests();
    let faults = log
        .iter()
        .filter(|l| l.ends_with(" 429") || l.ends_with(" 503"))
        .count();
    assert_eq!(faults, 5, "every scripted fault was hit: {log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("labelSelector=kubernetes.io%2Fos%3Dlinux")
                || l.contains("kubernetes.io/os=linux")),
        "{log:#?}"
    );
    // The run's pods are watched, not polled: a list or two, then watches.
    let lists = server
        .requests_to("/namespaces/k8sdoctor/pods?")
        .into_iter()
        .filter(|l| l.starts_with("kubernetes-admin GET") && !l.contains("watch=true"))
        .count();
    let watches = server.requests_to("watch=true").len();
    assert!(
        watches >= 1 && lists <= 3,
        "{lists} lists, {watches} watches: {log:#?}"
    );
    // The stale sweep and the run's end are one deletecollection each.
    let deletes: Vec<String> = server
        .requests_to("/namespaces/k8sdoctor/pods")
        .into_iter()
        .filter(|l| l.contains(" DELETE "))
        .collect();
    assert_eq!(deletes.len(), 2, "{deletes:#?}");
    assert_cleaned_up(&k, elapsed, 40);
}

fn multicast_goes_on_without_a_node_whose_pod_never_starts() {
    require(&["ip", "iptables-restore"]);
    let ok = host("ubuntu2204-kubeadm-healthy");
    let k = Arc::new(
        ProcessKubelet::new(
            bin(),
            vec![
                NodeSpec::new("n1", &ok),
                NodeSpec::new("n2", &ok),
                NodeSpec::new("hung", &ok).fault(Fault::StaysPending),
            ],
        )
        .pod_network(),
    );
    // The probes' reads of their peers list meet a busy API server first.
    let oc = OverlayCluster::start_with(
        &k,
        Scenario::empty()
            .fail("GET", "-peers", 503, 2)
            .fail("GET", "-peers", 429, 1),
    );
    let server = &oc.server;
    let t = Instant::now();
    let mut args = MULTICAST;
    args[4] = "20";
    args[8] = "4710";
    args[10] = "16";
    let out = oc.fleet(&args);
    let elapsed = t.elapsed();
    let r = json(&out);
    assert_eq!(out.status.code(), Some(1), "{r:#}");
    let hung = node(&r, "hung");
    assert_eq!(hung["state"], "absent", "{r:#}");
    assert!(
        hung["reason"]
            .as_str()
            .unwrap()
            .contains("pod not running when the probe started"),
        "{hung}"
    );
    for n in ["n1", "n2"] {
        assert_eq!(node(&r, n)["state"], "reported", "{r:#}");
    }
    let pairs = r["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 2, "n1→n2 and n2→n1 measured: {r:#}");
    let refused = server
        .requests_to("-peers")
        .into_iter()
        .filter(|l| l.ends_with(" 503") || l.ends_with(" 429"))
        .count();
    assert_eq!(
        refused,
        3,
        "the probes met the faults and retried: {:#?}",
        server.requests_to("-peers")
    );
    for p in pairs {
        assert_eq!(p["verdict"], "pass", "{p}");
    }
    assert_cleaned_up(&k, elapsed, 16);
}

/// Every member of a tar.gz by name (read with the tar and gzip crates, as any tool would).
/// A tar.gz of regular members, names written as given (`..` too).
fn pack(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let regular: Vec<_> = entries
        .iter()
        .map(|(name, data)| (*name, tar::EntryType::Regular, *data))
        .collect();
    archive::pack(&regular)
}

/// Every (node, check, status) of a fleet report, sorted.
fn statuses(report: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for n in report["nodes"].as_array().unwrap() {
        let name = n["name"].as_str().unwrap().to_string();
        out.push((name.clone(), "(state)".into(), n["state"].to_string()));
        for r in n["report"]["results"].as_array().into_iter().flatten() {
            out.push((
                name.clone(),
                r["id"].as_str().unwrap().into(),
                r["status"].as_str().unwrap().into(),
            ));
        }
    }
    out.sort();
    out
}

/// Credentials planted on cp1's root: none may reach the fleet bundle.
const PLANTED: &[&str] = &["Pr0xyPa55w0rd", "KubeletT0kenS3cret", "S2V5RGF0YVNlY3JldA"];

fn fleet_bundle_holds_every_nodes_bundle_and_replays_with_no_cluster() {
    require(TOOLS);
    let tmp = tempfile::tempdir().unwrap();
    // cp1: the guide's CentOS node with credentials where the proxy and kubelet sources read.
    let cp1 = tmp.path().join("cp1-root");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(host("centos7-seed-broken"))
        .arg(&cp1)
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::write(
        cp1.join("etc/environment"),
        "HTTPS_PROXY=http://proxyuser:Pr0xyPa55w0rd@proxy.example:3128\n",
    )
    .unwrap();
    std::fs::create_dir_all(cp1.join("etc/kubernetes")).unwrap();
    std::fs::write(
        cp1.join("etc/kubernetes/kubelet.conf"),
        "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: https://192.168.1.2:6443\ncontexts:\n- name: k\n  context:\n    cluster: k\n    user: u\ncurrent-context: k\nusers:\n- name: u\n  user:\n    token: KubeletT0kenS3cret\n    client-key-data: S2V5RGF0YVNlY3JldA==\n",
    )
    .unwrap();
    let (k, server, kdir) = cluster(ProcessKubelet::new(
        bin(),
        vec![
            NodeSpec::new("cp1", &cp1),
            NodeSpec::new("w1", host("ubuntu2204-kubeadm-healthy")),
            NodeSpec::new("w2", host("debian12-tricky")),
            // The pod's program cannot start there: the node has no bundle, and says why.
            NodeSpec::new("broken", host("ubuntu2204-kubeadm-healthy"))
                .fault(Fault::Entrypoint("/bin/false".into())),
        ],
    ));
    let kc = server.kubeconfig(kdir.path());
    let archive = tmp.path().join("fleet.tar.gz");
    let out = fleet(
        &kc,
        &[
            "check",
            "-o",
            "json",
            "--timeout",
            "60",
            "--bundle",
            archive.to_str().unwrap(),
        ],
    );
    let recorded = json(&out);
    assert_eq!(out.status.code(), Some(1), "{recorded}");
    assert_eq!(node(&recorded, "broken")["state"], "absent", "{recorded}");
    assert!(k.pods().is_empty(), "pods left: {:?}", k.pods());
    // Every member, and every member of every node's bundle, is free of the planted credentials.
    let members = unpack(&std::fs::read(&archive).unwrap());
    let names: Vec<&str> = members.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "manifest.json",
            "nodes/cp1.bundle.tar.gz",
            "nodes/w1.bundle.tar.gz",
            "nodes/w2.bundle.tar.gz"
        ]
    );
    let mut inner_members = 0;
    for (name, bytes) in &members {
        let mut texts = vec![(name.clone(), bytes.clone())];
        if name.ends_with(".bundle.tar.gz") {
            let inner = unpack(bytes);
            assert!(
                inner.contains_key("report.json"),
                "{name}: {:?}",
                inner.keys()
            );
            inner_members += inner.len();
            texts.extend(inner.into_iter().map(|(n, b)| (format!("{name}/{n}"), b)));
        }
        for (n, b) in texts {
            let text = String::from_utf8_lossy(&b);
            for s in PLANTED {
                assert!(!text.contains(s), "{n} holds the secret {s}");
            }
        }
    }
    assert!(
        inner_members > 20,
        "{inner_members} members in the node bundles"
    );
    let cp1_bundle = unpack(&members["nodes/cp1.bundle.tar.gz"]);
    assert!(
        cp1_bundle.keys().any(|n| n.ends_with("/etc/environment")),
        "the planted file was read and recorded (masked): {:?}",
        cp1_bundle.keys()
    );
    let manifest: Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    assert_eq!(manifest["format"], "k8sdoctor-fleet-bundle");
    assert_eq!(manifest["run_id"], recorded["run_id"]);
    let entry = |n: &str| {
        manifest["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == n)
            .unwrap_or_else(|| panic!("{n} in {manifest:#}"))
            .clone()
    };
    let broken = entry("broken");
    assert_eq!(broken["state"], "absent");
    assert!(broken["member"].is_null());
    assert!(
        broken["no_bundle"]
            .as_str()
            .unwrap()
            .contains("could not start"),
        "{broken}"
    );
    let w1 = entry("w1");
    assert_eq!(w1["member"], "nodes/w1.bundle.tar.gz");
    assert_eq!(
        w1["size"].as_u64().unwrap(),
        members["nodes/w1.bundle.tar.gz"].len() as u64
    );
    // The cluster gone, kubectl nowhere on PATH: the same statuses and exit code from the archive.
    drop(server);
    drop(k);
    let replay = |args: &[&str]| {
        Command::new(bin())
            .args(["fleet", "check", "--from-bundle", archive.to_str().unwrap()])
            .args(args)
            .env("PATH", "/nonexistent")
            .env_remove("KUBECONFIG")
            .output()
            .unwrap()
    };
    let out = replay(&["-o", "json"]);
    let replayed = json(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(statuses(&replayed), statuses(&recorded));
    assert_eq!(replayed["summary"], recorded["summary"]);
    assert_eq!(replayed["drift"], recorded["drift"]);
    assert!(
        node(&replayed, "broken")["reason"]
            .as_str()
            .unwrap()
            .contains("could not start"),
        "{replayed:#}"
    );
    assert_fleet_schema(&replayed);
    let table = replay(&["--only", "swap.active"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("swap.active: fail on cp1, w2; pass on w1"),
        "{text}"
    );
    // One node of the archive, as `check --from-bundle` replays a node's own bundle.
    let one = Command::new(bin())
        .args(["check", "--from-bundle", archive.to_str().unwrap()])
        .args(["--node", "cp1", "-o", "json"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let cp1_replayed = json(&one);
    assert_eq!(one.status.code(), Some(1));
    let verdicts = |results: &Value| -> Vec<(String, String, String)> {
        results
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                (s("id"), s("status"), s("message"))
            })
            .collect()
    };
    assert_eq!(
        verdicts(&cp1_replayed["results"]),
        verdicts(&node(&replayed, "cp1")["report"]["results"])
    );
}

fn hostile_fleet_bundles_are_refused_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    // A real node bundle to wrap.
    let node_bundle = tmp.path().join("n.tar.gz");
    let st = Command::new(bin())
        .args([
            "check",
            "--offline",
            "--only",
            "swap.active",
            "-o",
            "json",
            "--root",
        ])
        .arg(host("centos7-seed-broken"))
        .arg("--bundle")
        .arg(&node_bundle)
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(1));
    let inner = std::fs::read(&node_bundle).unwrap();
    let sha = {
        let o = Command::new("sha256sum")
            .arg(&node_bundle)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    let manifest = |size: usize| {
        serde_json::to_vec(&serde_json::json!({
            "format": "k8sdoctor-fleet-bundle", "format_version": 1,
            "tool": {"name": "k8sdoctor", "version": "0"}, "bundle_format_version": 1,
            "created_at": "2026-01-01T00:00:00Z", "command_line": "k8sdoctor fleet check",
            "cluster": null, "namespace": "k8sdoctor", "run_id": "r", "started_at": "2026-01-01T00:00:00Z",
            "nodes": [{"name": "n1", "state": "reported", "reason": null,
                "member": "nodes/n1.bundle.tar.gz", "size": size, "sha256": sha, "no_bundle": null}]
        }))
        .unwrap()
    };
    let good = pack(&[
        ("nodes/n1.bundle.tar.gz", &inner),
        ("manifest.json", &manifest(inner.len())),
    ]);
    let zeros = vec![0u8; 300 << 20];
    let bomb = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&zeros).unwrap();
        e.finish().unwrap()
    };
    let mut damaged_inner = inner.clone();
    let mid = damaged_inner.len() / 2;
    damaged_inner[mid] ^= 0x55;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("good", good.clone(), ""),
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "damaged or truncated",
        ),
        (
            "dotdot",
            pack(&[("nodes/../../escape", b"x"), ("manifest.json", b"{}")]),
            "not a plain name",
        ),
        (
            "not-a-node",
            pack(&[("nodes/x/../y.bundle.tar.gz", b"x")]),
            "not a plain name",
        ),
        (
            "stray",
            pack(&[("etc/passwd", b"x")]),
            "holds only manifest.json and nodes/",
        ),
        ("bomb", bomb, "decompression bomb"),
        (
            "tampered",
            pack(&[
                ("nodes/n1.bundle.tar.gz", &damaged_inner),
                ("manifest.json", &manifest(inner.len())),
            ]),
            "nodes/n1.bundle.tar.gz",
        ),
        (
            "single-node bundle",
            inner.clone(),
            "a single node's bundle, not a fleet bundle",
        ),
    ];
    for (name, bytes, says) in cases {
        let bad = tmp.path().join("case.tar.gz");
        std::fs::write(&bad, &bytes).unwrap();
        let cwd = tempfile::tempdir().unwrap();
        // A damaged archive leaves no --output-file behind either.
        let file: &[&str] = if says.is_empty() {
            &[]
        } else {
            &["--output-file", "out.json"]
        };
        let out = Command::new(bin())
            .current_dir(cwd.path())
            .args([
                "fleet",
                "check",
                "--from-bundle",
                bad.to_str().unwrap(),
                "-o",
                "json",
            ])
            .args(file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if says.is_empty() {
            assert_eq!(out.status.code(), Some(1), "{name}: {err}");
            assert_eq!(json(&out)["summary"]["reported"], 1);
            continue;
        }
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(says), "{name}: {err}");
        assert!(
            out.stdout.is_empty(),
            "{name}: nothing is written before the archive is checked"
        );
        assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0, "{name}");
    }
    assert!(!tmp.path().join("escape").exists());
}

fn main() {
    support::harness::main(vec![
        trial!(a_policy_reaches_every_node),
        trial!(api_faults_are_retried_the_pods_are_watched_and_nodes_without_an_image_are_named),
        trial!(multicast_goes_on_without_a_node_whose_pod_never_starts),
        trial!(fleet_check_reads_each_nodes_live_ruleset),
        trial!(every_node_reports_its_own_verdicts_and_the_pods_are_deleted),
        trial!(a_node_whose_pod_cannot_run_is_absent_with_the_reason),
        trial!(a_pod_security_rejection_stops_before_any_node_is_touched),
        trial!(keep_leaves_the_pods_and_cleanup_and_the_next_run_remove_them),
        trial!(ctrl_c_deletes_the_runs_pods),
        trial!(multicast_across_four_nodes_names_the_node_whose_pods_drop_the_group),
        trial!(kubelet_gives_containerd_capabilities_and_the_images_root_only),
        trial!(kubelet_mounts_host_paths_read_only_and_recursively_when_asked),
        trial!(kubelet_wires_the_network_before_the_container_starts),
        trial!(kubelet_api_address_faults_are_what_the_pods_see),
        trial!(kubelet_node_rules_are_live_and_need_net_admin_to_read),
        trial!(fleet_check_reports_a_node_whose_pods_cannot_reach_the_api),
        trial!(kubelet_writes_the_termination_message_as_a_kubelet_does),
        trial!(fleet_check_reports_a_node_whose_kubelet_port_is_unreachable_from_its_termination_message),
        trial!(fleet_multicast_reads_a_probe_whose_kubelet_port_is_unreachable_from_its_termination_message),
        trial!(fleet_multicast_fails_only_into_the_node_whose_forward_path_drops_the_group),
        trial!(fleet_bundle_holds_every_nodes_bundle_and_replays_with_no_cluster),
        trial!(hostile_fleet_bundles_are_refused_with_exit_2),
        trial!(fleet_multicast_names_a_node_whose_firewall_cannot_be_read),
        trial!(fleet_multicast_measures_a_node_whose_api_address_is_refused_at_first),
        trial!(fleet_multicast_does_not_blame_the_network_for_a_probe_that_came_up_after_the_others_ended),
        trial!(fleet_multicast_survives_connections_reset_mid_body),
        trial!(fleet_check_survives_connections_reset_mid_body),
        trial!(fleet_field_selectors_and_configmap_collections_are_served_as_a_real_server_does),
    ]);
}
