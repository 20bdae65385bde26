//! `check --bundle` / `check --from-bundle` end to end through the binary: a fixture root with planted
//! credentials recorded and replayed after the root is gone; a cluster run against the test API server
//! replayed after the server is stopped and kubectl is gone; no secret in any member; the same bytes from
//! the same inputs; replays that open nothing but the bundle (strace); hostile bundles refused with exit 2.

mod support;

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;
use support::{
    apiserver::{ADMIN_TOKEN, ApiServer, Scenario},
    archive::{pack, repack, replay_under_strace, unpack, without_source},
    bin, fixtures,
    harness::{self, require},
};

fn k8sdoctor(path_env: &str, home: &Path) -> Command {
    let mut c = Command::new(bin());
    c.env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("SOURCE_DATE_EPOCH")
        .env("HOME", home)
        .env("PATH", path_env);
    c
}

fn run(args: &[&str], dir: &Path) -> (Output, Value) {
    let out = k8sdoctor("/usr/bin:/bin", dir).args(args).output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

/// (id, status, message) of every result.
fn verdicts(v: &Value) -> Vec<(String, String, String)> {
    v["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {v}"))
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("id"), s("status"), s("message"))
        })
        .collect()
}

fn status<'a>(v: &'a Value, id: &str) -> &'a str {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no {id}"))["status"]
        .as_str()
        .unwrap()
}

/// The CentOS 7 fixture checked offline and recorded to `DIR/NAME`.
fn record_centos(dir: &Path, name: &str) -> (Output, Value, PathBuf) {
    let root = fixtures().join("hosts/centos7-seed-broken");
    let b = dir.join(name);
    let (out, v) = run(
        &[
            "--root",
            root.to_str().unwrap(),
            "--offline",
            "-o",
            "json",
            "--bundle",
            b.to_str().unwrap(),
        ],
        dir,
    );
    (out, v, b)
}

/// Credentials planted in a root, each a string that must never reach a bundle.
const ROOT_SECRETS: &[&str] = &[
    "Pr0xyPa55w0rd",
    "Dr0pinPa55w0rd",
    "KubeletT0kenS3cret",
    "S2V5RGF0YVNlY3JldA",
    "KcPassw0rdS3cret",
    "IdT0kenS3cretValue",
    "RefreshT0kenS3cret",
    "ClientS3cretValue",
    "ExecEnvS3cretValue",
    "ExecArgS3cretValue",
    "0123456789abcdef",
    "T0mlRegistryPass",
    "MIIEpAIBAAKCAQEAs3cr3tk3y",
];

/// The CentOS 7 fixture copied, with a credential of each kind planted where the sources read.
fn planted_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    let ok = Command::new("cp")
        .args(["-a"])
        .arg(fixtures().join("hosts/centos7-seed-broken"))
        .arg(&root)
        .status()
        .unwrap();
    assert!(ok.success());
    let put = |p: &str, text: &str| {
        let f = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    };
    put(
        "/etc/environment",
        "HTTPS_PROXY=http://proxyuser:Pr0xyPa55w0rd@proxy.example:3128\nNO_PROXY=localhost,127.0.0.1\n",
    );
    put(
        "/etc/systemd/system/kubelet.service.d/http-proxy.conf",
        "[Service]\nEnvironment=\"HTTP_PROXY=http://dropin:Dr0pinPa55w0rd@proxy.example:3128\"\n",
    );
    put(
        "/etc/kubernetes/kubelet.conf",
        "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: https://192.168.1.2:6443\ncontexts:\n- name: k\n  context:\n    cluster: k\n    user: u\ncurrent-context: k\nusers:\n- name: u\n  user:\n    token: KubeletT0kenS3cret\n    client-key-data: S2V5RGF0YVNlY3JldA==\n- name: p\n  user:\n    username: admin\n    password: KcPassw0rdS3cret\n- name: o\n  user:\n    auth-provider:\n      name: oidc\n      config:\n        id-token: IdT0kenS3cretValue\n        refresh-token: RefreshT0kenS3cret\n        client-secret: ClientS3cretValue\n- name: e\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: get-token\n      args:\n      - --secret\n      - ExecArgS3cretValue\n      env:\n      - name: API_KEY\n        value: ExecEnvS3cretValue\n",
    );
    put(
        "/var/lib/kubelet/kubeadm-flags.env",
        "# joined with: kubeadm join --token abcdef.0123456789abcdef\nKUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///run/containerd/containerd.sock\"\n",
    );
    put(
        "/etc/containerd/config.toml",
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"r.example\".auth]\n  username = \"puller\"\n  password = \"T0mlRegistryPass\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n",
    );
    put(
        "/etc/kubernetes/pki/apiserver.key",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAs3cr3tk3y\n-----END RSA PRIVATE KEY-----\n",
    );
    root
}

