//! Live: `check --policy` flow verdicts agree with the kernel. The guide's rules (iptables-restore) or an nft
//! ruleset are loaded into a "node" namespace; `k8sdoctor check --policy` runs inside it exactly as on a node;
//! each flow's status is compared with a real TCP connect from a "client" namespace, and the remediation it
//! gives is run and shown to open the flow.

mod support;

use serde_json::Value;
use support::{
    Netns, bin, feed,
    harness::require,
    tcp::{Listener, kernel},
    veth_named,
};

use k8sdoctor::checks::firewall::Verdict;

const GUIDE: &str = include_str!("../fixtures/firewall/centos7-guide.rules");
const PORTS: &[u16] = &[6443, 9618, 10250];

/// The node reached three ways: the node network, the Weave bridge (pod network), and another link whose
/// addresses are also inside 10.0.0.0/8.
struct Lab {
    node: Netns,
    client: Netns,
    _listener: Listener,
}

/// (client source, node address) on each link.
const NODE_NET: (&str, &str) = ("192.168.77.2", "192.168.77.1");
const WEAVE: (&str, &str) = ("10.32.0.2", "10.32.0.1");
const OTHER: (&str, &str) = ("10.40.0.2", "10.40.0.1");

fn lab() -> Lab {
    let node = Netns::new("pol");
    let client = Netns::new("pol");
    veth_named(
        &node,
        "eth0",
        &["192.168.77.1/24"],
        &client,
        "c0",
        &["192.168.77.2/24"],
    );
    veth_named(
        &node,
        "weave",
        &["10.32.0.1/12"],
        &client,
        "c1",
        &["10.32.0.2/12"],
    );
    veth_named(
        &node,
        "eth1",
        &["10.40.0.1/16"],
        &client,
        "c2",
        &["10.40.0.2/16"],
    );
    let listener = Listener::start(&node, PORTS);
    Lab {
        node,
        client,
        _listener: listener,
    }
}

/// One flow of the policy and the path the kernel probe takes for it.
struct Flow {
    name: &'static str,
    port: u16,
    from: &'static str,
    interface: Option<&'static str>,
    link: (&'static str, &'static str),
}

const FLOWS: &[Flow] = &[
    // The guide's own rule: accepted.
    Flow {
        name: "apiserver-from-nodes",
        port: 6443,
        from: "192.168.0.0/16",
        interface: None,
        link: NODE_NET,
    },
    // The kubelet port: the guide opens nothing for it, the final REJECT stops it.
    Flow {
        name: "kubelet-from-nodes",
        port: 10250,
        from: "192.168.0.0/16",
        interface: None,
        link: NODE_NET,
    },
    // The pods' 9618 over Weave: accepted by the guide's weave rule ...
    Flow {
        name: "condor-on-weave",
        port: 9618,
        from: "10.32.0.0/12",
        interface: Some("weave"),
        link: WEAVE,
    },
    // ... only on weave: the same port from 10.0.0.0/8 on another link is rejected.
    Flow {
        name: "condor-on-eth1",
        port: 9618,
        from: "10.40.0.0/16",
        interface: Some("eth1"),
        link: OTHER,
    },
];

fn policy_text() -> String {
    let mut s = String::from("flows:\n");
    for f in FLOWS {
        s.push_str(&format!(
            "  - name: {}\n    proto: tcp\n    port: {}\n    from: {}\n",
            f.name, f.port, f.from
        ));
        if let Some(i) = f.interface {
            s.push_str(&format!("    interface: {i}\n"));
        }
    }
    s
}

/// `k8sdoctor check --policy` inside the node namespace (live rules, as on a node): results by flow name.
fn check(node: &Netns, policy: &std::path::Path) -> Vec<(String, Value)> {
    let only: Vec<String> = FLOWS
        .iter()
        .map(|f| format!("policy.flow.{}", f.name))
        .collect();
    let out = node
        .command(bin().to_str().unwrap())
        .args([
            "check",
            "--policy",
            policy.to_str().unwrap(),
            "--only",
            &only.join(","),
        ])
        .args(["--role", "worker", "-o", "json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let id = r["id"].as_str().unwrap();
            (id.trim_start_matches("policy.flow.").to_string(), r.clone())
        })
        .collect()
}

