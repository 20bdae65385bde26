//! `--root` is confined: fixture roots built here, full of links and paths that would leave the root if
//! followed naively, a FIFO, a device and an oversized file. Each test checks that the inside copy is read (or
//! written), every sentinel file outside the root is byte-identical with its mtime unchanged, no command ran,
//! and the run ended within its `--timeout` with a clear result.

mod support;

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt, symlink},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;
use support::{bin, fixtures, harness::require};

/// A temp dir holding `root/` (the node) and `outside/` (what naive link-following would reach).
struct Layout {
    _top: tempfile::TempDir,
    root: PathBuf,
    out: PathBuf,
}

impl Layout {
    fn new() -> Layout {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("root");
        let out = top.path().join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&out).unwrap();
        Layout {
            _top: top,
            root,
            out,
        }
    }

    /// `root/<rel>`, with its parents.
    fn inside(&self, rel: &str) -> PathBuf {
        let p = self.root.join(rel.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    }

    /// Where an absolute path of the doctor's machine lands when resolved inside the root.
    fn mirrored(&self, abs: &Path) -> PathBuf {
        self.inside(&abs.to_string_lossy())
    }

    fn write_inside(&self, rel: &str, text: &str) {
        fs::write(self.inside(rel), text).unwrap();
    }

    fn write_outside(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.out.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        p
    }

    fn link(&self, rel: &str, target: impl AsRef<Path>) {
        symlink(target, self.inside(rel)).unwrap();
    }
}

/// Every path under `dir` with its kind, bytes (or link target) and mtime.
fn sentinel(dir: &Path) -> BTreeMap<PathBuf, (String, Vec<u8>, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let (kind, bytes) = if m.file_type().is_symlink() {
                (
                    "link",
                    fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else if m.is_dir() {
                stack.push(p.clone());
                ("dir", vec![])
            } else {
                ("file", fs::read(&p).unwrap())
            };
            out.insert(p, (kind.to_string(), bytes, m.modified().unwrap()));
        }
    }
    out
}

/// A PATH of tools that leave a mark when run, so a test sees that no command ran.
struct Tripwire {
    dir: tempfile::TempDir,
}

