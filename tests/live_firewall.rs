//! Live: the evaluator's verdict equals what the kernel does. Each scenario loads real iptables/nft rules into a
//! "node" namespace, sends real TCP SYNs from a "client" namespace over a veth pair to a listener, and compares.

mod support;

use std::{process::Command, time::Duration};

use k8sdoctor::{
    checks::firewall::{LiveGate, Net, Query, Verdict, evaluate, read_live_rules},
    core::host::{CmdError, run_command},
};
use support::{
    Netns, bin, feed,
    harness::require,
    tcp::{Listener, kernel},
    veth_named,
};

const NODE_IF: &str = "fwn0";
const NODE: &str = "192.168.77.1";
const CLIENT: &str = "192.168.77.2";
const NODE_OTHER: &str = "172.31.77.1";
const CLIENT_OTHER: &str = "172.31.77.2";
const PORTS: &[u16] = &[22, 2379, 2380, 6443, 10250, 10258];
/// Real connects compared in this run (printed by each test, for the report of ground truth).
static PROBES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A node and a client namespace on one veth pair, with two networks on it, and a listener on the node.
struct Lab {
    node: Netns,
    client: Netns,
    _listener: Listener,
}

fn lab() -> Lab {
    let node = Netns::new("fw");
    let client = Netns::new("fw");
    veth_named(
        &node,
        NODE_IF,
        &["192.168.77.1/24", "172.31.77.1/24"],
        &client,
        "fwc0",
        &["192.168.77.2/24", "172.31.77.2/24"],
    );
    let listener = Listener::start(&node, PORTS);
    Lab {
        node,
        client,
        _listener: listener,
    }
}

/// What the evaluator says, from the rules read in the node namespace exactly as `check` reads them.
fn evaluator(node: &Netns, src: &str, dst: &str, iface: &str, port: u16) -> (Verdict, String) {
    let q = Query::tcp(port, Net::host(src.parse().unwrap()))
        .on(iface)
        .to(dst.parse().unwrap());
    let (v, why, _) = evaluate_in(node, &q);
    (v, why)
}

