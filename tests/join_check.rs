//! `k8sdoctor join-check` end to end: each failure mode fails its own step with its own message and
//! skips the later ones; the token secret never reaches any output or bundle; a run recorded with
//! `--bundle` replays with `--from-bundle` after its server is gone, dialling and opening nothing. The
//! guide's join command (192.168.1.2:6443) is dialled only inside network namespaces these tests create.

mod support;

use std::{
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    Netns,
    apiserver::{ApiServer, CaKey, Scenario, TlsFault},
    archive::{replay_under_strace, unpack, without_source},
    bin, fixtures,
    harness::require,
    openssl::ca_pin,
    veth,
};

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
    Run {
        took: t.elapsed(),
        ..run_cmd_output(out)
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

/// Every format of the same join-check run, with -v logs: none may contain `SECRET`.
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

fn bad_hash_format_fails_parse() {
    let r = join_check(&[], &join_cmd("127.0.0.1:6443", TOKEN, "sha256:1ca7fbf4"));
    r.fails_at(
        "join.parse",
        "expected a 32 byte SHA-256 hash (64 hex digits), found 8 hex digits",
    );
    let r = join_check(&[], &join_cmd("127.0.0.1:6443", TOKEN, "1ca7fbf4"));
    r.fails_at("join.parse", "expected \"format:hex-value\"");
}

fn nothing_listening_is_refused_by_address_or_name() {
    let port = closed_port();
    for host in ["127.0.0.1", "localhost"] {
        let r = join_check(&[], &join_cmd(&format!("{host}:{port}"), TOKEN, GUIDE_HASH));
        r.fails_at(
            "join.endpoint",
            "refused: the host answers but nothing listens",
        );
        assert_eq!(r.status("join.parse"), "pass");
        let evidence = r.result("join.endpoint")["evidence"].to_string();
        assert!(
            evidence.contains(&format!(":{port}: Connection refused")),
            "{evidence}"
        );
    }
}

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

fn no_format_shows_the_secret_when_parse_or_connect_fails() {
    let port = closed_port();
    assert_secret_never_shown(&join_cmd(&format!("127.0.0.1:{port}"), TOKEN, GUIDE_HASH));
    assert_secret_never_shown(&join_cmd(&format!("127.0.0.1:{port}"), TOKEN, "sha256:bad"));
    // A token in the endpoint's place (arguments swapped) is still masked.
    assert_secret_never_shown(&join_cmd(TOKEN, TOKEN, GUIDE_HASH));
}

fn the_guides_command_from_a_node_without_a_route_is_unreachable() {
    require(&["ip"]);
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

fn a_firewall_that_drops_6443_times_out_within_the_timeout() {
    require(&["ip", "iptables"]);
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

fn a_firewall_that_rejects_or_no_listener_are_told_apart() {
    require(&["ip", "iptables"]);
    let (node, _cp) = guide_network(&["-j", "REJECT", "--reject-with", "icmp-host-unreachable"]);
    join_check_in(&node, &["--timeout", "5"], &guide())
        .fails_at("join.endpoint", "is unreachable from this node");
    let (node, _cp) = guide_network(&[]);
    join_check_in(&node, &["--timeout", "5"], &guide()).fails_at(
        "join.endpoint",
        "refused: the host answers but nothing listens on port 6443",
    );
}

/// The healthy test cluster's valid token (20 h left, usage signing).
const VALID: &str = "abcdef.0123456789abcdef";

/// A join command for a test server: its endpoint, `token`, and the CA pin openssl computes.
fn server_cmd(server: &ApiServer, token: &str) -> Vec<String> {
    join_cmd(
        &server.addr().to_string(),
        token,
        &ca_pin(server.ca.pem.as_bytes()),
    )
}

fn the_happy_path_passes_every_step_for_rsa_and_ecdsa_cas() {
    for key in [CaKey::Rsa, CaKey::Ecdsa] {
        let server = ApiServer::start(Scenario::healthy().ca_key(key));
        // The pin openssl computes is the one the server's own CA code computes.
        assert_eq!(ca_pin(server.ca.pem.as_bytes()), server.ca.pin());
        let r = join_check(&["--timeout", "10"], &server_cmd(&server, VALID));
        assert_eq!(r.code, 0, "{key:?}: {}", r.json);
        for id in STEPS {
            assert_eq!(r.status(id), "pass", "{key:?} {id}: {}", r.json);
        }
        let kind = if key == CaKey::Rsa {
            "RSA 2048"
        } else {
            "ECDSA 256"
        };
        assert!(
            r.result("join.ca-pin")["evidence"]
                .to_string()
                .contains(kind),
            "{}",
            r.json
        );
        assert_eq!(r.json["cluster"]["server"], server.url());
        // Discovery is one anonymous GET of cluster-info, as kubeadm's.
        let reqs = server.requests();
        assert!(
            reqs.iter().any(|l| l.contains(
                "system:anonymous GET /api/v1/namespaces/kube-public/configmaps/cluster-info 200"
            )),
            "{reqs:?}"
        );
    }
}

fn an_unknown_or_expired_token_fails_the_token_step() {
    let server = ApiServer::start(Scenario::healthy());
    let r = join_check(&[], &server_cmd(&server, "zzzzzz.0123456789abcdef"));
    r.fails_at(
        "join.token",
        "token id \"zzzzzz\" is unknown to this cluster or has expired",
    );
    assert!(
        r.result("join.token")["remediation"]
            .as_str()
            .unwrap()
            .contains("kubeadm token create --print-join-command")
    );
    // The guide's token, 26 h after kubeadm init: expired, so no longer signed.
    let broken = ApiServer::start(Scenario::broken());
    join_check(&[], &server_cmd(&broken, TOKEN)).fails_at(
        "join.token",
        "token id \"a24a11\" is unknown to this cluster or has expired",
    );
}

fn a_wrong_secret_fails_the_token_step_with_its_own_message() {
    let server = ApiServer::start(Scenario::healthy());
    let r = join_check(&[], &server_cmd(&server, "abcdef.ffffffffffffffff"));
    r.fails_at("join.token", "the token's secret is wrong");
    assert!(
        !r.json.to_string().contains("ffffffffffffffff"),
        "{}",
        r.json
    );
}

fn a_wrong_hash_fails_the_pin_step_and_shows_the_real_pin() {
    let server = ApiServer::start(Scenario::healthy().ca_key(CaKey::Rsa));
    let r = join_check(
        &[],
        &join_cmd(&server.addr().to_string(), VALID, GUIDE_HASH),
    );
    r.fails_at(
        "join.ca-pin",
        "none of the CA certificates in cluster-info has the public key",
    );
    let evidence = r.result("join.ca-pin")["evidence"].to_string();
    assert!(evidence.contains(GUIDE_HASH), "{evidence}");
    assert!(
        evidence.contains(&ca_pin(server.ca.pem.as_bytes())),
        "{evidence}"
    );
}

fn a_server_certificate_the_ca_does_not_vouch_for_fails_the_pin_step() {
    let server = ApiServer::start(Scenario::healthy().tls_fault(TlsFault::WrongName));
    join_check(&[], &server_cmd(&server, VALID)).fails_at(
        "join.ca-pin",
        &format!("does not name {}", server.addr().ip()),
    );
    let server = ApiServer::start(Scenario::healthy().tls_fault(TlsFault::Expired));
    let r = join_check(&[], &server_cmd(&server, VALID));
    r.fails_at("join.ca-pin", "outside its validity period");
    // The clock step is skipped, so the failure itself shows both clocks.
    let evidence = r.result("join.ca-pin")["evidence"].to_string();
    assert!(
        evidence.contains("the API server's clock (Date header)"),
        "{evidence}"
    );
}

fn a_server_that_accepts_but_never_answers_ends_within_the_timeout() {
    let server = ApiServer::start(Scenario::healthy().blackhole());
    let r = join_check(&["--timeout", "2"], &server_cmd(&server, VALID));
    r.fails_at("join.tls", "the TLS handshake timed out");
    assert!(
        r.took < Duration::from_secs(3),
        "ended in {:?}, over --timeout + 1 s",
        r.took
    );
}

fn unpinned_discovery_warns_and_still_verifies_the_chain() {
    let server = ApiServer::start(Scenario::healthy());
    let cmd: Vec<String> = [
        "kubeadm",
        "join",
        &server.addr().to_string(),
        "--token",
        VALID,
        "--discovery-token-unsafe-skip-ca-verification",
    ]
    .map(String::from)
    .to_vec();
    let r = join_check(&[], &cmd);
    assert_eq!(r.code, 0, "a warning is below --fail-on fail: {}", r.json);
    assert_eq!(r.status("join.parse"), "warn");
    assert_eq!(r.status("join.token"), "pass");
    assert_eq!(r.status("join.ca-pin"), "skip");
    // The pin to put in the command is in the evidence.
    assert!(
        r.result("join.ca-pin")["evidence"]
            .to_string()
            .contains(&ca_pin(server.ca.pem.as_bytes()))
    );
    assert_eq!(join_check(&["--fail-on", "warn"], &cmd).code, 1);
}

fn no_format_shows_the_secret_on_the_happy_path_or_a_wrong_secret() {
    let server = ApiServer::start(Scenario::healthy().bootstrap_token(
        "a24a11",
        SECRET,
        None,
        &["signing", "authentication"],
    ));
    assert_secret_never_shown(&server_cmd(&server, TOKEN));
    let wrong = ApiServer::start(Scenario::healthy().bootstrap_token(
        "a24a11",
        "ffffffffffffffff",
        None,
        &["signing"],
    ));
    assert_secret_never_shown(&server_cmd(&wrong, TOKEN));
}

fn the_guides_command_against_the_guides_cluster_a_day_later() {
    require(&["ip"]);
    let node = Netns::new("jn");
    let cp = Netns::new("jn");
    veth(&node, "192.168.1.10/24", &cp, "192.168.1.2/24");
    let addr = "192.168.1.2:6443".parse().unwrap();
    // kubeadm init printed the guide's command 26 h ago: the token has expired.
    let server = ApiServer::start_in_at(Scenario::broken(), &cp, addr);
    let r = join_check_in(&node, &["--timeout", "5"], &guide());
    r.fails_at(
        "join.token",
        "token id \"a24a11\" is unknown to this cluster or has expired",
    );
    assert_eq!(r.status("join.endpoint"), "pass");
    drop(server);
    // With the token still valid, the guide's hash (for the guide's CA, not this one) fails the pin.
    let fresh = Scenario::healthy().bootstrap_token("a24a11", SECRET, None, &["signing"]);
    let _server = ApiServer::start_in_at(fresh, &cp, addr);
    let r = join_check_in(&node, &["--timeout", "5"], &guide());
    r.fails_at(
        "join.ca-pin",
        "none of the CA certificates in cluster-info has the public key",
    );
}

fn a_name_that_does_not_resolve_fails_the_endpoint_step() {
    require(&["ip"]);
    // A namespace without routes: the lookup cannot reach any DNS server and fails at once.
    let node = Netns::new("jn");
    let r = join_check_in(
        &node,
        &["--timeout", "5"],
        &join_cmd("cp.invalid:6443", TOKEN, GUIDE_HASH),
    );
    r.fails_at("join.endpoint", "cannot resolve cp.invalid");
    assert!(r.took < Duration::from_secs(6), "{:?}", r.took);
}

fn check_points_join_steps_to_join_check() {
    let out = Command::new(bin())
        .args(["check", "--only", "join.token"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("k8sdoctor join-check -- kubeadm join"),
        "{err}"
    );
    let out = Command::new(bin())
        .args(["explain", "join.token"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("kubeadm token create --print-join-command")
    );
}

// --- join-check bundles (docs/bundle.md) ---

/// What a replay must give again: every result but its timing, and the exit code.
fn judged(r: &Run) -> (Vec<Value>, i32) {
    let results = r.json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let mut x = x.clone();
            x.as_object_mut().unwrap().remove("duration_ms");
            x
        })
        .collect();
    (results, r.code)
}

/// `join-check --bundle FILE` of `command` (from `ns` when given), with `opts`.
fn record(ns: Option<&Netns>, bundle: &Path, opts: &[&str], command: &[String]) -> Run {
    let mut o = vec!["--bundle", bundle.to_str().unwrap()];
    o.extend_from_slice(opts);
    match ns {
        Some(ns) => join_check_in(ns, &o, command),
        None => join_check(&o, command),
    }
}

fn replay(bundle: &Path, opts: &[&str]) -> Run {
    let mut c = Command::new(bin());
    c.args([
        "join-check",
        "--from-bundle",
        bundle.to_str().unwrap(),
        "-o",
        "json",
    ])
    .args(opts)
    .env_remove("SOURCE_DATE_EPOCH");
    run_cmd(c)
}

fn each_outcome_replays_with_the_server_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("join.tar.gz");
    let unpinned = |addr: &str| -> Vec<String> {
        [
            "kubeadm",
            "join",
            addr,
            "--token",
            VALID,
            "--discovery-token-unsafe-skip-ca-verification",
        ]
        .map(String::from)
        .to_vec()
    };
    // (what, scenario, command for its address, the step that fails or None)
    type Cmd<'a> = Box<dyn Fn(&ApiServer) -> Vec<String> + 'a>;
    let cases: Vec<(&str, Scenario, Cmd, Option<&str>)> = vec![
        (
            "healthy, RSA",
            Scenario::healthy().ca_key(CaKey::Rsa),
            Box::new(|s| server_cmd(s, VALID)),
            None,
        ),
        (
            "healthy, ECDSA",
            Scenario::healthy().ca_key(CaKey::Ecdsa),
            Box::new(|s| server_cmd(s, VALID)),
            None,
        ),
        (
            "wrong secret",
            Scenario::healthy(),
            Box::new(|s| server_cmd(s, "abcdef.ffffffffffffffff")),
            Some("join.token"),
        ),
        (
            "expired token",
            Scenario::broken(),
            Box::new(|s| server_cmd(s, TOKEN)),
            Some("join.token"),
        ),
        (
            "wrong pin",
            Scenario::healthy(),
            Box::new(|s| join_cmd(&s.addr().to_string(), VALID, GUIDE_HASH)),
            Some("join.ca-pin"),
        ),
        (
            "expired certificate",
            Scenario::healthy().tls_fault(TlsFault::Expired),
            Box::new(|s| server_cmd(s, VALID)),
            Some("join.ca-pin"),
        ),
        (
            "unpinned",
            Scenario::healthy(),
            Box::new(|s| unpinned(&s.addr().to_string())),
            None,
        ),
        (
            "no TLS answer",
            Scenario::healthy().blackhole(),
            Box::new(|s| server_cmd(s, VALID)),
            Some("join.tls"),
        ),
    ];
    for (what, scenario, cmd, fails) in cases {
        let server = ApiServer::start(scenario);
        let command = cmd(&server);
        let rec = record(None, &b, &["--timeout", "2"], &command);
        match fails {
            Some(step) => assert_eq!(rec.status(step), "fail", "{what}: {}", rec.json),
            None => assert!(rec.code == 0, "{what}: {}", rec.json),
        }
        let served = server.requests().len();
        drop(server);
        let rp = replay(&b, &[]);
        assert_eq!(judged(&rp), judged(&rec), "{what}: {}", rp.stderr);
        assert_eq!(rp.json["cluster"], rec.json["cluster"], "{what}");
        assert_eq!(rp.json["host"], rec.json["host"], "{what}");
        // The bundle's report is the recorded run's.
        let members = unpack(&std::fs::read(&b).unwrap());
        let inside: Value = serde_json::from_slice(&members["report.json"]).unwrap();
        let inside = Run {
            json: inside,
            code: rec.code,
            took: Duration::ZERO,
            stderr: String::new(),
        };
        assert_eq!(judged(&inside), judged(&rec), "{what}");
        assert!(served <= 1, "{what}: one GET of cluster-info at most");
        if what == "unpinned" {
            // Report flags are the replay's own: a warning fails at --fail-on warn.
            assert_eq!(replay(&b, &["--fail-on", "warn"]).code, 1);
        }
    }
    // Failures before the network replay too: refused, and a token kubeadm would refuse.
    for (command, step) in [
        (
            join_cmd(&format!("127.0.0.1:{}", closed_port()), TOKEN, GUIDE_HASH),
            "join.endpoint",
        ),
        (
            join_cmd("127.0.0.1:6443", "a24a11.0E6B932B0907DEFF", GUIDE_HASH),
            "join.parse",
        ),
    ] {
        let rec = record(None, &b, &[], &command);
        assert_eq!(rec.status(step), "fail", "{}", rec.json);
        let rp = replay(&b, &[]);
        assert_eq!(judged(&rp), judged(&rec), "{step}");
    }
}

fn no_member_of_a_join_bundle_holds_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("join.tar.gz");
    let server = ApiServer::start(Scenario::healthy().bootstrap_token(
        "a24a11",
        SECRET,
        None,
        &["signing", "authentication"],
    ));
    let cert_key = "7f1a1e5b0c9d4e8f2a3b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f";
    let tls_token = "zyxwvu.98765432zyxwvuts";
    let mut good = server_cmd(&server, TOKEN);
    good.extend(
        [
            "--control-plane",
            "--certificate-key",
            cert_key,
            "--tls-bootstrap-token",
            tls_token,
        ]
        .map(String::from),
    );
    let upper = join_cmd(
        &server.addr().to_string(),
        "a24a11.0E6B932B0907DEFF",
        &server.ca.pin(),
    );
    let swapped = join_cmd(TOKEN, TOKEN, &server.ca.pin());
    let quoted = vec![good.join(" ")];
    for (what, command, secrets) in [
        ("valid", &good, &[SECRET, cert_key, "98765432zyxwvuts"][..]),
        (
            "one quoted word",
            &quoted,
            &[SECRET, cert_key, "98765432zyxwvuts"][..],
        ),
        ("upper-case secret", &upper, &["0E6B932B0907DEFF"][..]),
        ("token as the endpoint", &swapped, &[SECRET][..]),
    ] {
        let rec = record(None, &b, &["-v"], command);
        for s in secrets {
            assert!(!rec.stderr.contains(s), "{what}: stderr shows {s}");
            assert!(
                !rec.json.to_string().contains(s),
                "{what}: report shows {s}"
            );
        }
        let members = unpack(&std::fs::read(&b).unwrap());
        assert!(members.len() > 3, "{what}: {:?}", members.keys());
        for (name, bytes) in &members {
            let text = String::from_utf8_lossy(bytes);
            for s in secrets {
                assert!(!text.contains(s), "{what}: {name} holds {s}:\n{text}");
            }
        }
        let manifest: Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
        assert_eq!(manifest["command"], "join-check", "{what}");
        assert_eq!(manifest["format"], "k8sdoctor-bundle");
        let line = manifest["command_line"].as_str().unwrap();
        assert!(line.contains("join-check --bundle"), "{what}: {line}");
        assert!(line.contains("a24a11.****************"), "{what}: {line}");
        if what == "valid" {
            assert!(line.contains("--certificate-key ****"), "{line}");
            assert_eq!(rec.status("join.token"), "pass", "{}", rec.json);
            // What stands in for the secret: the verdict on the signature, recorded for the token id.
            let calls =
                String::from_utf8_lossy(&members["inputs/join.token/calls.json"]).into_owned();
            assert!(
                calls.contains("jws-kubeconfig-a24a11") && calls.contains("\"valid\""),
                "{calls}"
            );
            assert_eq!(judged(&replay(&b, &[])), judged(&rec));
            // Recording changes nothing the run reports: the answer's size is the size received,
            // though the signature in the recorded body is masked.
            let plain = join_check(&[], command);
            // (Timings and clocks aside: the connect time and both clocks are the run's own.)
            for id in &STEPS[..STEPS.len() - 1] {
                if *id == "join.endpoint" {
                    continue;
                }
                assert_eq!(
                    plain.result(id)["evidence"],
                    rec.result(id)["evidence"],
                    "{id}"
                );
            }
        }
    }
}

/// The replay under strace: it opens the bundle and nothing else, resolves and dials nothing, runs
/// nothing. The endpoint is a name, so a replay that resolved it would show.
fn a_join_replay_opens_nothing_but_the_bundle_and_dials_nothing() {
    require(&["strace"]);
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("join.tar.gz");
    let server = ApiServer::start(Scenario::healthy());
    let command = join_cmd(
        &format!("localhost:{}", server.addr().port()),
        VALID,
        &server.ca.pin(),
    );
    let rec = record(None, &b, &[], &command);
    assert_eq!(rec.status("join.endpoint"), "pass", "{}", rec.json);
    assert_eq!(rec.status("join.cluster-info"), "pass", "{}", rec.json);
    drop(server);
    let out = replay_under_strace(
        &[
            "join-check",
            "--from-bundle",
            b.to_str().unwrap(),
            "-o",
            "json",
        ],
        &b,
        dir.path(),
    );
    let rp = run_cmd_output(out);
    assert_eq!(judged(&rp), judged(&rec), "{}", rp.stderr);
}

/// The guide's command recorded from a node namespace against the guide's cluster, replayed from the
/// host's namespace after both are gone: same verdicts, and nothing dialled there.
fn the_guides_join_recorded_in_a_namespace_replays_outside_it() {
    require(&["ip"]);
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("guide.tar.gz");
    let rec = {
        let node = Netns::new("jn");
        let cp = Netns::new("jn");
        veth(&node, "192.168.1.10/24", &cp, "192.168.1.2/24");
        let fresh = Scenario::healthy().bootstrap_token("a24a11", SECRET, None, &["signing"]);
        let _server = ApiServer::start_in_at(fresh, &cp, "192.168.1.2:6443".parse().unwrap());
        record(Some(&node), &b, &["--timeout", "5"], &guide())
    };
    rec.fails_at(
        "join.ca-pin",
        "none of the CA certificates in cluster-info has the public key",
    );
    assert_eq!(rec.status("join.token"), "pass");
    let rp = replay(&b, &[]);
    assert_eq!(judged(&rp), judged(&rec));
}

/// The same inputs give the same bytes: a join that ends at a refused connect (no clock, no server
/// answer among its inputs) recorded twice at the same SOURCE_DATE_EPOCH; a healthy one is small.
fn same_join_inputs_give_the_same_bytes_and_a_small_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let command = join_cmd(&format!("127.0.0.1:{}", closed_port()), TOKEN, GUIDE_HASH);
    // The same file name (the command line is recorded), in a directory of its own each time.
    let bytes = |sub: &str, epoch: &str| {
        let d = dir.path().join(sub);
        std::fs::create_dir(&d).unwrap();
        let out = Command::new(bin())
            .current_dir(&d)
            .args(["join-check", "-o", "json", "--bundle", "join.tar.gz", "--"])
            .args(&command)
            .env("SOURCE_DATE_EPOCH", epoch)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        std::fs::read(d.join("join.tar.gz")).unwrap()
    };
    let a = bytes("a", "1796688000");
    assert!(a == bytes("b", "1796688000"), "two recordings differ");
    let later = unpack(&bytes("c", "1796774400"));
    for (name, member) in unpack(&a) {
        if name != "manifest.json" && name != "report.json" {
            assert!(member == later[&name], "{name} differs");
        }
    }
    let server = ApiServer::start(Scenario::healthy());
    let b = dir.path().join("healthy.tar.gz");
    assert_eq!(record(None, &b, &[], &server_cmd(&server, VALID)).code, 0);
    let size = std::fs::metadata(&b).unwrap().len();
    assert!(size < 32 << 10, "{size} bytes");
}