impl Tripwire {
    fn new(tools: &[&str]) -> Tripwire {
        let dir = tempfile::tempdir().unwrap();
        for t in tools {
            let p = dir.path().join(t);
            fs::write(
                &p,
                format!(
                    "#!/bin/sh\necho {t} >> '{}/ran'\necho 'Kubernetes v9.99.0'\n",
                    dir.path().display()
                ),
            )
            .unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        Tripwire { dir }
    }

    fn path(&self) -> String {
        format!("{}:/usr/bin:/bin", self.dir.path().display())
    }

    fn ran(&self) -> String {
        fs::read_to_string(self.dir.path().join("ran")).unwrap_or_default()
    }
}

const TOOLS: &[&str] = &[
    "kubectl",
    "kubeadm",
    "kubelet",
    "sysctl",
    "swapoff",
    "swapon",
    "modprobe",
    "setenforce",
    "systemctl",
    "iptables",
    "iptables-save",
    "ip6tables",
    "nft",
    "sh",
];

fn run(args: &[&str], path: &str) -> (Output, Duration) {
    run_under(&[], args, path)
}

/// Runs the binary, under `wrap` (a tracer) when it is not empty.
fn run_under(wrap: &[&str], args: &[&str], path: &str) -> (Output, Duration) {
    let t = Instant::now();
    let mut c = match wrap {
        [] => Command::new(bin()),
        [tool, rest @ ..] => {
            let mut c = Command::new(tool);
            c.args(rest).arg(bin());
            c
        }
    };
    let o = c
        .args(args)
        .env("PATH", path)
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    (o, t.elapsed())
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn result<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no result {id}"))
}

fn check_reads_the_inside_copy_through_every_kind_of_link() {
    reads_inside_copies(&[]);
}

/// The same on a kernel without openat2 (before 5.6, e.g. CentOS 7's 3.10): strace makes every openat2 fail
/// with ENOSYS, and pathrs falls back to its O_PATH walk with the same confinement.
fn without_openat2_the_o_path_fallback_confines_the_same() {
    require(&["strace"]);
    let log = tempfile::NamedTempFile::new().unwrap();
    let log_path = log.path().to_str().unwrap().to_string();
    reads_inside_copies(&[
        "strace",
        "-f",
        "-qq",
        "-o",
        &log_path,
        "-e",
        "trace=openat2",
        "-e",
        "inject=openat2:error=ENOSYS",
    ]);
    let traced = fs::read_to_string(log.path()).unwrap();
    assert!(
        traced.contains("openat2(") && traced.contains("ENOSYS"),
        "openat2 was not tried and refused: {traced}"
    );
}

fn reads_inside_copies(wrap: &[&str]) {
    let l = Layout::new();
    let out = l.out.clone();
    // What a naive reader would reach outside the root.
    l.write_outside("resolv.conf", "nameserver 203.0.113.66 # OUTSIDE\n");
    l.write_outside("secret", "OUTSIDE-SECRET-LINE\n");
    l.write_outside("sysctl.d/k8s.conf", "net.ipv4.ip_forward = 1 # OUTSIDE\n");
    l.write_outside("rules.nft", "OUTSIDE-NFT-LINE\n");
    l.write_outside("kubelet-resolv", "nameserver 203.0.113.77 # OUTSIDE\n");
    let before = sentinel(&out);

    // Absolute link to a file: resolves against the root.
    l.link("etc/resolv.conf", out.join("resolv.conf"));
    fs::write(
        l.mirrored(&out.join("resolv.conf")),
        "nameserver 127.0.0.53\n",
    )
    .unwrap();
    // Relative link climbing out: `..` stops at the root.
    l.link("etc/sysconfig/iptables", "../../../outside/secret");
    l.write_inside("outside/secret", "INSIDE-GARBAGE-LINE\n");
    // Directory link.
    l.link("etc/sysctl.d", out.join("sysctl.d"));
    fs::write(
        l.mirrored(&out.join("sysctl.d/k8s.conf")),
        "net.ipv4.ip_forward = 1\n",
    )
    .unwrap();
    // A looping link.
    l.link("etc/os-release", "/etc/os-release");
    // `..` in paths taken from host data: kubelet's resolvConf and an nftables include.
    l.write_inside(
        "var/lib/kubelet/config.yaml",
        &format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nresolvConf: /../../../..{}\n",
            out.join("kubelet-resolv").display()
        ),
    );
    fs::write(
        l.mirrored(&out.join("kubelet-resolv")),
        "nameserver 192.0.2.77\n",
    )
    .unwrap();
    l.write_inside("etc/nftables.conf", "include \"../../outside/rules.nft\"\n");
    l.write_inside("outside/rules.nft", "table inet inside_only {\n}\n");
    l.write_inside("proc/sys/net/ipv4/ip_forward", "1\n");
    l.write_inside("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n");
    fs::copy(
        fixtures().join("hosts/centos7-fix-broken/proc/net/route"),
        l.inside("proc/net/route"),
    )
    .unwrap();

    let wire = Tripwire::new(TOOLS);
    let root = l.root.to_str().unwrap();
    let (o, took) = run_under(
        wrap,
        &[
            "check",
            "--root",
            root,
            "--offline",
            "--timeout",
            "5",
            "-o",
            "json",
        ],
        &wire.path(),
    );
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let report = json(&o);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(sentinel(&out), before, "a file outside the root changed");
    assert_eq!(wire.ran(), "", "a command ran under --root");
    for leak in ["OUTSIDE", "203.0.113."] {
        assert!(
            !text.contains(leak),
            "{leak} leaked into the report: {text}"
        );
    }
    // The inside copies were read: the loopback resolver behind the absolute link, the inside file behind
    // the escaping one (quoted by the parser that rejects it), kubelet's resolvConf inside the root.
    let dns = result(&report, "dns.loopback-nameserver");
    let dns_text = dns.to_string();
    assert!(dns_text.contains("127.0.0.53"), "{dns_text}");
    assert!(dns_text.contains("192.0.2.77"), "{dns_text}");
    assert!(text.contains("INSIDE-GARBAGE-LINE"), "{text}");
    let ipf = result(&report, "sysctl.ip-forward").to_string();
    assert!(ipf.contains("/etc/sysctl.d/k8s.conf"), "{ipf}");
    assert_eq!(report["host"]["os"], "unknown");
    assert!(!text.contains("timed out"), "{text}");
}

