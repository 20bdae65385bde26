//! Live: `check --root ROOT --live-network`, run inside a network namespace the test made, judges that
//! namespace's *running* ruleset, not the files under the root: a live REJECT of tcp/10250 with nothing saved
//! fails `firewall.kubelet-port` citing the live rule; with a stale saved file that allows it the live rule
//! still wins and the disagreement is evidence; a live accept the saved file would not keep is a warn. The
//! image's own userland (deploy/image/rootfs.sh), in a chroot with the static binary, reads an
//! iptables-legacy REJECT and an nft REJECT alike; without CAP_NET_ADMIN the rule checks are `error` with
//! the reason, never `pass`. `multicast node-firewall` names a namespace's forward DROP per sender, or why
//! the rules could not be read.

mod support;

use std::{fs, path::Path, process::Output};

use serde_json::Value;
use support::{Netns, bin, feed, harness::require, image};

/// A "node" namespace with one interface and address, so the checks have a node network to judge.
fn node() -> Netns {
    let ns = Netns::new("ln");
    // A veth pair inside the namespace (this kernel may lack the dummy driver); one end carries the address.
    ns.exec(&[
        "ip", "link", "add", "lnd0", "type", "veth", "peer", "name", "lnd1",
    ]);
    ns.exec(&["ip", "addr", "add", "192.168.79.1/24", "dev", "lnd0"]);
    ns.exec(&["ip", "link", "set", "lnd1", "up"]);
    ns.exec(&["ip", "link", "set", "lnd0", "up"]);
    ns
}

const LEGACY_REJECT: &[&str] = &[
    "iptables-legacy",
    "-A",
    "INPUT",
    "-p",
    "tcp",
    "--dport",
    "10250",
    "-j",
    "REJECT",
];
const NFT_REJECT: &str = "table inet k8sdtest {\n chain input {\n  type filter hook input priority 0; policy accept;\n  tcp dport 10250 reject\n }\n}\n";
const SAVED_OPEN: &str =
    "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 10250 -j ACCEPT\nCOMMIT\n";
const SAVED_SHUT: &str = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 10250 -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n";

/// A node root with only what the test puts there: optionally a saved iptables file.
fn root_with(dir: &Path, saved: Option<&str>) {
    fs::create_dir_all(dir.join("etc/sysconfig")).unwrap();
    fs::write(dir.join("etc/hostname"), "node-1\n").unwrap();
    if let Some(s) = saved {
        fs::write(dir.join("etc/sysconfig/iptables"), s).unwrap();
    }
}

const CHECKS: &str = "firewall.kubelet-port,firewall.apiserver-port,firewall.backend";

/// The report's results by id: (status, message, evidence).
fn results(o: &Output) -> Vec<(String, String, String, Vec<String>)> {
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
                r["message"].as_str().unwrap().to_string(),
                r["evidence"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

fn find<'a>(
    rs: &'a [(String, String, String, Vec<String>)],
    id: &str,
) -> &'a (String, String, String, Vec<String>) {
    rs.iter()
        .find(|r| r.0 == id)
        .unwrap_or_else(|| panic!("no {id}"))
}

/// `check --offline -o json --only ONLY`, the start of every run here.
fn check_only(only: &str) -> [&str; 6] {
    ["check", "--offline", "-o", "json", "--only", only]
}

/// `check --root ROOT --live-network` inside `ns` with the doctor and userland of this machine.
fn check_in(ns: &Netns, root: &Path) -> Output {
    ns.command(bin().to_str().unwrap())
        .args(check_only(CHECKS))
        .args(["--live-network", "--root"])
        .arg(root)
        .output()
        .unwrap()
}

fn a_live_reject_with_nothing_saved_fails_citing_the_live_rule() {
    require(&["ip", "iptables-legacy", "iptables-legacy-save"]);
    let ns = node();
    ns.exec(LEGACY_REJECT);
    let dir = tempfile::tempdir().unwrap();
    root_with(dir.path(), None);
    let o = check_in(&ns, dir.path());
    let rs = results(&o);
    let (_, status, msg, ev) = find(&rs, "firewall.kubelet-port");
    assert_eq!(status, "fail", "{msg} {ev:?}");
    assert!(
        msg.contains("rejected by iptables-legacy filter/INPUT #1: -A INPUT -p tcp -m tcp --dport 10250 -j REJECT"),
        "{msg}"
    );
    assert!(
        ev.iter()
            .any(|e| e.contains("iptables-legacy-save: 1 rules")),
        "{ev:?}"
    );
    // The same root without --live-network has no rules to judge: the saved files are all it reads.
    let o = ns
        .command(bin().to_str().unwrap())
        .args(check_only("firewall.kubelet-port"))
        .arg("--root")
        .arg(dir.path())
        .output()
        .unwrap();
    let rs = results(&o);
    assert_eq!(find(&rs, "firewall.kubelet-port").1, "skip");
}

