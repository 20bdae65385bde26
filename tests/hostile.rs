//! Hostile peers and hostile input: the cluster client and join-check against loopback servers that
//! never answer, answer forever, lie or echo; kubeconfigs that are devices, FIFOs or broken YAML. Each
//! run must end within --timeout + 1 s, stay under the memory cap (wait4 rusage of the child) and
//! print no credential in any report format or on stderr.

mod support;

use std::{
    io::Read,
    os::unix::process::ExitStatusExt,
    path::Path,
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use base64::Engine;
use support::{
    bin,
    hostile::{Hostile, Peer},
};

/// Peak resident memory a run may reach, whatever the peer sends.
const MEMORY_CAP_KIB: i64 = 100 << 10;
/// `--timeout` of every run here.
const TIMEOUT_SECS: f64 = 2.0;

const BEARER: &str = "hostile-bearer-Zq8xT4vLw9";
const BASIC_USER: &str = "admin";
const BASIC_PASS: &str = "hostile-PASSW0RD-k3y";
const URL_PASS: &str = "url-P4SS-in-server";
const JOIN_TOKEN: &str = "abcdef.0123456789abcdef";
const FORMATS: &[&str] = &["table", "json", "junit", "markdown"];

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    wall: Duration,
    maxrss_kib: i64,
}

/// Runs the binary with stdout and stderr captured and reaps it with wait4 for its peak RSS.
#[allow(clippy::zombie_processes)] // reaped by wait4 below
fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    // A HOME of its own: kubectl (run for its version) may write a cache under it.
    let home = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn k8sdoctor");
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = pipe(child.stdout.take().map(|p| Box::new(p) as _));
    let err = pipe(child.stderr.take().map(|p| Box::new(p) as _));
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 reaps the child spawned above.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4");
    Run {
        status: ExitStatus::from_raw(status),
        wall: t.elapsed(),
        maxrss_kib: ru.ru_maxrss,
        stdout: support::harness::join(out),
        stderr: support::harness::join(err),
    }
}

/// The bounds every hostile run must keep, and no secret anywhere in what it printed.
fn assert_bounded(what: &str, r: &Run, secrets: &[&str]) {
    let limit = Duration::from_secs_f64(TIMEOUT_SECS + 1.0);
    eprintln!("{what}: {:?}, peak RSS {} KiB", r.wall, r.maxrss_kib);
    assert!(
        r.wall < limit,
        "{what}: took {:?} (limit {limit:?})",
        r.wall
    );
    assert!(
        r.maxrss_kib < MEMORY_CAP_KIB,
        "{what}: peak RSS {} MiB",
        r.maxrss_kib >> 10
    );
    let code = r.status.code();
    assert!(
        matches!(code, Some(0..=2)),
        "{what}: exit {:?}\n{}",
        r.status,
        r.stderr
    );
    for s in secrets {
        assert!(
            !r.stdout.contains(s) && !r.stderr.contains(s),
            "{what}: {s:?} printed\nstdout: {}\nstderr: {}",
            r.stdout,
            r.stderr
        );
    }
}

/// A kubeconfig for `server` with a CA, a bearer token and a Basic user (two users, `auth` picks).
fn kubeconfig(dir: &Path, server: &str, ca_pem: &str, auth: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let path = dir.join(format!("kubeconfig-{auth}"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: bearer\n  user:\n    token: {BEARER}\n- name: basic\n  user:\n    username: {BASIC_USER}\n    password: {BASIC_PASS}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: {auth}\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

fn check(kc: &str, format: &str) -> Run {
    run(
        &[
            "check",
            "--only",
            "cluster.api-reachable,cluster.nodes-ready,cluster.dns,cluster.cni,token.expiry,cluster.dashboard-admin",
            "--kubeconfig",
            kc,
            "--timeout",
            &TIMEOUT_SECS.to_string(),
            "-o",
            format,
        ],
        &[],
    )
}

fn result(r: &Run, id: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr));
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .cloned()
        .unwrap()
}

#[test]
fn the_cluster_client_survives_every_hostile_peer() {
    let dir = tempfile::tempdir().unwrap();
    for peer in [
        Peer::Blackhole,
        Peer::Slowloris,
        Peer::Endless,
        Peer::HugeLength,
        Peer::Garbage,
        Peer::Echo,
        Peer::EndlessLists,
    ] {
        let srv = Hostile::start(peer, true);
        let kc = kubeconfig(
            dir.path(),
            &format!("https://{}", srv.addr()),
            &srv.ca.pem,
            "bearer",
        );
        let r = check(&kc, "json");
        let what = format!("check against {peer:?}");
        assert_bounded(&what, &r, &[BEARER]);
        if peer == Peer::EndlessLists {
            // Every list is cut off, all at once: still under the memory cap. The node list is
            // decoded as it streams, so an endless body that is no NodeList stops at its first
            // byte instead of at the size limit; either way the error says why.
            let nodes = result(&r, "cluster.nodes-ready");
            assert_eq!(nodes["status"], "error", "{what}: {nodes}");
            let msg = nodes["message"].as_str().unwrap();
            assert!(
                msg.contains("8 MiB limit per response") || msg.contains("is not a list"),
                "{what}: {nodes}"
            );
            continue;
        }
        let api = result(&r, "cluster.api-reachable");
        assert_eq!(api["status"], "fail", "{what}: {api}");
        let msg = api["message"].as_str().unwrap();
        match peer {
            Peer::Endless | Peer::HugeLength => {
                assert!(msg.contains("8 MiB limit per response"), "{what}: {msg}")
            }
            Peer::Blackhole | Peer::Slowloris => {
                assert!(msg.contains("timeout"), "{what}: {msg}")
            }
            Peer::Echo => assert!(msg.contains("you sent"), "{what}: the echo is shown: {msg}"),
            _ => {}
        }
    }
}

#[test]
fn echoed_credentials_are_masked_in_every_format_and_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Hostile::start(Peer::Echo, true);
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{BASIC_USER}:{BASIC_PASS}"));
    let secrets = [BEARER, BASIC_PASS, basic.as_str()];
    for auth in ["bearer", "basic"] {
        let kc = kubeconfig(
            dir.path(),
            &format!("https://{}", srv.addr()),
            &srv.ca.pem,
            auth,
        );
        for format in FORMATS {
            let r = check(&kc, format);
            let what = format!("echo, {auth}, -o {format}");
            assert_bounded(&what, &r, &secrets);
            assert!(r.stdout.contains("you sent"), "{what}: {}", r.stdout);
            assert!(
                r.stdout.to_lowercase().contains("authorization: ") && r.stdout.contains("****"),
                "{what}: the header is shown, masked: {}",
                r.stdout
            );
        }
    }
}