/// Every flow's status agrees with the kernel; gives the failing flows' results.
fn agree(lab: &Lab, policy: &std::path::Path, expect: &[(&str, Verdict)]) -> Vec<(String, Value)> {
    let results = check(&lab.node, policy);
    assert_eq!(results.len(), FLOWS.len(), "{results:#?}");
    let mut failing = vec![];
    for f in FLOWS {
        let (_, r) = results.iter().find(|(n, _)| n == f.name).unwrap();
        let k = kernel(&lab.client, f.link.0, f.link.1, f.port);
        let want = expect.iter().find(|(n, _)| *n == f.name).unwrap().1;
        assert_eq!(
            k, want,
            "{}: the kernel did not do what the scenario sets up",
            f.name
        );
        let status = r["status"].as_str().unwrap();
        let agrees = match k {
            Verdict::Accept => status == "pass",
            _ => status == "fail",
        };
        assert!(agrees, "{}: check says {status}, kernel {k}: {r:#}", f.name);
        eprintln!(
            "{}: tcp/{} from {}: kernel {k}, check {status}",
            f.name, f.port, f.link.0
        );
        if status == "fail" {
            failing.push((f.name.to_string(), r.clone()));
        }
    }
    failing
}

/// Runs a finding's remediation commands (before the persistence note) inside the namespace.
fn apply_remediation(node: &Netns, r: &Value) {
    let text = r["remediation"].as_str().expect("a remediation");
    let cmds = text.split(" (").next().unwrap();
    for cmd in cmds.split("; ") {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        // nft takes the rule as words; quotes around an interface name are nft's, not the shell's.
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let args: Vec<&str> = words.iter().map(String::as_str).collect();
        node.exec(&args);
    }
}

/// Every flow open: what the remediation must leave.
const OPEN: &[(&str, Verdict)] = &[
    ("apiserver-from-nodes", Verdict::Accept),
    ("kubelet-from-nodes", Verdict::Accept),
    ("condor-on-weave", Verdict::Accept),
    ("condor-on-eth1", Verdict::Accept),
];

fn write_policy(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let p = dir.path().join("policy.yaml");
    std::fs::write(&p, policy_text()).unwrap();
    p
}

/// One scenario on rules already loaded in the lab: every flow agrees with the kernel (`blocked` is what
/// the closed flows meet), each failing flow names the deciding rule (`by`) and a remediation holding
/// `fix`; running those remediations opens every flow.
fn scenario(lab: &Lab, blocked: Verdict, by: &str, fix: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = write_policy(&dir);
    let failing = agree(
        lab,
        &p,
        &[
            ("apiserver-from-nodes", Verdict::Accept),
            ("kubelet-from-nodes", blocked),
            ("condor-on-weave", Verdict::Accept),
            ("condor-on-eth1", blocked),
        ],
    );
    assert_eq!(failing.len(), 2);
    for (name, r) in &failing {
        assert!(r["message"].as_str().unwrap().contains(by), "{name}: {r:#}");
        assert!(
            r["remediation"].as_str().unwrap().contains(fix),
            "{name}: {r:#}"
        );
    }
    // The rules it says to insert, where it says, open exactly those flows.
    for (_, r) in &failing {
        apply_remediation(&lab.node, r);
    }
    assert!(agree(lab, &p, OPEN).is_empty());
}

fn guide_rules_flows_agree_with_the_kernel() {
    require(&[
        "ip",
        "iptables",
        "iptables-restore",
        "iptables-save",
        "python3",
    ]);
    let lab = lab();
    feed(&lab.node, &["iptables-restore"], GUIDE);
    // The evidence is the deciding rule: the guide's final REJECT, #7 of INPUT.
    scenario(
        &lab,
        Verdict::Reject,
        "filter/INPUT #7: -A INPUT -j REJECT --reject-with icmp-host-prohibited",
        " -I INPUT 7 -s ",
    );
}

fn nft_flows_agree_with_the_kernel() {
    require(&["ip", "nft", "python3"]);
    let lab = lab();
    // The guide's rules written for nftables, ending in a drop policy instead of a REJECT.
    feed(
        &lab.node,
        &["nft", "-f", "-"],
        "table inet k8sdpol {\n chain input {\n  type filter hook input priority 0; policy drop;\n  ct state established,related accept\n  iifname \"lo\" accept\n  ip saddr 192.168.0.0/16 tcp dport 6443 accept\n  iifname \"weave\" ip saddr 10.0.0.0/8 accept\n }\n}\n",
    );
    scenario(
        &lab,
        Verdict::Drop,
        "dropped by nftables inet k8sdpol/input policy: policy drop",
        "nft add rule inet k8sdpol input ip saddr ",
    );
}

fn main() {
    support::harness::main(vec![
        trial!(guide_rules_flows_agree_with_the_kernel),
        trial!(nft_flows_agree_with_the_kernel),
    ]);
}
