//! `check --policy FILE` on fixture roots (no privileges needed): flows on saved iptables and nft rules,
//! sysctls now and at boot, file rules, every kind of bad policy file, `list`/`explain`/`schema --policy`.

mod support;

use std::{path::Path, process::Command};

use serde_json::Value;
use support::{bin, fixtures};

fn policy(name: &str) -> String {
    fixtures()
        .join("policies")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

fn root(name: &str) -> String {
    fixtures()
        .join("hosts")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

/// Runs the binary; gives the exit code, stdout and stderr.
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `check -o json` with these arguments: the exit code and the results by id.
fn check(args: &[&str]) -> (i32, Vec<Value>) {
    let mut a = vec!["check", "-o", "json"];
    a.extend_from_slice(args);
    let (code, out, err) = run(&a);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {err}"));
    (code, v["results"].as_array().unwrap().clone())
}

fn result<'a>(results: &'a [Value], id: &str) -> &'a Value {
    results
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {results:#?}"))
}

fn status(results: &[Value], id: &str) -> String {
    result(results, id)["status"].as_str().unwrap().to_string()
}

const GUIDE_FLOWS: &str = "policy.flow.apiserver-from-nodes,policy.flow.apiserver-from-weave,policy.flow.condor-from-pods,policy.flow.condor-from-nodes";

#[test]
fn the_guides_policy_on_the_guides_rules_and_on_centos7_defaults() {
    let p = policy("guide.yaml");
    let (code, r) = check(&[
        "--policy",
        &p,
        "--root",
        &root("centos7-kubeadm-weave-guide"),
        "--only",
        GUIDE_FLOWS,
    ]);
    assert_eq!(r.len(), 4, "--only selects exactly the policy's flows");
    for id in [
        "policy.flow.apiserver-from-nodes",
        "policy.flow.apiserver-from-weave",
        "policy.flow.condor-from-pods",
    ] {
        assert_eq!(status(&r, id), "pass", "{:#}", result(&r, id));
    }
    // The rule that decides it is the evidence.
    let ev = result(&r, "policy.flow.condor-from-pods")["evidence"].to_string();
    assert!(
        ev.contains("tcp/9618 from 10.32.0.0/12 on weave")
            && ev.contains(
                "accept by iptables (saved) filter/INPUT #6: -A INPUT -s 10.0.0.0/8 -i weave"
            ),
        "{ev}"
    );
    assert!(ev.contains("guide.yaml:17"), "{ev}");
    // 9618 from the node network meets the final REJECT; severity warn keeps the exit code 0.
    let c = result(&r, "policy.flow.condor-from-nodes");
    assert_eq!(c["status"], "warn", "{c:#}");
    assert!(
        c["message"].as_str().unwrap().contains(
            "rejected by iptables (saved) filter/INPUT #7: -A INPUT -j REJECT --reject-with icmp-host-prohibited"
        ),
        "{c:#}"
    );
    assert!(
        c["remediation"].as_str().unwrap().starts_with(
            "iptables -I INPUT 7 -s 192.168.0.0/16 -p tcp -m tcp --dport 9618 -j ACCEPT"
        ),
        "{c:#}"
    );
    assert_eq!(code, 0);

    // CentOS 7's defaults (no guide rules): the API server flow fails at the REJECT, #5.
    let (code, r) = check(&[
        "--policy",
        &p,
        "--root",
        &root("centos7-seed-broken"),
        "--role",
        "control-plane",
        "--only",
        "policy.flow.apiserver-from-nodes",
    ]);
    assert_eq!(code, 1);
    let a = &r[0];
    assert_eq!(a["status"], "fail", "{a:#}");
    assert_eq!(
        a["remediation"]
            .as_str()
            .unwrap()
            .split(" (")
            .next()
            .unwrap(),
        "iptables -I INPUT 5 -s 192.168.0.0/16 -p tcp -m tcp --dport 6443 -j ACCEPT"
    );
    // Roles: the API server flows are for control planes only.
    let (_, r) = check(&[
        "--policy",
        &p,
        "--root",
        &root("centos7-seed-broken"),
        "--role",
        "worker",
        "--only",
        "policy.flow.apiserver-from-nodes",
    ]);
    assert_eq!(r[0]["status"], "skip", "{:#}", r[0]);
}

#[test]
fn flows_on_nft_rules_give_nft_remediation_and_ranges_are_judged_whole() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nft.yaml");
    std::fs::write(
        &p,
        "flows:\n  - name: kubelet\n    proto: tcp\n    port: 10250\n    from: 10.0.10.0/24\n  - name: nodeports\n    proto: tcp\n    port: \"30000-32767\"\n    from: 10.0.10.0/24\n  - name: condor\n    proto: tcp\n    port: 9618\n    from: 10.0.10.0/24\n  - name: wide\n    proto: tcp\n    port: \"30000-40000\"\n    from: 10.0.10.0/24\n  - name: ping\n    proto: icmp\n    from: 10.0.10.0/24\n  - name: dns-routed\n    proto: udp\n    port: 53\n    from: 10.244.0.0/16\n    to: 10.96.0.0/12\n",
    )
    .unwrap();
    let (code, r) = check(&[
        "--policy",
        p.to_str().unwrap(),
        "--root",
        &root("debian12-nftables-flannel"),
        "--only",
        "policy.flow.kubelet,policy.flow.nodeports,policy.flow.condor,policy.flow.wide,policy.flow.ping,policy.flow.dns-routed",
    ]);
    assert_eq!(code, 1);
    for id in ["kubelet", "nodeports", "ping", "dns-routed"] {
        assert_eq!(status(&r, &format!("policy.flow.{id}")), "pass", "{r:#?}");
    }
    let c = result(&r, "policy.flow.condor");
    assert_eq!(c["status"], "fail", "{c:#}");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("dropped by nftables inet filter/input policy: policy drop"),
        "{c:#}"
    );
    assert!(
        c["remediation"].as_str().unwrap().starts_with(
            "nft add rule inet filter input ip saddr 10.0.10.0/24 tcp dport 9618 accept"
        ),
        "{c:#}"
    );
    // 30000-40000: the NodePort rule covers only part of it; the rest meets the drop policy.
    let w = result(&r, "policy.flow.wide");
    assert_eq!(w["status"], "fail", "{w:#}");
    assert!(
        w["remediation"]
            .as_str()
            .unwrap()
            .contains("tcp dport 30000-40000 accept"),
        "{w:#}"
    );
}