fn a_stale_saved_file_does_not_hide_the_live_reject() {
    require(&["ip", "iptables-legacy", "iptables-legacy-save"]);
    let ns = node();
    ns.exec(LEGACY_REJECT);
    let dir = tempfile::tempdir().unwrap();
    root_with(dir.path(), Some(SAVED_OPEN));
    let rs = results(&check_in(&ns, dir.path()));
    let (_, status, msg, ev) = find(&rs, "firewall.kubelet-port");
    assert_eq!(status, "fail", "{msg} {ev:?}");
    assert!(
        msg.contains("rejected by iptables-legacy filter/INPUT #1"),
        "{msg}"
    );
    assert!(
        ev.iter().any(|e| e.starts_with(
            "the saved rules (/etc/sysconfig/iptables: 1 rules) disagree with the live ones"
        ) && e.contains("they accept it by iptables (saved) filter/INPUT #1")),
        "{ev:?}"
    );
    // The other way round: open now, shut by the saved file after a reboot: the live accept is not persisted.
    let open = node();
    let dir = tempfile::tempdir().unwrap();
    root_with(dir.path(), Some(SAVED_SHUT));
    let rs = results(&check_in(&open, dir.path()));
    let (_, status, msg, _) = find(&rs, "firewall.kubelet-port");
    assert_eq!(status, "warn", "{msg}");
    assert!(msg.contains("is accepted by the live rules, but the saved rules (/etc/sysconfig/iptables: 1 rules) reject it"), "{msg}");
    assert!(
        msg.ends_with("the accepting rule is not persisted"),
        "{msg}"
    );
}

/// Runs the image's own binary in a chroot of the image rootfs inside `ns`, with the node root at /host
/// and a procfs of the namespace; `no_net_admin` drops CAP_NET_ADMIN first.
fn image_check(ns: &Netns, rootfs: &Path, no_net_admin: bool) -> Output {
    let r = rootfs.display();
    // `ip netns exec` gives the command a mount namespace of its own: the procfs goes away with it.
    let chroot = format!(
        "mount -t proc proc {r}/proc && mount --bind /dev/null {r}/dev/null && exec env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin \
         chroot {r} /usr/local/bin/k8sdoctor check --root /host --live-network --role control-plane --offline -o json --only {CHECKS}"
    );
    let script = if no_net_admin {
        format!("exec capsh --drop=cap_net_admin -- -c '{chroot}'")
    } else {
        chroot
    };
    ns.command("sh").args(["-c", &script]).output().unwrap()
}

fn the_image_userland_reads_live_legacy_and_nft_rejects() {
    require(&["ip", "iptables-legacy", "nft", "chroot", "mount", "capsh"]);
    let rootfs = image::rootfs_with_binary();
    root_with(&rootfs.path().join("host"), None);
    let legacy = node();
    legacy.exec(LEGACY_REJECT);
    let rs = results(&image_check(&legacy, rootfs.path(), false));
    let (_, status, msg, ev) = find(&rs, "firewall.kubelet-port");
    assert_eq!(status, "fail", "{msg} {ev:?}");
    assert!(
        msg.contains("rejected by iptables-legacy filter/INPUT #1"),
        "{msg}"
    );
    assert!(
        ev.iter()
            .any(|e| e.contains("iptables-legacy-save: 1 rules")),
        "{ev:?}"
    );

    let nft = node();
    feed(&nft, &["nft", "-f", "-"], NFT_REJECT);
    let rs = results(&image_check(&nft, rootfs.path(), false));
    let (_, status, msg, ev) = find(&rs, "firewall.kubelet-port");
    assert_eq!(status, "fail", "{msg} {ev:?}");
    assert!(
        msg.contains("rejected by nftables inet k8sdtest/input #1: tcp dport 10250 reject"),
        "{msg}"
    );
    assert!(
        ev.iter()
            .any(|e| e.contains("nft -j list ruleset: 1 native rules")),
        "{ev:?}"
    );

    // Without CAP_NET_ADMIN: not one rule check passes; each says why.
    let rs = results(&image_check(&nft, rootfs.path(), true));
    for id in CHECKS.split(',') {
        let (_, status, msg, _) = find(&rs, id);
        assert_eq!(status, "error", "{id}: {msg}");
        assert!(
            msg.contains("the firewall could not be read: no CAP_NET_ADMIN"),
            "{id}: {msg}"
        );
    }
}