/// No secret in any member; returns the members.
fn assert_no_secret(bundle: &Path, secrets: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let members = unpack(&std::fs::read(bundle).unwrap());
    for (name, bytes) in &members {
        let text = String::from_utf8_lossy(bytes);
        for s in secrets {
            assert!(!text.contains(s), "{name} holds the secret {s}:\n{text}");
        }
    }
    members
}

fn fixture_root_replays_after_the_root_is_gone_with_no_secret_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let root = planted_root(dir.path());
    let r = root.to_str().unwrap();
    let b = dir.path().join("node.tar.gz");
    let (plain, pv) = run(&["--root", r, "--offline", "-o", "json"], dir.path());
    let (rec, rv) = run(
        &[
            "--root",
            r,
            "--offline",
            "-o",
            "json",
            "--bundle",
            b.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(verdicts(&pv), verdicts(&rv), "recording changes no verdict");
    assert_eq!(code(&plain), code(&rec));
    assert_eq!(code(&rec), 1, "{}", String::from_utf8_lossy(&rec.stderr));
    let members = assert_no_secret(&b, ROOT_SECRETS);
    // What the checks need is kept: the proxy's host and user, the kubeconfig's server, a key's presence.
    let env = String::from_utf8_lossy(&members["inputs/proxy-env/files/etc/environment"]);
    assert!(
        env.contains("http://proxyuser:****@proxy.example:3128"),
        "{env}"
    );
    let kc =
        String::from_utf8_lossy(&members["inputs/proxy-env/files/etc/kubernetes/kubelet.conf"]);
    assert!(
        kc.contains("server: https://192.168.1.2:6443") && kc.contains("client-key-data: ****"),
        "{kc}"
    );
    let m: Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    assert_eq!(m["format"], "k8sdoctor-bundle");
    assert_eq!(m["format_version"], 1);
    assert_eq!(m["tool"]["name"], "k8sdoctor");
    assert!(m["command_line"].as_str().unwrap().contains("--bundle"));
    let resolv = m["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "inputs/dns/files/etc/resolv.conf")
        .expect("resolv.conf is a member");
    assert_eq!(resolv["source"], "dns");
    assert_eq!(resolv["host_file"]["path"], "/etc/resolv.conf");
    assert_eq!(resolv["host_file"]["kind"], "file");
    assert!(resolv["host_file"]["mode"].as_str().unwrap().len() == 4);
    assert_eq!(resolv["sha256"].as_str().unwrap().len(), 64);
    // Only what the selected checks read: an --only run records only its sources.
    let small = dir.path().join("small.tar.gz");
    run(
        &[
            "--root",
            r,
            "--offline",
            "--only",
            "swap.active",
            "--bundle",
            small.to_str().unwrap(),
        ],
        dir.path(),
    );
    let sm: Value =
        serde_json::from_slice(&unpack(&std::fs::read(&small).unwrap())["manifest.json"]).unwrap();
    let sources: Vec<&str> = sm["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(sources, ["kubelet-config", "swap"], "{sm:#}");

    std::fs::remove_dir_all(&root).unwrap();
    let (rep, rpv) = run(
        &["--from-bundle", b.to_str().unwrap(), "-o", "json"],
        dir.path(),
    );
    assert_eq!(verdicts(&rv), verdicts(&rpv));
    assert_eq!(
        code(&rep),
        code(&rec),
        "{}",
        String::from_utf8_lossy(&rep.stderr)
    );
    assert_eq!(rpv["host"], rv["host"]);
}

fn same_inputs_give_the_same_bytes_and_a_small_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixtures().join("hosts/centos7-seed-broken");
    let b = dir.path().join("b.tar.gz");
    let record = |epoch: Option<&str>| {
        let mut c = k8sdoctor("/usr/bin:/bin", dir.path());
        if let Some(e) = epoch {
            c.env("SOURCE_DATE_EPOCH", e);
        }
        let out = c
            .args(["--root", root.to_str().unwrap(), "--offline", "-o", "json"])
            .args(["--bundle", b.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::read(&b).unwrap()
    };
    let first = record(Some("1765000000"));
    let second = record(Some("1765000000"));
    assert!(first == second, "the same inputs gave other bytes");
    assert!(
        first.len() < 256 << 10,
        "the CentOS 7 bundle is {} bytes",
        first.len()
    );
    // Without a fixed clock only created_at differs.
    let a = unpack(&record(None));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b2 = unpack(&record(None));
    let created = |m: &BTreeMap<String, Vec<u8>>| {
        let v: Value = serde_json::from_slice(&m["manifest.json"]).unwrap();
        v["created_at"].as_str().unwrap().to_string()
    };
    let (ca, cb) = (created(&a), created(&b2));
    assert_ne!(ca, cb);
    let steady = |m: &BTreeMap<String, Vec<u8>>, c: &str| -> BTreeMap<String, String> {
        m.iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).replace(c, "CREATED")))
            .collect()
    };
    // The manifest lists the report's digest, which holds created_at: compare all but digests.
    let strip = |m: BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.into_iter()
            .map(|(k, v)| {
                if k == "manifest.json" {
                    let mut j: Value = serde_json::from_str(&v).unwrap();
                    for x in j["members"].as_array_mut().unwrap() {
                        if x["name"] == "report.json" {
                            x["sha256"] = Value::Null;
                        }
                    }
                    (k, j.to_string())
                } else {
                    (k, v)
                }
            })
            .collect()
    };
    assert_eq!(strip(steady(&a, &ca)), strip(steady(&b2, &cb)));
}

/// The replay under strace: no open but the bundle, no socket or connect, no exec but its own.
fn a_replay_opens_nothing_but_the_bundle_and_runs_and_dials_nothing() {
    require(&["strace"]);
    let dir = tempfile::tempdir().unwrap();
    let (rec, rv, b) = record_centos(dir.path(), "b.tar.gz");
    let out = replay_under_strace(
        &["--from-bundle", b.to_str().unwrap(), "-o", "json"],
        &b,
        dir.path(),
    );
    let rpv: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdicts(&rv), verdicts(&rpv));
    assert_eq!(code(&out), code(&rec));
}

