//! Live: `multicast probe`, `send` and `receive` between network namespaces plugged into a bridge
//! that lives in its own switch namespace; firewall, loopback and routing failures and their causes.

mod support;

use std::{
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use serde_json::Value;
use support::{Netns, Switch, bin, harness::require};

const TOOLS: &[&str] = &["ip", "iptables", "iptables-save"];

/// Starts `k8sdoctor multicast ARGS` inside `ns` (JSON on stdout).
fn spawn(ns: &Netns, args: &[&str]) -> Child {
    let mut c = ns.command(bin().to_str().unwrap());
    c.arg("multicast")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.spawn().unwrap()
}

/// Waits for a run and returns its exit code and JSON output.
fn finish(child: Child) -> (i32, Value) {
    let o = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code().unwrap_or(-1), v)
}

/// Runs the probe on every (namespace, extra args) at once; returns each one's exit code and JSON.
fn probe_all(runs: &[(&Netns, Vec<&str>)], peers: &str, extra: &[&str]) -> Vec<(i32, Value)> {
    let children: Vec<Child> = runs
        .iter()
        .map(|(ns, own)| {
            let mut args = vec!["probe", "--peers", peers, "-o", "json"];
            args.extend_from_slice(extra);
            args.extend(own.iter().copied());
            spawn(ns, &args)
        })
        .collect();
    children.into_iter().map(finish).collect()
}

/// Waits (up to 10 s) until a receiver in `ns` joined the group, as /proc/net/igmp(6) prints it.
fn wait_joined(ns: &Netns, group_hex: &str) {
    for _ in 0..200 {
        let igmp = ns.exec(&["cat", "/proc/net/igmp", "/proc/net/igmp6"]);
        if String::from_utf8_lossy(&igmp.stdout).contains(group_hex) {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("the receiver did not join {group_hex}");
}

fn pair<'a>(v: &'a Value, sender: &str, receiver: &str) -> &'a Value {
    v["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sender"] == sender && p["receiver"] == receiver)
        .unwrap_or_else(|| panic!("no pair {sender} → {receiver} in {v:#}"))
}

/// `n` namespaces on one switch, addresses 10.66.<net>.1.. .
fn lan(tag: &str, net: u8, n: usize) -> (Switch, Vec<Netns>, Vec<String>) {
    let sw = Switch::new(tag);
    let mut nss = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..n {
        let ns = Netns::new(tag);
        let a = format!("10.66.{net}.{}", i + 1);
        sw.plug(&ns, &format!("{a}/24"));
        nss.push(ns);
        addrs.push(a);
    }
    (sw, nss, addrs)
}

