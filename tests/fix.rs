//! `k8sdoctor fix` on copies of a broken host root: dry run, apply, idempotence, undo, rollback on a fault.

mod support;

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt, symlink},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use serde_json::Value;
use support::{bin, fixtures};

/// Every path under a root with its type, mode and bytes (or link target): "byte-identical" means equal snapshots.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (String, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let entry = if m.file_type().is_symlink() {
                (
                    "link".into(),
                    0,
                    fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else if m.is_dir() {
                stack.push(p.clone());
                ("dir".into(), m.mode(), vec![])
            } else {
                ("file".into(), m.mode(), fs::read(&p).unwrap())
            };
            out.insert(rel, entry);
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let m = fs::symlink_metadata(&src).unwrap();
        if m.file_type().is_symlink() {
            symlink(fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if m.is_dir() {
            fs::create_dir(&dst).unwrap();
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A private copy of the broken node's root. git keeps no modes but the executable bit, so the
/// copy's fstab is made 0600 here: the fix must keep a mode it did not choose.
fn broken_node() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixtures().join("hosts/centos7-fix-broken"), dir.path());
    fs::set_permissions(
        dir.path().join("etc/fstab"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    dir
}

fn fix(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.arg("fix")
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn statuses(root: &Path) -> BTreeMap<String, String> {
    let o = Command::new(bin())
        .arg("--root")
        .arg(root)
        .args(["-o", "json"])
        .output()
        .unwrap();
    json(&o)["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const FILE_FIXED: &[&str] = &[
    "dns.loopback-nameserver",
    "firewall.forward",
    "firewall.kubelet-port",
    "kernel.br-netfilter",
    "selinux.mode",
    "swap.persistent",
    "sysctl.bridge-nf-call-iptables",
    "sysctl.ip-forward",
];

fn dry_run_shows_commands_and_diffs_and_changes_nothing() {
    let root = broken_node();
    let before = snapshot(root.path());
    let o = fix(root.path(), &[], &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("$ swapoff /dev/dm-1"), "{text}");
    assert!(text.contains("+#/dev/mapper/centos-swap swap"), "{text}");
    assert!(
        text.contains("+++ /etc/sysctl.d/99-kubernetes.conf"),
        "{text}"
    );
    assert!(text.contains("nothing was changed"), "{text}");
    assert_eq!(snapshot(root.path()), before);
}

fn the_plan_as_json_for_review() {
    let root = broken_node();
    let v = json(&fix(root.path(), &["-o", "json"], &[]));
    assert_eq!(v["schema_version"], "1");
    assert_eq!(
        (v["mode"].as_str(), v["outcome"].as_str()),
        (Some("dry-run"), Some("planned"))
    );
    let ids: Vec<&str> = v["fixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 9, "{ids:?}");
    // The two sysctl fixes edit one file: the second starts from the first one's result.
    let steps: Vec<&Value> = v["fixes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["steps"].as_array().unwrap())
        .collect();
    let sysctl_d: Vec<&&Value> = steps
        .iter()
        .filter(|s| s["path"] == "/etc/sysctl.d/99-kubernetes.conf")
        .collect();
    assert_eq!(sysctl_d.len(), 2);
    assert_eq!(sysctl_d[1]["old"]["value"], sysctl_d[0]["new"]["value"]);
    let swapoff = steps
        .iter()
        .find(|s| s["kind"] == "command" && s["argv"][0] == "swapoff")
        .unwrap();
    assert_eq!(
        (swapoff["state"].as_str(), swapoff["undo"][0].as_str()),
        (Some("skipped"), Some("swapon"))
    );
    let mut redacted = v.clone();
    redacted["root"] = "[root]".into();
    redacted["tool"]["version"] = "[version]".into();
    for f in redacted["fixes"].as_array_mut().unwrap() {
        for s in f["steps"].as_array_mut().unwrap() {
            if !s["detail"].is_null() {
                s["detail"] = "[detail]".into();
            }
        }
    }
    insta::assert_json_snapshot!("broken_node_plan", redacted);
}

fn apply_fixes_the_files_then_finds_nothing_to_do_and_undo_restores_every_byte() {
    let root = broken_node();
    let original = snapshot(root.path());
    let o = fix(root.path(), &["--apply", "--yes", "-o", "json"], &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json(&o);
    assert_eq!(v["outcome"], "applied");
    // Before → after, from the checks run again.
    let verify: BTreeMap<&str, (&str, &str)> = v["verify"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["id"].as_str().unwrap(),
                (x["before"].as_str().unwrap(), x["after"].as_str().unwrap()),
            )
        })
        .collect();
    for id in FILE_FIXED {
        assert_eq!(verify[id].1, "pass", "{id}: {verify:?}");
    }
    // swap.active is runtime only: skipped under --root, so it still fails.
    assert_eq!(verify["swap.active"], ("fail", "fail"));
    let now = statuses(root.path());
    for id in FILE_FIXED {
        assert_eq!(now[*id], "pass", "{id}");
    }
    // Mode and every other fstab line kept byte for byte.
    let fstab = root.path().join("etc/fstab");
    assert_eq!(fs::metadata(&fstab).unwrap().mode() & 0o777, 0o600);
    let old = fs::read_to_string(fixtures().join("hosts/centos7-fix-broken/etc/fstab")).unwrap();
    let new = fs::read_to_string(&fstab).unwrap();
    let expect: String = old
        .split_inclusive('\n')
        .enumerate()
        .map(|(i, l)| {
            if [11, 13, 16].contains(&(i + 1)) {
                format!("#{l}")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_eq!(new, expect);
    assert!(new.contains("#\t/swapfile\tnone\tswap\tsw,pri=5  0   0   \r\n"));
    // The original is kept beside the file, and the journal records it.
    let backups: Vec<_> = fs::read_dir(root.path().join("etc"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("fstab.k8sdoctor-")
        })
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(fs::read_to_string(backups[0].path()).unwrap(), old);
    let journal = v["journal"].as_str().unwrap().to_string();
    assert!(
        journal.starts_with(
            &root
                .path()
                .join("var/lib/k8sdoctor/fix")
                .display()
                .to_string()
        )
    );

    let applied = snapshot(root.path());
    let again = json(&fix(root.path(), &["--apply", "--yes", "-o", "json"], &[]));
    assert_eq!(again["outcome"], "nothing_to_do", "{again:#}");
    assert!(again["journal"].is_null());
    assert_eq!(snapshot(root.path()), applied);

    let u = fix(root.path(), &["--undo", "--yes", "-o", "json"], &[]);
    assert_eq!(
        u.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&u.stdout)
    );
    let u = json(&u);
    assert_eq!(u["outcome"], "undone");
    assert!(
        u["reversals"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["ok"] == true)
    );
    assert_eq!(snapshot(root.path()), original);
}

fn undo_of_a_named_journal_and_a_missing_one() {
    let root = broken_node();
    let original = snapshot(root.path());
    let jdir = tempfile::tempdir().unwrap();
    let jd = jdir.path().to_str().unwrap();
    let v = json(&fix(
        root.path(),
        &[
            "sysctl.ip-forward",
            "--apply",
            "--yes",
            "--journal-dir",
            jd,
            "-o",
            "json",
        ],
        &[],
    ));
    assert_eq!(v["fixes"].as_array().unwrap().len(), 1);
    let journal = v["journal"].as_str().unwrap();
    assert!(journal.starts_with(jd));
    // A journal named outside the journal directory in use is not trusted: nothing is undone.
    let o = fix(root.path(), &["--undo", journal, "--yes"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a journal in"));
    let o = fix(
        root.path(),
        &["--undo", journal, "--journal-dir", jd, "--yes"],
        &[],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(snapshot(root.path()), original);
    let o = fix(root.path(), &["--undo", "--yes"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no journal to undo"));
}

fn a_fault_between_steps_rolls_the_run_back_whole() {
    let changes = {
        let root = broken_node();
        json(&fix(root.path(), &["-o", "json"], &[]))["fixes"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|f| f["steps"].as_array().unwrap())
            .filter(|s| s["state"] != "skipped")
            .count()
    };
    assert_eq!(changes, 9);
    for n in 1..changes {
        let root = broken_node();
        let original = snapshot(root.path());
        let o = fix(
            root.path(),
            &["--apply", "--yes", "-o", "json"],
            &[("K8SDOCTOR_FIX_FAULT_AFTER", &n.to_string())],
        );
        assert_eq!(o.status.code(), Some(1), "fault after {n}");
        let v = json(&o);
        assert_eq!(v["outcome"], "rolled_back", "{v:#}");
        let states: Vec<&str> = v["fixes"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|f| f["steps"].as_array().unwrap())
            .map(|s| s["state"].as_str().unwrap())
            .collect();
        assert_eq!(
            states.iter().filter(|s| **s == "rolled_back").count(),
            n,
            "{states:?}"
        );
        assert_eq!(states.iter().filter(|s| **s == "failed").count(), 1);
        // Every file is wholly old again: no temp file, backup, journal or new directory is left.
        assert_eq!(snapshot(root.path()), original, "fault after {n}");
    }
}

fn undo_never_overwrites_a_later_hand_edit() {
    let root = broken_node();
    let cfg = root.path().join("etc/selinux/config");
    // Apply, then edit the fixed file by hand: the undo leaves that edit and says so.
    let v = json(&fix(
        root.path(),
        &["selinux.mode", "--apply", "--yes", "-o", "json"],
        &[],
    ));
    assert_eq!(v["outcome"], "applied");
    fs::write(&cfg, "SELINUX=disabled\n").unwrap();
    let o = fix(root.path(), &["--undo", "--yes", "-o", "json"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let u = json(&o);
    assert_eq!(u["outcome"], "failed");
    assert!(
        u["reversals"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("changed after the fix wrote it")
    );
    assert_eq!(fs::read_to_string(&cfg).unwrap(), "SELINUX=disabled\n");
}

fn apply_without_a_terminal_needs_yes_and_ids_are_checked() {
    let root = broken_node();
    let before = snapshot(root.path());
    let o = fix(root.path(), &["--apply"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("without --yes"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = fix(root.path(), &["swap.nope"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown check id"));
    assert_eq!(snapshot(root.path()), before);
}

/// Runs `fix` on a pseudo-terminal (util-linux `script`) and types `answer` at the y/N prompt.
fn fix_on_a_terminal(root: &Path, args: &str, answer: &str) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        support::harness::not_run("needs util-linux `script` for a pseudo-terminal".to_string());
    }
    let cmd = format!(
        "'{}' fix --root '{}' {args}",
        bin().display(),
        root.display()
    );
    let mut child = Command::new("timeout")
        .args(["30", "script", "-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    Some(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn apply_on_a_terminal_asks_first() {
    let root = broken_node();
    let before = snapshot(root.path());
    let Some(out) = fix_on_a_terminal(root.path(), "selinux.mode --apply", "n\n") else {
        return;
    };
    assert!(out.contains("Apply these changes? [y/N]"), "{out}");
    assert!(out.contains("not applied: declined"), "{out}");
    assert_eq!(snapshot(root.path()), before);
    let out = fix_on_a_terminal(root.path(), "selinux.mode --apply", "y\n").unwrap();
    assert!(out.contains("1 change(s) applied"), "{out}");
    assert!(
        fs::read_to_string(root.path().join("etc/selinux/config"))
            .unwrap()
            .contains("\nSELINUX=permissive\n")
    );
}

const DEBIAN_NFTABLES_CONF: &str = "#!/usr/sbin/nft -f\n\nflush ruleset\n\ntable inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tct state established,related accept\n\t\tiif \"lo\" accept\n\t\ttcp dport 22 accept\n\t\treject with icmpx type admin-prohibited\n\t}\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t}\n}\n";

/// `nft -c -f`: whether nft itself accepts a ruleset file (None when nft cannot run here).
fn nft_accepts(path: &Path) -> Option<bool> {
    let o = Command::new("nft")
        .arg("-c")
        .arg("-f")
        .arg(path)
        .output()
        .ok()?;
    Some(o.status.success())
}

fn a_saved_nftables_ruleset_gets_the_accept_before_its_reject() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("proc/net")).unwrap();
    fs::create_dir_all(root.path().join("etc")).unwrap();
    fs::copy(
        fixtures().join("hosts/centos7-fix-broken/proc/net/route"),
        root.path().join("proc/net/route"),
    )
    .unwrap();
    let conf = root.path().join("etc/nftables.conf");
    fs::write(&conf, DEBIAN_NFTABLES_CONF).unwrap();
    let original = snapshot(root.path());
    assert_eq!(statuses(root.path())["firewall.kubelet-port"], "fail");
    let v = json(&fix(
        root.path(),
        &["firewall.kubelet-port", "--apply", "--yes", "-o", "json"],
        &[],
    ));
    assert_eq!(v["outcome"], "applied", "{v:#}");
    assert_eq!(v["verify"][0]["after"], "pass", "{v:#}");
    let rule = "\t\tip saddr 192.168.56.0/24 iifname \"eth0\" tcp dport 10250 accept\n";
    assert_eq!(
        fs::read_to_string(&conf).unwrap(),
        DEBIAN_NFTABLES_CONF.replace("\t\treject with", &format!("{rule}\t\treject with"))
    );
    let saved = fs::read_to_string(&conf).unwrap();
    let check = root.path().join("check.nft");
    fs::write(&check, saved.replace("flush ruleset\n", "")).unwrap();
    if let Some(ok) = nft_accepts(&check) {
        assert!(ok, "nft rejects the edited ruleset:\n{saved}");
    }
    fs::remove_file(&check).unwrap();
    let again = json(&fix(
        root.path(),
        &["firewall.kubelet-port", "--apply", "--yes", "-o", "json"],
        &[],
    ));
    assert_eq!(again["outcome"], "nothing_to_do");
    assert_eq!(
        fix(root.path(), &["--undo", "--yes"], &[]).status.code(),
        Some(0)
    );
    assert_eq!(snapshot(root.path()), original);
}

fn main() {
    support::harness::main(vec![
        trial!(dry_run_shows_commands_and_diffs_and_changes_nothing),
        trial!(the_plan_as_json_for_review),
        trial!(apply_fixes_the_files_then_finds_nothing_to_do_and_undo_restores_every_byte),
        trial!(undo_of_a_named_journal_and_a_missing_one),
        trial!(a_fault_between_steps_rolls_the_run_back_whole),
        trial!(undo_never_overwrites_a_later_hand_edit),
        trial!(apply_without_a_terminal_needs_yes_and_ids_are_checked),
        trial!(apply_on_a_terminal_asks_first),
        trial!(a_saved_nftables_ruleset_gets_the_accept_before_its_reject),
    ]);
}
