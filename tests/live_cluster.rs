//! Live: the kube-dns probe and the kubectl-proxy probe, run inside network namespaces this test
//! creates. The binary never dials a cluster address from the host namespace: in its namespace
//! 10.96.0.10 is either the test's own DNS responder across a veth, or unreachable.

mod support;

use std::{
    io::{Read, Write},
    net::{TcpListener, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    Netns,
    apiserver::{ApiServer, Scenario},
    bin,
    harness::require,
    veth,
};

/// Stops a responder thread when dropped.
struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Answers A queries with 10.96.0.1 (and AAAA with no records) on a socket, for at most 30 s.
fn dns_responder(sock: UdpSocket) -> Stop {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 512];
        while !s2.load(Ordering::SeqCst) && Instant::now() < end {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                continue;
            };
            // Header 12 bytes, then the question name up to its 0 label, then type and class.
            let mut i = 12;
            while i < n && buf[i] != 0 {
                i += buf[i] as usize + 1;
            }
            if i + 5 > n {
                continue;
            }
            let q_end = i + 5;
            let is_a = buf[i + 1] == 0 && buf[i + 2] == 1;
            let mut r = Vec::from(&buf[..2]);
            r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, is_a as u8, 0, 0, 0, 0]);
            r.extend_from_slice(&buf[12..q_end]);
            if is_a {
                r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 96, 0, 1]);
            }
            let _ = sock.send_to(&r, peer);
        }
    });
    Stop(stop)
}

fn dns_result(ns: &Netns, server: &ApiServer, dir: &std::path::Path) -> Value {
    let kc = server.kubeconfig(dir);
    let out = ns
        .command(bin().to_str().unwrap())
        .args([
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--only",
            "cluster.dns",
            "-o",
            "json",
            "--timeout",
            "5",
        ])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    v["results"][0].clone()
}

fn kube_dns_is_probed_only_where_its_service_ip_is_reachable() {
    require(&["ip"]);
    let dir = tempfile::tempdir().unwrap();
    // Reachable: 10.96.0.0/24 routed over a veth to the responder's namespace.
    let (node, dns) = (Netns::new("cl"), Netns::new("cl"));
    veth(&node, "10.96.0.1/24", &dns, "10.96.0.10/24");
    let server = ApiServer::start_in(Scenario::healthy(), &node);
    let _responder = dns_responder(dns.run(|| UdpSocket::bind("10.96.0.10:53").unwrap()));
    let r = dns_result(&node, &server, dir.path());
    assert_eq!(r["status"], "pass", "{r:#}");
    let ev = r["evidence"].to_string();
    assert!(
        ev.contains("kubernetes.default.svc.cluster.local. via 10.96.0.10:53 → 10.96.0.1"),
        "{ev}"
    );
    assert!(r["message"].as_str().unwrap().contains("resolves"), "{r:#}");

    // Reachable but nobody answers DNS there: the probe fails, naming the server.
    let (node2, silent) = (Netns::new("cl"), Netns::new("cl"));
    veth(&node2, "10.96.0.1/24", &silent, "10.96.0.10/24");
    let server2 = ApiServer::start_in(Scenario::healthy(), &node2);
    let r = dns_result(&node2, &server2, dir.path());
    assert_eq!(r["status"], "fail", "{r:#}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("via 10.96.0.10:53 failed"),
        "{r:#}"
    );

    // Not reachable (no route but loopback): no probe, the pods decide.
    let alone = Netns::new("cl");
    let server3 = ApiServer::start_in(Scenario::healthy(), &alone);
    let r = dns_result(&alone, &server3, dir.path());
    assert_eq!(r["status"], "pass", "{r:#}");
    assert!(
        r["evidence"]
            .to_string()
            .contains("resolution probe not run: 10.96.0.10 is not reachable from here"),
        "{r:#}"
    );
}

/// /etc/netns/<ns>/hosts, which `ip netns exec` mounts over /etc/hosts; removed on drop.
struct NetnsHosts(std::path::PathBuf);

impl NetnsHosts {
    fn new(ns: &Netns, text: &str) -> NetnsHosts {
        let dir = std::path::PathBuf::from("/etc/netns").join(&ns.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hosts"), text).unwrap();
        NetnsHosts(dir)
    }
}

impl Drop for NetnsHosts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fake `kubectl proxy`: 200 for /api, 503 for anything else (the dashboard has no endpoints).
fn fake_proxy(listener: TcpListener) -> Stop {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(30);
        while !s2.load(Ordering::SeqCst) && Instant::now() < end {
            let Ok((mut c, _)) = listener.accept() else {
                thread::sleep(Duration::from_millis(10));
                continue;
            };
            c.set_nonblocking(false).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 1024];
            let n = c.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let resp = if req.starts_with("GET /api ") {
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 33\r\n\r\n{\"kind\":\"APIVersions\",\"versions\"}"
            } else {
                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
            };
            let _ = c.write_all(resp.as_bytes());
        }
    });
    Stop(stop)
}

fn proxy_result(ns: &Netns, port: &str) -> Value {
    let out = ns
        .command(bin().to_str().unwrap())
        .args([
            "--only",
            "proxy.localhost",
            "-o",
            "json",
            "--proxy-port",
            port,
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    v["results"][0].clone()
}

fn kubectl_proxy_on_127_0_0_1_is_found_and_localhost_to_v6_first_warns() {
    require(&["ip"]);
    let ns = Netns::new("cl");
    let _hosts = NetnsHosts::new(&ns, "::1 localhost ip6-localhost\n127.0.0.1 localhost\n");
    let _proxy = fake_proxy(ns.run(|| TcpListener::bind("127.0.0.1:8001").unwrap()));
    let r = proxy_result(&ns, "8001");
    let ev = r["evidence"].to_string();
    assert!(
        ev.contains("GET http://127.0.0.1:8001/api → HTTP/1.1 200 OK"),
        "{r:#}"
    );
    assert!(ev.contains("/etc/hosts:1: ::1 localhost"), "{r:#}");
    assert!(
        ev.contains("kubernetes-dashboard:/proxy/ → HTTP/1.1 503"),
        "{r:#}"
    );
    assert!(ev.contains("[::1]:8001 refuses"), "{r:#}");
    assert_eq!(r["status"], "warn", "{r:#}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("listens on 127.0.0.1 only"),
        "{r:#}"
    );

    // Nothing on another port: reported as not running, resolution still shown.
    let r = proxy_result(&ns, "8002");
    assert_eq!(r["status"], "pass", "{r:#}");
    assert!(
        r["evidence"]
            .to_string()
            .contains("127.0.0.1:8002: nothing listens"),
        "{r:#}"
    );
}

fn main() {
    support::harness::main(vec![
        trial!(kube_dns_is_probed_only_where_its_service_ip_is_reachable),
        trial!(kubectl_proxy_on_127_0_0_1_is_found_and_localhost_to_v6_first_warns),
    ]);
}