fn replay_honours_formats_only_skip_and_fail_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixtures().join("hosts/centos7-seed-broken");
    let r = root.to_str().unwrap();
    let b = dir.path().join("b.tar.gz");
    run(
        &["--root", r, "--offline", "--bundle", b.to_str().unwrap()],
        dir.path(),
    );
    let bs = b.to_str().unwrap();
    for args in [
        vec!["--only", "dns.loopback-nameserver", "--fail-on", "warn"],
        vec!["--only", "dns.loopback-nameserver"],
        vec!["--skip", "swap.active,swap.persistent", "--fail-on", "warn"],
        vec!["--only", "selinux.mode,swap.active"],
    ] {
        let (live, lv) = run(
            &[&["--root", r, "--offline", "-o", "json"][..], &args].concat(),
            dir.path(),
        );
        let (rep, rv) = run(
            &[&["--from-bundle", bs, "-o", "json"][..], &args].concat(),
            dir.path(),
        );
        assert_eq!(verdicts(&lv), verdicts(&rv), "{args:?}");
        assert_eq!(code(&live), code(&rep), "{args:?}");
    }
    let (_, v) = run(
        &["--from-bundle", bs, "-o", "json", "--skip", "swap.active"],
        dir.path(),
    );
    assert!(verdicts(&v).iter().all(|(id, ..)| id != "swap.active"));
    for (fmt, needle) in [
        ("junit", "<testsuite"),
        ("markdown", "`swap.active`"),
        ("table", "swap.active"),
    ] {
        let (out, _) = run(&["--from-bundle", bs, "-o", fmt, "--no-color"], dir.path());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(needle), "{fmt}:\n{text}");
        assert_eq!(code(&out), 1);
    }
}

