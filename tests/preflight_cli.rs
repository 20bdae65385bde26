//! The kubeadm-parity checks through the real binary: fixture roots of real kinds of machine (pass and
//! fail per check, JSON snapshots), `--stage`, kubeadm's preflight names in --only/--skip, `explain`.

mod support;

use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use assert_cmd::Command;
use serde_json::Value;
use support::{bin, fixtures};

/// The checks this file covers (the ids: a contract).
const PREFLIGHT: &[&str] = &[
    "ports.in-use",
    "kubeadm.leftover-state",
    "runtime.cri-socket",
    "runtime.cgroup-driver",
    "cgroup.version",
    "host.cpu-memory",
    "host.binaries",
    "host.hostname",
    "proxy.env",
    "sysctl.ipv6-forward",
    "kernel.config",
    "kubelet.service",
    "files.kubeconfig-perms",
];

fn k8sdoctor() -> Command {
    let mut c = Command::new(bin());
    c.env_remove("KUBECONFIG")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env("HOME", "/nonexistent-home");
    c
}

fn root(name: &str) -> String {
    fixtures().join("hosts").join(name).display().to_string()
}

fn run(root: &str, extra: &[&str]) -> (Value, i32) {
    let out = k8sdoctor()
        .args([
            "--root",
            root,
            "--offline",
            "-o",
            "json",
            "--only",
            &PREFLIGHT.join(","),
        ])
        .args(extra)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (v, out.status.code().unwrap())
}

fn status<'a>(r: &'a Value, id: &str) -> &'a str {
    result(r, id)["status"].as_str().unwrap()
}

fn result<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .unwrap_or_else(|| panic!("no result {id} in {r:#}"))
}

fn snapshot(name: &str, r: &Value) {
    insta::assert_json_snapshot!(name, r, {
        ".started_at" => "[time]",
        ".duration_ms" => "[ms]",
        ".results[].duration_ms" => "[ms]",
        ".host.root" => "[root]",
        ".tool.version" => "[version]",
    });
}

