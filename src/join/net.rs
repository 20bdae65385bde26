//! The network half of discovery, every operation under one deadline: name resolution, a TCP
//! connect that tells refused, timed out and unreachable apart, a TLS handshake that captures the
//! presented chain without trusting it (kubeadm's insecure first request), and one HTTP/1.1 GET.

use std::{
    io::{self, Read, Write},
    net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime},
};

/// Time left until `deadline`, or a timed-out error naming what was waited for.
fn left(deadline: Instant, what: &str) -> io::Result<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what}: --timeout reached"),
        ))
    } else {
        Ok(d)
    }
}

/// Resolves `host` (an IP literal needs no lookup); the lookup runs in a thread abandoned at the deadline.
pub fn resolve(host: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::channel();
    let name = host.to_string();
    thread::spawn(move || {
        let _ = tx.send(
            (name.as_str(), port)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>()),
        );
    });
    let wait = left(deadline, "resolving").map_err(|e| e.to_string())?;
    match rx.recv_timeout(wait) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(format!("{host} resolves to no address")),
        Ok(Err(e)) => Err(format!("cannot resolve {host}: {e}")),
        Err(_) => Err(format!("resolving {host} timed out (--timeout)")),
    }
}

/// Why one TCP connect failed, as the operator needs to tell it apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectFailure {
    /// RST: the host is up and nothing listens on the port (or a firewall rejects with RST).
    Refused,
    /// No answer before the deadline: a firewall drops the SYN, or the host is down.
    TimedOut,
    /// No route, or ICMP unreachable (host/network unreachable, or a firewall's `reject`).
    Unreachable,
    Other,
}

/// Classifies a connect error.
pub fn classify(e: &io::Error) -> ConnectFailure {
    const ENETUNREACH: i32 = 101;
    const EHOSTUNREACH: i32 = 113;
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ConnectFailure::TimedOut,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            ConnectFailure::Unreachable
        }
        _ if matches!(e.raw_os_error(), Some(ENETUNREACH | EHOSTUNREACH)) => {
            ConnectFailure::Unreachable
        }
        _ => ConnectFailure::Other,
    }
}

/// Connects to the first address that answers; on failure, every attempt with its error.
pub fn connect(
    addrs: &[SocketAddr],
    deadline: Instant,
) -> Result<(TcpStream, SocketAddr), Vec<(SocketAddr, io::Error)>> {
    let mut failed = Vec::new();
    for &addr in addrs {
        let r = left(deadline, "connecting").and_then(|d| TcpStream::connect_timeout(&addr, d));
        match r {
            Ok(s) => return Ok((s, addr)),
            Err(e) => failed.push((addr, e)),
        }
    }
    Err(failed)
}

/// Accepts any server certificate but records the chain; the handshake signature is still checked,
/// so the server proves it holds the key of the certificate it presents (as Go's InsecureSkipVerify).
#[derive(Debug)]
struct Capture {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        *chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS session whose server was not verified, with what the handshake showed.
pub struct Tls {
    pub stream: StreamOwned<ClientConnection, TcpStream>,
    pub chain: Vec<CertificateDer<'static>>,
    /// `TLSv1_3 TLS13_AES_128_GCM_SHA256`.
    pub session: String,
}

/// Runs the TLS handshake on `tcp` for `host`, capturing the chain, before the deadline.
pub fn handshake(tcp: TcpStream, host: &str, deadline: Instant) -> Result<Tls, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let capture = Arc::new(Capture {
        chain: Mutex::new(Vec::new()),
        provider: provider.clone(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))?;
    let conn = ClientConnection::new(Arc::new(config), name).map_err(|e| format!("TLS: {e}"))?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        let wait = left(deadline, "TLS handshake").map_err(|e| e.to_string())?;
        set_timeouts(&stream.sock, wait).map_err(|e| format!("socket: {e}"))?;
        if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
            return Err(handshake_error(&e));
        }
    }
    let session = format!(
        "{} {}",
        stream
            .conn
            .protocol_version()
            .map_or("?".into(), |v| format!("{v:?}")),
        stream
            .conn
            .negotiated_cipher_suite()
            .map_or("?".into(), |s| format!("{:?}", s.suite()))
    );
    let chain = std::mem::take(&mut *capture.chain.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Tls {
        stream,
        chain,
        session,
    })
}

fn set_timeouts(sock: &TcpStream, d: Duration) -> io::Result<()> {
    sock.set_read_timeout(Some(d))?;
    sock.set_write_timeout(Some(d))
}

fn handshake_error(e: &io::Error) -> String {
    let text = e.to_string();
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            "the TLS handshake timed out (--timeout): the port accepts connections but no TLS server answers".into()
        }
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => format!(
            "the server closed the connection during the TLS handshake ({text})"
        ),
        _ if text.contains("corrupt message") || text.contains("InvalidContentType") => format!(
            "the endpoint does not speak TLS ({text}): is this the API server's port (6443)?"
        ),
        _ => format!("the TLS handshake failed: {text}"),
    }
}