#[test]
fn url_userinfo_is_masked_in_cluster_server_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Hostile::start(Peer::Garbage, false);
    let kc = kubeconfig(
        dir.path(),
        &format!("https://admin:{URL_PASS}@{}", srv.addr()),
        "",
        "bearer",
    );
    for format in FORMATS {
        let r = check(&kc, format);
        assert_bounded(&format!("userinfo, -o {format}"), &r, &[URL_PASS, BEARER]);
        assert!(
            r.stdout.contains("admin:****@"),
            "-o {format}: {}",
            r.stdout
        );
    }
}

#[test]
fn join_check_survives_every_hostile_peer() {
    for peer in [
        Peer::Blackhole,
        Peer::Slowloris,
        Peer::Endless,
        Peer::HugeLength,
        Peer::Garbage,
        Peer::Echo,
    ] {
        let srv = Hostile::start(peer, true);
        let endpoint = srv.addr().to_string();
        for format in FORMATS {
            let r = run(
                &[
                    "join-check",
                    "-v",
                    "--timeout",
                    &TIMEOUT_SECS.to_string(),
                    "-o",
                    format,
                    "--",
                    "kubeadm",
                    "join",
                    &endpoint,
                    "--token",
                    JOIN_TOKEN,
                    "--discovery-token-unsafe-skip-ca-verification",
                ],
                &[],
            );
            let what = format!("join-check against {peer:?}, -o {format}");
            assert_bounded(&what, &r, &["0123456789abcdef"]);
            assert_eq!(
                r.status.code(),
                Some(1),
                "{what}: a hostile peer fails a step"
            );
        }
    }
}

#[test]
fn kubeconfig_devices_fifos_and_huge_files_are_refused_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success(),
        "mkfifo"
    );
    let huge = dir.path().join("huge");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(5 << 20)
        .unwrap();
    for (path, why) in [
        ("/dev/zero", "character device"),
        (fifo.to_str().unwrap(), "FIFO"),
        (huge.to_str().unwrap(), "larger than 4 MiB"),
        (dir.path().to_str().unwrap(), "directory"),
    ] {
        for env in [false, true] {
            let args = ["check", "--only", "cluster.api-reachable", "--timeout", "2"];
            let r = if env {
                run(&args, &[("KUBECONFIG", path)])
            } else {
                let mut a = args.to_vec();
                a.extend(["--kubeconfig", path]);
                run(&a, &[])
            };
            let what = format!("kubeconfig {path} (KUBECONFIG: {env})");
            assert_bounded(&what, &r, &[]);
            assert_eq!(r.status.code(), Some(2), "{what}: {}", r.stderr);
            assert!(r.stderr.contains(why), "{what}: {}", r.stderr);
        }
    }
}

#[test]
fn a_broken_kubeconfig_is_named_by_line_never_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("config");
    std::fs::write(
        &kc,
        format!("apiVersion: v1\nusers:\n- name: u\n  user:\n    token: [{BEARER}\n    password: {BASIC_PASS}\n"),
    )
    .unwrap();
    let r = run(
        &[
            "check",
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--only",
            "cluster.api-reachable",
        ],
        &[],
    );
    assert_bounded("broken kubeconfig", &r, &[BEARER, BASIC_PASS]);
    assert_eq!(r.status.code(), Some(2));
    assert!(
        r.stderr.contains(kc.to_str().unwrap()) && r.stderr.contains("line "),
        "{}",
        r.stderr
    );
}