fn a_fifo_a_device_and_a_huge_file_are_errors_not_hangs() {
    require(&["mkfifo", "mknod"]);
    let l = Layout::new();
    let root = l.root.to_str().unwrap().to_string();
    let fifo = l.inside("etc/resolv.conf");
    support::sh(&["mkfifo", fifo.to_str().unwrap()]);
    // /dev/zero, as a link to the root's own device node.
    let zero = l.inside("dev/zero");
    support::sh(&["mknod", zero.to_str().unwrap(), "c", "1", "5"]);
    l.link("etc/fstab", "/dev/zero");
    // Swap's /proc/swaps is fine; SELinux reads its own files; a 17 MiB sysctl.conf (sparse).
    l.write_inside("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n");
    let big = fs::File::create(l.inside("etc/sysctl.conf")).unwrap();
    big.set_len(17 << 20).unwrap();
    l.write_inside("proc/sys/net/ipv4/ip_forward", "1\n");
    l.write_inside("etc/selinux/config", "SELINUX=permissive\n");
    let wire = Tripwire::new(TOOLS);
    let (o, took) = run(
        &[
            "check",
            "--root",
            &root,
            "--offline",
            "--timeout",
            "5",
            "-o",
            "json",
        ],
        &wire.path(),
    );
    let report = json(&o);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(wire.ran(), "");
    let msg = |id: &str| {
        let r = result(&report, id);
        (r["status"].as_str().unwrap().to_string(), r.to_string())
    };
    let (s, m) = msg("dns.loopback-nameserver");
    assert_eq!(s, "error", "{m}");
    assert!(m.contains("/etc/resolv.conf is a FIFO"), "{m}");
    let (s, m) = msg("swap.persistent");
    assert_eq!(s, "error", "{m}");
    assert!(m.contains("/etc/fstab is a character device"), "{m}");
    let (_, m) = msg("sysctl.ip-forward");
    assert!(m.contains("larger than 16 MiB"), "{m}");
    // The other areas are not taken down with them.
    let (s, m) = msg("selinux.mode");
    assert_eq!(s, "pass", "{m}");
    let (s, m) = msg("swap.active");
    assert_eq!(s, "pass", "{m}");
    assert!(!o.stdout.windows(9).any(|w| w == b"timed out"));
}