fn every_pair_passes(n: usize, net: u8) {
    let (_sw, nss, addrs) = lan("mc", net, n);
    let peers = addrs.join(",");
    let runs: Vec<(&Netns, Vec<&str>)> = nss.iter().map(|ns| (ns, vec![])).collect();
    let results = probe_all(
        &runs,
        &peers,
        &["--count", "50", "--interval", "5", "--port", "4600"],
    );
    for (code, v) in &results {
        assert_eq!(*code, 0, "{v:#}");
        assert_eq!(v["pass"], true);
        let pairs = v["pairs"].as_array().unwrap();
        assert_eq!(pairs.len(), n * (n - 1), "{v:#}");
        for p in pairs {
            assert_eq!(
                (p["verdict"].as_str(), p["loss_pct"].as_f64()),
                (Some("pass"), Some(0.0)),
                "{p:#}"
            );
            assert_eq!(
                (p["sent"].as_u64(), p["received"].as_u64()),
                (Some(50), Some(50)),
                "{p:#}"
            );
            assert_eq!(p["hops"], 0);
            assert!(
                p["first_ms"].as_f64().is_some() && p["latency_p99_ms"].as_f64().is_some(),
                "{p:#}"
            );
        }
    }
    // Every participant prints the same matrix.
    let matrix = |v: &Value| {
        v["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["sender"].to_string(),
                    p["receiver"].to_string(),
                    p["received"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert!(
        results
            .iter()
            .all(|(_, v)| matrix(v) == matrix(&results[0].1))
    );
}

fn two_participants_pass_with_no_loss() {
    require(TOOLS);
    every_pair_passes(2, 1);
}

fn four_participants_pass_with_no_loss() {
    require(TOOLS);
    every_pair_passes(4, 2);
}

fn a_firewall_drop_fails_the_pairs_into_it_and_names_the_rule() {
    require(TOOLS);
    let (_sw, nss, addrs) = lan("mc", 3, 2);
    nss[1].exec(&[
        "iptables", "-A", "INPUT", "-p", "udp", "--dport", "4610", "-j", "DROP",
    ]);
    let runs: Vec<(&Netns, Vec<&str>)> = nss.iter().map(|ns| (ns, vec![])).collect();
    let results = probe_all(
        &runs,
        &addrs.join(","),
        &["--count", "30", "--interval", "5", "--port", "4610"],
    );
    for (code, v) in &results {
        assert_eq!(*code, 1, "{v:#}");
        let into = pair(v, &addrs[0], &addrs[1]);
        assert_eq!(
            (into["loss_pct"].as_f64(), into["received"].as_u64()),
            (Some(100.0), Some(0))
        );
        assert_eq!(into["verdict"], "fail");
        assert_eq!(into["cause"]["code"], "firewall", "{into:#}");
        let msg = into["cause"]["message"].as_str().unwrap();
        assert!(
            msg.contains("-A INPUT -p udp -m udp --dport 4610 -j DROP"),
            "{msg}"
        );
        // Unicast (the control port) is not dropped, and the other direction works.
        assert_eq!(into["unicast_loss_pct"], 0.0);
        assert_eq!(pair(v, &addrs[1], &addrs[0])["verdict"], "pass");
    }
}

fn random_drop_is_measured_within_one_and_a_half_points() {
    require(TOOLS);
    let (_sw, nss, addrs) = lan("mc", 4, 2);
    nss[1].exec(&[
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "udp",
        "--dport",
        "4620",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.05",
        "-j",
        "DROP",
    ]);
    let runs: Vec<(&Netns, Vec<&str>)> = nss.iter().map(|ns| (ns, vec![])).collect();
    let results = probe_all(
        &runs,
        &addrs.join(","),
        &["--count", "4000", "--interval", "1", "--port", "4620"],
    );
    for (code, v) in &results {
        assert_eq!(*code, 1, "{v:#}");
        let p = pair(v, &addrs[0], &addrs[1]);
        let loss = p["loss_pct"].as_f64().unwrap();
        assert!((loss - 5.0).abs() <= 1.5, "loss {loss} % in {p:#}");
        assert_eq!(p["sent"], 4000);
        assert_eq!(p["cause"]["code"], "firewall");
        assert!(
            p["cause"]["message"]
                .as_str()
                .unwrap()
                .contains("statistic --mode random"),
            "{p:#}"
        );
        assert_eq!(pair(v, &addrs[1], &addrs[0])["loss_pct"], 0.0);
    }
}

fn two_participants_in_one_namespace_are_loopback_only() {
    require(TOOLS);
    let sw = Switch::new("mc");
    let ns = Netns::new("mc");
    let dev = sw.plug(&ns, "10.66.5.1/24");
    ns.exec(&["ip", "addr", "add", "10.66.5.2/24", "dev", &dev]);
    let peers = "10.66.5.1,10.66.5.2";
    let runs = [(&ns, vec![]), (&ns, vec![])];
    let results = probe_all(
        &runs,
        peers,
        &["--count", "20", "--interval", "5", "--port", "4630"],
    );
    let locals: Vec<&str> = results
        .iter()
        .map(|(_, v)| v["local"].as_str().unwrap())
        .collect();
    assert_ne!(locals[0], locals[1], "each process took its own address");
    for (code, v) in &results {
        assert_eq!(*code, 1, "{v:#}");
        for p in v["pairs"].as_array().unwrap() {
            assert_eq!(p["verdict"], "fail");
            assert_eq!(p["cause"]["code"], "loopback-only", "{p:#}");
            assert!(
                p["cause"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("loopback only")
            );
        }
    }
}

fn a_router_between_two_bridges_does_not_route_the_group() {
    require(TOOLS);
    let (sw1, sw2) = (Switch::new("mc"), Switch::new("mc"));
    let (a, b, r) = (Netns::new("mc"), Netns::new("mc"), Netns::new("mc"));
    sw1.plug(&a, "10.66.6.2/24");
    sw1.plug(&r, "10.66.6.1/24");
    sw2.plug(&b, "10.66.7.2/24");
    sw2.plug(&r, "10.66.7.1/24");
    r.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    a.exec(&["ip", "route", "add", "default", "via", "10.66.6.1"]);
    b.exec(&["ip", "route", "add", "default", "via", "10.66.7.1"]);
    let runs = [(&a, vec![]), (&b, vec![])];
    let results = probe_all(
        &runs,
        "10.66.6.2,10.66.7.2",
        &["--count", "20", "--interval", "5", "--port", "4640"],
    );
    for (code, v) in &results {
        assert_eq!(*code, 1, "{v:#}");
        for p in v["pairs"].as_array().unwrap() {
            assert_eq!(
                (p["verdict"].as_str(), p["loss_pct"].as_f64()),
                (Some("fail"), Some(100.0))
            );
            assert_eq!(p["unicast_loss_pct"], 0.0, "unicast is routed: {p:#}");
            assert_eq!(p["cause"]["code"], "not-routed", "{p:#}");
            let msg = p["cause"]["message"].as_str().unwrap();
            assert!(msg.contains("not routed") && msg.contains("TTL"), "{msg}");
        }
    }
}

fn receive_counts_our_sender_and_iperf_as_a_foreign_one() {
    require(&["ip", "iperf"]);
    let (_sw, nss, _) = lan("mc", 8, 2);
    let dev_route = |ns: &Netns| {
        let out = ns.exec(&["ip", "-o", "link", "show"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let dev = text
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|d| d.split('@').next().unwrap().to_string())
            .find(|d| d != "lo")
            .unwrap();
        ns.exec(&["ip", "route", "add", "224.0.0.0/4", "dev", &dev]);
    };
    dev_route(&nss[0]);
    dev_route(&nss[1]);
    let rx = spawn(
        &nss[1],
        &["receive", "--port", "4650", "--duration", "4", "-o", "json"],
    );
    wait_joined(&nss[1], "010101E0");
    let send = nss[0]
        .command(bin().to_str().unwrap())
        .args([
            "multicast",
            "send",
            "--port",
            "4650",
            "--count",
            "20",
            "--interval",
            "5",
        ])
        .output()
        .unwrap();
    assert!(
        send.status.success(),
        "{}",
        String::from_utf8_lossy(&send.stderr)
    );
    let iperf = nss[0]
        .command("iperf")
        .args([
            "-c",
            "224.1.1.1",
            "-u",
            "-T",
            "1",
            "-p",
            "4650",
            "-t",
            "1",
            "-b",
            "100k",
        ])
        .output()
        .unwrap();
    assert!(
        iperf.status.success(),
        "{}",
        String::from_utf8_lossy(&iperf.stderr)
    );
    let (code, v) = finish(rx);
    assert_eq!(code, 0, "{v:#}");
    let senders = v["senders"].as_array().unwrap();
    let ours = senders
        .iter()
        .find(|s| s["kind"] == "k8sdoctor")
        .expect("our sender");
    assert_eq!(
        (ours["received"].as_u64(), ours["lost"].as_u64()),
        (Some(20), Some(0)),
        "{v:#}"
    );
    assert_eq!(ours["ttl"], 1);
    let foreign = senders
        .iter()
        .find(|s| s["kind"] == "foreign")
        .expect("iperf counted");
    assert!(foreign["received"].as_u64().unwrap() >= 5, "{v:#}");
    assert!(
        foreign["source"]
            .as_str()
            .unwrap()
            .starts_with("10.66.8.1:")
    );
    assert_eq!(
        v["received"].as_u64().unwrap(),
        20 + foreign["received"].as_u64().unwrap()
    );
}

fn ctrl_c_stops_receive_with_its_summary() {
    require(&["ip"]);
    let (_sw, nss, _) = lan("mc", 9, 1);
    let rx = spawn(
        &nss[0],
        &[
            "receive",
            "--port",
            "4660",
            "--interface",
            "10.66.9.1",
            "-o",
            "json",
        ],
    );
    wait_joined(&nss[0], "010101E0");
    // ip netns exec runs the binary as its own process image, so the child pid is the receiver.
    let pid = rx.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (code, v) = finish(rx);
    assert_eq!(code, 1, "nothing was received: {v:#}");
    assert_eq!(v["received"], 0);
    assert_eq!(v["group"], "224.1.1.1");
}

fn ipv6_send_and_receive_on_the_default_group() {
    require(&["ip"]);
    let sw = Switch::new("mc");
    let (a, b) = (Netns::new("mc"), Netns::new("mc"));
    let da = sw.plug(&a, "10.66.10.1/24");
    let db = sw.plug(&b, "10.66.10.2/24");
    a.exec(&["ip", "-6", "addr", "add", "fd66::1/64", "dev", &da, "nodad"]);
    b.exec(&["ip", "-6", "addr", "add", "fd66::2/64", "dev", &db, "nodad"]);
    let rx = spawn(
        &b,
        &[
            "receive",
            "-6",
            "--interface",
            &db,
            "--port",
            "4670",
            "--count",
            "5",
            "--duration",
            "5",
            "-o",
            "json",
        ],
    );
    wait_joined(&b, "ff2e0000000000000000000000000001");
    let send = a
        .command(bin().to_str().unwrap())
        .args([
            "multicast",
            "send",
            "-6",
            "--interface",
            &da,
            "--port",
            "4670",
            "--count",
            "5",
            "--interval",
            "20",
            "--ttl",
            "3",
        ])
        .output()
        .unwrap();
    assert!(
        send.status.success(),
        "{}",
        String::from_utf8_lossy(&send.stderr)
    );
    let (code, v) = finish(rx);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["group"], "ff2e::1");
    let s = &v["senders"][0];
    assert_eq!(
        (
            s["kind"].as_str(),
            s["received"].as_u64(),
            s["lost"].as_u64()
        ),
        (Some("k8sdoctor"), Some(5), Some(0)),
        "{v:#}"
    );
    // The hop limit arrives as sent: the bridge is not a router.
    assert_eq!(s["ttl"], 3);
}

fn an_absent_peer_fails_with_unicast_and_no_result() {
    require(&["ip"]);
    let (_sw, nss, _) = lan("mc", 11, 1);
    let runs = [(&nss[0], vec![])];
    let results = probe_all(
        &runs,
        "10.66.11.1,10.66.11.9",
        &[
            "--count",
            "10",
            "--interval",
            "5",
            "--wait",
            "1",
            "--port",
            "4680",
        ],
    );
    let (code, v) = &results[0];
    assert_eq!(*code, 1, "{v:#}");
    let from_absent = pair(v, "10.66.11.9", "10.66.11.1");
    assert_eq!(from_absent["cause"]["code"], "unicast", "{from_absent:#}");
    assert_eq!(from_absent["unicast_loss_pct"], 100.0);
    let to_absent = pair(v, "10.66.11.1", "10.66.11.9");
    assert_eq!(to_absent["cause"]["code"], "no-result", "{to_absent:#}");
}

fn ipv6_participants_pass() {
    require(&["ip"]);
    let sw = Switch::new("mc");
    let (a, b) = (Netns::new("mc"), Netns::new("mc"));
    let da = sw.plug(&a, "10.66.12.1/24");
    let db = sw.plug(&b, "10.66.12.2/24");
    a.exec(&["ip", "-6", "addr", "add", "fd67::1/64", "dev", &da, "nodad"]);
    b.exec(&["ip", "-6", "addr", "add", "fd67::2/64", "dev", &db, "nodad"]);
    let runs = [(&a, vec![]), (&b, vec![])];
    let results = probe_all(
        &runs,
        "fd67::1,fd67::2",
        &["--count", "20", "--interval", "5", "--port", "4690"],
    );
    for (code, v) in &results {
        assert_eq!(*code, 0, "{v:#}");
        assert_eq!(v["group"], "ff2e::1");
        for p in v["pairs"].as_array().unwrap() {
            assert_eq!(
                (p["received"].as_u64(), p["loss_pct"].as_f64()),
                (Some(20), Some(0.0)),
                "{p:#}"
            );
        }
    }
}

fn a_node_that_is_not_among_the_peers_cannot_probe() {
    require(&["ip"]);
    let ns = Netns::new("mc");
    let o = ns
        .command(bin().to_str().unwrap())
        .args(["multicast", "probe", "--peers", "10.66.13.1,10.66.13.2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("none of --peers is an address of this node")
    );
}

fn strict_rp_filter_is_named_when_the_route_back_uses_another_interface() {
    require(&["ip", "sysctl"]);
    // Multicast from a arrives on b's first leg, but b routes back to a over its second leg.
    let (sw1, sw2) = (Switch::new("mc"), Switch::new("mc"));
    let (a, b) = (Netns::new("mc"), Netns::new("mc"));
    sw1.plug(&a, "10.66.14.1/24");
    sw1.plug(&b, "10.66.14.2/24");
    let a2 = sw2.plug(&a, "10.66.15.1/24");
    let b2 = sw2.plug(&b, "10.66.15.2/24");
    a.exec(&["ip", "route", "add", "10.66.14.2/32", "dev", &a2]);
    b.exec(&["ip", "route", "add", "10.66.14.1/32", "dev", &b2]);
    b.exec(&["sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1"]);
    let runs = [(&a, vec![]), (&b, vec![])];
    let results = probe_all(
        &runs,
        "10.66.14.1,10.66.14.2",
        &["--count", "20", "--interval", "5", "--port", "4700"],
    );
    for (code, v) in &results {
        assert_eq!(*code, 1, "{v:#}");
        let p = pair(v, "10.66.14.1", "10.66.14.2");
        assert_eq!(
            (p["loss_pct"].as_f64(), p["unicast_loss_pct"].as_f64()),
            (Some(100.0), Some(0.0)),
            "{p:#}"
        );
        assert_eq!(p["cause"]["code"], "rp-filter", "{p:#}");
        let ev: Vec<&str> = p["cause"]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert!(ev.contains(&"net.ipv4.conf.all.rp_filter = 1"), "{ev:?}");
        assert_eq!(pair(v, "10.66.14.2", "10.66.14.1")["verdict"], "pass");
    }
}

fn ttl_1_does_not_cross_a_multicast_router_but_ttl_8_does() {
    require(&["ip", "sysctl"]);
    support::harness::require_kernel(
        "multicast routing (CONFIG_IP_MROUTE)",
        support::kernel_routes_multicast,
    );
    let (sw1, sw2) = (Switch::new("mc"), Switch::new("mc"));
    let (a, b, r) = (Netns::new("mc"), Netns::new("mc"), Netns::new("mc"));
    sw1.plug(&a, "10.66.16.2/24");
    let r1 = sw1.plug(&r, "10.66.16.1/24");
    sw2.plug(&b, "10.66.17.2/24");
    let r2 = sw2.plug(&r, "10.66.17.1/24");
    r.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    a.exec(&["ip", "route", "add", "default", "via", "10.66.16.1"]);
    b.exec(&["ip", "route", "add", "default", "via", "10.66.17.1"]);
    // Only a → b is routed.
    let _router = support::MulticastRouter::new(
        &r,
        &[&r1, &r2],
        "10.66.16.2".parse().unwrap(),
        "224.1.1.1".parse().unwrap(),
    );
    let runs = [(&a, vec![]), (&b, vec![])];
    let results = probe_all(
        &runs,
        "10.66.16.2,10.66.17.2",
        &["--count", "20", "--interval", "5", "--port", "4444"],
    );
    for (code, v) in &results {
        assert_eq!(*code, 1, "{v:#}");
        let ab = pair(v, "10.66.16.2", "10.66.17.2");
        assert_eq!(ab["cause"]["code"], "ttl", "{ab:#}");
        assert!(
            ab["cause"]["message"]
                .as_str()
                .unwrap()
                .contains("after 1 hop(s)"),
            "{ab:#}"
        );
        assert!(
            ab["cause"]["message"]
                .as_str()
                .unwrap()
                .contains("--ttl 2 or more"),
            "{ab:#}"
        );
        assert_eq!(
            pair(v, "10.66.17.2", "10.66.16.2")["cause"]["code"],
            "not-routed"
        );
    }
    // With --ttl 2 the routed direction passes, one hop away.
    let results = probe_all(
        &runs,
        "10.66.16.2,10.66.17.2",
        &[
            "--count",
            "20",
            "--interval",
            "5",
            "--port",
            "4444",
            "--ttl",
            "2",
        ],
    );
    for (_, v) in &results {
        let ab = pair(v, "10.66.16.2", "10.66.17.2");
        assert_eq!(
            (ab["verdict"].as_str(), ab["hops"].as_u64()),
            (Some("pass"), Some(1)),
            "{ab:#}"
        );
    }
}

/// The real mtools 3.2 (msend, mreceive) built with cc from shared/vendor into a temp dir, and links
/// named msend/mreceive to our binary in another. `None` (with the reason printed, or a failure
/// under K8SDOCTOR_PRIVILEGED_TESTS=1) when cc or the sources are missing.
struct Mtools {
    real: tempfile::TempDir,
    ours: tempfile::TempDir,
}

impl Mtools {
    fn build() -> Option<Mtools> {
        require(&["ip", "iptables", "cc", "timeout"]);
        let Some(src) = support::vendor("mtools") else {
            let msg = "live test needs shared/vendor/mtools beside the repository";
            assert!(!support::privileged_required(), "{msg}");
            support::harness::not_run(msg.into());
        };
        let real = tempfile::tempdir().unwrap();
        for tool in ["msend", "mreceive"] {
            let out = real.path().join(tool);
            let o = Command::new("cc")
                .current_dir(&src)
                .args(["-D_GNU_SOURCE", "-DVERSION=\"3.2\"", "-o"])
                .arg(&out)
                .args([&format!("{tool}.c"), "common.c", "inet.c", "sock.c"])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "cc {tool}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let ours = tempfile::tempdir().unwrap();
        for tool in ["msend", "mreceive"] {
            std::os::unix::fs::symlink(bin(), ours.path().join(tool)).unwrap();
        }
        Some(Mtools { real, ours })
    }

    fn real(&self, tool: &str) -> String {
        self.real.path().join(tool).to_str().unwrap().to_string()
    }

    fn ours(&self, tool: &str) -> String {
        self.ours.path().join(tool).to_str().unwrap().to_string()
    }
}

/// Two namespaces on a switch, a route for the multicast range in each, and in the receiver's an
/// iptables rule that drops the datagram whose payload starts with "3\0" (msend -n's third, and ours)
/// to `port`.
fn mtools_lan(net: u8, port: u16) -> (Switch, Netns, Netns) {
    let sw = Switch::new("mt");
    let (a, b) = (Netns::new("mt"), Netns::new("mt"));
    let da = sw.plug(&a, &format!("10.66.{net}.1/24"));
    let db = sw.plug(&b, &format!("10.66.{net}.2/24"));
    a.exec(&["ip", "route", "add", "224.0.0.0/4", "dev", &da]);
    b.exec(&["ip", "route", "add", "224.0.0.0/4", "dev", &db]);
    // IPv4 header (20) + UDP header (8): the payload's first two bytes.
    b.exec(&[
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "udp",
        "--dport",
        &port.to_string(),
        "-m",
        "string",
        "--algo",
        "bm",
        "--from",
        "28",
        "--to",
        "30",
        "--hex-string",
        "|3300|",
        "-j",
        "DROP",
    ]);
    (sw, a, b)
}

/// Starts `program ARGS` in `ns` with stdout piped (mreceive under `timeout`, it never ends itself).
fn start(ns: &Netns, program: &str, args: &[&str]) -> Child {
    ns.command(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn text_of(child: Child) -> String {
    let o = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn real_msend_to_our_mreceive_link_shows_text_numbers_and_names_the_gap() {
    let Some(mt) = Mtools::build() else { return };
    let (_sw, a, b) = mtools_lan(20, 4680);
    // Numbered: our receiver by its mreceive link with mreceive's flags, a JSON twin beside it.
    let lines = start(
        &b,
        &mt.ours("mreceive"),
        &["-g", "224.1.1.1", "-p", "4680", "-n", "--duration", "4"],
    );
    let json = spawn(
        &b,
        &[
            "receive",
            "-n",
            "-p",
            "4680",
            "--duration",
            "4",
            "-o",
            "json",
        ],
    );
    wait_joined(&b, "010101E0");
    thread::sleep(Duration::from_millis(300));
    let send = a
        .command(&mt.real("msend"))
        .args(["-g", "224.1.1.1", "-p", "4680", "-n", "-P", "50", "-c", "6"])
        .output()
        .unwrap();
    assert!(
        send.status.success(),
        "{}",
        String::from_utf8_lossy(&send.stderr)
    );
    let out = text_of(lines);
    assert!(
        out.starts_with("Now receiving from multicast group: [224.1.1.1]:4680\n"),
        "{out}"
    );
    for (n, seq) in [(1, 1), (2, 2), (3, 4), (5, 6)] {
        let line = format!("{n:5}\t[10.66.20.1]: 4680\t");
        let row = out
            .lines()
            .find(|l| l.starts_with(&line))
            .unwrap_or_else(|| panic!("no {line:?}: {out}"));
        assert!(row.ends_with(&format!("\t{seq:5}")), "{row}");
    }
    assert!(
        out.contains("****************\nMessage not received: 3\n****************\n"),
        "{out}"
    );
    assert!(!out.contains("Duplicate"), "{out}");
    assert!(
        out.contains("kernel drops on this host: 0 for this socket"),
        "{out}"
    );
    let (code, v) = finish(json);
    assert_eq!(code, 0, "{v:#}");
    let s = &v["senders"][0];
    assert_eq!(
        (
            s["kind"].as_str(),
            s["received"].as_u64(),
            s["lost"].as_u64(),
            s["duplicates"].as_u64(),
            s["reordered"].as_u64()
        ),
        (Some("foreign"), Some(5), Some(1), Some(0), Some(0)),
        "{v:#}"
    );
    assert_eq!(
        s["latency_p50_ms"],
        Value::Null,
        "msend stamps no time: {v:#}"
    );

    // Plain text: msend's -text (single dash) shows as mreceive would show it.
    let rx = spawn(
        &b,
        &["receive", "-p", "4681", "--count", "2", "--duration", "4"],
    );
    wait_joined(&b, "010101E0");
    thread::sleep(Duration::from_millis(300));
    let send = a
        .command(&mt.real("msend"))
        .args(["-p", "4681", "-text", "Hello World!", "-P", "50", "-c", "2"])
        .output()
        .unwrap();
    assert!(send.status.success());
    let out = text_of(rx);
    assert!(
        out.contains("Receive msg 1 from [10.66.20.1]:4681: Hello World!\n"),
        "{out}"
    );
    assert!(
        out.contains("Receive msg 2 from [10.66.20.1]:4681: Hello World!\n"),
        "{out}"
    );
}

fn our_msend_link_to_real_mreceive_shows_text_numbers_and_the_gap() {
    let Some(mt) = Mtools::build() else { return };
    let (_sw, a, b) = mtools_lan(21, 4690);
    let numbered = start(
        &b,
        "timeout",
        &["3", &mt.real("mreceive"), "-p", "4690", "-n"],
    );
    let plain = start(&b, "timeout", &["3", &mt.real("mreceive"), "-p", "4690"]);
    wait_joined(&b, "010101E0");
    thread::sleep(Duration::from_millis(300));
    // msend's flags, single-dash long ones included, through the msend link.
    let send = a
        .command(&mt.ours("msend"))
        .args([
            "-g",
            "224.1.1.1",
            "-p",
            "4690",
            "-t",
            "1",
            "-text",
            "ignored",
            "-n",
            "-P",
            "50",
            "-c",
            "6",
            "-join",
        ])
        .output()
        .unwrap();
    let sent = String::from_utf8_lossy(&send.stdout).to_string();
    assert!(
        send.status.success(),
        "{sent}{}",
        String::from_utf8_lossy(&send.stderr)
    );
    assert!(sent.starts_with("Now sending to multicast group: [224.1.1.1]:4690\nSending msg 1, TTL 1, to [224.1.1.1]:4690: 1\n"), "{sent}");
    assert!(sent.contains("sent 6 datagrams"), "{sent}");
    let out = text_of(numbered);
    let numbers: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("[10.66.21.1]"))
        .filter_map(|l| l.rsplit('\t').next())
        .map(str::trim)
        .collect();
    assert_eq!(numbers, ["1", "2", "4", "5", "6"], "{out}");
    assert!(out.contains("Message not received: 3\n"), "{out}");
    assert!(
        !out.contains("Duplicate") && !out.contains("Gap detected"),
        "{out}"
    );
    let out = text_of(plain);
    assert!(out.contains("Receive msg 1 from [10.66.21.1]:"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("Receive msg 3 from") && l.ends_with(": 4")),
        "{out}"
    );

    // Plain text reaches mreceive as text, not as our trailer.
    let plain = start(&b, "timeout", &["2", &mt.real("mreceive"), "-p", "4691"]);
    wait_joined(&b, "010101E0");
    thread::sleep(Duration::from_millis(300));
    let send = a
        .command(bin().to_str().unwrap())
        .args([
            "multicast",
            "send",
            "-p",
            "4691",
            "--text",
            "Hello World!",
            "-P",
            "50",
            "-c",
            "2",
            "-q",
        ])
        .output()
        .unwrap();
    assert!(send.status.success());
    assert!(
        !String::from_utf8_lossy(&send.stdout).contains("Sending msg"),
        "-q"
    );
    let out = text_of(plain);
    assert!(
        out.lines()
            .any(|l| l.starts_with("Receive msg 1 from [10.66.21.1]:")
                && l.ends_with(": Hello World!")),
        "{out}"
    );
}

/// A kernel feature that is missing makes a test "ignored, kernel lacks ...", also when privileged
/// tests are required (CI sets K8SDOCTOR_PRIVILEGED_TESTS=1 and runs this).
fn a_missing_kernel_feature_is_ignored_with_the_reason() {
    let o = support::harness::outcome(|| {
        support::harness::require_kernel("a feature (CONFIG_NOT_SET)", || false);
        unreachable!("require_kernel returned without the feature");
    });
    match o {
        Ok(libtest_mimic::Completion::Ignored { reason }) => assert_eq!(
            reason.as_deref(),
            Some("kernel lacks a feature (CONFIG_NOT_SET)")
        ),
        Ok(_) => panic!("the test ran"),
        Err(e) => panic!("the test failed: {:?}", e.message()),
    }
    // Present: the test goes on.
    assert!(support::harness::outcome(|| support::harness::require_kernel("x", || true)).is_ok());
}

/// A helper thread's panic fails the test with the helper's own message, not `Any { .. }`.
fn a_helper_threads_panic_keeps_its_message() {
    let o = support::harness::outcome(|| {
        support::harness::join(thread::spawn(|| panic!("helper says {}", 42)));
    });
    let e = o.err().expect("the helper's panic fails the test");
    assert_eq!(e.message(), Some("helper says 42"));
    // A helper that finds the kernel lacking stops the test as not run, as the test itself would.
    let o = support::harness::outcome(|| {
        support::harness::join(thread::spawn(|| support::harness::kernel_lacks("y")));
    });
    assert!(
        matches!(o, Ok(libtest_mimic::Completion::Ignored { reason: Some(ref r) }) if r == "kernel lacks y")
    );
}

fn main() {
    support::harness::main(vec![
        trial!(a_missing_kernel_feature_is_ignored_with_the_reason),
        trial!(a_helper_threads_panic_keeps_its_message),
        trial!(two_participants_pass_with_no_loss),
        trial!(four_participants_pass_with_no_loss),
        trial!(a_firewall_drop_fails_the_pairs_into_it_and_names_the_rule),
        trial!(random_drop_is_measured_within_one_and_a_half_points),
        trial!(two_participants_in_one_namespace_are_loopback_only),
        trial!(a_router_between_two_bridges_does_not_route_the_group),
        trial!(receive_counts_our_sender_and_iperf_as_a_foreign_one),
        trial!(ctrl_c_stops_receive_with_its_summary),
        trial!(ipv6_send_and_receive_on_the_default_group),
        trial!(an_absent_peer_fails_with_unicast_and_no_result),
        trial!(ipv6_participants_pass),
        trial!(a_node_that_is_not_among_the_peers_cannot_probe),
        trial!(strict_rp_filter_is_named_when_the_route_back_uses_another_interface),
        trial!(ttl_1_does_not_cross_a_multicast_router_but_ttl_8_does),
        trial!(real_msend_to_our_mreceive_link_shows_text_numbers_and_names_the_gap),
        trial!(our_msend_link_to_real_mreceive_shows_text_numbers_and_the_gap),
    ]);
}