/// A check whose source is not in the bundle (added to the catalog after the bundle was made) skips.
fn a_check_the_bundle_has_no_inputs_for_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (_, rv, b) = record_centos(dir.path(), "b.tar.gz");
    assert_eq!(status(&rv, "swap.active"), "fail");
    let older = dir.path().join("older.tar.gz");
    std::fs::write(&older, without_source(&std::fs::read(&b).unwrap(), "swap")).unwrap();
    let (out, v) = run(
        &["--from-bundle", older.to_str().unwrap(), "-o", "json"],
        dir.path(),
    );
    for id in ["swap.active", "swap.persistent"] {
        let r = v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap();
        assert_eq!(r["status"], "skip", "{r}");
        assert!(
            r["message"].as_str().unwrap().contains("not in the bundle"),
            "{r}"
        );
    }
    // Every other verdict stands.
    let others = |v: &Value| {
        verdicts(v)
            .into_iter()
            .filter(|(id, ..)| !id.starts_with("swap."))
            .collect::<Vec<_>>()
    };
    assert_eq!(others(&rv), others(&v));
    assert_eq!(code(&out), 1);
}

/// Hostile and broken bundles: exit 2 with the problem named, and nothing written anywhere.
fn hostile_bundles_are_refused_with_exit_2_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, good) = record_centos(dir.path(), "good.tar.gz");
    let good = std::fs::read(&good).unwrap();
    let zeros = vec![0u8; 24 << 20];
    let bomb = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let mut t = Vec::new();
        {
            let mut b = tar::Builder::new(&mut t);
            let mut h = tar::Header::new_gnu();
            h.set_size(zeros.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "manifest.json", &zeros[..]).unwrap();
            b.finish().unwrap();
        }
        e.write_all(&t).unwrap();
        e.finish().unwrap()
    };
    let r = tar::EntryType::Regular;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "damaged or truncated",
        ),
        (
            "dotdot",
            pack(&[("../../escape", r, b"x"), ("manifest.json", r, b"{}")]),
            "not a plain name",
        ),
        (
            "absolute",
            pack(&[("/etc/cron.d/evil", r, b"x")]),
            "not a plain name",
        ),
        (
            "symlink",
            pack(&[("inputs/x", tar::EntryType::Symlink, b"")]),
            "symbolic link",
        ),
        ("bomb", bomb, "decompression bomb"),
        (
            "foreign",
            pack(&[("README", r, b"not ours")]),
            "not a k8sdoctor bundle",
        ),
        ("not-gzip", b"plain text\n".to_vec(), "not gzip"),
        (
            "tampered",
            {
                let mut m = unpack(&good);
                let f = m.get_mut("inputs/dns/files/etc/resolv.conf").unwrap();
                f.extend_from_slice(b"nameserver 203.0.113.9\n");
                repack(&m)
            },
            "does not match its manifest",
        ),
    ];
    let bad_dir = tempfile::tempdir().unwrap();
    for (name, bytes, says) in cases {
        let bad = bad_dir.path().join(format!("{name}.tar.gz"));
        std::fs::write(&bad, &bytes).unwrap();
        let cwd = tempfile::tempdir().unwrap();
        let out = k8sdoctor("/usr/bin:/bin", cwd.path())
            .current_dir(cwd.path())
            .env("TMPDIR", cwd.path())
            .args(["--from-bundle", bad.to_str().unwrap(), "-o", "json"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 2, "{name}: {err}");
        assert!(err.contains(says), "{name}: {err}");
        assert!(out.stdout.is_empty(), "{name}");
        assert_eq!(
            std::fs::read_dir(cwd.path()).unwrap().count(),
            0,
            "{name} wrote into the working directory"
        );
        assert_eq!(std::fs::read_dir(bad_dir.path()).unwrap().count(), 1);
        std::fs::remove_file(&bad).unwrap();
    }
    assert!(!dir.path().join("escape").exists());
}