#[test]
fn sysctls_and_files_against_fixture_roots() {
    let p = policy("baseline.yaml");
    let only =
        "policy.sysctl.net.ipv4.ip_forward,policy.file.no-loopback-dns,policy.file.search-domain";
    let (code, r) = check(&[
        "--policy",
        &p,
        "--root",
        &root("centos7-seed-broken"),
        "--only",
        only,
    ]);
    assert_eq!(code, 1);
    let s = result(&r, "policy.sysctl.net.ipv4.ip_forward");
    assert_eq!(s["status"], "fail", "{s:#}");
    assert_eq!(s["message"], "net.ipv4.ip_forward = 0, the policy wants 1");
    let f = result(&r, "policy.file.no-loopback-dns");
    assert_eq!(f["status"], "fail", "{f:#}");
    assert_eq!(f["evidence"][0], "/etc/resolv.conf:3: nameserver 127.0.0.1");
    let f = result(&r, "policy.file.search-domain");
    assert_eq!(f["status"], "pass", "{f:#}");
    assert_eq!(f["evidence"][0], "/etc/resolv.conf:2: search univ.edu");

    let (_, r) = check(&[
        "--policy",
        &p,
        "--root",
        &root("ubuntu2204-kubeadm-healthy"),
        "--only",
        only,
    ]);
    let s = result(&r, "policy.sysctl.net.ipv4.ip_forward");
    assert_eq!(s["status"], "pass", "{s:#}");
    assert!(
        s["evidence"]
            .to_string()
            .contains("/etc/sysctl.d/k8s.conf:3: net.ipv4.ip_forward = 1"),
        "{s:#}"
    );
    assert_eq!(status(&r, "policy.file.search-domain"), "pass");
}

