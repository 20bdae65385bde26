//! Cluster checks end to end: the binary against the test API server (healthy, broken, slow,
//! blackholed, TLS and auth faults), without a kubeconfig, and with fake local binaries on PATH.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    apiserver::{ApiServer, CaKey, Scenario, TestCa, TlsFault},
    bin,
};

const CLUSTER_CHECKS: &[&str] = &[
    "cluster.api-reachable",
    "version.kubectl-skew",
    "version.kubelet-skew",
    "version.local-binaries",
    "token.expiry",
    "cluster.nodes-ready",
    "cluster.dns",
    "cluster.cni",
    "cluster.dashboard-admin",
];

/// Fake kubectl/kubeadm/kubelet printing the given versions, in a PATH directory (for a live run), and the
/// same versions as installed packages in the dpkg status of the root `check_run` uses (under `--root` the
/// node's versions come from the node, never from PATH).
fn fake_bins(dir: &Path, kubectl: &str, kubeadm: Option<&str>, kubelet: Option<&str>) -> PathBuf {
    let bindir = dir.join("bin");
    std::fs::create_dir_all(&bindir).unwrap();
    let dpkg = dir.join("root/var/lib/dpkg");
    std::fs::create_dir_all(&dpkg).unwrap();
    let status: String = [
        ("kubectl", Some(kubectl)),
        ("kubeadm", kubeadm),
        ("kubelet", kubelet),
    ]
    .into_iter()
    .filter_map(|(name, v)| {
        let v = v?.trim_start_matches('v');
        Some(format!(
            "Package: {name}\nStatus: install ok installed\nVersion: {v}-1.1\n\n"
        ))
    })
    .collect();
    std::fs::write(dpkg.join("status"), status).unwrap();
    let write = |name: &str, body: String| {
        let p = bindir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        Command::new("chmod")
            .args(["755", p.to_str().unwrap()])
            .status()
            .unwrap();
    };
    write(
        "kubectl",
        format!("echo '{{\"clientVersion\":{{\"major\":\"1\",\"gitVersion\":\"{kubectl}\"}}}}'"),
    );
    if let Some(v) = kubeadm {
        write("kubeadm", format!("echo {v}"));
    }
    if let Some(v) = kubelet {
        write("kubelet", format!("echo Kubernetes {v}"));
    }
    bindir
}

/// A root with no CNI config, so only the API decides cluster.cni.
fn empty_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    root
}