#[test]
fn an_installed_ubuntu_control_plane_passes_every_preflight_check() {
    let (r, code) = run(&root("ubuntu2204-kubeadm-healthy"), &[]);
    assert_eq!(r["host"]["stage"], "installed", "kubelet.conf exists");
    for id in PREFLIGHT {
        let want = match *id {
            "kubeadm.leftover-state" | "files.kubeconfig-perms" => "skip",
            _ => "pass",
        };
        assert_eq!(status(&r, id), want, "{id}: {:#}", result(&r, id));
    }
    assert_eq!(code, 0);
    let ports = result(&r, "ports.in-use");
    let ev: Vec<&str> = ports["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(ev.contains(&"/proc/net/tcp6:2: [::]:6443 LISTEN (socket inode 41601) held by pid 1231 (kube-apiserver)"), "{ev:#?}");
    assert!(
        result(&r, "runtime.cri-socket")["evidence"]
            .to_string()
            .contains("not called: --root")
    );
    snapshot("ubuntu2204-kubeadm-healthy", &r);
}

#[test]
fn a_worker_rejoined_without_reset_fails_before_join_and_is_consistent_once_installed() {
    let f = root("debian12-worker-not-reset");
    let (r, code) = run(&f, &["--stage", "pre-join"]);
    assert_eq!(code, 1);
    assert_eq!(r["host"]["stage"], "pre-join");
    for (id, want) in [
        ("ports.in-use", "fail"),
        ("kubeadm.leftover-state", "fail"),
        ("runtime.cri-socket", "fail"),
        ("runtime.cgroup-driver", "fail"),
        ("proxy.env", "warn"),
        ("host.hostname", "warn"),
        ("kubelet.service", "warn"),
    ] {
        assert_eq!(status(&r, id), want, "{id}: {:#}", result(&r, id));
    }
    assert!(
        result(&r, "ports.in-use")["message"]
            .as_str()
            .unwrap()
            .contains("10250 by pid 677 (kubelet)")
    );
    assert!(
        result(&r, "kubeadm.leftover-state")["message"]
            .as_str()
            .unwrap()
            .contains("[ERROR FileAvailable--etc-kubernetes-pki-ca.crt]")
    );
    let text = r.to_string();
    assert!(
        !text.contains("Winter2024"),
        "the proxy password never reaches a report"
    );
    snapshot("debian12-worker-not-reset-pre-join", &r);
    // auto: kubelet.conf exists, so the node is installed: its kubelet on 10250 is expected, and its
    // files are the cluster's own.
    let (r, _) = run(&f, &[]);
    assert_eq!(r["host"]["stage"], "installed");
    assert_eq!(
        status(&r, "ports.in-use"),
        "pass",
        "{:#}",
        result(&r, "ports.in-use")
    );
    assert_eq!(status(&r, "kubeadm.leftover-state"), "skip");
}

#[test]
fn a_raspberry_pi_without_memcg_and_with_1gb_cannot_be_a_control_plane() {
    let (r, _) = run(
        &root("raspberrypi-bookworm-no-memcg"),
        &["--role", "control-plane"],
    );
    assert_eq!(r["host"]["stage"], "pre-init");
    assert_eq!(status(&r, "cgroup.version"), "fail");
    assert!(
        result(&r, "cgroup.version")["message"]
            .as_str()
            .unwrap()
            .contains("missing required cgroups: memory")
    );
    assert_eq!(status(&r, "host.cpu-memory"), "fail");
    assert!(
        result(&r, "host.cpu-memory")["message"]
            .as_str()
            .unwrap()
            .contains("[ERROR Mem]")
    );
    // Raspberry Pi OS builds the config as a module: no file until `modprobe configs`, which we never run.
    assert_eq!(status(&r, "kernel.config"), "skip");
    assert!(
        result(&r, "kernel.config")["message"]
            .as_str()
            .unwrap()
            .contains("never runs `modprobe configs`")
    );
    assert_eq!(status(&r, "kubeadm.leftover-state"), "pass");
    assert_eq!(status(&r, "host.hostname"), "pass");
    snapshot("raspberrypi-bookworm-no-memcg", &r);
}

#[test]
fn an_lxc_guest_is_judged_by_its_cgroup_limits_not_the_hosts_proc() {
    let (r, _) = run(&root("lxc-ubuntu2204-guest"), &["--role", "control-plane"]);
    let cm = result(&r, "host.cpu-memory");
    assert_eq!(cm["status"], "fail");
    let m = cm["message"].as_str().unwrap();
    assert!(m.contains("1.00 CPU(s)") && m.contains("1024 MiB"), "{m}");
    assert!(
        cm["evidence"].to_string().contains("MemTotal 64240 MiB"),
        "/proc shows the host"
    );
    assert_eq!(status(&r, "host.binaries"), "fail");
    assert!(
        result(&r, "host.binaries")["message"]
            .as_str()
            .unwrap()
            .contains("[ERROR FileExisting-losetup]")
    );
    assert_eq!(
        status(&r, "host.hostname"),
        "warn",
        "k8s_cp1 is not a DNS-1123 name"
    );
    assert_eq!(status(&r, "kubelet.service"), "warn");
    assert_eq!(status(&r, "cgroup.version"), "pass");
    snapshot("lxc-ubuntu2204-guest", &r);
}

#[test]
fn alpine_with_openrc_and_a_global_ipv6_address() {
    let (r, _) = run(&root("alpine319-openrc-ipv6"), &[]);
    assert_eq!(status(&r, "kubelet.service"), "pass");
    assert!(
        result(&r, "kubelet.service")["evidence"]
            .to_string()
            .contains("/etc/runlevels/default/kubelet")
    );
    assert_eq!(status(&r, "sysctl.ipv6-forward"), "warn");
    assert!(
        result(&r, "sysctl.ipv6-forward")["evidence"]
            .to_string()
            .contains("2001:db8:56::21/64 on eth0")
    );
    // The healthy node has a global address too, with forwarding on and persisted.
    let (h, _) = run(
        &root("ubuntu2204-kubeadm-healthy"),
        &["--only", "sysctl.ipv6-forward"],
    );
    assert_eq!(status(&h, "sysctl.ipv6-forward"), "pass");
    snapshot("alpine319-openrc-ipv6", &r);
}

/// Copies nothing: builds a root in a temp dir (permissions and gzip files git cannot carry).
fn temp_root() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for p in [
        "etc",
        "home/kube/.kube",
        "etc/kubernetes",
        "proc/sys/kernel",
    ] {
        fs::create_dir_all(d.path().join(p)).unwrap();
    }
    fs::write(
        d.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\nkube:x:1000:1000:Kube Admin,,,:/home/kube:/bin/bash\n",
    )
    .unwrap();
    d
}

fn write_mode(p: &Path, text: &str, mode: u32, uid: u32) -> bool {
    fs::write(p, text).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::chown(p, Some(uid), Some(uid)).is_ok()
}

#[test]
fn kubeconfig_ownership_and_modes() {
    let d = temp_root();
    let r = d.path();
    let conf = r.join("home/kube/.kube/config");
    if !write_mode(&conf, "apiVersion: v1\n", 0o600, 1000) {
        assert!(!support::privileged_required(), "chown needs root");
        eprintln!("skipped: chown to uid 1000 needs root");
        return;
    }
    write_mode(
        &r.join("etc/kubernetes/admin.conf"),
        "apiVersion: v1\n",
        0o600,
        0,
    );
    let (v, _) = run(r.to_str().unwrap(), &["--only", "files.kubeconfig-perms"]);
    assert_eq!(status(&v, "files.kubeconfig-perms"), "pass", "{v:#}");
    // The guide's `cp` without the `chown`: root's file, world-readable.
    write_mode(&conf, "apiVersion: v1\n", 0o644, 0);
    let (v, _) = run(r.to_str().unwrap(), &["--only", "files.kubeconfig-perms"]);
    let f = result(&v, "files.kubeconfig-perms");
    assert_eq!(f["status"], "warn");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("belongs to root, not kube"),
        "{f:#}"
    );
    assert!(
        f["remediation"]
            .as_str()
            .unwrap()
            .contains("chown kube: /home/kube/.kube/config")
    );
    write_mode(&conf, "apiVersion: v1\n", 0o600, 1000);
    write_mode(
        &r.join("etc/kubernetes/admin.conf"),
        "apiVersion: v1\n",
        0o644,
        0,
    );
    let (v, _) = run(r.to_str().unwrap(), &["--only", "files.kubeconfig-perms"]);
    assert!(
        result(&v, "files.kubeconfig-perms")["message"]
            .as_str()
            .unwrap()
            .contains("/etc/kubernetes/admin.conf is 0644")
    );
}