/// Fake kubectl/kubeadm/kubelet printing versions, in a directory for PATH.
fn fake_bins(dir: &Path) -> PathBuf {
    let bindir = dir.join("bin");
    std::fs::create_dir_all(&bindir).unwrap();
    for (name, body) in [
        (
            "kubectl",
            "echo '{\"clientVersion\":{\"major\":\"1\",\"gitVersion\":\"v1.24.17\"}}'",
        ),
        ("kubeadm", "echo v1.33.2"),
        ("kubelet", "echo Kubernetes v1.32.0"),
    ] {
        let p = bindir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    bindir
}

const CLUSTER_CHECKS: &str = "cluster.api-reachable,version.kubectl-skew,version.kubelet-skew,version.local-binaries,token.expiry,cluster.nodes-ready,cluster.dns,cluster.cni,cluster.dashboard-admin";

/// A cluster run against the test API server, replayed with the server stopped and kubectl gone: the
/// kubectl version and the token facts come from the bundle; no credential of the kubeconfig or the API
/// is in it.
fn cluster_run_replays_with_the_server_stopped_and_kubectl_gone() {
    let server = ApiServer::start(Scenario::broken().bootstrap_token(
        "k8sdoc",
        "s3cr3tf0rbund1es",
        None,
        &["authentication"],
    ));
    let dir = tempfile::tempdir().unwrap();
    let bins = fake_bins(dir.path());
    let kc = server.kubeconfig(dir.path());
    // Other users' credentials of every kind in the same kubeconfig.
    let mut text = std::fs::read_to_string(&kc).unwrap();
    text.push_str("- name: p\n  user:\n    username: admin\n    password: KcPassw0rdS3cret\n    client-key-data: S2V5RGF0YVNlY3JldA==\n- name: o\n  user:\n    auth-provider:\n      name: oidc\n      config:\n        id-token: IdT0kenS3cretValue\n- name: e\n  user:\n    exec:\n      command: get-token\n      env:\n      - name: API_KEY\n        value: ExecEnvS3cretValue\n");
    std::fs::write(&kc, text).unwrap();
    let b = dir.path().join("cluster.tar.gz");
    let path = format!("{}:/usr/bin:/bin", bins.display());
    let rec = k8sdoctor(&path, dir.path())
        .args([
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--only",
            CLUSTER_CHECKS,
        ])
        .args(["-o", "json", "--bundle", b.to_str().unwrap()])
        .output()
        .unwrap();
    let rv: Value = serde_json::from_slice(&rec.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&rec.stderr)));
    assert_eq!(status(&rv, "cluster.api-reachable"), "pass", "{rv:#}");
    assert_eq!(status(&rv, "version.kubectl-skew"), "fail", "{rv:#}");
    assert_eq!(status(&rv, "token.expiry"), "warn", "{rv:#}");
    drop(server);
    let members = assert_no_secret(
        &b,
        &[
            ADMIN_TOKEN,
            "0e6b932b0907deff",
            "s3cr3tf0rbund1es",
            "KcPassw0rdS3cret",
            "S2V5RGF0YVNlY3JldA",
            "IdT0kenS3cretValue",
            "ExecEnvS3cretValue",
        ],
    );
    let api = String::from_utf8_lossy(&members["inputs/cluster/calls.json"]);
    assert!(api.contains("a24a11"), "the token id is kept: {api}");
    // kubectl gone: PATH holds nothing.
    let empty = tempfile::tempdir().unwrap();
    let rep = k8sdoctor(empty.path().to_str().unwrap(), dir.path())
        .args(["--from-bundle", b.to_str().unwrap(), "-o", "json"])
        .output()
        .unwrap();
    let pv: Value = serde_json::from_slice(&rep.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&rep.stderr)));
    assert_eq!(verdicts(&rv), verdicts(&pv));
    assert_eq!(code(&rep), code(&rec));
    assert_eq!(pv["cluster"], rv["cluster"]);
    let skew = pv["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "version.kubectl-skew")
        .unwrap();
    assert!(skew.to_string().contains("v1.24.17"), "{skew}");
}

fn main() {
    harness::main(vec![
        trial!(fixture_root_replays_after_the_root_is_gone_with_no_secret_recorded),
        trial!(same_inputs_give_the_same_bytes_and_a_small_bundle),
        trial!(a_replay_opens_nothing_but_the_bundle_and_runs_and_dials_nothing),
        trial!(replay_honours_formats_only_skip_and_fail_on),
        trial!(a_check_the_bundle_has_no_inputs_for_is_skipped),
        trial!(hostile_bundles_are_refused_with_exit_2_and_nothing_written),
        trial!(cluster_run_replays_with_the_server_stopped_and_kubectl_gone),
    ])
}
