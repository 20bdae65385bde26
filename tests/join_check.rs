//! `k8sdoctor join-check` end to end: each failure mode fails its own step with its own message and
//! skips the later ones; the token secret never reaches any output. The guide's join command
//! (192.168.1.2:6443) is dialled only inside network namespaces these tests create.

mod support;

use std::{
    process::{Command, Output},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{Netns, bin, can_run_privileged, veth};

const SECRET: &str = "0e6b932b0907deff";
const TOKEN: &str = "a24a11.0e6b932b0907deff";
const GUIDE_HASH: &str = "sha256:1ca7fbf4d402849f34a6dbf5810ee584df015d6deeb55ca6ff1f0a87773b97f9";
const STEPS: [&str; 7] = [
    "join.parse",
    "join.endpoint",
    "join.tls",
    "join.cluster-info",
    "join.token",
    "join.ca-pin",
    "join.clock",
];

/// The guide's literal join command, word by word.
fn guide() -> Vec<String> {
    format!(
        "kubeadm join --token {TOKEN} 192.168.1.2:6443 --discovery-token-ca-cert-hash {GUIDE_HASH}"
    )
    .split(' ')
    .map(String::from)
    .collect()
}

fn join_cmd(endpoint: &str, token: &str, hash: &str) -> Vec<String> {
    [
        "kubeadm",
        "join",
        endpoint,
        "--token",
        token,
        "--discovery-token-ca-cert-hash",
        hash,
    ]
    .map(String::from)
    .to_vec()
}

/// A finished run: the JSON report, exit code, wall time, stderr.
struct Run {
    json: Value,
    code: i32,
    took: Duration,
    stderr: String,
}

impl Run {
    fn status(&self, id: &str) -> &str {
        self.result(id)["status"].as_str().unwrap()
    }
    fn message(&self, id: &str) -> &str {
        self.result(id)["message"].as_str().unwrap()
    }
    fn result(&self, id: &str) -> &Value {
        self.json["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no result {id}: {}", self.json))
    }
    /// `failed` fails, every step before it is not a failure, every step after it is skipped naming it.
    fn fails_at(&self, failed: &str, message_has: &str) {
        assert_eq!(self.code, 1, "exit code; stderr: {}", self.stderr);
        let at = STEPS.iter().position(|s| *s == failed).unwrap();
        let ids: Vec<&str> = self.json["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, STEPS, "every step is reported, in order");
        for (i, id) in STEPS.iter().enumerate() {
            let s = self.status(id);
            match i.cmp(&at) {
                std::cmp::Ordering::Less => {
                    assert!(s == "pass" || s == "warn", "{id} is {s}: {}", self.json)
                }
                std::cmp::Ordering::Equal => {
                    assert_eq!(s, "fail", "{id}: {}", self.json);
                    let m = self.message(id);
                    assert!(
                        m.contains(message_has),
                        "{id} says {m:?}, wanted {message_has:?}"
                    );
                }
                std::cmp::Ordering::Greater => {
                    assert_eq!(s, "skip", "{id}: {}", self.json);
                    assert_eq!(self.message(id), format!("not run: {failed} failed"));
                }
            }
        }
    }
}

fn run_cmd(mut c: Command) -> Run {
    let t = Instant::now();
    let out: Output = c.output().unwrap();
    let took = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}\nstderr: {stderr}"));
    Run {
        json,
        code: out.status.code().unwrap_or(-1),
        took,
        stderr,
    }
}

fn join_check(opts: &[&str], command: &[String]) -> Run {
    let mut c = Command::new(bin());
    c.arg("join-check")
        .args(opts)
        .args(["-o", "json", "--"])
        .args(command);
    run_cmd(c)
}

fn join_check_in(ns: &Netns, opts: &[&str], command: &[String]) -> Run {
    let mut c = ns.command(bin().to_str().unwrap());
    c.arg("join-check")
        .args(opts)
        .args(["-o", "json", "--"])
        .args(command);
    run_cmd(c)
}