/// The rest of the network state is the namespace's too: a net sysctl set in it (the fixture's file says
/// 0) and a socket listening in it (the fixture has no /proc/net/tcp).
fn net_sysctls_and_sockets_are_the_namespaces() {
    require(&["ip", "sysctl", "python3"]);
    let ns = node();
    ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let fixture = support::fixtures().join("hosts/centos7-seed-broken");
    assert_eq!(
        fs::read_to_string(fixture.join("proc/sys/net/ipv4/ip_forward")).unwrap(),
        "0\n"
    );
    // A listener on the kubelet port for as long as the check runs (and at most 20 s).
    let script = format!(
        "python3 -c 'import socket,time; s=socket.socket(); s.bind((\"0.0.0.0\",10250)); s.listen(); time.sleep(20)' & \
         sleep 0.5; {} check --live-network --offline -o json --stage pre-join --only sysctl.ip-forward,ports.in-use --root {}; \
         kill $!",
        bin().display(),
        fixture.display()
    );
    let o = ns.command("sh").args(["-c", &script]).output().unwrap();
    let rs = results(&o);
    let (_, status, msg, ev) = find(&rs, "sysctl.ip-forward");
    assert_eq!(status, "warn", "{msg}");
    assert!(
        ev.iter().any(|e| e == "/proc/sys/net/ipv4/ip_forward = 1"),
        "{ev:?}"
    );
    let (_, status, msg, _) = find(&rs, "ports.in-use");
    assert_eq!(status, "fail", "{msg}");
    assert!(msg.contains("10250"), "{msg}");
}

/// Node-side multicast evidence: with the rules of the node's namespace (here an nft policy DROP of the
/// group's port on input and a DROP of everything forwarded from the overlay interface), the evaluator's
/// answers for the flow name both rules; with nothing filtering, nothing is named.
fn the_nodes_multicast_drops_are_named_from_its_live_rules() {
    use k8sdoctor::checks::firewall::multicast::{Flow, node_multicast_paths};
    require(&["ip", "nft"]);
    let ns = node();
    let flow = Flow {
        group: "239.1.2.3".parse().unwrap(),
        port: 5007,
        source: "10.32.0.0/12".parse().unwrap(),
        iface: Some("lnd0".into()),
    };
    let clean = ns
        .run(|| node_multicast_paths(&flow, std::time::Duration::from_secs(10)))
        .unwrap();
    assert!(clean.blocked().is_empty(), "{:?}", clean.blocked());
    feed(
        &ns,
        &["nft", "-f", "-"],
        "table inet k8sdpol {\n chain input {\n  type filter hook input priority 0; policy accept;\n  udp dport 5007 drop\n }\n chain routed {\n  type filter hook forward priority 0; policy accept;\n  iifname \"lnd0\" drop\n }\n}\n",
    );
    let paths = ns
        .run(|| node_multicast_paths(&flow, std::time::Duration::from_secs(10)))
        .unwrap();
    let b = paths.blocked();
    assert_eq!(b.len(), 2, "{b:?}");
    assert!(
        b[0].contains("(input): drop by nftables inet k8sdpol/input #1: udp dport 5007 drop"),
        "{b:?}"
    );
    assert!(
        b[1].contains("(forward): drop by nftables inet k8sdpol/routed #1: iifname lnd0 drop"),
        "{b:?}"
    );
}