/// A Gentoo-style hand-built kernel exposing /proc/config.gz.
const GENTOO_CONFIG: &str = "#\n# Linux/x86 6.6.13-gentoo Kernel Configuration\n#\nCONFIG_NAMESPACES=y\nCONFIG_NET_NS=y\nCONFIG_PID_NS=y\nCONFIG_IPC_NS=y\nCONFIG_UTS_NS=y\nCONFIG_CGROUPS=y\nCONFIG_CGROUP_CPUACCT=y\nCONFIG_CGROUP_DEVICE=y\nCONFIG_CGROUP_FREEZER=y\nCONFIG_CGROUP_SCHED=y\nCONFIG_CPUSETS=y\nCONFIG_MEMCG=y\nCONFIG_INET=y\nCONFIG_EXT4_FS=y\nCONFIG_PROC_FS=y\nCONFIG_NETFILTER_XT_TARGET_REDIRECT=m\nCONFIG_NETFILTER_XT_MATCH_COMMENT=m\nCONFIG_FAIR_GROUP_SCHED=y\nCONFIG_OVERLAY_FS=y\nCONFIG_CFS_BANDWIDTH=y\nCONFIG_BRIDGE_NETFILTER=y\n# CONFIG_MODULES is not set\n";

fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

#[test]
fn kernel_config_from_proc_config_gz_and_a_kernel_without_modules() {
    let d = temp_root();
    let r = d.path();
    fs::write(r.join("proc/sys/kernel/osrelease"), "6.6.13-gentoo\n").unwrap();
    fs::write(r.join("proc/config.gz"), gzip(GENTOO_CONFIG)).unwrap();
    // br_netfilter built in: the bridge sysctls exist, /proc/modules does not (no module support).
    fs::create_dir_all(r.join("proc/sys/net/bridge")).unwrap();
    for k in ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"] {
        fs::write(r.join("proc/sys/net/bridge").join(k), "1\n").unwrap();
    }
    let root = r.to_str().unwrap();
    let (v, _) = run(
        root,
        &[
            "--only",
            "kernel.config,kernel.br-netfilter,sysctl.bridge-nf-call-iptables",
        ],
    );
    assert_eq!(status(&v, "kernel.config"), "pass", "{v:#}");
    assert!(
        result(&v, "kernel.config")["evidence"][0]
            .as_str()
            .unwrap()
            .starts_with("/proc/config.gz:")
    );
    // Built in is present at every boot: no warning about modules-load.d.
    let br = result(&v, "kernel.br-netfilter");
    assert_eq!(br["status"], "pass", "{br:#}");
    assert!(
        br["evidence"]
            .to_string()
            .contains("CONFIG_MODULES is not set")
    );
    // 1 and nothing setting it otherwise: the kernel default, not reverted by a reboot.
    assert_eq!(
        status(&v, "sysctl.bridge-nf-call-iptables"),
        "pass",
        "{v:#}"
    );
    fs::write(
        r.join("proc/config.gz"),
        gzip(&GENTOO_CONFIG.replace("CONFIG_MEMCG=y", "# CONFIG_MEMCG is not set")),
    )
    .unwrap();
    let (v, _) = run(root, &["--only", "kernel.config"]);
    assert_eq!(status(&v, "kernel.config"), "fail");
    assert!(
        result(&v, "kernel.config")["message"]
            .as_str()
            .unwrap()
            .contains("CONFIG_MEMCG (not set)")
    );
    fs::write(r.join("proc/config.gz"), b"not gzip at all").unwrap();
    let (v, _) = run(root, &["--only", "kernel.config"]);
    assert_eq!(
        status(&v, "kernel.config"),
        "error",
        "a broken config.gz is an error, not a skip"
    );
}

