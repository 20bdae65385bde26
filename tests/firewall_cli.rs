//! CLI and whole-ruleset tests of the firewall area on saved inputs (no privileges needed).

mod support;

use k8sdoctor::checks::firewall::{
    Net, Query, Verdict, evaluate, iptables,
    model::{Family, Origin},
};

#[test]
fn a_20000_rule_kube_proxy_ruleset_parses_and_decides() {
    let text = support::kube_proxy::ruleset(20_000);
    let rs = iptables::parse(&text, Origin::IptablesNft, Family::Ip).unwrap();
    assert!(rs.rule_count() >= 20_000, "{}", rs.rule_count());
    let node: Net = "192.168.1.0/24".parse().unwrap();
    let a = evaluate(&rs, &Query::tcp(6443, node).on("eth0"));
    assert_eq!(a.verdict(), Verdict::Accept, "{:?}", a.explain());
    // NodePort 30009 belongs to a service without endpoints: kube-proxy rejects it on the input path.
    let a = evaluate(&rs, &Query::tcp(30009, node).on("eth0"));
    assert_eq!(a.verdict(), Verdict::Reject, "{:?}", a.explain());
    let d = a.decisive();
    assert_eq!(d.rule.as_ref().unwrap().chain, "KUBE-EXTERNAL-SERVICES");
    assert_eq!(d.path[0].position, Some(3));
}

fn check_root(root: &str) -> (i32, serde_json::Value) {
    let out = std::process::Command::new(support::bin())
        .args(["--root", support::fixtures().join("hosts").join(root).to_str().unwrap()])
        .args(["--only", "firewall.apiserver-port,firewall.kubelet-port,firewall.control-plane-ports,firewall.overlay,firewall.manager,firewall.backend"])
        .args(["--role", "control-plane", "-o", "json"])
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), v)
}

fn snapshot(name: &str, v: &serde_json::Value) {
    insta::with_settings!({ snapshot_path => "snapshots" }, {
        insta::assert_json_snapshot!(name, v, {
            ".started_at" => "[time]",
            ".duration_ms" => "[ms]",
            ".results[].duration_ms" => "[ms]",
            ".host.root" => "[root]",
            ".host.hostname" => "[hostname]",
            ".host.kernel" => "[kernel]",
            ".host.os" => "[os]",
            ".tool.version" => "[version]",
        });
    });
}

#[test]
fn saved_iptables_rules_of_a_centos7_weave_node() {
    let (code, v) = check_root("centos7-kubeadm-weave-guide");
    assert_eq!(code, 1);
    snapshot("centos7-kubeadm-weave-guide", &v);
}

#[test]
fn saved_nftables_conf_with_includes_of_a_debian_flannel_node() {
    let (code, v) = check_root("debian12-nftables-flannel");
    assert_eq!(code, 1);
    snapshot("debian12-nftables-flannel", &v);
}

#[test]
fn a_root_without_saved_rules_skips_with_the_paths_looked_at() {
    let dir = tempfile::tempdir().unwrap();
    let (code, v) = check_root(dir.path().to_str().unwrap());
    assert_eq!(code, 0);
    let r = &v["results"][0];
    assert_eq!(r["status"], "skip");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("/etc/sysconfig/iptables"),
        "{r}"
    );
}

#[test]
fn a_broken_saved_ruleset_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc/sysconfig")).unwrap();
    std::fs::write(
        dir.path().join("etc/sysconfig/iptables"),
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 6443 -j ACCEPT\n",
    )
    .unwrap();
    let (_, v) = check_root(dir.path().to_str().unwrap());
    let r = &v["results"][0];
    assert_eq!(r["status"], "error");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("/etc/sysconfig/iptables: line 3: table not closed by COMMIT"),
        "{r}"
    );
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn run(root: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(support::bin())
        .args(args)
        .arg("--root")
        .arg(root)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn centos7_forward_reject_fails_and_the_fix_accepts_the_pod_network_before_it() {
    let root = tempfile::tempdir().unwrap();
    copy_tree(
        &support::fixtures().join("hosts/centos7-kubeadm-weave-guide"),
        root.path(),
    );
    let saved = root.path().join("etc/sysconfig/iptables");
    let original = std::fs::read_to_string(&saved).unwrap();
    let v = run(root.path(), &["--only", "firewall.forward", "-o", "json"]);
    let r = &v["results"][0];
    assert_eq!(r["status"], "fail", "{r:#}");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("in on weave")
            && msg.contains("-A FORWARD -j REJECT --reject-with icmp-host-prohibited"),
        "{msg}"
    );
    assert!(
        r["evidence"].to_string().contains("pod side weave"),
        "{r:#}"
    );
    let v = run(
        root.path(),
        &["fix", "firewall.forward", "--apply", "--yes", "-o", "json"],
    );
    assert_eq!(v["outcome"], "applied", "{v:#}");
    assert_eq!(v["verify"][0]["after"], "pass", "{v:#}");
    let fixed = std::fs::read_to_string(&saved).unwrap();
    assert!(
        fixed
            .contains("-A FORWARD -s 10.32.0.0/12 -d 10.32.0.0/12 -j ACCEPT\n-A FORWARD -j REJECT"),
        "{fixed}"
    );
    let again = run(
        root.path(),
        &["fix", "firewall.forward", "--apply", "--yes", "-o", "json"],
    );
    assert_eq!(again["outcome"], "nothing_to_do", "{again:#}");
    let undo = std::process::Command::new(support::bin())
        .args(["fix", "--undo", "--yes", "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(
        undo.status.success(),
        "{}",
        String::from_utf8_lossy(&undo.stderr)
    );
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), original);
}