/// An HTTP response, its headers names lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body's size as received (a recorded body is masked, so it may be shorter now).
    pub size: usize,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The most a response may carry (cluster-info is a few KiB): a bound, not a guess.
const MAX_RESPONSE: usize = 8 << 20;

/// Sends `GET path` on the session and reads the response before the deadline.
pub fn get(
    tls: &mut Tls,
    host_header: &str,
    path: &str,
    deadline: Instant,
) -> Result<Response, String> {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: k8sdoctor/{}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let io_err = |e: io::Error| match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("no HTTP response to GET {path} before --timeout")
        }
        _ => format!("GET {path}: {e}"),
    };
    let wait = left(deadline, "sending the request").map_err(io_err)?;
    set_timeouts(&tls.stream.sock, wait).map_err(io_err)?;
    tls.stream.write_all(req.as_bytes()).map_err(io_err)?;
    tls.stream.flush().map_err(io_err)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(resp) = parse_response(&buf, false)? {
            return Ok(resp);
        }
        let wait = left(deadline, "reading the response").map_err(io_err)?;
        set_timeouts(&tls.stream.sock, wait).map_err(io_err)?;
        let n = match tls.stream.read(&mut chunk) {
            Ok(n) => n,
            // A peer that closes without close_notify still ended the body.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(io_err(e)),
        };
        if n == 0 {
            return parse_response(&buf, true)?.ok_or_else(|| {
                format!("the server closed the connection mid-response to GET {path}")
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE {
            return Err(format!(
                "the response to GET {path} exceeds {MAX_RESPONSE} bytes"
            ));
        }
    }
}

/// Parses a complete HTTP/1.1 response from `buf`, or `None` while more bytes are needed.
/// Bodies are delimited by Content-Length, chunked encoding, or (`eof`) the end of the stream.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let head_len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(format!(
                "not an HTTP response ({e}): is this the API server?"
            ));
        }
    };
    let status = r.code.unwrap_or(0);
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let find = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let rest = &buf[head_len..];
    let body =
        if find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            match dechunk(rest)? {
                Some(b) => b,
                None if eof => return Err("the chunked response body ended early".into()),
                None => return Ok(None),
            }
        } else if let Some(len) = find("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| format!("bad Content-Length {len:?}"))?;
            if rest.len() < len {
                return if eof {
                    Err(format!(
                        "the response body ended after {} of {len} bytes",
                        rest.len()
                    ))
                } else {
                    Ok(None)
                };
            }
            rest[..len].to_vec()
        } else if eof {
            rest.to_vec()
        } else {
            return Ok(None);
        };
    Ok(Some(Response {
        status,
        headers,
        size: body.len(),
        body,
    }))
}

/// Decodes a chunked body; `None` until the last chunk has arrived.
fn dechunk(mut b: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&b[..eol]);
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        if b.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_by_length_chunks_and_eof() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nDate: x\r\n\r\nhello",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.header("DATE")),
            (200, &b"hello"[..], Some("x"))
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false),
            Ok(None)
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", true).is_err());
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked, false).unwrap().unwrap().body,
            b"hello"
        );
        assert_eq!(parse_response(&chunked[..50], false), Ok(None));
        let close = b"HTTP/1.1 404 Not Found\r\n\r\nnope";
        assert_eq!(parse_response(close, false), Ok(None));
        assert_eq!(parse_response(close, true).unwrap().unwrap().status, 404);
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", false).is_err());
    }

    #[test]
    fn connect_errors_are_classified() {
        let e = |k| io::Error::from(k);
        assert_eq!(
            classify(&e(io::ErrorKind::ConnectionRefused)),
            ConnectFailure::Refused
        );
        assert_eq!(
            classify(&e(io::ErrorKind::TimedOut)),
            ConnectFailure::TimedOut
        );
        assert_eq!(
            classify(&io::Error::from_raw_os_error(101)),
            ConnectFailure::Unreachable
        );
        assert_eq!(
            classify(&io::Error::from_raw_os_error(113)),
            ConnectFailure::Unreachable
        );
        assert_eq!(
            classify(&e(io::ErrorKind::PermissionDenied)),
            ConnectFailure::Other
        );
    }

    #[test]
    fn a_closed_loopback_port_is_refused_quickly() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(5);
        let errs = connect(&[addr], deadline).unwrap_err();
        assert_eq!(classify(&errs[0].1), ConnectFailure::Refused);
        assert_eq!(resolve("127.0.0.1", port, deadline).unwrap(), [addr]);
        assert!(
            resolve("localhost", port, deadline)
                .unwrap()
                .iter()
                .all(|a| a.ip().is_loopback())
        );
    }

    #[test]
    fn a_plain_http_server_is_told_apart_from_tls() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let (tcp, _) = connect(&[addr], deadline).unwrap();
        let e = handshake(tcp, "127.0.0.1", deadline).err().unwrap();
        assert!(e.contains("does not speak TLS"), "{e}");
        server.join().unwrap();
    }
}
