//! Live preflight checks against real kernel state and a real CRI peer:
//! - `ports.in-use` reads the LISTEN rows of the network namespace it runs in: the test opens a
//!   listener inside a namespace of its own and runs the binary there with `ip netns exec`;
//! - `runtime.cri-socket` makes a real CRI `Version` call (gRPC over HTTP/2) to a server the test runs
//!   on a unix socket in a temp dir (and, when installed, to a real containerd the test starts). The
//!   binary sees that socket at /run/containerd/containerd.sock through a private mount namespace
//!   (`unshare --mount` with a tmpfs on /run): the host's /run is never touched.

mod support;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{Netns, bin, harness::require};

fn report(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn only<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .unwrap_or_else(|| panic!("no {id}: {r:#}"))
}

fn ports_in(ns: &Netns, extra: &[&str]) -> Value {
    let out = ns
        .command(bin().to_str().unwrap())
        .args(["--only", "ports.in-use", "--offline", "-o", "json"])
        .args(extra)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    report(&out)
}

fn a_listener_in_the_namespace_is_found_with_its_process() {
    require(&["ip"]);
    let ns = Netns::new("ports");
    let free = ports_in(&ns, &["--role", "worker", "--stage", "pre-join"]);
    assert_eq!(only(&free, "ports.in-use")["status"], "pass", "{free:#}");
    // This process holds 10250 inside the namespace: kubeadm join would fail on it.
    let listener = ns.run(|| TcpListener::bind("0.0.0.0:10250").unwrap());
    let busy = ports_in(&ns, &["--role", "worker", "--stage", "pre-join"]);
    let f = only(&busy, "ports.in-use");
    assert_eq!(f["status"], "fail", "{f:#}");
    let me = format!("10250 by pid {} (", std::process::id());
    assert!(f["message"].as_str().unwrap().contains(&me), "{f:#}");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("[ERROR Port-10250]")
    );
    // Installed, the port must be the kubelet's: this test binary is not.
    let installed = ports_in(&ns, &["--role", "worker", "--stage", "installed"]);
    let f = only(&installed, "ports.in-use");
    assert_eq!(f["status"], "fail", "{f:#}");
    assert!(
        f["message"].as_str().unwrap().contains("not kubelet"),
        "{f:#}"
    );
    drop(listener);
    // Nothing was bound by the doctor: after it ran, the port is still ours to bind again.
    ns.run(|| TcpListener::bind("0.0.0.0:10250").expect("the doctor left the port free"));
}

/// What the fake CRI server does with a call.
#[derive(Clone, Copy)]
enum Mode {
    Answer,
    Unimplemented,
    Hang,
}

/// A CRI server speaking gRPC over HTTP/2 on a unix socket, written against the CRI proto's field
/// numbers (independently of the doctor's client). Records each request's path and content type.
struct FakeCri {
    _dir: tempfile::TempDir,
    sock: PathBuf,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

/// VersionResponse{version=1, runtime_name=2, runtime_version=3, runtime_api_version=4}, length-prefixed.
fn version_response() -> Vec<u8> {
    let mut m = Vec::new();
    for (field, s) in [(1u8, "0.1.0"), (2, "fake-cri"), (3, "9.9.9"), (4, "v1")] {
        m.push((field << 3) | 2);
        m.push(s.len() as u8);
        m.extend_from_slice(s.as_bytes());
    }
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(m.len() as u32).to_be_bytes());
    framed.extend(m);
    framed
}

impl FakeCri {
    fn start(mode: Mode) -> FakeCri {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("cri.sock");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let path = sock.clone();
        // The server lives on its own thread until the test process ends.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::bind(&path).unwrap();
                ready_tx.send(()).unwrap();
                while let Ok((stream, _)) = listener.accept().await {
                    let log = log.clone();
                    tokio::spawn(async move {
                        let Ok(mut conn) = h2::server::handshake(stream).await else {
                            return;
                        };
                        while let Some(Ok((req, mut respond))) = conn.accept().await {
                            let ct = req
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            log.lock().unwrap().push((req.uri().path().to_string(), ct));
                            match mode {
                                Mode::Answer => {
                                    let resp = http::Response::builder()
                                        .status(200)
                                        .header("content-type", "application/grpc")
                                        .body(())
                                        .unwrap();
                                    let mut send = respond.send_response(resp, false).unwrap();
                                    send.send_data(bytes::Bytes::from(version_response()), false)
                                        .unwrap();
                                    let mut t = http::HeaderMap::new();
                                    t.insert("grpc-status", "0".parse().unwrap());
                                    send.send_trailers(t).unwrap();
                                }
                                Mode::Unimplemented => {
                                    let resp = http::Response::builder()
                                        .status(200)
                                        .header("content-type", "application/grpc")
                                        .header("grpc-status", "12")
                                        .header(
                                            "grpc-message",
                                            "unknown service runtime.v1.RuntimeService",
                                        )
                                        .body(())
                                        .unwrap();
                                    respond.send_response(resp, true).unwrap();
                                }
                                Mode::Hang => {
                                    // Keep the stream open and never answer.
                                    std::mem::forget(respond);
                                }
                            }
                        }
                    });
                }
            });
        });
        ready_rx.recv().unwrap();
        FakeCri {
            _dir: dir,
            sock,
            seen,
        }
    }
}

