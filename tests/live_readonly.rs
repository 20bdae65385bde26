//! Live: `check` on `/` changes nothing on the host. Run under `strace -f`, it (and every command it runs)
//! opens no file for writing, binds or listens on no socket but netlink (how `nft` and `ip` read the kernel's
//! tables), loads or removes no kernel module, and renames, unlinks or creates nothing.

mod support;

use std::{fs, process::Command};

use support::{Netns, bin, feed, fixtures, harness::require};

const SYSCALLS: &str = "open,openat,openat2,creat,bind,listen,init_module,finit_module,delete_module,\
rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat,rmdir,link,linkat,symlink,symlinkat,truncate,\
mknod,mknodat";

/// Why one traced line changes the host, or `None` when it only reads.
fn violation(line: &str) -> Option<&'static str> {
    let call = line.split('(').next()?.trim();
    let failed = line.contains(" = -1 ");
    match call {
        "open" | "openat" | "openat2" | "creat" => {
            let writes = ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"]
                .iter()
                .any(|f| line.contains(f));
            (call == "creat" || writes).then_some("opens a file for writing")
        }
        "bind" | "listen" if !line.contains("AF_NETLINK") => Some("binds or listens"),
        // Netfilter writes: nf_tables batches that add or delete, an iptables table replaced.
        "sendmsg" | "sendto" if line.contains("NFT_MSG_NEW") || line.contains("NFT_MSG_DEL") => {
            Some("changes the nf_tables ruleset")
        }
        "setsockopt"
            if line.contains("_SO_SET_REPLACE") || line.contains("_SO_SET_ADD_COUNTERS") =>
        {
            Some("replaces an iptables table")
        }
        "execve" if line.contains("modprobe") => Some("runs modprobe"),
        "init_module" | "finit_module" | "delete_module" => Some("loads or removes a module"),
        _ if failed => None,
        "rename" | "renameat" | "renameat2" | "unlink" | "unlinkat" | "mkdir" | "mkdirat"
        | "rmdir" | "link" | "linkat" | "symlink" | "symlinkat" | "truncate" | "mknod"
        | "mknodat" => Some("changes the filesystem"),
        _ => None,
    }
}

