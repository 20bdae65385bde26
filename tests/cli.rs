//! CLI contract: fixture roots through the real binary — statuses, exit codes, formats, schema, catalog.

mod support;

use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;
use support::{bin, fixtures};

fn k8sdoctor() -> Command {
    let mut c = Command::new(bin());
    c.env_remove("KUBECONFIG").env("HOME", "/nonexistent-home");
    c
}

fn root(name: &str) -> String {
    fixtures().join("hosts").join(name).display().to_string()
}

fn json_run(args: &[&str]) -> (Value, i32) {
    let out: Output = k8sdoctor()
        .args(args)
        .args(["-o", "json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code().unwrap())
}

fn status_of<'a>(report: &'a Value, id: &str) -> &'a str {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no result {id}"))["status"]
        .as_str()
        .unwrap()
}

fn schema_validator() -> jsonschema::Validator {
    let out = k8sdoctor().arg("schema").output().unwrap();
    assert!(out.status.success());
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
}

const HOST_CHECKS: &[&str] = &[
    "dns.loopback-nameserver",
    "swap.active",
    "swap.persistent",
    "kernel.br-netfilter",
    "sysctl.bridge-nf-call-iptables",
    "sysctl.ip-forward",
    "selinux.mode",
];

#[test]
fn the_guides_centos7_node_fails_exactly_where_the_guide_says() {
    let (r, code) = json_run(&["--root", &root("centos7-seed-broken")]);
    assert_eq!(code, 1);
    for id in [
        "dns.loopback-nameserver",
        "swap.active",
        "kernel.br-netfilter",
        "sysctl.ip-forward",
    ] {
        assert_eq!(status_of(&r, id), "fail", "{id}");
    }
    for id in ["swap.persistent", "selinux.mode"] {
        assert_eq!(status_of(&r, id), "warn", "{id}");
    }
    assert_eq!(status_of(&r, "sysctl.bridge-nf-call-iptables"), "skip");
    // CentOS 7's stock firewall rejects the kubelet port, the guide's outage.
    assert_eq!(status_of(&r, "firewall.kubelet-port"), "fail");
    // No kubeconfig: the cluster checks skip and leave the exit code alone.
    assert_eq!(status_of(&r, "cluster.api-reachable"), "skip");
    assert_eq!(r["host"]["os"], "CentOS Linux 7 (Core)");
    assert_eq!(r["host"]["role"], "worker");
    // Every failing result carries evidence and a remediation.
    for res in r["results"].as_array().unwrap() {
        if res["status"] == "fail" || res["status"] == "warn" {
            assert!(!res["evidence"].as_array().unwrap().is_empty(), "{res}");
            assert!(res["remediation"].is_string(), "{res}");
        }
    }
}

#[test]
fn centos7_report_snapshot() {
    let (r, _) = json_run(&[
        "--root",
        &root("centos7-seed-broken"),
        "--only",
        &HOST_CHECKS.join(","),
    ]);
    insta::assert_json_snapshot!(r, {
        ".started_at" => "[time]",
        ".duration_ms" => "[ms]",
        ".results[].duration_ms" => "[ms]",
        ".host.hostname" => "[hostname]",
        ".host.root" => "[root]",
        ".tool.version" => "[version]",
    });
}

#[test]
fn the_healthy_control_plane_passes_and_exits_zero() {
    let (r, code) = json_run(&["--root", &root("ubuntu2204-kubeadm-healthy")]);
    assert_eq!(
        r["host"]["role"], "control-plane",
        "auto role from the apiserver manifest"
    );
    for id in HOST_CHECKS {
        assert_eq!(status_of(&r, id), "pass", "{id}");
    }
    assert_eq!(code, 0, "{r:#}");
}

#[test]
fn systemd_resolved_before_install_warns_with_the_upstream_file() {
    let (r, _) = json_run(&["--root", &root("ubuntu2204-systemd-resolved")]);
    assert_eq!(status_of(&r, "dns.loopback-nameserver"), "warn");
    let res = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == "dns.loopback-nameserver")
        .unwrap();
    assert!(
        res["remediation"]
            .as_str()
            .unwrap()
            .contains("/run/systemd/resolve/resolv.conf")
    );
    assert_eq!(status_of(&r, "swap.active"), "fail");
    assert_eq!(status_of(&r, "swap.persistent"), "warn");
}

#[test]
fn tricky_inputs_are_read_not_guessed() {
    let (r, code) = json_run(&["--root", &root("debian12-tricky")]);
    assert_eq!(code, 1);
    // 127.0.1.1 and ::1 behind tabs, comments and Latin-1 bytes.
    assert_eq!(status_of(&r, "dns.loopback-nameserver"), "fail");
    // zram swap is swap.
    assert_eq!(status_of(&r, "swap.active"), "fail");
    // An fstab that cannot be read does not hide the zram-generator config: each source decides.
    assert_eq!(status_of(&r, "swap.persistent"), "warn");
    // " 0 " is 0; "1\t" is 1.
    assert_eq!(status_of(&r, "sysctl.bridge-nf-call-iptables"), "fail");
    // /etc/sysctl.d/30-forward.conf masks /usr/lib's, but a later vendor file sets 0.
    assert_eq!(status_of(&r, "sysctl.ip-forward"), "warn");
    // Missing SELinux files: not enforcing.
    assert_eq!(status_of(&r, "selinux.mode"), "pass");
}