/// Every format of the same join-check run, with -v logs: none may contain the secret.
fn assert_secret_never_shown(command: &[String]) {
    for format in ["table", "json", "junit", "markdown"] {
        let out = Command::new(bin())
            .args(["join-check", "-v", "--timeout", "3", "-o", format, "--"])
            .args(command)
            .output()
            .unwrap();
        for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            let text = String::from_utf8_lossy(text);
            assert!(
                !text.contains(SECRET),
                "{format} {stream} shows the secret:\n{text}"
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("join.parse"),
            "{format} rendered no report: {stdout}"
        );
    }
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn bad_token_format_fails_parse_without_showing_the_secret() {
    let upper = "a24a11.0E6B932B0907DEFF";
    let r = join_check(&[], &join_cmd("127.0.0.1:6443", upper, GUIDE_HASH));
    r.fails_at(
        "join.parse",
        "the secret must be 16 characters of [a-z0-9] (it has upper-case letters)",
    );
    assert!(
        !r.json.to_string().contains("0E6B932B0907DEFF"),
        "{}",
        r.json
    );
    assert!(r.message("join.parse").contains("a24a11.****************"));
    let short = join_check(&[], &join_cmd("127.0.0.1:6443", "a24a11.0e6b", GUIDE_HASH));
    short.fails_at("join.parse", "(it has 4)");
}

#[test]
fn bad_hash_format_fails_parse() {
    let r = join_check(&[], &join_cmd("127.0.0.1:6443", TOKEN, "sha256:1ca7fbf4"));
    r.fails_at(
        "join.parse",
        "expected a 32 byte SHA-256 hash (64 hex digits), found 8 hex digits",
    );
    let r = join_check(&[], &join_cmd("127.0.0.1:6443", TOKEN, "1ca7fbf4"));
    r.fails_at("join.parse", "expected \"format:hex-value\"");
}

#[test]
fn nothing_listening_is_refused() {
    let port = closed_port();
    let r = join_check(
        &[],
        &join_cmd(&format!("127.0.0.1:{port}"), TOKEN, GUIDE_HASH),
    );
    r.fails_at(
        "join.endpoint",
        "refused: the host answers but nothing listens",
    );
    assert_eq!(r.status("join.parse"), "pass");
}

#[test]
fn one_quoted_argument_is_the_same_command() {
    let port = closed_port();
    let words = join_cmd(&format!("127.0.0.1:{port}"), TOKEN, GUIDE_HASH);
    let quoted = join_check(
        &[],
        &[format!(
            "{} \\\n  --ignore-preflight-errors Swap",
            words.join(" ")
        )],
    );
    let split = join_check(&[], &words);
    for id in STEPS {
        assert_eq!(quoted.status(id), split.status(id), "{id}");
    }
    assert!(
        quoted.result("join.parse")["evidence"]
            .to_string()
            .contains("--ignore-preflight-errors")
    );
}

#[test]
fn what_is_not_a_join_command_exits_2() {
    for cmd in [
        &["kubeadm", "init"][..],
        &["kubeadm", "join", "--discovery-file", "x.conf"],
        &["kubeadm 'join"],
    ] {
        let out = Command::new(bin())
            .args(["join-check", "--"])
            .args(cmd)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        assert!(out.stdout.is_empty());
        assert!(!out.stderr.is_empty());
    }
    let out = Command::new(bin())
        .args(["join-check", "--timeout", "0", "--"])
        .args(guide())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn no_format_shows_the_secret_when_parse_or_connect_fails() {
    let port = closed_port();
    assert_secret_never_shown(&join_cmd(&format!("127.0.0.1:{port}"), TOKEN, GUIDE_HASH));
    assert_secret_never_shown(&join_cmd(&format!("127.0.0.1:{port}"), TOKEN, "sha256:bad"));
    // A token in the endpoint's place (arguments swapped) is still masked.
    assert_secret_never_shown(&join_cmd(TOKEN, TOKEN, GUIDE_HASH));
}

#[test]
fn the_guides_command_from_a_node_without_a_route_is_unreachable() {
    if !can_run_privileged(&["ip"]) {
        return;
    }
    let node = Netns::new("jn");
    let r = join_check_in(&node, &["--timeout", "5"], &guide());
    assert_eq!(r.status("join.parse"), "pass", "{}", r.json);
    r.fails_at(
        "join.endpoint",
        "192.168.1.2:6443 is unreachable from this node",
    );
    assert!(
        r.took < Duration::from_secs(5),
        "no route fails at once: {:?}",
        r.took
    );
}

/// A node and a control plane at the guide's addresses, joined by a veth pair; `rule` is the control
/// plane's firewall rule for port 6443 (iptables INPUT).
fn guide_network(rule: &[&str]) -> (Netns, Netns) {
    let node = Netns::new("jn");
    let cp = Netns::new("jn");
    veth(&node, "192.168.1.10/24", &cp, "192.168.1.2/24");
    if !rule.is_empty() {
        let mut args = vec!["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "6443"];
        args.extend_from_slice(rule);
        cp.exec(&args);
    }
    (node, cp)
}

#[test]
fn a_firewall_that_drops_6443_times_out_within_the_timeout() {
    if !can_run_privileged(&["ip", "iptables"]) {
        return;
    }
    let (node, _cp) = guide_network(&["-j", "DROP"]);
    let r = join_check_in(&node, &["--timeout", "2"], &guide());
    r.fails_at("join.endpoint", "timed out after 2.0 s");
    assert!(
        r.took < Duration::from_secs(3),
        "ended in {:?}, over --timeout + 1 s",
        r.took
    );
    assert!(
        r.took >= Duration::from_millis(1900),
        "gave up early: {:?}",
        r.took
    );
}

#[test]
fn a_firewall_that_rejects_or_no_listener_are_told_apart() {
    if !can_run_privileged(&["ip", "iptables"]) {
        return;
    }
    let (node, _cp) = guide_network(&["-j", "REJECT", "--reject-with", "icmp-host-unreachable"]);
    join_check_in(&node, &["--timeout", "5"], &guide())
        .fails_at("join.endpoint", "is unreachable from this node");
    let (node, _cp) = guide_network(&[]);
    join_check_in(&node, &["--timeout", "5"], &guide()).fails_at(
        "join.endpoint",
        "refused: the host answers but nothing listens on port 6443",
    );
}