fn the_rules_catch_what_they_should() {
    assert!(
        violation(r#"openat(AT_FDCWD, "/etc/x", O_WRONLY|O_CREAT|O_CLOEXEC, 0666) = 3"#).is_some()
    );
    assert!(violation(r#"openat(AT_FDCWD, "/etc/x", O_RDONLY|O_CLOEXEC) = 3"#).is_none());
    assert!(violation(r#"bind(3, {sa_family=AF_INET, sin_port=htons(80)}, 16) = 0"#).is_some());
    assert!(
        violation(r#"bind(3, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 0"#)
            .is_none()
    );
    assert!(violation(r#"finit_module(3, "", 0) = -1 EPERM (Operation not permitted)"#).is_some());
    assert!(violation(r#"unlinkat(AT_FDCWD, "/run/x", 0) = 0"#).is_some());
    assert!(violation(r#"mkdir("/run/x", 0755) = -1 EEXIST (File exists)"#).is_none());
    assert!(violation(r#"sendmsg(3, {msg_iov=[{iov_base=[{nlmsg_type=NFNL_SUBSYS_NFTABLES<<8|NFT_MSG_NEWRULE, nlmsg_flags=NLM_F_REQUEST}]}]}, 0) = 40"#).is_some());
    assert!(violation(r#"sendto(3, [{nlmsg_len=20, nlmsg_type=NFNL_SUBSYS_NFTABLES<<8|NFT_MSG_GETGEN}], 20, 0, NULL, 0) = 20"#).is_none());
    assert!(
        violation(r#"setsockopt(4, SOL_IP, IPT_SO_SET_REPLACE, "filter", 1024) = 0"#).is_some()
    );
    assert!(
        violation(r#"execve("/sbin/modprobe", ["modprobe", "ip_tables"], 0x0 /* 0 vars */) = 0"#)
            .is_some()
    );
}

fn check_on_the_live_host_writes_nothing() {
    require(&["strace"]);
    let dir = tempfile::tempdir().unwrap();
    // A kubeconfig to a closed loopback port: the cluster area runs (and asks the node's binaries their
    // versions) without reaching any server.
    let kc = dir.path().join("kubeconfig");
    fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:1\"}\n\
         contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\nusers:\n- name: u\n  user: {}\n",
    )
    .unwrap();
    let trace = dir.path().join("trace");
    let report = dir.path().join("report.json");
    let o = Command::new("strace")
        .args(["-f", "-ff", "-qq", "-e", "signal=none", "-e"])
        .arg(format!("trace={SYSCALLS}"))
        .arg("-o")
        .arg(&trace)
        .arg(bin())
        .args(["check", "--timeout", "8", "-o", "json", "--kubeconfig"])
        .arg(&kc)
        .arg("--output-file")
        .arg(&report)
        .output()
        .unwrap();
    let report_text = fs::read_to_string(&report).unwrap_or_default();
    assert!(
        report_text.contains("\"results\""),
        "no report: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut bad = vec![];
    let mut lines = 0;
    for e in fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if !p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("trace.")
        {
            continue;
        }
        for line in fs::read_to_string(&p).unwrap().lines() {
            lines += 1;
            // The report file is the one write asked for.
            if line.contains(&*report.to_string_lossy()) {
                continue;
            }
            if let Some(why) = violation(line) {
                bad.push(format!("{why}: {line}"));
            }
        }
    }
    assert!(lines > 0, "strace traced nothing");
    assert!(
        bad.is_empty(),
        "check changed the host:\n{}",
        bad.join("\n")
    );
}

/// The traced lines of every `trace.*` file in `dir` that change something (the `allowed` path aside).
fn violations(dir: &std::path::Path, allowed: &str) -> (usize, Vec<String>) {
    let mut bad = vec![];
    let mut lines = 0;
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if !p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("trace.")
        {
            continue;
        }
        for line in fs::read_to_string(&p).unwrap().lines() {
            lines += 1;
            if line.contains(allowed) {
                continue;
            }
            if let Some(why) = violation(line) {
                bad.push(format!("{why}: {line}"));
            }
        }
    }
    (lines, bad)
}

/// `check --root ROOT --live-network` inside a namespace holding an iptables-legacy and an nft rule: it reads
/// both (the report cites them) and, traced with every command it runs, changes no rule, opens nothing for
/// writing and loads no module; the rules dump the same before and after.
fn live_network_check_in_a_namespace_changes_nothing() {
    require(&[
        "strace",
        "ip",
        "iptables-legacy",
        "iptables-legacy-save",
        "nft",
    ]);
    let ns = Netns::new("ro");
    ns.exec(&[
        "ip", "link", "add", "roa0", "type", "veth", "peer", "name", "rob0",
    ]);
    ns.exec(&["ip", "addr", "add", "192.168.76.1/24", "dev", "roa0"]);
    ns.exec(&["ip", "link", "set", "roa0", "up"]);
    ns.exec(&[
        "iptables-legacy",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "10250",
        "-j",
        "REJECT",
    ]);
    feed(
        &ns,
        &["nft", "-f", "-"],
        "table inet k8sdro {\n chain input {\n  type filter hook input priority 0; policy accept;\n  tcp dport 6443 reject\n }\n}\n",
    );
    let dump = || {
        let legacy = ns.exec(&["iptables-legacy-save"]).stdout;
        let nft = ns.exec(&["nft", "list", "ruleset"]).stdout;
        // iptables-save's comment lines carry the time.
        let legacy: String = String::from_utf8_lossy(&legacy)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        (legacy, String::from_utf8_lossy(&nft).into_owned())
    };
    let before = dump();
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let report = dir.path().join("report.json");
    let o = ns
        .command("strace")
        .args(["-f", "-ff", "-qq", "-e", "signal=none", "-e"])
        .arg(format!("trace={SYSCALLS},sendmsg,sendto,setsockopt,execve"))
        .arg("-o")
        .arg(&trace)
        .arg(bin())
        .args([
            "check",
            "--live-network",
            "--offline",
            "--role",
            "control-plane",
            "-o",
            "json",
            "--root",
        ])
        .arg(fixtures().join("hosts/centos7-seed-broken"))
        .arg("--output-file")
        .arg(&report)
        .output()
        .unwrap();
    let text = fs::read_to_string(&report).unwrap_or_default();
    assert!(
        text.contains("\"results\""),
        "no report: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Both live rules were read and judged.
    assert!(
        text.contains("rejected by iptables-legacy filter/INPUT #1"),
        "{text}"
    );
    assert!(
        text.contains("rejected by nftables inet k8sdro/input #1"),
        "{text}"
    );
    let (lines, bad) = violations(dir.path(), &report.to_string_lossy());
    assert!(lines > 0, "strace traced nothing");
    assert!(
        bad.is_empty(),
        "check changed the namespace or host:\n{}",
        bad.join("\n")
    );
    assert_eq!(dump(), before, "the rules changed");
}

fn main() {
    support::harness::main(vec![
        trial!(the_rules_catch_what_they_should),
        trial!(check_on_the_live_host_writes_nothing),
        trial!(live_network_check_in_a_namespace_changes_nothing),
    ]);
}
