//! Live: `check` on `/` changes nothing on the host. Run under `strace -f`, it (and every command it runs)
//! opens no file for writing, binds or listens on no socket but netlink (how `nft` and `ip` read the kernel's
//! tables), loads or removes no kernel module, and renames, unlinks or creates nothing.

mod support;

use std::{fs, process::Command};

use support::{bin, harness::require};

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

fn main() {
    support::harness::main(vec![
        trial!(the_rules_catch_what_they_should),
        trial!(check_on_the_live_host_writes_nothing),
    ]);
}
