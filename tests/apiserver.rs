//! The test API server is faithful: the real `kubectl` talks to it, and it enforces auth and paging.

mod support;

use std::process::Command;

use support::apiserver::{ADMIN_TOKEN, ApiServer, CaKey, Scenario, b64url};

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> Option<std::process::Output> {
    let home = kubeconfig.parent().unwrap();
    match Command::new("kubectl")
        .args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--cache-dir",
            home.join("cache").to_str().unwrap(),
        ])
        .args(args)
        .env("HOME", home)
        .output()
    {
        Ok(o) => Some(o),
        Err(e) => support::harness::not_run(format!("needs kubectl ({e})")),
    }
}

fn real_kubectl_lists_nodes_and_reads_the_version() {
    let server = ApiServer::start(Scenario::broken());
    let dir = tempfile::tempdir().unwrap();
    let kc = server.kubeconfig(dir.path());
    let Some(out) = kubectl(&kc, &["get", "nodes"]) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("STATUS") && lines[0].contains("VERSION"),
        "{text}"
    );
    assert!(
        text.contains("cl-test-w1") && text.contains("v1.29.0"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("cl-test-w2") && l.contains("NotReady")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("cl-test-cp1") && l.contains("control-plane")),
        "{text}"
    );

    let out = kubectl(&kc, &["get", "nodes", "-o", "json", "--chunk-size", "2"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 3);
    assert_eq!(
        v["items"][0]["status"]["nodeInfo"]["kubeletVersion"],
        "v1.33.2"
    );
    // --chunk-size 2 pages through limit/continue.
    let reqs = server.requests();
    assert!(
        reqs.iter()
            .any(|r| r.contains("/api/v1/nodes?continue=cl-continue-2&limit=2")),
        "{reqs:#?}"
    );

    let out = kubectl(&kc, &["version", "-o", "json"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["serverVersion"]["gitVersion"], "v1.33.2");
    assert_eq!(v["serverVersion"]["minor"], "33");
}

fn kubectl_sees_401_for_a_wrong_token_and_403_naming_verb_and_resource() {
    let server = ApiServer::start(
        Scenario::healthy()
            .forbid("list", "secrets")
            .ca_key(CaKey::Rsa),
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = server.kubeconfig_with(dir.path(), "bad", "wrong-token", &server.ca.pem);
    let Some(out) = kubectl(&bad, &["get", "nodes"]) else {
        return;
    };
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Unauthorized") || err.contains("provide credentials"),
        "{err}"
    );

    let kc = server.kubeconfig(dir.path());
    let out = kubectl(&kc, &["get", "secrets", "-n", "kube-system"]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("User \"kubernetes-admin\" cannot list resource \"secrets\" in API group \"\" in the namespace \"kube-system\""),
        "{err}"
    );
    let out = kubectl(
        &kc,
        &["get", "daemonsets", "-n", "kube-system", "-o", "name"],
    )
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "daemonset.apps/kube-proxy\ndaemonset.apps/weave-net\n"
    );
}

fn anonymous_reads_only_cluster_info_and_version_and_the_jws_verifies() {
    let server = ApiServer::start(Scenario::healthy());
    let pin = server.ca.pin();
    assert!(pin.starts_with("sha256:") && pin.len() == 71, "{pin}");
    let (code, body) = server.get(
        "/api/v1/namespaces/kube-public/configmaps/cluster-info",
        None,
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["data"]["kubeconfig"]
            .as_str()
            .unwrap()
            .contains(&server.url())
    );
    let jws = v["data"]["jws-kubeconfig-abcdef"].as_str().unwrap();
    let (header, sig) = jws.split_once("..").unwrap();
    assert_eq!(header, "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9"); // {"alg":"HS256","kid":"abcdef"}
    // HMAC-SHA256 over header.payload keyed by the token secret.
    let payload = b64url(v["data"]["kubeconfig"].as_str().unwrap().as_bytes());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef");
    let tag = ring::hmac::sign(&key, format!("{header}.{payload}").as_bytes());
    assert_eq!(sig, b64url(tag.as_ref()));

    let (code, body) = server.get("/version", None);
    assert_eq!(code, 200, "{body}");
    let (code, body) = server.get("/api/v1/nodes", None);
    assert_eq!(code, 403);
    assert!(body.contains("system:anonymous"), "{body}");
    let (code, body) = server.get("/api/v1/nodes", Some("nope"));
    assert_eq!(code, 401);
    assert!(body.contains("\"reason\":\"Unauthorized\""), "{body}");
    let (code, _) = server.get("/api/v1/nodes", Some(ADMIN_TOKEN));
    assert_eq!(code, 200);
    // The broken scenario's token has expired: the signer no longer signs cluster-info for it.
    let broken = ApiServer::start(Scenario::broken());
    let (_, body) = broken.get(
        "/api/v1/namespaces/kube-public/configmaps/cluster-info",
        None,
    );
    assert!(!body.contains("jws-kubeconfig-a24a11"), "{body}");
}