#[test]
fn a_root_without_proc_skips_instead_of_failing() {
    let d = temp_root();
    let (v, _) = run(
        d.path().to_str().unwrap(),
        &["--only", "kernel.br-netfilter,ports.in-use"],
    );
    assert_eq!(status(&v, "kernel.br-netfilter"), "skip", "{v:#}");
    assert_eq!(status(&v, "ports.in-use"), "skip");
}

#[test]
fn kubeadm_preflight_names_select_checks() {
    let f = root("ubuntu2204-kubeadm-healthy");
    let ids = |extra: &[&str]| -> Vec<String> {
        let out = k8sdoctor()
            .args(["--root", &f, "--offline", "-o", "json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.code().unwrap() < 2,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&["--only", "Port-6443"]), ["ports.in-use"]);
    assert_eq!(
        ids(&["--only", "swap,FileContent--proc-sys-net-ipv4-ip_forward"]),
        ["swap.active", "sysctl.ip-forward"]
    );
    assert_eq!(
        ids(&["--only", "SystemVerification"]),
        ["cgroup.version", "kernel.config"]
    );
    assert!(ids(&["--skip", "all"]).is_empty());
    let all = ids(&["--only", "all"]);
    assert_eq!(all.len(), 36, "every host check: {all:?}");
    assert!(!ids(&["--skip", "Swap"]).contains(&"swap.active".to_string()));
    let out = k8sdoctor().args(["--only", "Port-6444"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown name is still a typo"
    );
}

#[test]
fn explain_names_the_kubeadm_equivalent() {
    let out = k8sdoctor()
        .args(["explain", "ports.in-use"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("kubeadm preflight equivalent:\n  Port-6443, Port-10259"),
        "{s}"
    );
    let out = k8sdoctor()
        .args(["explain", "dns.loopback-nameserver"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("none (kubeadm does not check this)"));
}