/// A bundle without a step's inputs (made before the step recorded them, or edited): that step is
/// `skip: not in the bundle`; without the command, the bundle cannot be replayed at all (exit 2).
fn a_step_the_bundle_has_no_inputs_for_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("join.tar.gz");
    let server = ApiServer::start(Scenario::healthy());
    let rec = record(None, &b, &[], &server_cmd(&server, VALID));
    assert_eq!(rec.code, 0, "{}", rec.json);
    drop(server);
    let bytes = std::fs::read(&b).unwrap();
    let older = dir.path().join("older.tar.gz");
    std::fs::write(&older, without_source(&bytes, "join.token")).unwrap();
    let rp = replay(&older, &[]);
    assert_eq!(rp.status("join.token"), "skip", "{}", rp.json);
    assert_eq!(rp.message("join.token"), "not in the bundle");
    for id in ["join.ca-pin", "join.clock"] {
        assert_eq!(rp.message(id), "not run: join.token was skipped");
    }
    for id in &STEPS[..4] {
        assert_eq!(rp.status(id), "pass", "{id}");
    }
    std::fs::write(&older, without_source(&bytes, "join.parse")).unwrap();
    let out = Command::new(bin())
        .args(["join-check", "--from-bundle", older.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the bundle's join command: not in the bundle"),
        "{err}"
    );
}