/// An exec plugin that prints its "credential" and fails: its output is never shown.
#[test]
fn exec_plugin_output_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("plugin.sh");
    std::fs::write(
        &plugin,
        format!("#!/bin/sh\necho '{{\"token\": \"{BEARER}\"}}'\necho 'stderr {BASIC_PASS}' >&2\nexit 3\n"),
    )
    .unwrap();
    Command::new("chmod")
        .args(["755", plugin.to_str().unwrap()])
        .status()
        .unwrap();
    let kc = dir.path().join("config");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: e\ncurrent-context: x\nusers:\n- name: e\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      interactiveMode: Never\n",
            plugin.display()
        ),
    )
    .unwrap();
    for format in FORMATS {
        let r = check(kc.to_str().unwrap(), format);
        assert_bounded(
            &format!("exec plugin, -o {format}"),
            &r,
            &[BEARER, BASIC_PASS],
        );
        assert!(
            r.stdout.contains("exec plugin"),
            "-o {format}: {}",
            r.stdout
        );
    }
}

/// `fix` (dry run) does not read the kubeconfig's exec plugin or talk to the API server.
#[test]
fn fix_dry_run_runs_no_exec_plugin_and_sends_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let plugin = dir.path().join("plugin.sh");
    std::fs::write(
        &plugin,
        format!("#!/bin/sh\necho x >> {}\nexit 1\n", marker.display()),
    )
    .unwrap();
    Command::new("chmod")
        .args(["755", plugin.to_str().unwrap()])
        .status()
        .unwrap();
    let srv = Hostile::start(Peer::Echo, false);
    let kc = dir.path().join("config");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nclusters:\n- name: c\n  cluster:\n    server: http://{}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: e\ncurrent-context: x\nusers:\n- name: e\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      interactiveMode: Never\n",
            srv.addr(),
            plugin.display()
        ),
    )
    .unwrap();
    let root = support::fixtures().join("hosts/centos7-fix-broken");
    let r = run(
        &["fix", "--root", root.to_str().unwrap(), "-o", "json"],
        &[("KUBECONFIG", kc.to_str().unwrap())],
    );
    assert_bounded("fix dry run", &r, &[]);
    assert!(r.stdout.contains("dry-run"), "{}\n{}", r.stdout, r.stderr);
    assert!(!marker.exists(), "fix ran the exec plugin");
    // Naming a cluster check brings the cluster back in (and with it the plugin).
    let r = run(
        &[
            "fix",
            "--root",
            root.to_str().unwrap(),
            "cluster.api-reachable",
            "-o",
            "json",
        ],
        &[("KUBECONFIG", kc.to_str().unwrap())],
    );
    assert_bounded("fix naming a cluster check", &r, &[]);
    assert!(
        marker.exists(),
        "a named cluster check talks to the cluster"
    );
}

#[test]
fn join_check_bad_shorthand_and_stray_token_are_exit_1_and_masked() {
    let r = run(
        &["join-check", "--", "kubeadm", "join", "h:6443", "-é"],
        &[],
    );
    assert_bounded("-é", &r, &[]);
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    assert!(
        r.stdout.contains("unknown shorthand flag: -é"),
        "{}",
        r.stdout
    );
    for format in FORMATS {
        let r = run(
            &[
                "join-check",
                "-v",
                "-o",
                format,
                "--",
                "kubeadm",
                "join",
                "h:6443",
                "a24a11.0e6b932b0907",
                "--discovery-token-unsafe-skip-ca-verification",
            ],
            &[],
        );
        assert_bounded(&format!("stray token, -o {format}"), &r, &["0e6b932b0907"]);
        assert!(
            r.stdout.contains("looks like a token"),
            "-o {format}: {}",
            r.stdout
        );
    }
    // clap's own usage errors quote arguments: masked too.
    let r = run(&["check", "--bogus=a24a11.0e6b932b0907deff"], &[]);
    assert_eq!(r.status.code(), Some(2));
    assert_bounded("usage error", &r, &["0e6b932b0907deff"]);
}

/// A resolv.conf of 50,000 loopback lines: the report keeps 25 evidence lines and counts the rest.
#[test]
fn evidence_is_bounded_end_to_end() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(
        root.path().join("etc/resolv.conf"),
        "nameserver 127.0.0.1\n".repeat(50_000),
    )
    .unwrap();
    let r = run(
        &[
            "check",
            "--root",
            root.path().to_str().unwrap(),
            "--only",
            "dns.loopback-nameserver",
            "-o",
            "json",
        ],
        &[],
    );
    assert_bounded("50k-line resolv.conf", &r, &[]);
    assert!(
        r.stdout.len() < 64 << 10,
        "report of {} bytes",
        r.stdout.len()
    );
    let dns = result(&r, "dns.loopback-nameserver");
    let ev = dns["evidence"].as_array().unwrap();
    assert!(ev.len() <= 26, "{} evidence lines", ev.len());
    assert!(
        ev.last().unwrap().as_str().unwrap().contains("more"),
        "{dns}"
    );
}