fn blackholed_server_accepts_but_never_answers() {
    let server = ApiServer::start(Scenario::empty().blackhole());
    let mut tcp = std::net::TcpStream::connect(server.addr()).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    use std::io::{Read, Write};
    tcp.write_all(b"\x16\x03\x01\x00\x05hello").unwrap();
    let mut b = [0u8; 16];
    let e = tcp.read(&mut b).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{e}"
    );
}

/// Scripted API faults answer exactly the chosen requests: a 429 with Retry-After (header and
/// details) on the 2nd and 3rd node list, a 503 on the first GET of one node, a reset mid-body on a
/// namespace list; every other request is answered as usual. kubectl sees them as a client would.
fn scripted_faults_hit_only_the_chosen_requests() {
    use support::apiserver::ApiFaultKind::*;
    let server = ApiServer::start(
        Scenario::healthy()
            .fault(
                "GET",
                "/api/v1/nodes",
                1,
                2,
                TooManyRequests {
                    retry_after_secs: 7,
                },
            )
            .fault("GET", "/api/v1/nodes/cl-test-w1", 0, 1, Unavailable)
            .fault("*", "/api/v1/namespaces*", 0, 1, ResetMidBody),
    );
    let get = |p: &str| {
        let (raw, err) = server.get_raw(p, Some(ADMIN_TOKEN));
        (String::from_utf8_lossy(&raw).into_owned(), err)
    };
    let (first, _) = get("/api/v1/nodes?limit=1");
    assert!(first.starts_with("HTTP/1.1 200 OK"), "{first}");
    for _ in 0..2 {
        let (t, _) = get("/api/v1/nodes");
        assert!(t.starts_with("HTTP/1.1 429 Too Many Requests"), "{t}");
        assert!(t.contains("\r\nRetry-After: 7\r\n"), "{t}");
        let body: serde_json::Value =
            serde_json::from_str(t.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["reason"], "TooManyRequests");
        assert_eq!(body["details"]["retryAfterSeconds"], 7);
    }
    assert!(get("/api/v1/nodes").0.starts_with("HTTP/1.1 200 OK"));
    let (t, _) = get("/api/v1/nodes/cl-test-w1");
    assert!(t.starts_with("HTTP/1.1 503 Service Unavailable"), "{t}");
    assert!(t.contains("\"reason\":\"ServiceUnavailable\""), "{t}");
    assert!(
        get("/api/v1/nodes/cl-test-w1")
            .0
            .starts_with("HTTP/1.1 200 OK")
    );
    // The reset: a head promising more body than arrives, then the connection reset.
    let (t, err) = get("/api/v1/namespaces");
    let (head, body) = t.split_once("\r\n\r\n").unwrap();
    let promised: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(body.len() < promised && !body.is_empty(), "{t}");
    let kind = err.map(|e| e.kind());
    assert_eq!(kind, Some(std::io::ErrorKind::ConnectionReset), "{t}");
    assert!(get("/api/v1/namespaces").0.starts_with("HTTP/1.1 200 OK"));
    let log = server.requests();
    let faulted = log.iter().filter(|l| l.starts_with("fault ")).count();
    assert_eq!(faulted, 3, "{log:#?}");
    // kubectl, as a client, sees the 429 and the 503 for what they are.
    let s2 =
        ApiServer::start(Scenario::healthy().fault("GET", "/api/v1/nodes", 0, 100, Unavailable));
    let dir = tempfile::tempdir().unwrap();
    let kc = s2.kubeconfig(dir.path());
    let Some(out) = kubectl(&kc, &["get", "nodes"]) else {
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("the server is currently unable to handle the request"),
        "{err}"
    );
}

fn main() {
    support::harness::main(vec![
        trial!(real_kubectl_lists_nodes_and_reads_the_version),
        trial!(kubectl_sees_401_for_a_wrong_token_and_403_naming_verb_and_resource),
        trial!(anonymous_reads_only_cluster_info_and_version_and_the_jws_verifies),
        trial!(blackholed_server_accepts_but_never_answers),
        trial!(scripted_faults_hit_only_the_chosen_requests),
    ]);
}