fn check_and_join_check_bundles_are_not_interchangeable() {
    let dir = tempfile::tempdir().unwrap();
    let check_b = dir.path().join("check.tar.gz");
    let root = fixtures().join("hosts/centos7-seed-broken");
    let out = Command::new(bin())
        .args(["check", "--offline", "-o", "json", "--root"])
        .arg(&root)
        .arg("--bundle")
        .arg(&check_b)
        .output()
        .unwrap();
    assert!(check_b.exists(), "{}", String::from_utf8_lossy(&out.stderr));
    let join_b = dir.path().join("join.tar.gz");
    record(
        None,
        &join_b,
        &[],
        &join_cmd(&format!("127.0.0.1:{}", closed_port()), TOKEN, GUIDE_HASH),
    );
    for (args, made_by) in [
        (
            vec!["join-check", "--from-bundle", check_b.to_str().unwrap()],
            "check",
        ),
        (
            vec!["check", "--from-bundle", join_b.to_str().unwrap()],
            "join-check",
        ),
    ] {
        let out = Command::new(bin()).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            err.contains(&format!("made by `k8sdoctor {made_by} --bundle`"))
                && err.contains(&format!(
                    "replay it with `k8sdoctor {made_by} --from-bundle FILE`"
                )),
            "{args:?}: {err}"
        );
    }
    // A command besides --from-bundle is refused too: the bundle is the command.
    let out = Command::new(bin())
        .args([
            "join-check",
            "--from-bundle",
            join_b.to_str().unwrap(),
            "--",
            "kubeadm",
            "join",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn run_cmd_output(out: Output) -> Run {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}\nstderr: {stderr}"));
    Run {
        json,
        code: out.status.code().unwrap_or(-1),
        took: Duration::ZERO,
        stderr,
    }
}
// --- end join-check bundles ---

fn main() {
    support::harness::main(vec![
        trial!(bad_token_format_fails_parse_without_showing_the_secret),
        trial!(bad_hash_format_fails_parse),
        trial!(nothing_listening_is_refused_by_address_or_name),
        trial!(one_quoted_argument_is_the_same_command),
        trial!(what_is_not_a_join_command_exits_2),
        trial!(no_format_shows_the_secret_when_parse_or_connect_fails),
        trial!(the_guides_command_from_a_node_without_a_route_is_unreachable),
        trial!(a_firewall_that_drops_6443_times_out_within_the_timeout),
        trial!(a_firewall_that_rejects_or_no_listener_are_told_apart),
        trial!(the_happy_path_passes_every_step_for_rsa_and_ecdsa_cas),
        trial!(an_unknown_or_expired_token_fails_the_token_step),
        trial!(a_wrong_secret_fails_the_token_step_with_its_own_message),
        trial!(a_wrong_hash_fails_the_pin_step_and_shows_the_real_pin),
        trial!(a_server_certificate_the_ca_does_not_vouch_for_fails_the_pin_step),
        trial!(a_server_that_accepts_but_never_answers_ends_within_the_timeout),
        trial!(unpinned_discovery_warns_and_still_verifies_the_chain),
        trial!(no_format_shows_the_secret_on_the_happy_path_or_a_wrong_secret),
        trial!(the_guides_command_against_the_guides_cluster_a_day_later),
        trial!(a_name_that_does_not_resolve_fails_the_endpoint_step),
        trial!(check_points_join_steps_to_join_check),
        trial!(each_outcome_replays_with_the_server_stopped),
        trial!(no_member_of_a_join_bundle_holds_the_secret),
        trial!(a_join_replay_opens_nothing_but_the_bundle_and_dials_nothing),
        trial!(the_guides_join_recorded_in_a_namespace_replays_outside_it),
        trial!(same_join_inputs_give_the_same_bytes_and_a_small_bundle),
        trial!(a_step_the_bundle_has_no_inputs_for_is_skipped),
        trial!(check_and_join_check_bundles_are_not_interchangeable),
    ]);
}