/// Runs `check --only runtime.cri-socket` with `sock` at /run/containerd/containerd.sock, in a private
/// mount namespace (a tmpfs over /run there; the host's /run is untouched).
fn cri_check(sock: &Path, timeout: &str) -> Value {
    let script = r#"mount -t tmpfs k8sd-test /run && mkdir -p /run/containerd && ln -s "$1" /run/containerd/containerd.sock && shift && exec "$@""#;
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(sock)
        .arg(bin())
        .args([
            "--only",
            "runtime.cri-socket",
            "--offline",
            "-o",
            "json",
            "--timeout",
            timeout,
        ])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    report(&out)
}

fn the_cri_version_call_is_made_and_its_answers_are_told_apart() {
    require(&["unshare", "mount"]);
    let ok = FakeCri::start(Mode::Answer);
    let r = cri_check(&ok.sock, "5");
    let f = only(&r, "runtime.cri-socket");
    assert_eq!(f["status"], "pass", "{f:#}");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("fake-cri 9.9.9 answers the CRI"),
        "{f:#}"
    );
    assert_eq!(
        ok.seen.lock().unwrap().as_slice(),
        [(
            "/runtime.v1.RuntimeService/Version".to_string(),
            "application/grpc".to_string()
        )]
    );

    let unimpl = FakeCri::start(Mode::Unimplemented);
    let f = cri_check(&unimpl.sock, "5");
    let f = only(&f, "runtime.cri-socket");
    assert_eq!(f["status"], "fail");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("does not serve CRI v1"),
        "{f:#}"
    );
    assert!(
        f["remediation"]
            .as_str()
            .unwrap()
            .contains("disabled_plugins")
    );

    // A runtime that accepts and never answers: bounded by --timeout, then a clear failure.
    let hang = FakeCri::start(Mode::Hang);
    let t = Instant::now();
    let f = cri_check(&hang.sock, "2");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    let f = only(&f, "runtime.cri-socket");
    assert_eq!(f["status"], "fail", "{f:#}");
    assert!(
        f["message"].as_str().unwrap().contains("no answer within"),
        "{f:#}"
    );

    // A socket path with nothing behind it.
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let f = cri_check(&dead, "2");
    let f = only(&f, "runtime.cri-socket");
    assert_eq!(f["status"], "fail");
    assert!(
        f["message"].as_str().unwrap().contains("cannot connect"),
        "{f:#}"
    );
}

/// A real containerd with a throw-away root, state and socket, and the CRI plugin on the native snapshotter.
struct Containerd {
    child: Child,
    _dir: tempfile::TempDir,
    sock: PathBuf,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_containerd(disable_cri: bool) -> Containerd {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = d.join("containerd.sock");
    let config = format!(
        "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [{disabled}]\n[grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_cgroup = true\n  disable_apparmor = true\n  restrict_oom_score_adj = true\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n    snapshotter = \"native\"\n",
        root = d.join("root").display(),
        state = d.join("state").display(),
        sock = sock.display(),
        disabled = if disable_cri {
            "\"io.containerd.grpc.v1.cri\""
        } else {
            ""
        },
    );
    std::fs::write(d.join("config.toml"), config).unwrap();
    let child = Command::new("containerd")
        .arg("--config")
        .arg(d.join("config.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(d.join("containerd.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let c = Containerd {
        child,
        _dir: dir,
        sock,
    };
    let t = Instant::now();
    while !c.sock.exists() && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        c.sock.exists(),
        "containerd did not create its socket: {}",
        std::fs::read_to_string(c._dir.path().join("containerd.log")).unwrap_or_default()
    );
    c
}

fn a_real_containerd_answers_and_with_the_cri_disabled_is_unimplemented() {
    require(&["unshare", "mount", "containerd"]);
    let c = start_containerd(false);
    // The CRI plugin comes up a moment after the socket.
    let mut f = Value::Null;
    for _ in 0..40 {
        let r = cri_check(&c.sock, "3");
        f = only(&r, "runtime.cri-socket").clone();
        if f["status"] == "pass" {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(f["status"], "pass", "{f:#}");
    let m = f["message"].as_str().unwrap();
    assert!(m.starts_with("containerd "), "{m}");
    assert!(m.contains("runtime API v1"), "{m}");
    drop(c);

    // Docker's containerd.io package: disabled_plugins = ["cri"].
    let c = start_containerd(true);
    let r = cri_check(&c.sock, "3");
    let f = only(&r, "runtime.cri-socket");
    assert_eq!(f["status"], "fail", "{f:#}");
    assert!(
        f["evidence"].to_string().contains("Unimplemented")
            || f["evidence"].to_string().contains("UNIMPLEMENTED"),
        "{f:#}"
    );
}

fn main() {
    support::harness::main(vec![
        trial!(a_listener_in_the_namespace_is_found_with_its_process),
        trial!(the_cri_version_call_is_made_and_its_answers_are_told_apart),
        trial!(a_real_containerd_answers_and_with_the_cri_disabled_is_unimplemented),
    ]);
}