fn run(args: &[&str], path: &Path, home: &Path) -> (Output, Value) {
    let out = Command::new(bin())
        .args(args)
        .env("PATH", format!("{}:/usr/bin:/bin", path.display()))
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

fn result<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {v:#}"))
}

fn only() -> String {
    CLUSTER_CHECKS.join(",")
}

fn check_run(server: &ApiServer, dir: &Path, bins: &Path, extra: &[&str]) -> (Output, Value) {
    let kc = server.kubeconfig(dir);
    let root = empty_root(dir);
    let mut args = vec![
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--only",
    ];
    let ids = only();
    args.push(&ids);
    if !extra.contains(&"-o") {
        args.extend_from_slice(&["-o", "json"]);
    }
    args.extend_from_slice(extra);
    run(&args, bins, dir)
}

fn evidence(r: &Value) -> String {
    r["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn broken_cluster_reports_each_of_the_guides_findings_with_evidence() {
    let server = ApiServer::start(Scenario::broken());
    let dir = tempfile::tempdir().unwrap();
    let bins = fake_bins(dir.path(), "v1.24.17", Some("v1.33.2"), Some("v1.32.0"));
    let (out, v) = check_run(&server, dir.path(), &bins, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(v["cluster"]["server"], server.url());
    assert_eq!(v["cluster"]["server_version"], "v1.33.2");
    assert_eq!(v["cluster"]["context"], "cl-test");

    let r = result(&v, "cluster.api-reachable");
    assert_eq!(r["status"], "pass", "{r:#}");

    let r = result(&v, "version.kubectl-skew");
    assert_eq!(r["status"], "fail", "{r:#}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("no kind \"Role\" is registered"),
        "{r:#}"
    );
    assert!(evidence(r).contains("kubectl v1.24.17"));

    let r = result(&v, "version.kubelet-skew");
    assert_eq!(r["status"], "fail", "{r:#}");
    assert!(evidence(r).contains("kubelet v1.29.0: 4 minors older than the API server v1.33.2 (at most 3 allowed): cl-test-w1"), "{r:#}");

    let r = result(&v, "version.local-binaries");
    assert_eq!(r["status"], "warn", "{r:#}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("kubeadm v1.33.2 and kubelet v1.32.0 are different minors"),
        "{r:#}"
    );

    let r = result(&v, "token.expiry");
    assert_eq!(r["status"], "warn", "{r:#}");
    assert!(
        evidence(r).contains("token a24a11.<secret>: EXPIRED"),
        "{r:#}"
    );
    assert!(
        r["remediation"]
            .as_str()
            .unwrap()
            .contains("kubeadm token create --print-join-command")
    );

    let r = result(&v, "cluster.nodes-ready");
    assert_eq!(r["status"], "fail", "{r:#}");
    assert!(
        evidence(r)
            .contains("NodeStatusUnknown: Kubelet stopped posting node status.): cl-test-w2"),
        "{r:#}"
    );

    let r = result(&v, "cluster.dns");
    assert_eq!(r["status"], "fail", "{r:#}");
    let e = evidence(r);
    assert!(
        e.contains("waiting: CrashLoopBackOff")
            && e.contains("restarts=7")
            && e.contains("last terminated: Error (exit code 1): plugin/loop"),
        "{e}"
    );
    assert!(e.contains("resolution probe not run"), "{e}");

    let r = result(&v, "cluster.cni");
    assert_eq!(r["status"], "fail", "{r:#}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("kube-system/weave-net (1 of 3 ready)"),
        "{r:#}"
    );
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("Weave Net carries multicast"),
        "{r:#}"
    );

    let r = result(&v, "cluster.dashboard-admin");
    assert_eq!(r["status"], "warn", "{r:#}");
    assert!(
        evidence(r).contains(
            "ClusterRoleBinding admin-user → ServiceAccount kubernetes-dashboard/admin-user"
        ),
        "{r:#}"
    );
}

#[test]
fn healthy_cluster_passes_every_cluster_check() {
    let server = ApiServer::start(Scenario::healthy());
    let dir = tempfile::tempdir().unwrap();
    let bins = fake_bins(dir.path(), "v1.33.1", Some("v1.33.1"), Some("v1.33.1"));
    let (out, v) = check_run(&server, dir.path(), &bins, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for id in CLUSTER_CHECKS {
        let r = result(&v, id);
        assert_eq!(r["status"], "pass", "{r:#}");
    }
    let r = result(&v, "version.local-binaries");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("Using Kubernetes version"),
        "{r:#}"
    );
    let r = result(&v, "token.expiry");
    assert!(
        evidence(r).contains("token abcdef.<secret>: expires"),
        "{r:#}"
    );
    // Lists are paged: every request carries a limit.
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.contains("GET /api/v1/nodes?&limit=500")
                || r.contains("GET /api/v1/nodes?limit=500")),
        "{:#?}",
        server.requests()
    );
}

#[test]
fn blackholed_server_ends_within_the_timeout_with_errors_naming_it() {
    let server = ApiServer::start(Scenario::empty().blackhole());
    let dir = tempfile::tempdir().unwrap();
    let bins = fake_bins(dir.path(), "v1.33.1", None, None);
    let t = Instant::now();
    let (out, v) = check_run(&server, dir.path(), &bins, &["--timeout", "2"]);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(out.status.code(), Some(1));
    let r = result(&v, "cluster.api-reachable");
    assert_eq!(r["status"], "fail", "{r:#}");
    assert!(
        r["message"].as_str().unwrap().starts_with("timeout"),
        "{r:#}"
    );
    for id in [
        "version.kubelet-skew",
        "token.expiry",
        "cluster.nodes-ready",
        "cluster.dns",
        "cluster.cni",
        "cluster.dashboard-admin",
        "version.kubectl-skew",
    ] {
        let r = result(&v, id);
        assert_eq!(r["status"], "error", "{r:#}");
        assert!(
            r["message"].as_str().unwrap().contains("--timeout"),
            "{r:#}"
        );
    }
}

#[test]
fn slow_server_within_the_timeout_still_answers() {
    let server = ApiServer::start(Scenario::healthy().slow(Duration::from_millis(150)));
    let dir = tempfile::tempdir().unwrap();
    let bins = fake_bins(dir.path(), "v1.33.1", None, None);
    let (_, v) = check_run(&server, dir.path(), &bins, &["--timeout", "8"]);
    assert_eq!(result(&v, "cluster.nodes-ready")["status"], "pass");
}