/// The evaluator's verdict on `q` from the rules live in `node`; the flag says it was decided across an
/// unmodelled rule (`limit ... reject` then a drop policy), where only reachability is claimed, not which block.
fn evaluate_in(node: &Netns, q: &Query) -> (Verdict, String, bool) {
    let ns = node.name.clone();
    let run = move |p: &str, a: &[&str]| -> Result<String, CmdError> {
        // `ip netns exec` cannot tell a missing tool from a failing one; look first.
        if Command::new("sh")
            .args(["-c", &format!("command -v {p}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return Err(CmdError::NotFound(p.into()));
        }
        let mut args = vec!["netns", "exec", &ns, p];
        args.extend_from_slice(a);
        run_command("ip", &args, Duration::from_secs(10))
    };
    let read = read_live_rules(&run, &LiveGate::assume_all());
    assert!(read.problems.is_empty(), "{:?}", read.problems);
    let rules = read.rules.unwrap();
    let a = evaluate(&rules, q);
    (
        a.verdict(),
        a.explain().join("\n"),
        a.decisive().across.is_some(),
    )
}

/// Kernel and evaluator agree: the same verdict, or the same reachability when the evaluator decided across
/// an unmodelled rule.
fn same(k: Verdict, e: Verdict, across: bool) -> bool {
    k == e || (across && k.blocks() && e.blocks())
}

/// Sends each probe and asserts the kernel did what the scenario expects and the evaluator agrees.
fn agree(lab: &Lab, name: &str, probes: &[(&str, &str, u16, Verdict)]) {
    for &(src, dst, port, expected) in probes {
        let k = kernel(&lab.client, src, dst, port);
        let q = Query::tcp(port, Net::host(src.parse().unwrap()))
            .on(NODE_IF)
            .to(dst.parse().unwrap());
        let (e, why, across) = evaluate_in(&lab.node, &q);
        assert!(
            same(k, expected, false) || (expected.blocks() && k.blocks() && across),
            "{name}: kernel {k} for tcp/{port} from {src}, expected {expected} (evaluator: {why})"
        );
        assert!(
            same(k, e, across),
            "{name}: evaluator {e} vs kernel {k} for tcp/{port} from {src}: {why}"
        );
        PROBES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        eprintln!("{name}: tcp/{port} from {src}: kernel {k}, evaluator {e}");
    }
}

const CENTOS7: &str = include_str!("../fixtures/firewall/centos7-default.rules");
const GUIDE_RULE: &[&str] = &[
    "-s",
    "192.168.0.0/16",
    "-p",
    "tcp",
    "-m",
    "multiport",
    "--dports",
    "6443",
    "-j",
    "ACCEPT",
];

fn iptables(ns: &Netns, args: &[&str]) {
    let mut a = vec!["iptables"];
    a.extend_from_slice(args);
    ns.exec(&a);
}

fn iptables_scenarios_agree_with_the_kernel() {
    require(&["ip", "iptables", "iptables-restore", "python3"]);
    use Verdict::*;
    {
        let lab = lab();
        feed(&lab.node, &["iptables-restore"], CENTOS7);
        agree(
            &lab,
            "centos7 default",
            &[(CLIENT, NODE, 6443, Reject), (CLIENT, NODE, 22, Accept)],
        );
        // The guide's rule inserted before the REJECT (position 5).
        let mut ins = vec!["-I", "INPUT", "5"];
        ins.extend_from_slice(GUIDE_RULE);
        iptables(&lab.node, &ins);
        agree(
            &lab,
            "guide rule before REJECT",
            &[
                (CLIENT, NODE, 6443, Accept),
                (CLIENT_OTHER, NODE_OTHER, 6443, Reject),
            ],
        );
    }
    {
        let lab = lab();
        feed(&lab.node, &["iptables-restore"], CENTOS7);
        let mut app = vec!["-A", "INPUT"];
        app.extend_from_slice(GUIDE_RULE);
        iptables(&lab.node, &app);
        agree(
            &lab,
            "guide rule appended after REJECT",
            &[(CLIENT, NODE, 6443, Reject)],
        );
    }
    {
        let lab = lab();
        feed(
            &lab.node,
            &["iptables-restore"],
            "*filter\n:INPUT ACCEPT [0:0]\n:K8S - [0:0]\n-A INPUT -j K8S\n-A INPUT -p tcp --dport 6443 -j ACCEPT\n-A INPUT -j DROP\n-A K8S -s 192.168.0.0/16 -j RETURN\n-A K8S -j REJECT\nCOMMIT\n",
        );
        agree(
            &lab,
            "user chain with RETURN",
            &[
                (CLIENT, NODE, 6443, Accept),
                (CLIENT, NODE, 10250, Drop),
                (CLIENT_OTHER, NODE_OTHER, 6443, Reject),
            ],
        );
    }
    {
        let lab = lab();
        feed(
            &lab.node,
            &["iptables-restore"],
            "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n",
        );
        agree(
            &lab,
            "DROP policy",
            &[(CLIENT, NODE, 6443, Drop), (CLIENT, NODE, 22, Accept)],
        );
    }
    {
        let lab = lab();
        feed(
            &lab.node,
            &["iptables-restore"],
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m multiport --dports 2379:2380,10250,10257:10259 -j ACCEPT\n-A INPUT -p tcp -j REJECT --reject-with tcp-reset\nCOMMIT\n",
        );
        agree(
            &lab,
            "multiport ranges",
            &[
                (CLIENT, NODE, 2380, Accept),
                (CLIENT, NODE, 10258, Accept),
                (CLIENT, NODE, 10250, Accept),
                (CLIENT, NODE, 6443, Reject),
            ],
        );
    }
    {
        let lab = lab();
        feed(
            &lab.node,
            &["iptables-restore"],
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT ! -s 192.168.0.0/16 -p tcp -m tcp --dport 6443 -j DROP\nCOMMIT\n",
        );
        agree(
            &lab,
            "negated source",
            &[
                (CLIENT, NODE, 6443, Accept),
                (CLIENT_OTHER, NODE_OTHER, 6443, Drop),
            ],
        );
    }
}

fn the_weave_interface_rule_agrees_with_the_kernel() {
    require(&["ip", "iptables", "iptables-restore", "python3"]);
    let lab = lab();
    // A second link named like Weave's bridge, carrying the pod network.
    veth_named(
        &lab.node,
        "weave",
        &["10.32.0.1/12"],
        &lab.client,
        "fwpod",
        &["10.32.0.2/12"],
    );
    let mut rules = CENTOS7.replace(
        "-A INPUT -j REJECT",
        "-A INPUT -s 10.0.0.0/8 -i weave -m comment --comment \"100 allow access to Kubernetes API Endpoint from network overlay\" -j ACCEPT\n-A INPUT -j REJECT",
    );
    rules.push('\n');
    feed(&lab.node, &["iptables-restore"], &rules);
    for (src, dst, iface, expected) in [
        ("10.32.0.2", "10.32.0.1", "weave", Verdict::Accept),
        (CLIENT, NODE, NODE_IF, Verdict::Reject),
    ] {
        let k = kernel(&lab.client, src, dst, 6443);
        let (e, why) = evaluator(&lab.node, src, dst, iface, 6443);
        assert_eq!(
            (k, e),
            (expected, expected),
            "weave rule, from {src} on {iface}: {why}"
        );
    }
}

fn nft_scenarios_agree_with_the_kernel() {
    require(&["ip", "nft", "python3"]);
    use Verdict::*;
    {
        let lab = lab();
        feed(
            &lab.node,
            &["nft", "-f", "-"],
            "table inet first {\n chain input {\n  type filter hook input priority -10; policy accept;\n  tcp dport 6443 accept\n }\n}\ntable ip second {\n chain input {\n  type filter hook input priority 10; policy accept;\n  ip saddr 172.16.0.0/12 tcp dport { 6443, 10250 } drop\n }\n}\n",
        );
        agree(
            &lab,
            "nft two input base chains",
            &[
                (CLIENT, NODE, 6443, Accept),
                (CLIENT_OTHER, NODE_OTHER, 6443, Drop),
                (CLIENT_OTHER, NODE_OTHER, 2379, Accept),
            ],
        );
    }
    {
        let lab = lab();
        feed(
            &lab.node,
            &["nft", "-f", "-"],
            "table inet filter {\n set kports {\n  type inet_service; flags interval;\n  elements = { 6443, 10250-10259 }\n }\n chain input {\n  type filter hook input priority filter; policy drop;\n  iifname \"lo\" accept\n  ct state vmap { established : accept, related : accept, invalid : drop }\n  tcp dport @kports accept\n }\n}\n",
        );
        agree(
            &lab,
            "nft set of ports",
            &[
                (CLIENT, NODE, 6443, Accept),
                (CLIENT, NODE, 10258, Accept),
                (CLIENT, NODE, 2379, Drop),
            ],
        );
    }
    {
        let lab = lab();
        feed(
            &lab.node,
            &["nft", "-f", "-"],
            "table ip filter2 {\n chain allow {\n  ip saddr != 192.168.0.0/16 return\n  tcp dport { 6443, 10250 } accept\n }\n chain input {\n  type filter hook input priority 0; policy accept;\n  jump allow\n  reject with tcp reset\n }\n}\n",
        );
        agree(
            &lab,
            "nft jump/return",
            &[
                (CLIENT, NODE, 6443, Accept),
                (CLIENT, NODE, 2379, Reject),
                (CLIENT_OTHER, NODE_OTHER, 6443, Reject),
            ],
        );
    }
}

fn split_backends_and_mixed_tools_agree_with_the_kernel() {
    require(&[
        "ip",
        "iptables",
        "iptables-legacy",
        "iptables-restore",
        "nft",
        "python3",
    ]);
    use Verdict::*;
    let lab = lab();
    // iptables-nft accepts everything; a legacy rule still drops 172.16/12; a native nft table rejects 10250.
    iptables(&lab.node, &["-A", "INPUT", "-j", "ACCEPT"]);
    lab.node.exec(&[
        "iptables-legacy",
        "-A",
        "INPUT",
        "-s",
        "172.16.0.0/12",
        "-j",
        "DROP",
    ]);
    feed(
        &lab.node,
        &["nft", "-f", "-"],
        "table inet native {\n chain input {\n  type filter hook input priority 5; policy accept;\n  tcp dport 10250 reject\n }\n}\n",
    );
    agree(
        &lab,
        "legacy + nft + native",
        &[
            (CLIENT, NODE, 6443, Accept),
            (CLIENT_OTHER, NODE_OTHER, 6443, Drop),
            (CLIENT, NODE, 10250, Reject),
        ],
    );
    let out = lab
        .node
        .command(bin().to_str().unwrap())
        .args(["--only", "firewall.backend", "-o", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"][0]["status"], "warn", "{v}");
}

fn apiserver_check(ns: &Netns) -> (i32, serde_json::Value) {
    let out = ns
        .command(bin().to_str().unwrap())
        .args([
            "--only",
            "firewall.apiserver-port",
            "--role",
            "control-plane",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), v["results"][0].clone())
}

fn cli_apiserver_port_fails_on_centos7_defaults_and_passes_with_the_guides_rule() {
    require(&["ip", "iptables", "iptables-restore"]);
    let node = Netns::new("fw");
    let client = Netns::new("fw");
    veth_named(
        &node,
        NODE_IF,
        &["192.168.77.1/24"],
        &client,
        "fwc0",
        &["192.168.77.2/24"],
    );
    // A Calico node: its VXLAN interface names the CNI, so the pod network is Calico's 192.168.0.0/16.
    node.exec(&[
        "ip",
        "link",
        "add",
        "vxlan.calico",
        "type",
        "vxlan",
        "id",
        "4096",
        "dstport",
        "4789",
        "dev",
        "lo",
    ]);
    feed(&node, &["iptables-restore"], CENTOS7);
    let (code, r) = apiserver_check(&node);
    assert_eq!((code, r["status"].as_str()), (1, Some("fail")), "{r:#}");
    let ev = r["evidence"].to_string();
    assert!(ev.contains("reject by iptables-nft filter/INPUT #5: -A INPUT -j REJECT --reject-with icmp-host-prohibited"), "{r:#}");
    assert!(
        r["remediation"]
            .as_str()
            .unwrap()
            .contains("iptables -I INPUT 5 -s 192.168.77.0/24"),
        "{r:#}"
    );
    let mut ins = vec!["-I", "INPUT", "5"];
    ins.extend_from_slice(GUIDE_RULE);
    iptables(&node, &ins);
    let (code, r) = apiserver_check(&node);
    assert_eq!((code, r["status"].as_str()), (0, Some("pass")), "{r:#}");
    let ev = r["evidence"].to_string();
    assert!(ev.contains("accept by iptables-nft filter/INPUT #5: -A INPUT -s 192.168.0.0/16 -p tcp -m multiport --dports 6443 -j ACCEPT"), "{r:#}");
    assert!(
        ev.contains("tcp/6443 from 192.168.0.0/16 on vxlan.calico"),
        "{r:#}"
    );
}

/// Runs `script` with `sh` inside `ns` and a mount namespace of its own, where each of `dirs` is a tmpfs
/// holding a copy of the host's (and `/run` an empty one): the real firewall tools write their config there, never to the host's.
/// Everything the script starts must end with it (the mount namespace goes with its last process).
fn in_private_mounts(ns: &Netns, dirs: &[&str], script: &str) -> String {
    let mut prelude = String::from("set -e\nmount --make-rprivate /\n");
    for d in dirs {
        prelude.push_str(&format!(
            "mkdir -p {d}; t=$(mktemp -d); cp -a {d}/. $t/; mount -t tmpfs k8sd-fw {d}; cp -a $t/. {d}/; rm -rf $t\n"
        ));
    }
    // An empty /run of its own: locks, the private system bus socket.
    prelude.push_str("mount -t tmpfs k8sd-fw /run\n");
    let o = ns
        .command("timeout")
        .args([
            "120",
            "unshare",
            "-m",
            "sh",
            "-c",
            &format!("{prelude}{script}"),
        ])
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "private-mount script failed: {out}");
    out
}

/// A file's bytes, to prove the host's config is left as it was.
fn snapshot_of(paths: &[&str]) -> Vec<Option<Vec<u8>>> {
    paths.iter().map(|p| std::fs::read(p).ok()).collect()
}

fn ufw_generated_rules_agree_with_the_kernel() {
    require(&["ip", "ufw", "unshare", "iptables-save", "python3"]);
    use Verdict::*;
    let host = [
        "/etc/ufw/ufw.conf",
        "/etc/ufw/user.rules",
        "/etc/ufw/user6.rules",
    ];
    let before = snapshot_of(&host);
    let lab = lab();
    // The real ufw (Debian's package) builds its iptables ruleset in the node namespace: default deny
    // incoming, 6443 open to all, 10250 open to the second network only, 2379 rejected.
    let out = in_private_mounts(
        &lab.node,
        &["/etc/ufw", "/etc/default"],
        "ufw --force enable\nufw allow 6443/tcp\nufw allow from 172.31.77.0/24 to any port 10250 proto tcp\nufw reject 2379/tcp\nufw status verbose\n",
    );
    assert!(
        out.contains("6443/tcp") && out.contains("Status: active"),
        "{out}"
    );
    agree(
        &lab,
        "ufw",
        &[
            (CLIENT, NODE, 6443, Accept),
            (CLIENT, NODE, 10250, Drop),
            (CLIENT_OTHER, NODE_OTHER, 10250, Accept),
            (CLIENT, NODE, 2379, Reject),
            (CLIENT, NODE, 22, Drop),
        ],
    );
    assert_eq!(snapshot_of(&host), before, "the host's ufw config changed");
    eprintln!(
        "ufw: {} real connects so far",
        PROBES.load(std::sync::atomic::Ordering::SeqCst)
    );
}

fn firewalld_generated_rules_agree_with_the_kernel() {
    require(&[
        "ip",
        "firewalld",
        "firewall-offline-cmd",
        "firewall-cmd",
        "dbus-daemon",
        "unshare",
        "nft",
        "python3",
    ]);
    use Verdict::*;
    let host = [
        "/etc/firewalld/firewalld.conf",
        "/etc/firewalld/zones/public.xml",
    ];
    let before = snapshot_of(&host);
    let lab = lab();
    // The real firewalld (Debian's package, nftables backend): permanent config written by
    // firewall-offline-cmd, then the daemon itself on a private system bus loads it into the node
    // namespace; one more port is opened at runtime through D-Bus with firewall-cmd. CleanupOnExit=no
    // keeps the ruleset after the daemon (and its bus) are stopped at the end of the script.
    let out = in_private_mounts(
        &lab.node,
        &["/etc/firewalld", "/var/lib/firewalld", "/var/log"],
        r#"sed -i 's/^CleanupOnExit=.*/CleanupOnExit=no/' /etc/firewalld/firewalld.conf
firewall-offline-cmd --zone=public --add-port=6443/tcp
mkdir -p /run/dbus
BUS=$(dbus-daemon --system --fork --print-pid)
firewalld --nofork --nopid & FW=$!
trap 'kill $FW 2>/dev/null; wait $FW 2>/dev/null; kill $BUS 2>/dev/null' EXIT
ok=no; for i in $(seq 1 100); do if firewall-cmd --state >/dev/null 2>&1; then ok=yes; break; fi; sleep 0.2; done
test $ok = yes
firewall-cmd --zone=public --add-port=10250/tcp
firewall-cmd --zone=public --list-all
"#,
    );
    assert!(
        out.contains("6443/tcp") && out.contains("10250/tcp"),
        "{out}"
    );
    agree(
        &lab,
        "firewalld",
        &[
            (CLIENT, NODE, 6443, Accept),
            (CLIENT, NODE, 10250, Accept),
            (CLIENT, NODE, 22, Accept),
            (CLIENT, NODE, 2379, Reject),
            (CLIENT_OTHER, NODE_OTHER, 2380, Reject),
        ],
    );
    assert_eq!(
        snapshot_of(&host),
        before,
        "the host's firewalld config changed"
    );
}

fn arch_stock_nftables_conf_agrees_with_the_kernel_by_reachability() {
    require(&["ip", "nft", "python3"]);
    use Verdict::*;
    let lab = lab();
    // `destroy` needs nft 1.0.8; the namespace is fresh, so there is nothing to destroy.
    let conf = include_str!("../fixtures/firewall/arch-nftables.conf")
        .replace("destroy table inet filter", "");
    feed(&lab.node, &["nft", "-f", "-"], &conf);
    // Under the rate limit the kernel rejects, over it the policy drops: either way blocked.
    agree(
        &lab,
        "arch nftables.conf",
        &[
            (CLIENT, NODE, 22, Accept),
            (CLIENT, NODE, 6443, Reject),
            (CLIENT, NODE, 10250, Reject),
        ],
    );
}

/// Two pods on different "nodes" routed through this node: pod A behind `cni0`, pod B reached through
/// `flannel.1` (veth pairs named as flannel's interfaces), and a listener in pod B.
struct ForwardLab {
    node: Netns,
    pod_a: Netns,
    _pod_b: Netns,
    _listener: Listener,
}

const POD_A: &str = "10.244.1.2";
const POD_B: &str = "10.244.2.2";
const SERVICE: &str = "10.96.0.10";

fn forward_lab() -> ForwardLab {
    let node = Netns::new("fwr");
    let pod_a = Netns::new("fwa");
    let pod_b = Netns::new("fwb");
    veth_named(
        &node,
        "cni0",
        &["10.244.1.1/24"],
        &pod_a,
        "eth0",
        &["10.244.1.2/24"],
    );
    veth_named(
        &node,
        "flannel.1",
        &["10.244.2.1/24"],
        &pod_b,
        "eth0",
        &["10.244.2.2/24"],
    );
    pod_a.exec(&["ip", "route", "add", "default", "via", "10.244.1.1"]);
    pod_b.exec(&["ip", "route", "add", "default", "via", "10.244.2.1"]);
    node.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let listener = Listener::start(&pod_b, PORTS);
    ForwardLab {
        node,
        pod_a,
        _pod_b: pod_b,
        _listener: listener,
    }
}

/// Pod A → pod B (or → the service address, DNATed to pod B) through the node's forward hook.
fn agree_forward(lab: &ForwardLab, name: &str, probes: &[(bool, u16, Verdict)]) {
    for &(service, port, expected) in probes {
        let dst = if service { SERVICE } else { POD_B };
        let k = kernel(&lab.pod_a, POD_A, dst, port);
        let mut q = Query::forward(
            6,
            Net::host(POD_A.parse().unwrap()),
            Net::host(POD_B.parse().unwrap()),
        )
        .on("cni0")
        .out("flannel.1");
        q.dport = Some(port);
        if service {
            q = q.dnat();
        }
        let (e, why, across) = evaluate_in(&lab.node, &q);
        assert!(
            same(k, expected, across),
            "{name}: kernel {k} for tcp/{port} to {dst}, expected {expected} (evaluator: {why})"
        );
        assert!(
            same(k, e, across),
            "{name}: evaluator {e} vs kernel {k} for tcp/{port} to {dst}: {why}"
        );
        PROBES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        eprintln!("{name}: tcp/{port} to {dst}: kernel {k}, evaluator {e}");
    }
}

fn forwarded_pod_traffic_agrees_with_the_kernel() {
    require(&[
        "ip",
        "iptables",
        "iptables-restore",
        "nft",
        "sysctl",
        "python3",
    ]);
    use Verdict::*;
    {
        let lab = forward_lab();
        agree_forward(&lab, "no rules", &[(false, 6443, Accept)]);
    }
    {
        // CentOS 7: INPUT looks fine for 22, but FORWARD rejects every routed pod packet.
        let lab = forward_lab();
        feed(&lab.node, &["iptables-restore"], CENTOS7);
        agree_forward(
            &lab,
            "centos7 FORWARD",
            &[(false, 6443, Reject), (false, 22, Reject)],
        );
        // kube-proxy's DNAT for a service, accepted by conntrack status; direct pod traffic still rejected.
        lab.node.exec(&[
            "iptables",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-d",
            SERVICE,
            "-p",
            "tcp",
            "-j",
            "DNAT",
            "--to-destination",
            POD_B,
        ]);
        iptables(
            &lab.node,
            &[
                "-I",
                "FORWARD",
                "1",
                "-m",
                "conntrack",
                "--ctstate",
                "DNAT",
                "-j",
                "ACCEPT",
            ],
        );
        agree_forward(
            &lab,
            "centos7 + DNAT accept",
            &[(true, 6443, Accept), (false, 6443, Reject)],
        );
        // The fix's rule: the pod network both ways.
        iptables(
            &lab.node,
            &[
                "-I",
                "FORWARD",
                "2",
                "-s",
                "10.244.0.0/16",
                "-d",
                "10.244.0.0/16",
                "-j",
                "ACCEPT",
            ],
        );
        agree_forward(
            &lab,
            "centos7 + pod network accept",
            &[(false, 6443, Accept), (false, 10250, Accept)],
        );
    }
    {
        // Docker's FORWARD DROP policy, then with flannel's two rules.
        let lab = forward_lab();
        let docker = include_str!("../fixtures/firewall/docker-host.rules");
        feed(&lab.node, &["iptables-restore"], docker);
        agree_forward(&lab, "docker FORWARD DROP", &[(false, 6443, Drop)]);
        iptables(
            &lab.node,
            &["-A", "FORWARD", "-s", "10.244.0.0/16", "-j", "ACCEPT"],
        );
        agree_forward(&lab, "docker + flannel -s", &[(false, 6443, Accept)]);
    }
    {
        // nftables: Arch's stock forward chain drops all; an accept for one port only passes that port.
        let lab = forward_lab();
        let conf = include_str!("../fixtures/firewall/arch-nftables.conf")
            .replace("destroy table inet filter", "");
        feed(&lab.node, &["nft", "-f", "-"], &conf);
        agree_forward(&lab, "arch forward", &[(false, 6443, Drop)]);
        // Replies are forwarded too: the usual tracked-connections rule first.
        lab.node.exec(&[
            "nft",
            "add",
            "rule",
            "inet",
            "filter",
            "forward",
            "ct",
            "state",
            "established,related",
            "accept",
        ]);
        lab.node.exec(&[
            "nft",
            "add",
            "rule",
            "inet",
            "filter",
            "forward",
            "iifname",
            "cni0",
            "oifname",
            "flannel.1",
            "tcp",
            "dport",
            "6443",
            "accept",
        ]);
        agree_forward(
            &lab,
            "arch forward + 6443",
            &[(false, 6443, Accept), (false, 10250, Drop)],
        );
    }
    eprintln!(
        "forward: {} real connects so far",
        PROBES.load(std::sync::atomic::Ordering::SeqCst)
    );
}

fn main() {
    support::harness::main(vec![
        trial!(iptables_scenarios_agree_with_the_kernel),
        trial!(the_weave_interface_rule_agrees_with_the_kernel),
        trial!(nft_scenarios_agree_with_the_kernel),
        trial!(split_backends_and_mixed_tools_agree_with_the_kernel),
        trial!(cli_apiserver_port_fails_on_centos7_defaults_and_passes_with_the_guides_rule),
        trial!(ufw_generated_rules_agree_with_the_kernel),
        trial!(firewalld_generated_rules_agree_with_the_kernel),
        trial!(arch_stock_nftables_conf_agrees_with_the_kernel_by_reachability),
        trial!(forwarded_pod_traffic_agrees_with_the_kernel),
    ]);
}