#[test]
fn every_report_validates_against_the_schema() {
    let v = schema_validator();
    for name in [
        "centos7-seed-broken",
        "ubuntu2204-kubeadm-healthy",
        "ubuntu2204-systemd-resolved",
        "debian12-tricky",
    ] {
        let (r, _) = json_run(&["--root", &root(name)]);
        let errors: Vec<String> = v.iter_errors(&r).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
        assert_eq!(r["schema_version"], "1");
    }
    // The schema is not vacuous: a report with a bad status is rejected.
    let (mut r, _) = json_run(&["--root", &root("centos7-seed-broken")]);
    r["results"][0]["status"] = "broken".into();
    assert!(!v.is_valid(&r));
}

#[test]
fn a_missing_root_exits_2_with_a_clear_message() {
    let out = k8sdoctor()
        .args(["--root", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--root /nonexistent: no such directory"),
        "{err}"
    );
}

#[test]
fn bad_flags_and_unknown_ids_exit_2() {
    assert_eq!(
        k8sdoctor().arg("--bogus").output().unwrap().status.code(),
        Some(2)
    );
    let out = k8sdoctor()
        .args([
            "--root",
            &root("centos7-seed-broken"),
            "--only",
            "swap.actve",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown check id(s): swap.actve"));
}

#[test]
fn only_skip_and_fail_on_select_and_decide_the_exit_code() {
    let centos = root("centos7-seed-broken");
    let (r, code) = json_run(&["--root", &centos, "--only", "SELINUX.MODE"]);
    assert_eq!((r["results"].as_array().unwrap().len(), code), (1, 0));
    let (_, code) = json_run(&[
        "--root",
        &centos,
        "--only",
        "selinux.mode",
        "--fail-on",
        "warn",
    ]);
    assert_eq!(code, 1);
    let (r, code) = json_run(&["--root", &centos, "--skip", "all"]);
    assert_eq!((r["results"].as_array().unwrap().len(), code), (0, 0));
    let (r, _) = json_run(&["--root", &centos, "--skip", "swap.active,Swap.Persistent"]);
    assert!(
        r["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| !x["id"].as_str().unwrap().starts_with("swap."))
    );
    // `check` subcommand is the same as bare.
    let out = k8sdoctor()
        .args(["check", "--root", &centos, "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn table_junit_markdown_and_output_file() {
    let centos = root("centos7-seed-broken");
    let out = k8sdoctor()
        .args(["--root", &centos])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let t = String::from_utf8(out.stdout).unwrap();
    assert!(
        t.contains("✗ ┆ swap.active") && t.contains("! ┆ selinux.mode"),
        "{t}"
    );
    assert!(t.contains("→ swapoff -a"), "remediation shown");
    assert!(
        t.lines().last().unwrap().contains("failed"),
        "summary line last"
    );
    assert!(!t.contains('\u{1b}'), "no colour when not a terminal");

    let out = k8sdoctor()
        .args(["--root", &centos, "-o", "junit"])
        .output()
        .unwrap();
    let x = String::from_utf8(out.stdout).unwrap();
    assert!(x.starts_with("<?xml"));
    assert_eq!(
        x.matches("<testcase ").count(),
        x.matches("</testcase>").count()
    );
    assert!(x.contains(r#"name="swap.active""#) && x.contains("<failure message="));

    let out = k8sdoctor()
        .args(["--root", &centos, "-o", "markdown"])
        .output()
        .unwrap();
    let m = String::from_utf8(out.stdout).unwrap();
    assert!(m.contains("| ✗ fail | `swap.active` |"), "{m}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.json");
    let out = k8sdoctor()
        .args([
            "--root",
            &centos,
            "-o",
            "json",
            "--output-file",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "stdout carries nothing when writing a file"
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    // The guide's node also has no container runtime (runtime.cri-socket).
    assert_eq!(v["summary"]["fail"], 6);
}

#[test]
fn bare_run_on_this_machine_finishes_with_known_statuses() {
    // --offline: a test sends nothing from the host's namespace (host.hostname would ask the resolver).
    let out = k8sdoctor()
        .args(["-o", "json", "--offline"])
        .output()
        .unwrap();
    let code = out.status.code().unwrap();
    assert!(
        code == 0 || code == 1,
        "exit {code}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for r in v["results"].as_array().unwrap() {
        let s = r["status"].as_str().unwrap();
        assert!(
            ["pass", "warn", "fail", "skip", "error"].contains(&s),
            "{r}"
        );
    }
    assert!(schema_validator().is_valid(&v));
}

#[test]
fn list_explain_and_docs_checks_md_agree_with_the_catalog() {
    let out = k8sdoctor().args(["list", "-o", "json"]).output().unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    for id in HOST_CHECKS {
        assert!(ids.contains(id), "{id}");
    }
    let md = String::from_utf8(
        k8sdoctor()
            .args(["list", "-o", "markdown"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/checks.md")).unwrap();
    assert!(
        page == md,
        "docs/checks.md is stale: run `cargo run -- list -o markdown > docs/checks.md`"
    );
    // Every id has its own section with what it looks for, the symptom, the fix and kubeadm's name.
    for id in &ids {
        let section = page
            .split(&format!("\n## `{id}`\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("docs/checks.md has no section for {id}"));
        let section = section.split("\n## ").next().unwrap();
        for field in [
            "**Looks for:**",
            "**Symptom:**",
            "**Fix:**",
            "**kubeadm preflight name:**",
        ] {
            assert!(section.contains(field), "{id}: {field}");
        }
    }

    let out = k8sdoctor()
        .args(["explain", "SWAP.ACTIVE"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("running with swap on is not supported") && text.contains("Remediation:")
    );
    let out = k8sdoctor().args(["explain", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
