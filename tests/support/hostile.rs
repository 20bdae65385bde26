//! Hostile loopback peers for the network clients: a blackhole, a slowloris, an endless fast body, a
//! huge Content-Length, garbage instead of HTTP (or TLS), and an echo that reflects the request's
//! headers into its error body. Optionally behind TLS with a test CA. Threads stop on drop.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use super::apiserver::{CaKey, TestCa};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Accepts and never sends or reads a byte.
    Blackhole,
    /// Sends a 200 head, then one body byte every 100 ms.
    Slowloris,
    /// Sends a chunked 200 body as fast as the socket takes it, forever.
    Endless,
    /// Announces a 1 TiB Content-Length and streams it.
    HugeLength,
    /// Sends random bytes instead of HTTP (or a TLS ServerHello).
    Garbage,
    /// Answers `/version` properly, then an endless body to every other request (the lists).
    EndlessLists,
    /// Answers 500 with a Kubernetes Status whose message is the request head, headers included.
    Echo,
}

pub struct Hostile {
    addr: SocketAddr,
    pub ca: Arc<TestCa>,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

impl Hostile {
    /// Starts `peer` on 127.0.0.1:<ephemeral>, behind TLS when `tls` (certificate for 127.0.0.1).
    pub fn start(peer: Peer, tls: bool) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let ca = Arc::new(TestCa::new(CaKey::Ecdsa));
        let (cert, key) = ca.serving_cert(&["127.0.0.1", "localhost"], false);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert.into(), ca.der.clone().into()],
                    rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
                )
                .unwrap(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let accept = thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (flag, config) = (flag.clone(), config.clone());
                        thread::spawn(move || {
                            conn.set_nonblocking(false).unwrap();
                            conn.set_read_timeout(Some(Duration::from_millis(200)))
                                .unwrap();
                            conn.set_write_timeout(Some(Duration::from_secs(1)))
                                .unwrap();
                            serve(peer, conn, tls.then_some(config), &flag);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Hostile {
            addr,
            ca,
            stop,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Seeded xorshift bytes.
fn noise(seed: &mut u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 24) as u8
        })
        .collect()
}

fn serve(
    peer: Peer,
    mut tcp: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: &AtomicBool,
) {
    let live = || !stop.load(Ordering::SeqCst);
    match peer {
        Peer::Blackhole => {
            while live() {
                thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        Peer::Garbage => {
            let mut seed = 0x9e3779b97f4a7c15;
            for _ in 0..64 {
                if !live() || tcp.write_all(&noise(&mut seed, 16 << 10)).is_err() {
                    return;
                }
            }
            return;
        }
        _ => {}
    }
    match tls {
        Some(cfg) => {
            let conn = rustls::ServerConnection::new(cfg).unwrap();
            http(peer, &mut rustls::StreamOwned::new(conn, tcp), stop);
        }
        None => http(peer, &mut tcp, stop),
    }
}

/// Reads the request head (bounded), retrying read timeouts until stop.
fn read_head(s: &mut impl Read, stop: &AtomicBool) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) && head.len() < 64 << 10 {
        match s.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => {
                head.extend_from_slice(&buf[..n]);
                if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    return Some(String::from_utf8_lossy(&head[..end]).into_owned());
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return None,
        }
    }
    None
}

fn http(peer: Peer, s: &mut (impl Read + Write), stop: &AtomicBool) {
    let live = || !stop.load(Ordering::SeqCst);
    let Some(head) = read_head(s, stop) else {
        return;
    };
    let peer = match peer {
        Peer::EndlessLists if head.starts_with("GET /version") => {
            let body =
                r#"{"major":"1","minor":"30","gitVersion":"v1.30.2","platform":"linux/amd64"}"#;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = s.flush();
            // Keep-alive: the next request on this connection is a list.
            return http(Peer::EndlessLists, s, stop);
        }
        Peer::EndlessLists => Peer::Endless,
        p => p,
    };
    match peer {
        Peer::Slowloris => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{");
            let _ = s.flush();
            while live() && s.write_all(b" ").and_then(|_| s.flush()).is_ok() {
                thread::sleep(Duration::from_millis(100));
            }
        }
        Peer::Endless => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
            let chunk = format!("10000\r\n{}\r\n", "[".repeat(0x10000));
            while live() && s.write_all(chunk.as_bytes()).is_ok() {}
        }
        Peer::HugeLength => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1099511627776\r\n\r\n");
            let block = vec![b'"'; 64 << 10];
            while live() && s.write_all(&block).is_ok() {}
        }
        Peer::Echo => {
            let message = serde_json::json!({
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": format!("you sent: {head}"),
                "reason": "InternalError",
                "code": 500,
            })
            .to_string();
            let _ = write!(
                s,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{message}",
                message.len()
            );
            let _ = s.flush();
        }
        Peer::Blackhole | Peer::Garbage | Peer::EndlessLists => {
            unreachable!("handled before HTTP")
        }
    }
}