/// Writes `files` (path, text) under a fresh root.
fn make_root(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (p, text) in files {
        let path = dir.path().join(p.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

#[test]
fn a_sysctl_is_judged_now_and_at_boot() {
    let pol = make_root(&[(
        "/p.yaml",
        "sysctls:\n  - key: net.ipv4.tcp_rmem\n    value: 4096 87380 6291456\n  - key: vm.swappiness\n    value: 10\n    severity: warn\n",
    )]);
    let p = pol.path().join("p.yaml");
    let p = p.to_str().unwrap();
    let only = "policy.sysctl.net.ipv4.tcp_rmem,policy.sysctl.vm.swappiness";
    // Right now (tabs as the kernel prints them), wrong at boot: a later file overrides it.
    let host = make_root(&[
        ("/proc/sys/net/ipv4/tcp_rmem", "4096\t87380\t6291456\n"),
        ("/proc/sys/vm/swappiness", "60\n"),
        (
            "/etc/sysctl.d/10-site.conf",
            "net.ipv4.tcp_rmem = 4096 87380 6291456\n",
        ),
        (
            "/etc/sysctl.d/99-vendor.conf",
            "net.ipv4.tcp_rmem = 4096 131072 6291456\n",
        ),
    ]);
    let (code, r) = check(&[
        "--policy",
        p,
        "--root",
        host.path().to_str().unwrap(),
        "--only",
        only,
    ]);
    assert_eq!(code, 1);
    let t = result(&r, "policy.sysctl.net.ipv4.tcp_rmem");
    assert_eq!(t["status"], "fail", "{t:#}");
    assert!(
        t["message"]
            .as_str()
            .unwrap()
            .contains("but /etc/sysctl.d/99-vendor.conf sets it to 4096 131072 6291456 at boot"),
        "{t:#}"
    );
    // A miss of a warn entry is a warning.
    let s = result(&r, "policy.sysctl.vm.swappiness");
    assert_eq!(s["status"], "warn", "{s:#}");
    assert_eq!(s["message"], "vm.swappiness = 60, the policy wants 10");
    // Right now, and nothing persists it: a warning; persisted: a pass.
    let host = make_root(&[
        ("/proc/sys/net/ipv4/tcp_rmem", "4096 87380 6291456\n"),
        ("/proc/sys/vm/swappiness", "10\n"),
        ("/etc/sysctl.conf", "vm.swappiness=10\n"),
    ]);
    let (code, r) = check(&[
        "--policy",
        p,
        "--root",
        host.path().to_str().unwrap(),
        "--only",
        only,
    ]);
    assert_eq!(code, 0);
    assert_eq!(status(&r, "policy.sysctl.net.ipv4.tcp_rmem"), "warn");
    assert_eq!(status(&r, "policy.sysctl.vm.swappiness"), "pass");
    // A root without /proc/sys: known only on the live node.
    let host = make_root(&[("/etc/hostname", "n1\n")]);
    let (_, r) = check(&[
        "--policy",
        p,
        "--root",
        host.path().to_str().unwrap(),
        "--only",
        only,
    ]);
    assert_eq!(status(&r, "policy.sysctl.vm.swappiness"), "skip");
}

#[test]
fn files_are_read_confined_to_the_root() {
    // /etc/resolv.conf is an absolute symlink: it resolves inside the root, never to the host's file.
    let host = make_root(&[("/run/resolv.conf", "nameserver 10.0.0.2\n")]);
    std::fs::create_dir_all(host.path().join("etc")).unwrap();
    std::os::unix::fs::symlink("/run/resolv.conf", host.path().join("etc/resolv.conf")).unwrap();
    let (_, r) = check(&[
        "--policy",
        &policy("baseline.yaml"),
        "--root",
        host.path().to_str().unwrap(),
        "--only",
        "policy.file.no-loopback-dns,policy.file.search-domain",
    ]);
    assert_eq!(status(&r, "policy.file.no-loopback-dns"), "pass");
    let s = result(&r, "policy.file.search-domain");
    assert_eq!(s["status"], "fail", "{s:#}");
    assert_eq!(
        s["message"],
        "no line of /etc/resolv.conf matches ^search\\s+\\S"
    );
    // A FIFO is refused, not waited on.
    let host = make_root(&[("/etc/hostname", "n1\n")]);
    let fifo = host.path().join("etc/resolv.conf");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (_, r) = check(&[
        "--policy",
        &policy("baseline.yaml"),
        "--root",
        host.path().to_str().unwrap(),
        "--only",
        "policy.file.no-loopback-dns",
    ]);
    let e = &r[0];
    assert_eq!(e["status"], "error", "{e:#}");
    assert!(e["message"].as_str().unwrap().contains("FIFO"), "{e:#}");
}

#[test]
fn every_kind_of_bad_policy_is_exit_2_naming_the_line_before_anything_runs() {
    let cases = [
        ("unknown-key.yaml", 6, "unknown field `ports`"),
        ("wrong-type.yaml", 4, "invalid type: sequence"),
        (
            "bad-cidr.yaml",
            7,
            "from: \"10.0.0.0/40\" is not a CIDR or address",
        ),
        (
            "bad-port.yaml",
            4,
            "port: the range \"32767-30000\" runs backwards",
        ),
        ("duplicate-name.yaml", 6, "duplicate flow \"api\""),
        (
            "bad-regex.yaml",
            4,
            "must_match: not a valid regular expression",
        ),
    ];
    for (file, line, what) in cases {
        let p = policy(&format!("bad/{file}"));
        // The good policy first: the bad one still stops the run before any check.
        let (code, out, err) = run(&[
            "check",
            "--policy",
            &policy("baseline.yaml"),
            "--policy",
            &p,
            "--root",
            &root("centos7-seed-broken"),
        ]);
        assert_eq!(code, 2, "{file}: {err}");
        assert!(out.is_empty(), "{file}: nothing is checked: {out}");
        let want = format!("k8sdoctor: {p}:{line}: {what}");
        assert!(err.starts_with(&want), "{file}:\n got: {err}\nwant: {want}");
    }
    // The same policy twice: every name is a duplicate of the first file's.
    let p = policy("baseline.yaml");
    let (code, _, err) = run(&["list", "--policy", &p, "--policy", &p]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "{p}:3: duplicate sysctl \"net.ipv4.ip_forward\" (first defined at {p}:3)"
        )),
        "{err}"
    );
    // Unreadable: missing, or a FIFO (refused without blocking).
    let (code, _, err) = run(&["check", "--policy", "/nonexistent/policy.yaml"]);
    assert_eq!(
        (code, err.trim()),
        (
            2,
            "k8sdoctor: /nonexistent/policy.yaml: /nonexistent/policy.yaml does not exist"
        )
    );
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("p.yaml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (code, _, err) = run(&["check", "--policy", fifo.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("FIFO"), "{err}");
}

#[test]
fn policy_ids_work_with_only_skip_list_and_explain() {
    let p = policy("guide.yaml");
    // Without the policy, its ids are unknown: a typo guard, exit 2.
    let (code, _, err) = run(&["check", "--only", "policy.flow.condor-from-pods"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("policy.* checks come from the --policy FILE"),
        "{err}"
    );
    // --skip takes them too (case-insensitive like every id).
    let (_, r) = check(&[
        "--policy",
        &p,
        "--root",
        &root("centos7-kubeadm-weave-guide"),
        "--only",
        GUIDE_FLOWS,
        "--skip",
        "POLICY.FLOW.CONDOR-FROM-NODES",
    ]);
    assert_eq!(r.len(), 3);
    // Run with everything else: the policy's checks sit among the built-in ones, sorted by id.
    let (_, r) = check(&[
        "--policy",
        &p,
        "--root",
        &root("centos7-kubeadm-weave-guide"),
    ]);
    let ids: Vec<&str> = r.iter().map(|x| x["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert!(ids.contains(&"policy.flow.condor-from-pods") && ids.contains(&"swap.active"));

    let (code, out, _) = run(&["list", "--policy", &p, "-o", "json"]);
    assert_eq!(code, 0);
    let l: Value = serde_json::from_str(&out).unwrap();
    let e = l
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "policy.flow.condor-from-pods")
        .expect("listed");
    assert_eq!(
        e["title"],
        "The firewall accepts tcp/9618 from 10.32.0.0/12 on weave to this node"
    );
    assert_eq!(e["severity"], "fail");
    let (code, out, _) = run(&["explain", "--policy", &p, "policy.flow.condor-from-nodes"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("policy.flow.condor-from-nodes — The firewall accepts tcp/9618 from 192.168.0.0/16 to this node"), "{out}");
    assert!(out.contains("Severity: warn"), "{out}");
    let (code, _, err) = run(&["explain", "policy.flow.condor-from-nodes"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("policy checks need their --policy FILE"),
        "{err}"
    );
}

#[test]
fn the_schema_accepts_the_fixtures_and_rejects_a_bad_file() {
    let (code, out, _) = run(&["schema", "--policy"]);
    assert_eq!(code, 0);
    let schema: Value = serde_json::from_str(&out).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let as_json = |p: &Path| -> Value {
        serde_saphyr::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    for f in ["guide.yaml", "baseline.yaml"] {
        let v = as_json(&fixtures().join("policies").join(f));
        assert!(
            validator.is_valid(&v),
            "{f}: {:?}",
            validator
                .iter_errors(&v)
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
        );
    }
    for f in ["unknown-key.yaml", "wrong-type.yaml"] {
        let v = as_json(&fixtures().join("policies/bad").join(f));
        assert!(!validator.is_valid(&v), "{f} passes the schema");
    }
}

/// A site policy's checks replay from a bundle: the policy sources read through the recorded host,
/// so with the root gone `--from-bundle` and the same `--policy` give the same verdicts and exit code.
#[test]
fn policy_checks_replay_from_a_bundle_with_the_root_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("node");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(root("centos7-seed-broken"))
        .arg(&node)
        .status()
        .unwrap();
    assert!(copied.success());
    let bundle = tmp.path().join("node.tar.gz");
    let (base, guide) = (policy("baseline.yaml"), policy("guide.yaml"));
    let ids = |r: &[Value]| -> Vec<(String, String)> {
        r.iter()
            .filter(|x| x["id"].as_str().unwrap().starts_with("policy."))
            .map(|x| (x["id"].to_string(), x["status"].to_string()))
            .collect()
    };
    let (code, recorded) = check(&[
        "--policy",
        &base,
        "--policy",
        &guide,
        "--root",
        node.to_str().unwrap(),
        "--offline",
        "--bundle",
        bundle.to_str().unwrap(),
    ]);
    let recorded_policy = ids(&recorded);
    assert!(recorded_policy.len() >= 6, "{recorded_policy:?}");
    std::fs::remove_dir_all(&node).unwrap();
    let (again, replayed) = check(&[
        "--from-bundle",
        bundle.to_str().unwrap(),
        "--policy",
        &base,
        "--policy",
        &guide,
    ]);
    assert_eq!(again, code);
    assert_eq!(ids(&replayed), recorded_policy);
    let statuses =
        |r: &[Value]| -> Vec<String> { r.iter().map(|x| x["status"].to_string()).collect() };
    assert_eq!(statuses(&replayed), statuses(&recorded));
}
