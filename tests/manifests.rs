//! `k8sdoctor manifests` on real public manifests of each era (fixtures/manifests, sources in its
//! README): the findings per document, every report format (JUnit validated against its schema), exit
//! codes, stdin, hostile inputs, and `--convert` proven by typed decoding and by dry-run creates
//! against the test API server.

mod support;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::Arc,
};

use serde_json::Value;
use support::{
    apiserver::{ApiServer, Request, Scenario, Workloads},
    bin,
    dryrun::DryRun,
    fixtures, harness,
};

fn fx(rel: &str) -> String {
    fixtures().join("manifests").join(rel).display().to_string()
}

fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("manifests")
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent-k8sdoctor-test-home")
        .output()
        .unwrap()
}

fn json(args: &[&str]) -> (i32, Value) {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let out = run(&a);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), v)
}

/// (file suffix, document, line, status, kind, name) of every result.
fn rows(v: &Value) -> Vec<(String, String, u64, String, String, String)> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = &r["subject"];
            let file = s["file"].as_str().unwrap();
            let file = file.split("manifests/").last().unwrap().to_string();
            (
                file,
                s["document"].as_str().unwrap().to_string(),
                s["line"].as_u64().unwrap(),
                r["status"].as_str().unwrap().to_string(),
                s["kind"].as_str().unwrap_or("").to_string(),
                s["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn guide_snippets_fail_with_their_replacement() {
    let (code, v) = json(&[
        &fx("guide/multicast-test-deployment.yaml"),
        &fx("guide/dashboard-clusterrolebinding.yml"),
        "--offline",
    ]);
    assert_eq!(code, 1);
    assert_eq!(v["manifests"]["target_version"], "1.32");
    let r = &v["results"][0];
    assert_eq!(r["id"], "manifests.api-version");
    assert_eq!(r["status"], "fail");
    assert_eq!(r["subject"]["kind"], "Deployment");
    assert_eq!(r["subject"]["name"], "stack");
    assert_eq!(r["subject"]["line"], 1);
    assert_eq!(r["subject"]["api_version"], "extensions/v1beta1");
    assert_eq!(r["replacement"]["api_version"], "apps/v1");
    assert_eq!(r["replacement"]["removed_in"], "1.16");
    assert!(
        r["replacement"]["changes"][0]
            .as_str()
            .unwrap()
            .contains("spec.selector is required"),
        "{r:#}"
    );
    let r = &v["results"][1];
    assert_eq!(r["status"], "fail");
    assert_eq!(
        r["replacement"]["api_version"],
        "rbac.authorization.k8s.io/v1"
    );
    assert_eq!(r["replacement"]["removed_in"], "1.22");
    // Before 1.22 the binding is only deprecated: warn, saying when it goes.
    let (code, v) = json(&[
        &fx("guide/dashboard-clusterrolebinding.yml"),
        "--offline",
        "--target-version",
        "1.20",
    ]);
    assert_eq!(code, 0, "a warning is below the default --fail-on fail");
    assert_eq!(v["results"][0]["status"], "warn");
    assert!(
        v["results"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no longer served from 1.22")
    );
    let out = run(&[
        &fx("guide/dashboard-clusterrolebinding.yml"),
        "--offline",
        "--target-version",
        "1.20",
        "--fail-on",
        "warn",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

/// The expected finding of every document of every fixture, for the newest release the table knows.
fn every_fixture_document_has_its_expected_finding() {
    let (code, v) = json(&[&fx(""), "--offline"]);
    assert_eq!(code, 1);
    let got = rows(&v);
    let want: &[(&str, &str, u64, &str, &str, &str)] = &[
        (
            "flannel-v0.10.0/kube-flannel.yml",
            "0",
            2,
            "fail",
            "ClusterRole",
            "flannel",
        ),
        (
            "flannel-v0.10.0/kube-flannel.yml",
            "1",
            27,
            "fail",
            "ClusterRoleBinding",
            "flannel",
        ),
        (
            "flannel-v0.10.0/kube-flannel.yml",
            "2",
            40,
            "pass",
            "ServiceAccount",
            "flannel",
        ),
        (
            "flannel-v0.10.0/kube-flannel.yml",
            "3",
            46,
            "pass",
            "ConfigMap",
            "kube-flannel-cfg",
        ),
        (
            "flannel-v0.10.0/kube-flannel.yml",
            "4",
            82,
            "fail",
            "DaemonSet",
            "kube-flannel-ds",
        ),
        (
            "guide/dashboard-clusterrolebinding.yml",
            "0",
            1,
            "fail",
            "ClusterRoleBinding",
            "admin-user",
        ),
        (
            "guide/multicast-test-deployment.yaml",
            "0",
            1,
            "fail",
            "Deployment",
            "stack",
        ),
        (
            "ingress-nginx-0.20.0/dashboard-ingress.yaml",
            "0",
            1,
            "fail",
            "Ingress",
            "external-auth-oauth2",
        ),
        (
            "ingress-nginx-0.20.0/dashboard-ingress.yaml",
            "1",
            21,
            "fail",
            "Ingress",
            "oauth2-proxy",
        ),
        (
            "ingress-nginx-0.20.0/mandatory.yaml",
            "0",
            1,
            "pass",
            "Namespace",
            "ingress-nginx",
        ),
        (
            "ingress-nginx-0.20.0/mandatory.yaml",
            "1",
            8,
            "fail",
            "Deployment",
            "default-http-backend",
        ),
        (
            "ingress-nginx-0.20.0/mandatory.yaml",
            "2",
            53,
            "pass",
            "Service",
            "default-http-backend",
        ),
        (
            "ingress-nginx-0.20.0/mandatory.yaml",
            "3",
            71,
            "pass",
            "ConfigMap",
            "nginx-configuration",
        ),
        (
            "ingress-nginx-0.20.0/mandatory.yaml",
            "4",
            82,
            "pass",
            "ConfigMap",
            "tcp-services",
        ),
        (
            "ingress-nginx-0.20.0/mandatory.yaml",
            "5",
            93,
            "pass",
            "ConfigMap",
            "udp-services",
        ),
        (
            "ingress-nginx-0.20.0/mandatory.yaml",
            "6",
            104,
            "pass",
            "ServiceAccount",
            "nginx-ingress-serviceaccount",
        ),
        (
            "ingress-nginx-0.20.0/mandatory.yaml",
            "7",
            114,
            "fail",
            "ClusterRole",
            "nginx-ingress-clusterrole",
        ),
        (
            "ingress-nginx-0.20.0/mandatory.yaml",
            "8",
            170,
            "fail",
            "Role",
            "nginx-ingress-role",
        ),
        (
            "ingress-nginx-0.20.0/mandatory.yaml",
            "9",
            215,
            "fail",
            "RoleBinding",
            "nginx-ingress-role-nisa-binding",
        ),
        (
            "ingress-nginx-0.20.0/mandatory.yaml",
            "10",
            233,
            "fail",
            "ClusterRoleBinding",
            "nginx-ingress-clusterrole-nisa-binding",
        ),
        (
            "ingress-nginx-0.20.0/mandatory.yaml",
            "11",
            251,
            "fail",
            "Deployment",
            "nginx-ingress-controller",
        ),
        (
            "ingress-nginx-v0.34.1/cookie-affinity-ingress.yaml",
            "0",
            1,
            "fail",
            "Ingress",
            "nginx-test",
        ),
        (
            "ingress-nginx-v0.34.1/deploy-excerpt.yaml",
            "0",
            2,
            "pass",
            "Namespace",
            "ingress-nginx",
        ),
        (
            "ingress-nginx-v0.34.1/deploy-excerpt.yaml",
            "1",
            15,
            "fail",
            "ValidatingWebhookConfiguration",
            "ingress-nginx-admission",
        ),
        (
            "written/current-and-crd.yaml",
            "0",
            2,
            "pass",
            "Deployment",
            "web",
        ),
        (
            "written/current-and-crd.yaml",
            "1",
            18,
            "pass",
            "ServiceMonitor",
            "web",
        ),
        (
            "written/hpa-and-psp.json",
            "0",
            1,
            "fail",
            "HorizontalPodAutoscaler",
            "web",
        ),
        (
            "written/hpa-and-psp.json",
            "1",
            15,
            "fail",
            "PodSecurityPolicy",
            "restricted",
        ),
        (
            "written/list.yaml",
            "0.0",
            2,
            "fail",
            "CronJob",
            "nightly-report",
        ),
        (
            "written/list.yaml",
            "0.1",
            2,
            "fail",
            "PodDisruptionBudget",
            "web",
        ),
        (
            "written/malformed.yaml",
            "0",
            2,
            "pass",
            "ConfigMap",
            "fine",
        ),
        ("written/malformed.yaml", "1", 9, "error", "", ""),
        ("written/malformed.yaml", "2", 15, "error", "", "no-kind"),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(f, d, l, s, k, n)| {
            (
                f.to_string(),
                d.to_string(),
                *l,
                s.to_string(),
                k.to_string(),
                n.to_string(),
            )
        })
        .collect();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "result {i}");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
    assert_eq!(v["summary"]["fail"], 19);
    assert_eq!(v["summary"]["error"], 2);
    // The malformed document names the parser's line in the file, and the next one its missing kind.
    let msg = |i: usize| v["results"][i]["message"].as_str().unwrap().to_string();
    assert!(
        msg(31).contains("line 13 column 11") && msg(31).contains("unclosed"),
        "{}",
        msg(31)
    );
    assert!(
        msg(32).contains("line 15") && msg(32).contains("no kind"),
        "{}",
        msg(32)
    );
}

fn stdin_lists_and_json_are_read() {
    let mut child = Command::new(bin())
        .args([
            "manifests",
            "-",
            "--offline",
            "-o",
            "json",
            "--target-version",
            "1.24",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let text = std::fs::read(fx("written/list.yaml")).unwrap();
    child.stdin.take().unwrap().write_all(&text).unwrap();
    let out = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = rows(&v);
    assert_eq!(r[0].0, "-");
    assert_eq!((r[0].1.as_str(), r[0].3.as_str()), ("0.0", "warn"));
    assert_eq!((r[1].1.as_str(), r[1].3.as_str()), ("0.1", "warn"));
    assert_eq!(out.status.code(), Some(0));
}

fn formats_group_by_file_and_junit_validates_against_its_schema() {
    let out = run(&[&fx(""), "--offline"]);
    let t = String::from_utf8(out.stdout).unwrap();
    assert!(
        t.starts_with("Target Kubernetes 1.32 (the newest release the table knows)"),
        "{t}"
    );
    // One section per file, in order, each with its objects.
    let flannel = t
        .find("flannel-v0.10.0/kube-flannel.yml (5 object(s))")
        .expect("flannel section");
    let guide = t
        .find("guide/dashboard-clusterrolebinding.yml (1 object(s))")
        .expect("guide section");
    assert!(flannel < guide);
    assert!(t.contains("kube-flannel-ds"), "{t}");
    assert!(t.trim_end().ends_with(" ms"), "summary last");

    let out = run(&[&fx(""), "--offline", "-o", "markdown"]);
    let m = String::from_utf8(out.stdout).unwrap();
    assert!(
        m.starts_with("## k8sdoctor manifests: Kubernetes 1.32"),
        "{m}"
    );
    assert!(m.contains("| ✗ fail | `manifests.api-version` "), "{m}");
    assert!(
        m.contains("kube-flannel.yml:82 DaemonSet kube-flannel-ds"),
        "{m}"
    );

    let out = run(&[&fx(""), "--offline", "-o", "junit"]);
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("report.xml");
    std::fs::write(&xml, &out.stdout).unwrap();
    let x = String::from_utf8(out.stdout).unwrap();
    assert!(x.contains(r#"tests="33" failures="19" errors="2""#), "{x}");
    harness::require_tools(&["xmllint"]);
    let xsd = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/junit.xsd");
    let lint = |f: &Path| {
        Command::new("xmllint")
            .args(["--noout", "--schema"])
            .arg(&xsd)
            .arg(f)
            .output()
            .unwrap()
    };
    let v = lint(&xml);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    // The schema check can fail: a testcase without its classname is rejected.
    let broken = dir.path().join("broken.xml");
    std::fs::write(&broken, x.replacen("classname=", "class=", 1)).unwrap();
    assert!(
        !lint(&broken).status.success(),
        "the schema accepts anything"
    );
}

fn schema_covers_the_new_fields_and_the_report_validates() {
    let out = Command::new(bin()).arg("schema").output().unwrap();
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = schema.to_string();
    for f in [
        "subject",
        "replacement",
        "manifests",
        "target_version",
        "api_version",
        "removed_in",
    ] {
        assert!(text.contains(&format!("\"{f}\"")), "schema lacks {f}");
    }
    assert_eq!(schema["properties"]["schema_version"]["type"], "string");
    let (_, report) = json(&[&fx(""), "--offline"]);
    assert_eq!(report["schema_version"], "1");
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&report)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

fn bad_input_is_an_error_result_or_exit_2_never_a_hang() {
    // A path that does not exist, a bad --target-version: exit 2.
    let out = run(&["/nonexistent/manifests.yaml", "--offline"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/manifests.yaml"));
    let out = run(&[&fx("guide"), "--offline", "--target-version", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    // A FIFO with no writer (opening it would block) and a file past the size cap: error results,
    // and the good file beside them is still checked.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.yaml");
    nix_mkfifo(&fifo);
    let big = dir.path().join("big.yaml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len((64 << 20) + 1).unwrap();
    std::fs::copy(
        fx("guide/multicast-test-deployment.yaml"),
        dir.path().join("ok.yaml"),
    )
    .unwrap();
    // A directory is walked for regular files; a FIFO is read only when named, and refused.
    let (code, v) = json(&[
        dir.path().to_str().unwrap(),
        fifo.to_str().unwrap(),
        "--offline",
    ]);
    assert_eq!(code, 1);
    let r = rows(&v);
    let status = |name: &str| {
        let i = r.iter().position(|x| x.0.ends_with(name)).unwrap();
        (
            r[i].3.clone(),
            v["results"][i]["message"].as_str().unwrap().to_string(),
        )
    };
    let (s, m) = status("big.yaml");
    assert_eq!(s, "error");
    assert!(m.contains("larger than 64 MiB"), "{m}");
    let (s, m) = status("pipe.yaml");
    assert_eq!(s, "error");
    assert!(m.contains("FIFO"), "{m}");
    assert_eq!(status("ok.yaml").0, "fail");
    // An empty file is a skip with its reason.
    std::fs::write(dir.path().join("empty.yml"), "# nothing\n---\n").unwrap();
    let (_, v) = json(&[dir.path().join("empty.yml").to_str().unwrap(), "--offline"]);
    assert_eq!(v["results"][0]["status"], "skip");
}

fn nix_mkfifo(p: &Path) {
    let ok = Command::new("mkfifo").arg(p).status().unwrap();
    assert!(ok.success());
}

/// Reads every YAML document of a converted file (k8sdoctor's own output) as JSON values.
fn converted_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.split("\n---\n")
        .skip(1)
        .filter(|d| {
            d.lines()
                .any(|l| !l.starts_with('#') && !l.trim().is_empty())
        })
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

fn offline_conversion_decodes_into_typed_objects_and_refuses_with_reasons() {
    let out_dir = tempfile::tempdir().unwrap();
    let dir = out_dir.path().join("converted");
    let (code, v) = json(&[&fx(""), "--offline", "--convert", dir.to_str().unwrap()]);
    assert_eq!(code, 1);
    let written: Vec<PathBuf> = walk(&dir);
    assert!(written.len() >= 7, "{written:?}");
    let mut kinds = Vec::new();
    for f in &written {
        for d in converted_docs(f) {
            let gv = d["apiVersion"].as_str().unwrap().to_string();
            let kind = d["kind"].as_str().unwrap().to_string();
            // Nothing of a removed version is left unless the file says why.
            if let Some(e) = removed(&gv, &kind) {
                let text = std::fs::read_to_string(f).unwrap();
                assert!(text.contains("# k8sdoctor: not converted"), "{f:?}: {e}");
                continue;
            }
            if support::dryrun::KINDS
                .iter()
                .any(|k| k.0 == gv && k.2 == kind)
            {
                support::dryrun::strict(&gv, &kind, &d).unwrap_or_else(|e| panic!("{f:?}: {e}"));
            }
            kinds.push(format!("{gv} {kind}"));
        }
    }
    for k in [
        "apps/v1 Deployment",
        "apps/v1 DaemonSet",
        "rbac.authorization.k8s.io/v1 ClusterRoleBinding",
        "networking.k8s.io/v1 Ingress",
        "batch/v1 CronJob",
        "autoscaling/v2 HorizontalPodAutoscaler",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k} written: {kinds:?}");
    }
    // The flannel DaemonSet had no selector: it has the template's labels, and keeps OnDelete.
    let flannel = converted_docs(&dir.join(rel_in_out("flannel-v0.10.0/kube-flannel.yml")));
    let ds = flannel.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
    assert_eq!(
        ds["spec"]["selector"]["matchLabels"],
        ds["spec"]["template"]["metadata"]["labels"]
    );
    assert_eq!(ds["spec"]["updateStrategy"]["type"], "OnDelete");
    // Refusals carry their reason in the result.
    let evidence = |kind: &str| -> String {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["subject"]["kind"] == kind)
            .map(|r| r["evidence"].to_string())
            .unwrap()
    };
    assert!(
        evidence("PodSecurityPolicy").contains("convert: refused")
            && evidence("PodSecurityPolicy").contains("Pod Security Admission")
    );
    assert!(evidence("PodDisruptionBudget").contains("every pod of the namespace"));
    assert!(evidence("ValidatingWebhookConfiguration").contains("sideEffects"));
    assert!(evidence("DaemonSet").contains("proved by a typed decode"));
    // A second run into the same directory does not overwrite: exit 2.
    let out = run(&[
        &fx("guide"),
        "--offline",
        "--convert",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rel_in_out(fixture: &str) -> PathBuf {
    let p = PathBuf::from(fx(fixture));
    p.components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect()
}

fn removed(gv: &str, kind: &str) -> Option<String> {
    k8sdoctor::manifests::lifecycle::find(gv, kind)
        .map(|e| format!("{gv} {kind} removed in {}", e.removed_in))
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The dry-run server is as strict as kube-apiserver where a conversion can go wrong: the guide's
/// Deployment with only its apiVersion renamed (what pluto and kubent suggest) is rejected.
fn the_dry_run_server_rejects_a_bare_rename() {
    let dry = DryRun::default();
    let naive = std::fs::read_to_string(fx("guide/multicast-test-deployment.yaml"))
        .unwrap()
        .replace("extensions/v1beta1", "apps/v1");
    let body = serde_json::to_vec(&serde_saphyr::from_str::<Value>(&naive).unwrap()).unwrap();
    let q = [("dryRun".to_string(), "All".to_string())]
        .into_iter()
        .collect();
    let req = Request {
        method: "POST",
        path: "/apis/apps/v1/namespaces/default/deployments",
        query: &q,
        body: &body,
        user: "kubernetes-admin",
    };
    let (code, answer) = dry.handle(&req).unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert_eq!(code, 422, "{answer}");
    assert!(answer.contains("spec.selector: Required value"), "{answer}");
    // An unknown field (extensions/v1beta1's rollbackTo) is a strict-decoding 400.
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["spec"]["selector"] = serde_json::json!({"matchLabels": {"app": "nodes"}});
    v["spec"]["rollbackTo"] = serde_json::json!({"revision": 2});
    let body = serde_json::to_vec(&v).unwrap();
    let req = Request { body: &body, ..req };
    let (code, answer) = dry.handle(&req).unwrap();
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"spec.rollbackTo\""),
        "{answer}"
    );
}

fn with_a_cluster_its_version_is_the_target_its_discovery_decides_and_conversions_dry_run() {
    let dry = Arc::new(DryRun::default());
    let server = ApiServer::start(
        Scenario::healthy()
            .version("v1.24.17")
            .workloads(dry.clone()),
    );
    let tmp = tempfile::tempdir().unwrap();
    let kc = server.kubeconfig(tmp.path());
    let out_dir = tmp.path().join("out");
    let (code, v) = json(&[
        &fx("guide"),
        &fx("written/current-and-crd.yaml"),
        &fx("written/list.yaml"),
        &fx("ingress-nginx-0.20.0/dashboard-ingress.yaml"),
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--convert",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert_eq!(v["manifests"]["target_version"], "1.24");
    assert_eq!(v["manifests"]["target_from"], "the cluster's version");
    assert_eq!(v["cluster"]["server_version"], "v1.24.17");
    let by_kind = |k: &str| -> &Value {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["subject"]["kind"] == k)
            .unwrap()
    };
    // Served by 1.24 but deprecated: warn; the ServiceMonitor's CRD is not installed: fail.
    assert_eq!(by_kind("CronJob")["status"], "warn");
    let sm = by_kind("ServiceMonitor");
    assert_eq!(sm["status"], "fail");
    assert!(
        sm["message"]
            .as_str()
            .unwrap()
            .contains("not served by this cluster"),
        "{sm:#}"
    );
    assert_eq!(by_kind("Deployment")["status"], "fail");
    // Every converted object passed a server-side dry-run create.
    let log = dry.log();
    for want in [
        "201 apps/v1 Deployment default/stack",
        "201 rbac.authorization.k8s.io/v1 ClusterRoleBinding -/admin-user",
        "201 batch/v1 CronJob reports/nightly-report",
        "201 networking.k8s.io/v1 Ingress kube-system/external-auth-oauth2",
        "201 networking.k8s.io/v1 Ingress kube-system/oauth2-proxy",
    ] {
        assert!(log.iter().any(|l| l == want), "{want} not in {log:#?}");
    }
    assert!(log.iter().all(|l| l.starts_with("201")), "{log:#?}");
    assert!(
        by_kind("Deployment")["evidence"]
            .to_string()
            .contains("a server-side dry-run create"),
        "{:#}",
        by_kind("Deployment")
    );
    // --offline never connects.
    let before = server.requests().len();
    let (_, v) = json(&[
        &fx("guide"),
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--offline",
    ]);
    assert_eq!(server.requests().len(), before);
    assert!(v["cluster"].is_null());
}

fn an_unreachable_cluster_is_exit_2_naming_offline() {
    let server = ApiServer::start(Scenario::healthy().blackhole());
    let tmp = tempfile::tempdir().unwrap();
    let kc = server.kubeconfig(tmp.path());
    let out = run(&[
        &fx("guide"),
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--timeout",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--offline"), "{err}");
}

/// The result id is explained like any check, and `check` points it to `manifests` instead of
/// selecting nothing.
fn the_result_id_is_explained_and_check_points_it_to_manifests() {
    let out = Command::new(bin())
        .args(["explain", "manifests.api-version"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--convert DIR"), "{text}");
    assert!(text.contains("deprecation-guide"), "{text}");
    let out = Command::new(bin())
        .args(["check", "--only", "manifests.api-version"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`k8sdoctor manifests FILE...`"), "{err}");
    assert!(!err.contains("join-check"), "{err}");
}

fn main() {
    support::harness::main(vec![
        trial!(the_result_id_is_explained_and_check_points_it_to_manifests),
        trial!(guide_snippets_fail_with_their_replacement),
        trial!(every_fixture_document_has_its_expected_finding),
        trial!(stdin_lists_and_json_are_read),
        trial!(formats_group_by_file_and_junit_validates_against_its_schema),
        trial!(schema_covers_the_new_fields_and_the_report_validates),
        trial!(bad_input_is_an_error_result_or_exit_2_never_a_hang),
        trial!(offline_conversion_decodes_into_typed_objects_and_refuses_with_reasons),
        trial!(the_dry_run_server_rejects_a_bare_rename),
        trial!(
            with_a_cluster_its_version_is_the_target_its_discovery_decides_and_conversions_dry_run
        ),
        trial!(an_unreachable_cluster_is_exit_2_naming_offline),
    ]);
}