/// The local binaries are their own source: compared with each other without any kubeconfig.
#[test]
fn local_binaries_are_compared_without_a_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let root = empty_root(dir.path());
    let args = |bins: &Path| {
        let (out, v) = run(
            &[
                "--root",
                root.to_str().unwrap(),
                "--only",
                "version.local-binaries,cluster.api-reachable",
                "-o",
                "json",
            ],
            bins,
            dir.path(),
        );
        assert!(
            v["cluster"].is_null(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(result(&v, "cluster.api-reachable")["status"], "skip");
        result(&v, "version.local-binaries").clone()
    };
    let r = args(&fake_bins(
        dir.path(),
        "v1.33.1",
        Some("v1.32.0"),
        Some("v1.33.1"),
    ));
    assert_eq!(r["status"], "warn", "{r:#}");
    assert!(evidence(&r).contains("kubeadm v1.32.0"), "{r:#}");
    let r = args(&fake_bins(
        dir.path(),
        "v1.33.1",
        Some("v1.33.1"),
        Some("v1.33.1"),
    ));
    assert_eq!(r["status"], "pass", "{r:#}");
}

#[test]
fn no_kubeconfig_skips_every_cluster_check_and_keeps_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let bins = fake_bins(dir.path(), "v1.33.1", None, None);
    let root = empty_root(dir.path());
    let ids = only();
    let (out, v) = run(
        &[
            "--root",
            root.to_str().unwrap(),
            "--only",
            &ids,
            "-o",
            "json",
        ],
        &bins,
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(v["cluster"].is_null());
    for id in CLUSTER_CHECKS
        .iter()
        .filter(|i| **i != "version.local-binaries")
    {
        let r = result(&v, id);
        assert_eq!(r["status"], "skip", "{r:#}");
        assert!(
            r["message"].as_str().unwrap().contains("no kubeconfig"),
            "{r:#}"
        );
    }
    // Only kubectl installed and no server: nothing to compare.
    assert_eq!(result(&v, "version.local-binaries")["status"], "skip");
    // --offline skips them too, even with a kubeconfig.
    let server = ApiServer::start(Scenario::broken());
    let kc = server.kubeconfig(dir.path());
    let (out, v) = run(
        &[
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
            "--only",
            &ids,
            "-o",
            "json",
            "--offline",
        ],
        &bins,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(result(&v, "cluster.nodes-ready")["status"], "skip");
    assert!(
        server.requests().is_empty(),
        "--offline sent requests: {:?}",
        server.requests()
    );
}

#[test]
fn a_named_kubeconfig_that_cannot_be_read_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let bins = fake_bins(dir.path(), "v1.33.1", None, None);
    let (out, _) = run(
        &["--kubeconfig", "/nonexistent/kubeconfig", "-o", "json"],
        &bins,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--kubeconfig /nonexistent/kubeconfig"));
    let bad = dir.path().join("bad");
    std::fs::write(&bad, "clusters: [unterminated").unwrap();
    let (out, _) = run(&["--kubeconfig", bad.to_str().unwrap()], &bins, dir.path());
    assert_eq!(out.status.code(), Some(2));
    let server = ApiServer::start(Scenario::empty());
    let kc = server.kubeconfig(dir.path());
    let (out, _) = run(
        &["--kubeconfig", kc.to_str().unwrap(), "--context", "nope"],
        &bins,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--context nope"));
}

fn reachable_message(server: &ApiServer, kc: &Path, dir: &Path) -> String {
    let _ = server;
    let bins = fake_bins(dir, "v1.33.1", None, None);
    let (_, v) = run(
        &[
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--only",
            "cluster.api-reachable",
            "-o",
            "json",
            "--timeout",
            "5",
        ],
        &bins,
        dir,
    );
    let r = result(&v, "cluster.api-reachable");
    assert_eq!(r["status"], "fail", "{r:#}");
    r["message"].as_str().unwrap().to_string()
}

#[test]
fn api_reachable_names_the_failing_layer() {
    let dir = tempfile::tempdir().unwrap();
    // TLS: unknown CA, expired, wrong name.
    let server = ApiServer::start(Scenario::empty());
    let other = TestCa::new(CaKey::Ecdsa);
    let kc = server.kubeconfig_with(
        dir.path(),
        "other-ca",
        support::apiserver::ADMIN_TOKEN,
        &other.pem,
    );
    let m = reachable_message(&server, &kc, dir.path());
    assert!(m.starts_with("TLS") && m.contains("unknown CA"), "{m}");
    let expired = ApiServer::start(Scenario::empty().tls_fault(TlsFault::Expired));
    let m = reachable_message(&expired, &expired.kubeconfig(dir.path()), dir.path());
    assert!(m.starts_with("TLS") && m.contains("expired"), "{m}");
    let wrong = ApiServer::start(Scenario::empty().tls_fault(TlsFault::WrongName));
    let m = reachable_message(&wrong, &wrong.kubeconfig(dir.path()), dir.path());
    assert!(m.starts_with("TLS") && m.contains("wrong name"), "{m}");
    // 401.
    let kc = server.kubeconfig_with(dir.path(), "bad-token", "not-the-token", &server.ca.pem);
    let m = reachable_message(&server, &kc, dir.path());
    assert!(m.contains("401"), "{m}");
    // TCP refused: a port nothing listens on (bound then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = std::fs::read_to_string(server.kubeconfig(dir.path()))
        .unwrap()
        .replace(&server.url(), &format!("https://127.0.0.1:{port}"));
    let kc = dir.path().join("refused");
    std::fs::write(&kc, text).unwrap();
    let m = reachable_message(&server, &kc, dir.path());
    assert!(m.starts_with("TCP connection refused"), "{m}");
    // Name resolution: a name that cannot resolve (.invalid is reserved).
    let text = std::fs::read_to_string(server.kubeconfig(dir.path()))
        .unwrap()
        .replace(&server.url(), "https://apiserver.invalid:6443");
    let kc = dir.path().join("nxdomain");
    std::fs::write(&kc, text).unwrap();
    let m = reachable_message(&server, &kc, dir.path());
    assert!(m.starts_with("name resolution"), "{m}");
}

#[test]
fn forbidden_lists_are_named_by_verb_and_resource() {
    let server = ApiServer::start(Scenario::healthy().forbid("list", "secrets"));
    let dir = tempfile::tempdir().unwrap();
    let bins = fake_bins(dir.path(), "v1.33.1", None, None);
    let (_, v) = check_run(&server, dir.path(), &bins, &[]);
    let r = result(&v, "cluster.api-reachable");
    assert_eq!(r["status"], "warn", "{r:#}");
    assert!(evidence(r).contains("User \"kubernetes-admin\" cannot list resource \"secrets\" in API group \"\" in the namespace \"kube-system\""), "{r:#}");
    let r = result(&v, "token.expiry");
    assert_eq!(r["status"], "error", "{r:#}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("cannot list resource \"secrets\""),
        "{r:#}"
    );
}

#[test]
fn no_token_secret_reaches_any_output_format() {
    let secret = "0e6b932b0907deff";
    let server = ApiServer::start(
        Scenario::broken()
            .bootstrap_token("k8sdoc", "s3cr3tf0rmatt3st", None, &["authentication"])
            .bootstrap_token(
                "q2w3e4",
                "zyxw9876vuts5432",
                Some(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(3)),
                &["signing"],
            ),
    );
    let dir = tempfile::tempdir().unwrap();
    let bins = fake_bins(dir.path(), "v1.33.1", None, None);
    for fmt in ["table", "json", "junit", "markdown"] {
        let (out, _) = check_run(&server, dir.path(), &bins, &["-o", fmt]);
        let text = String::from_utf8_lossy(&out.stdout);
        // The public id is shown (the table may wrap it, so look in the other formats).
        assert!(
            fmt == "table" || text.contains("a24a11"),
            "{fmt}: no token id\n{text}"
        );
        for s in [secret, "s3cr3tf0rmatt3st", "zyxw9876vuts5432"] {
            assert!(!text.contains(s), "{fmt} leaks a token secret:\n{text}");
            assert!(!String::from_utf8_lossy(&out.stderr).contains(s));
        }
    }
}

#[test]
fn finds_the_cluster_through_kubeconfig_env_and_home_like_kubectl() {
    let server = ApiServer::start(Scenario::healthy());
    let dir = tempfile::tempdir().unwrap();
    let bins = fake_bins(dir.path(), "v1.33.1", None, None);
    let root = empty_root(dir.path());
    let args = [
        "--root",
        root.to_str().unwrap(),
        "--only",
        "cluster.api-reachable",
        "-o",
        "json",
    ];
    // ~/.kube/config
    std::fs::create_dir_all(dir.path().join(".kube")).unwrap();
    server.kubeconfig_with(
        &dir.path().join(".kube"),
        "config",
        support::apiserver::ADMIN_TOKEN,
        &server.ca.pem,
    );
    let (_, v) = run(&args, &bins, dir.path());
    assert_eq!(v["cluster"]["server"], server.url(), "{v:#}");
    assert_eq!(result(&v, "cluster.api-reachable")["status"], "pass");
    // KUBECONFIG wins over ~/.kube/config.
    let other = ApiServer::start(Scenario::healthy().version("v1.32.7"));
    let kc = other.kubeconfig(dir.path());
    let out = Command::new(bin())
        .args(args)
        .env("PATH", format!("{}:/usr/bin:/bin", bins.display()))
        .env("HOME", dir.path())
        .env("KUBECONFIG", &kc)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cluster"]["server"], other.url());
    assert_eq!(v["cluster"]["server_version"], "v1.32.7");
}

#[test]
fn a_forbidden_node_list_is_named_and_the_node_checks_error() {
    let server = ApiServer::start(Scenario::healthy().forbid("list", "nodes"));
    let dir = tempfile::tempdir().unwrap();
    let bins = fake_bins(dir.path(), "v1.33.1", None, None);
    let (_, v) = check_run(&server, dir.path(), &bins, &[]);
    let r = result(&v, "cluster.api-reachable");
    assert_eq!(r["status"], "warn", "{r:#}");
    assert!(
        evidence(r).contains("403 Forbidden: User \"kubernetes-admin\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"),
        "{r:#}"
    );
    for id in ["cluster.nodes-ready", "version.kubelet-skew"] {
        let r = result(&v, id);
        assert_eq!(r["status"], "error", "{r:#}");
        assert!(
            r["message"].as_str().unwrap().contains("RBAC denied it"),
            "{r:#}"
        );
    }
}

#[test]
fn node_pages_reuse_connections_and_only_kubectl_checks_run_kubectl() {
    let server = ApiServer::start(Scenario::healthy().nodes(1200, "v1.33.2"));
    let dir = tempfile::tempdir().unwrap();
    let bins = dir.path().join("bin");
    std::fs::create_dir_all(&bins).unwrap();
    let ran = dir.path().join("kubectl-ran");
    let kubectl = bins.join("kubectl");
    std::fs::write(
        &kubectl,
        format!(
            "#!/bin/sh\necho run >> {}\necho '{{\"clientVersion\":{{\"gitVersion\":\"v1.33.1\"}}}}'\n",
            ran.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .args(["755", kubectl.to_str().unwrap()])
        .status()
        .unwrap();
    let kc = server.kubeconfig(dir.path());
    let root = empty_root(dir.path());
    let api_only = "cluster.api-reachable,version.kubelet-skew,token.expiry,cluster.nodes-ready,cluster.dns,cluster.cni,cluster.dashboard-admin";
    let args = |ids: &'static str| {
        vec![
            "--kubeconfig".to_string(),
            kc.display().to_string(),
            "--root".into(),
            root.display().to_string(),
            "--only".into(),
            ids.into(),
            "-o".into(),
            "json".into(),
        ]
    };
    let a = args(api_only);
    let (out, v) = run(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        &bins,
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = result(&v, "cluster.nodes-ready");
    assert_eq!(r["message"], "all 1203 node(s) are Ready with no pressure");
    assert!(
        !ran.exists(),
        "kubectl ran though no kubectl check was selected"
    );
    let pages = server
        .requests()
        .iter()
        .filter(|r| r.contains("GET /api/v1/nodes?"))
        .count();
    assert_eq!(pages, 3, "{:#?}", server.requests());
    // /version and six lists at once: at most one connection each, the later pages reuse them.
    let requests = server.requests().len();
    assert!(
        server.connections() <= 7 && requests > server.connections(),
        "{} connections for {requests} requests",
        server.connections()
    );
    // On the live host (no --root) the node's kubectl is the one on PATH.
    let a = [
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--only",
        "version.kubectl-skew",
        "-o",
        "json",
    ]
    .map(String::from);
    let (_, v) = run(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        &bins,
        dir.path(),
    );
    assert_eq!(result(&v, "version.kubectl-skew")["status"], "pass");
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "run\n");
    // Only /version was needed: no list was made.
    assert!(
        server
            .requests()
            .iter()
            .skip(requests)
            .all(|r| r.contains("GET /version")),
        "{:#?}",
        server.requests()
    );
}