/// A copy of the broken node (git keeps no modes: its fstab is made 0600, a mode the fix must keep).
fn broken_node(l: &Layout) {
    copy_tree(&fixtures().join("hosts/centos7-fix-broken"), &l.root);
    fs::set_permissions(l.root.join("etc/fstab"), fs::Permissions::from_mode(0o600)).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let m = fs::symlink_metadata(&src).unwrap();
        if m.file_type().is_symlink() {
            symlink(fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if m.is_dir() {
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Every target directory `fix` writes in, made a link that leaves the root when followed naively (absolute
/// or `..`-climbing); the inside copy is where the link resolves inside the root, an outside copy is the
/// sentinel.
fn links_out_of_every_target_dir(l: &Layout) {
    let abs = [
        "etc/sysconfig",
        "etc/selinux",
        "etc/systemd/system",
        "etc/sysctl.d",
    ];
    let rel = [
        ("var/lib/kubelet", "../../../outside/kubelet"),
        ("etc/modules-load.d", "../outside/modules-load.d"),
        ("var/lib/k8sdoctor", "../../../outside/k8sdoctor"),
    ];
    for d in abs {
        let name = d.rsplit('/').next().unwrap();
        let outside = l.out.join(name);
        let src = l.root.join(d);
        if src.exists() {
            copy_tree(&src, &outside);
            copy_tree(&src, &l.mirrored(&outside));
            fs::remove_dir_all(&src).unwrap();
        } else {
            fs::create_dir_all(&outside).unwrap();
            fs::create_dir_all(l.mirrored(&outside)).unwrap();
        }
        fs::write(outside.join("SENTINEL"), "outside\n").unwrap();
        l.link(d, &outside);
    }
    for (d, target) in rel {
        let name = target.rsplit('/').next().unwrap();
        let outside = l.out.join(name);
        let inside = l.inside(&format!("outside/{name}"));
        let src = l.root.join(d);
        if src.exists() {
            copy_tree(&src, &outside);
            copy_tree(&src, &inside);
            fs::remove_dir_all(&src).unwrap();
        } else {
            fs::create_dir_all(&outside).unwrap();
            fs::create_dir_all(&inside).unwrap();
        }
        fs::write(outside.join("SENTINEL"), "outside\n").unwrap();
        l.link(d, target);
    }
}

fn fix_writes_through_linked_target_dirs_stay_inside_and_undo_restores() {
    let l = Layout::new();
    broken_node(&l);
    links_out_of_every_target_dir(&l);
    let before_out = sentinel(&l.out);
    let before_root = sentinel(&l.root);
    let wire = Tripwire::new(TOOLS);
    let root = l.root.to_str().unwrap();
    let (o, took) = run(
        &[
            "fix",
            "--root",
            root,
            "--apply",
            "--yes",
            "--timeout",
            "5",
            "-o",
            "json",
        ],
        &wire.path(),
    );
    let v = json(&o);
    assert_eq!(v["outcome"], "applied", "{v:#}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(sentinel(&l.out), before_out, "fix wrote outside the root");
    assert_eq!(wire.ran(), "", "a command ran under --root");
    // Every file the fix writes landed in the inside copy.
    let written: Vec<String> = v["fixes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["steps"].as_array().unwrap())
        .filter(|s| s["state"] == "applied")
        .filter_map(|s| s["path"].as_str().map(String::from))
        .collect();
    for want in [
        "/etc/fstab",
        "/etc/modules-load.d/k8s.conf",
        "/etc/selinux/config",
        "/etc/sysconfig/iptables",
        "/etc/sysctl.d/99-kubernetes.conf",
        "/etc/systemd/system/swapfile.swap",
        "/var/lib/kubelet/config.yaml",
    ] {
        assert!(
            written.iter().any(|w| w == want),
            "{want} not written: {v:#}"
        );
    }
    assert!(
        fs::read_to_string(l.mirrored(&l.out.join("sysctl.d/99-kubernetes.conf")))
            .unwrap()
            .contains("net.ipv4.ip_forward = 1")
    );
    assert!(l.root.join("outside/modules-load.d/k8s.conf").exists());
    let journal = v["journal"].as_str().unwrap();
    assert!(
        journal.starts_with(&fs::canonicalize(&l.root).unwrap().display().to_string()),
        "{journal}"
    );
    assert_eq!(
        fs::read_dir(l.root.join("outside/k8sdoctor/fix"))
            .unwrap()
            .count(),
        1
    );
    // Undo from another working directory with the root given relatively.
    let (o, _) = {
        let t = Instant::now();
        let o = Command::new(bin())
            .current_dir(l.root.parent().unwrap())
            .args(["fix", "--root", "root", "--undo", "--yes", "-o", "json"])
            .env("PATH", wire.path())
            .output()
            .unwrap();
        (o, t.elapsed())
    };
    let u = json(&o);
    assert_eq!(u["outcome"], "undone", "{u:#}");
    assert_eq!(sentinel(&l.out), before_out);
    assert_eq!(wire.ran(), "");
    let after: BTreeMap<_, _> = sentinel(&l.root)
        .into_iter()
        .map(|(p, (k, b, _))| (p, (k, b)))
        .collect();
    let before: BTreeMap<_, _> = before_root
        .into_iter()
        .map(|(p, (k, b, _))| (p, (k, b)))
        .collect();
    assert_eq!(after, before, "undo left the root different");
}

fn a_target_that_cannot_resolve_inside_the_root_refuses_the_run_before_any_change() {
    let l = Layout::new();
    broken_node(&l);
    // modules-load.d links to a directory that exists only outside the root: followed naively the fix would
    // write there; inside the root the link dangles, so the run stops before its first change.
    fs::create_dir_all(l.out.join("modules-load.d")).unwrap();
    l.link("etc/modules-load.d", l.out.join("modules-load.d"));
    fs::write(l.out.join("SENTINEL"), "outside\n").unwrap();
    let before_out = sentinel(&l.out);
    let before_root = sentinel(&l.root);
    let wire = Tripwire::new(TOOLS);
    let root = l.root.to_str().unwrap();
    let (o, _) = run(
        &["fix", "--root", root, "--apply", "--yes", "-o", "json"],
        &wire.path(),
    );
    let v = json(&o);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(v["outcome"], "refused", "{v:#}");
    let m = v["message"].as_str().unwrap();
    assert!(
        m.contains("nothing was changed") && m.contains("/etc/modules-load.d is a link"),
        "{m}"
    );
    assert_eq!(
        sentinel(&l.root),
        before_root,
        "a refused run changed the root"
    );
    assert_eq!(sentinel(&l.out), before_out);
    assert_eq!(wire.ran(), "");
}

fn a_planted_journal_runs_nothing_and_touches_nothing() {
    let l = Layout::new();
    broken_node(&l);
    let victim = l.write_outside("victim", "keep me\n");
    let before_out = sentinel(&l.out);
    let canonical = fs::canonicalize(&l.root).unwrap().display().to_string();
    let jdir = l.inside("var/lib/k8sdoctor/fix/x");
    let jdir = jdir.parent().unwrap();
    let marker = l.out.join("pwned");
    let plant = |name: &str, root: &str, entries: Value, mode: u32| {
        let j = serde_json::json!({
            "version": 2, "started_at": "2099-01-01T00:00:00Z", "root": root,
            "entries": entries, "created_dirs": [], "journal_dirs": []
        });
        let p = jdir.join(name);
        fs::write(&p, serde_json::to_vec(&j).unwrap()).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    };
    let command = serde_json::json!([{
        "kind": "command", "check": "swap.active", "argv": ["true"],
        "undo": ["sh", "-c", format!("touch {}", marker.display())]
    }]);
    let escaping = serde_json::json!([{
        "kind": "file", "check": "swap.persistent",
        "path": format!("/../../..{}", victim.display()),
        "backup": null, "written": {"type": "text", "value": "keep me\n"}
    }]);
    let elsewhere = serde_json::json!([{
        "kind": "file", "check": "swap.persistent", "path": "/etc/fstab",
        "backup": "/etc/shadow", "written": {"type": "absent"}
    }]);
    let wire = Tripwire::new(TOOLS);
    let root = l.root.to_str().unwrap();
    let cases: [(&str, &str, Value, u32, &str); 5] = [
        (
            "fix-20990101T000000Z.json",
            &canonical,
            command,
            0o600,
            "runtime command",
        ),
        (
            "fix-20990102T000000Z.json",
            &canonical,
            escaping,
            0o600,
            "`..`",
        ),
        (
            "fix-20990103T000000Z.json",
            &canonical,
            elsewhere.clone(),
            0o600,
            "not one the fix takes",
        ),
        (
            "fix-20990104T000000Z.json",
            "/",
            serde_json::json!([]),
            0o600,
            "written for the root /",
        ),
        (
            "fix-20990105T000000Z.json",
            &canonical,
            serde_json::json!([]),
            0o646,
            "others may write",
        ),
    ];
    for (name, jroot, entries, mode, why) in cases {
        plant(name, jroot, entries, mode);
        let before_root = sentinel(&l.root);
        let (o, took) = run(
            &["fix", "--root", root, "--undo", "--yes", "--timeout", "5"],
            &wire.path(),
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains("not trusted") && err.contains(why),
            "{name}: {err}"
        );
        assert!(took < Duration::from_secs(5));
        assert_eq!(sentinel(&l.root), before_root, "{name} changed the root");
        fs::remove_file(jdir.join(name)).unwrap();
    }
    // A journal named on the command line outside the journal directory is refused too.
    plant("fix-20990106T000000Z.json", &canonical, elsewhere, 0o600);
    let named = l.out.join("fix-20990106T000000Z.json");
    fs::rename(jdir.join("fix-20990106T000000Z.json"), &named).unwrap();
    let (o, _) = run(
        &[
            "fix",
            "--root",
            root,
            "--undo",
            named.to_str().unwrap(),
            "--yes",
        ],
        &wire.path(),
    );
    fs::remove_file(&named).unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a journal in"));
    assert!(!marker.exists(), "the planted command ran");
    assert_eq!(wire.ran(), "");
    assert_eq!(sentinel(&l.out), before_out);
    assert_eq!(fs::metadata(&victim).unwrap().mode() & 0o777, 0o644);
}

fn node_binaries_under_a_root_are_the_nodes_never_the_containers_path() {
    // A real client older than any other kubectl around, so its version can only come from it.
    let (kubectl, version) = support::kubectl_minor(27);
    let l = Layout::new();
    // kubelet from the dpkg status, kubectl found as a binary and scanned, kubeadm absent.
    l.write_inside(
        "var/lib/dpkg/status",
        "Package: kubelet\nStatus: install ok installed\nVersion: 1.33.2-1.1\n\n\
         Package: kubeadm\nStatus: deinstall ok config-files\nVersion: 1.33.2-1.1\n",
    );
    fs::copy(&kubectl, l.inside("usr/local/bin/kubectl")).unwrap();
    let kc = l.write_outside(
        "kubeconfig",
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:1\"}\n\
         contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\nusers:\n- name: u\n  user: {}\n",
    );
    let wire = Tripwire::new(TOOLS);
    let root = l.root.to_str().unwrap();
    let (o, took) = run(
        &[
            "check",
            "--root",
            root,
            "--only",
            "version.local-binaries",
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--timeout",
            "5",
            "-o",
            "json",
        ],
        &wire.path(),
    );
    let report = json(&o);
    assert!(took < Duration::from_secs(5));
    assert_eq!(wire.ran(), "", "the container's PATH ran");
    let r = result(&report, "version.local-binaries").to_string();
    assert!(r.contains("kubelet v1.33.2"), "{r}");
    assert!(version.starts_with("v1.27."), "{version}");
    assert!(r.contains(&format!("kubectl {version}")), "{r}");
    assert!(r.contains("kubeadm: not installed under the root"), "{r}");
    assert!(!r.contains("9.99"), "{r}");
}

/// In a chroot without /proc (where in-root resolution has nothing to work with) `check --root` is a
/// clear exit 2, not a panic. The binary is static, so the chroot needs nothing else.
fn without_proc_a_root_is_refused_with_the_reason() {
    require(&["chroot"]);
    let top = tempfile::tempdir().unwrap();
    fs::copy(bin(), top.path().join("k8sdoctor")).unwrap();
    fs::create_dir_all(top.path().join("fx/etc")).unwrap();
    fs::write(
        top.path().join("fx/etc/resolv.conf"),
        "nameserver 127.0.0.1\n",
    )
    .unwrap();
    let o = Command::new("chroot")
        .arg(top.path())
        .args(["/k8sdoctor", "check", "--root", "/fx", "--offline"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("this process has no /proc"), "{err}");
}

fn main() {
    support::harness::main(vec![
        trial!(without_proc_a_root_is_refused_with_the_reason),
        trial!(check_reads_the_inside_copy_through_every_kind_of_link),
        trial!(without_openat2_the_o_path_fallback_confines_the_same),
        trial!(a_fifo_a_device_and_a_huge_file_are_errors_not_hangs),
        trial!(fix_writes_through_linked_target_dirs_stay_inside_and_undo_restores),
        trial!(a_target_that_cannot_resolve_inside_the_root_refuses_the_run_before_any_change),
        trial!(a_planted_journal_runs_nothing_and_touches_nothing),
        trial!(node_binaries_under_a_root_are_the_nodes_never_the_containers_path),
    ]);
}