/// `multicast node-firewall` in a namespace the test made, as the fleet's observer pod runs it: a
/// forward DROP of the group's port for one overlay range names the rule for the senders in it only
/// (exit 1); without CAP_NET_ADMIN it says the rules could not be read and why (exit 2), naming no
/// rule and no sender.
fn node_firewall_names_the_rule_per_sender_or_why_it_could_not_read() {
    require(&["ip", "nft", "setpriv"]);
    let ns = node();
    feed(
        &ns,
        &["nft", "-f", "-"],
        "table inet k8sdnfw {\n chain routed {\n  type filter hook forward priority 0; policy accept;\n  ip saddr 10.32.0.0/12 udp dport 5009 drop\n }\n}\n",
    );
    let args = [
        "multicast",
        "node-firewall",
        "--peers",
        "10.32.1.1,10.48.0.1",
        "--port",
        "5009",
        "--group",
        "239.1.2.9",
        "-o",
        "json",
    ];
    let o = ns
        .command(bin().to_str().unwrap())
        .args(args)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(o.status.code(), Some(1), "{v}");
    assert!(v["error"].is_null(), "{v}");
    let senders = v["senders"].as_object().unwrap();
    assert_eq!(senders.keys().collect::<Vec<_>>(), ["10.32.1.1"], "{v}");
    let line = v["findings"][0]["line"].as_str().unwrap();
    assert!(
        line.starts_with(
            "udp/5009 to 239.1.2.9 (forward): drop by nftables inet k8sdnfw/routed #1:"
        ),
        "{line}"
    );
    assert_eq!(v["evaluated"], 2);
    // The same process without CAP_NET_ADMIN.
    let o = ns
        .command("setpriv")
        .args(["--inh-caps=-all", "--bounding-set=-net_admin", "--"])
        .arg(bin())
        .args(args)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(o.status.code(), Some(2), "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("no CAP_NET_ADMIN"),
        "{v}"
    );
    assert!(
        v["findings"].as_array().unwrap().is_empty()
            && v["senders"].as_object().unwrap().is_empty(),
        "{v}"
    );
}

/// firewall.manager looks for a running firewalld, not only at the boot link: in the root's process table
/// (a node's /proc under /host with hostPID), and with --live-network in this process's /proc too.
fn firewall_manager_finds_a_running_firewalld() {
    support::harness::require_tools(&["sleep"]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    root_with(&root, None);
    let manager = |extra: &[&str]| {
        let o = std::process::Command::new(bin())
            .args(check_only("firewall.manager"))
            .arg("--root")
            .arg(&root)
            .args(extra)
            .output()
            .unwrap();
        find(&results(&o), "firewall.manager").clone()
    };
    // Nothing under the root shows a process: the pass says what it could not see.
    let (_, status, msg, _) = manager(&[]);
    assert_eq!(status, "pass");
    assert!(msg.contains("no running process could be seen"), "{msg}");
    // A firewalld running here (started by hand: no unit link under the root), seen with --live-network.
    let fake = dir.path().join("firewalld");
    fs::copy("/bin/sleep", &fake).unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Kill(std::process::Command::new(&fake).arg("30").spawn().unwrap());
    let (_, status, msg, ev) = manager(&["--live-network"]);
    assert_eq!(status, "warn", "{msg}");
    assert!(
        ev.contains(&format!(
            "this process's /proc: process {} is firewalld (its cmdline)",
            child.0.id()
        )),
        "{ev:?}"
    );
    drop(child);
    // The root's own process table (hostPID: the node's /proc under /host).
    fs::create_dir_all(root.join("proc/4242")).unwrap();
    fs::write(
        root.join("proc/4242/cmdline"),
        "/usr/bin/python3\0-s\0/usr/sbin/firewalld\0--nofork\0",
    )
    .unwrap();
    let (_, status, _, ev) = manager(&[]);
    assert_eq!(status, "warn");
    assert!(
        ev.contains(&"/proc under the root: process 4242 is firewalld (its cmdline)".to_string()),
        "{ev:?}"
    );
}

fn main() {
    support::harness::main(vec![
        trial!(a_live_reject_with_nothing_saved_fails_citing_the_live_rule),
        trial!(a_stale_saved_file_does_not_hide_the_live_reject),
        trial!(the_image_userland_reads_live_legacy_and_nft_rejects),
        trial!(net_sysctls_and_sockets_are_the_namespaces),
        trial!(the_nodes_multicast_drops_are_named_from_its_live_rules),
        trial!(node_firewall_names_the_rule_per_sender_or_why_it_could_not_read),
        trial!(firewall_manager_finds_a_running_firewalld),
    ]);
}
