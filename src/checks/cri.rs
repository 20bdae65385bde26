//! `runtime.cri-socket`: which CRI endpoint the kubelet will use (its config, kubeadm's flags file, or the
//! sockets kubeadm itself looks for) and, on the live host, the CRI `Version` call over that unix socket.
//!
//! The call is gRPC over cleartext HTTP/2: the `h2` crate (already what hyper's HTTP/2 uses) carries one
//! unary request, and the two messages involved (an empty `VersionRequest`, a `VersionResponse` of four
//! strings) are encoded by hand. That is ~80 lines against tonic + prost + a protoc build step for a
//! single call whose wire shape has been frozen since CRI v1.

use super::{Area};
use crate::core::{check::CheckDef, source::Source};
use std::{path::Path, time::Duration};

use bytes::Bytes;
use thiserror::Error;

use crate::{
    core::check::Finding,
    core::facts::Fact,
    core::host::Host,
    checks::kubelet,
};

use super::runtime_config::Containerd;


pub const AREA: Area = Area {
    checks: &[
        CheckDef {
            id: "runtime.cri-socket",
            needs: &[&CRI],
            run: |f, _| Ok(decide(f.get(&CRI)?)),
        },
    ],
    fixes: &[],
};

/// The CRI endpoint and, on the live host, its answer to `Version` (a call on its own thread, bounded).
pub const CRI: Source<CriFacts> = Source::network("cri", |g| gather(g.host, g.cfg.timeout.mul_f64(0.3).min(Duration::from_secs(3)))).reaching(crate::core::source::Reach::LiveHost);

/// The sockets kubeadm looks for when no endpoint is configured (its `defaultKnownCRISockets`), as paths.
pub const KNOWN_SOCKETS: &[&str] = &[
    "/var/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
    "/var/run/cri-dockerd.sock",
];

/// The gRPC method the kubelet calls first.
pub const VERSION_PATH: &str = "/runtime.v1.RuntimeService/Version";
/// A CRI answer larger than this is not a Version response.
const MAX_RESPONSE: usize = 64 * 1024;

/// Which runtime a socket path belongs to, by its name.
pub fn runtime_of(path: &str) -> &'static str {
    if path.contains("cri-dockerd") {
        "cri-dockerd"
    } else if path.contains("containerd") {
        "containerd"
    } else if path.contains("crio") {
        "CRI-O"
    } else {
        "unknown runtime"
    }
}

/// `unix:///run/x.sock` or `/run/x.sock` → `/run/x.sock`; other schemes (tcp://, npipe://) → None.
pub fn socket_path(endpoint: &str) -> Option<String> {
    let e = endpoint.trim();
    if let Some(p) = e.strip_prefix("unix://") {
        return p.starts_with('/').then(|| p.to_string());
    }
    (e.starts_with('/')).then(|| e.to_string())
}

/// The answer to `Version`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct VersionInfo {
    pub version: String,
    pub runtime_name: String,
    pub runtime_version: String,
    pub runtime_api_version: String,
}

/// Why a CRI call failed.
#[derive(Debug, Clone, PartialEq, Eq, Error, serde::Serialize, serde::Deserialize)]
pub enum CriError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    #[error("HTTP/2 to {0} failed: {1}")]
    Http2(String, String),
    #[error("no answer within {0} ms")]
    Timeout(u128),
    #[error("the runtime answered gRPC status {code} ({name}): {message}")]
    Status {
        code: u32,
        name: String,
        message: String,
    },
    #[error("malformed answer: {0}")]
    Malformed(String),
}

fn status_name(code: u32) -> &'static str {
    match code {
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        16 => "UNAUTHENTICATED",
        _ => "other",
    }
}

/// gRPC's length-prefixed message: flag 0 (not compressed), 4-byte big-endian length, the bytes.
pub fn grpc_frame(msg: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + msg.len());
    v.push(0);
    v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    v.extend_from_slice(msg);
    v
}

/// The one message of a unary gRPC body.
pub fn grpc_unframe(body: &[u8]) -> Result<&[u8], CriError> {
    if body.len() < 5 {
        return Err(CriError::Malformed(format!(
            "{} byte(s) of body",
            body.len()
        )));
    }
    if body[0] != 0 {
        return Err(CriError::Malformed(
            "compressed message (not asked for)".into(),
        ));
    }
    let n = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    body.get(5..5 + n).ok_or_else(|| {
        CriError::Malformed(format!("message of {n} bytes, {} present", body.len() - 5))
    })
}

fn varint(b: &[u8], i: &mut usize) -> Result<u64, CriError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b
            .get(*i)
            .ok_or_else(|| CriError::Malformed("truncated varint".into()))?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(CriError::Malformed("varint too long".into()))
}

/// Decodes a `VersionResponse` (fields 1–4, all strings); unknown fields are skipped as protobuf says.
pub fn decode_version(msg: &[u8]) -> Result<VersionInfo, CriError> {
    let mut out = VersionInfo::default();
    let mut i = 0;
    while i < msg.len() {
        let key = varint(msg, &mut i)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(msg, &mut i)?;
            }
            1 => i += 8,
            5 => i += 4,
            2 => {
                let n = varint(msg, &mut i)? as usize;
                let bytes = msg
                    .get(i..i.saturating_add(n))
                    .ok_or_else(|| CriError::Malformed("truncated field".into()))?;
                i += n;
                let s = String::from_utf8_lossy(bytes).into_owned();
                match field {
                    1 => out.version = s,
                    2 => out.runtime_name = s,
                    3 => out.runtime_version = s,
                    4 => out.runtime_api_version = s,
                    _ => {}
                }
            }
            w => return Err(CriError::Malformed(format!("wire type {w}"))),
        }
    }
    if i > msg.len() {
        return Err(CriError::Malformed("truncated field".into()));
    }
    Ok(out)
}

/// `grpc-message` is percent-encoded.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn grpc_status(h: &http::HeaderMap) -> Option<Result<(), CriError>> {
    let code: u32 = h.get("grpc-status")?.to_str().ok()?.trim().parse().ok()?;
    if code == 0 {
        return Some(Ok(()));
    }
    let message = h
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some(Err(CriError::Status {
        code,
        name: status_name(code).into(),
        message,
    }))
}

async fn call(sock: &Path, method: &str, request: &[u8]) -> Result<Vec<u8>, CriError> {
    let name = sock.display().to_string();
    let h2e = |e: h2::Error| CriError::Http2(name.clone(), e.to_string());
    let stream = tokio::net::UnixStream::connect(sock)
        .await
        .map_err(|e| CriError::Connect(name.clone(), e.to_string()))?;
    let (client, conn) = h2::client::handshake(stream).await.map_err(h2e)?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = async {
        let mut client = client.ready().await.map_err(h2e)?;
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://localhost{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|e| CriError::Malformed(e.to_string()))?;
        let (resp, mut send) = client.send_request(req, false).map_err(h2e)?;
        send.send_data(Bytes::from(grpc_frame(request)), true)
            .map_err(h2e)?;
        let resp = resp.await.map_err(h2e)?;
        let (head, mut body) = resp.into_parts();
        if head.status != http::StatusCode::OK {
            return Err(CriError::Malformed(format!("HTTP status {}", head.status)));
        }
        // A trailers-only answer (errors such as UNIMPLEMENTED) carries the status in the headers.
        if let Some(Err(e)) = grpc_status(&head.headers) {
            return Err(e);
        }
        let mut buf = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(h2e)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            buf.extend_from_slice(&chunk);
            if buf.len() > MAX_RESPONSE {
                return Err(CriError::Malformed(format!(
                    "answer larger than {MAX_RESPONSE} bytes"
                )));
            }
        }
        match body.trailers().await.map_err(h2e)? {
            Some(t) => {
                if let Some(Err(e)) = grpc_status(&t) {
                    return Err(e);
                }
            }
            None if grpc_status(&head.headers).is_none() => {
                return Err(CriError::Malformed("no grpc-status".into()));
            }
            None => {}
        }
        Ok(grpc_unframe(&buf)?.to_vec())
    }
    .await;
    driver.abort();
    result
}

/// Calls the CRI `Version` method on a unix socket, bounded by `timeout` from connect to the last byte.
pub fn version(sock: &Path, timeout: Duration) -> Result<VersionInfo, CriError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CriError::Connect(sock.display().to_string(), e.to_string()))?;
    rt.block_on(async {
        match tokio::time::timeout(timeout, call(sock, VERSION_PATH, &[])).await {
            Ok(r) => r.and_then(|m| decode_version(&m)),
            Err(_) => Err(CriError::Timeout(timeout.as_millis())),
        }
    })
}

/// Where the endpoint came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configured {
    pub endpoint: String,
    /// `file:line: key` that sets it.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    NotRun(String),
    Answered(VersionInfo),
    Failed(CriError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriFacts {
    pub configured: Option<Configured>,
    /// kubeadm's known sockets that exist here.
    pub found: Vec<String>,
    /// Whether the configured endpoint's socket exists (None: not configured or not a unix socket).
    pub configured_exists: Option<bool>,
    /// The socket that was (or would be) called.
    pub socket: Option<String>,
    pub probe: Probe,
    /// containerd's config, when the socket is containerd's and the config could be read.
    pub containerd: Option<Result<Containerd, String>>,
}

/// The endpoint the kubelet is configured with: config.yaml's `containerRuntimeEndpoint`, else kubeadm-flags.env.
pub fn configured_endpoint(
    config_yaml: Option<&str>,
    flags_env: Option<&str>,
) -> Option<Configured> {
    if let Some(text) = config_yaml
        && let Ok(k) = kubelet::parse(text)
        && let Some(e) = k.container_runtime_endpoint.filter(|e| !e.is_empty())
    {
        return Some(Configured {
            source: format!(
                "{}:{}: containerRuntimeEndpoint: {e}",
                kubelet::CONFIG_PATH,
                kubelet::line_of(text, "containerRuntimeEndpoint").unwrap_or(0)
            ),
            endpoint: e,
        });
    }
    let env = flags_env?;
    let e = kubelet::flag(env, "container-runtime-endpoint")?;
    Some(Configured {
        source: format!("{}: --container-runtime-endpoint={e}", kubelet::FLAGS_ENV),
        endpoint: e,
    })
}

pub fn gather(host: &Host, timeout: Duration) -> Fact<CriFacts> {
    let config = host.read_opt(kubelet::CONFIG_PATH)?;
    let flags = host.read_opt(kubelet::FLAGS_ENV)?;
    let configured = configured_endpoint(config.as_deref(), flags.as_deref());
    let exists = |p: &str| host.exists(p) || host.exists(p.strip_prefix("/var").unwrap_or(p));
    let found: Vec<String> = KNOWN_SOCKETS
        .iter()
        .filter(|p| exists(p))
        .map(|p| p.to_string())
        .collect();
    let configured_path = configured.as_ref().and_then(|c| socket_path(&c.endpoint));
    let configured_exists = configured_path.as_deref().map(exists);
    let socket = match (&configured, &configured_path) {
        (Some(_), p) => p.clone().filter(|_| configured_exists == Some(true)),
        (None, _) if found.len() == 1 => Some(found[0].clone()),
        _ => None,
    };
    let probe = match &socket {
        None => Probe::NotRun("no single socket to call".into()),
        Some(_) if !host.is_live() => Probe::NotRun(format!(
            "--root {} is not the live host: the runtime was not called",
            host.root().display()
        )),
        // Only the live host is called, so the path is the host's own.
        Some(s) => match host.probe(&format!("CRI Version over {s}"), || {
            version(Path::new(s), timeout)
        })? {
            Ok(v) => Probe::Answered(v),
            Err(e) => Probe::Failed(e),
        },
    };
    let containerd = socket
        .as_deref()
        .filter(|s| runtime_of(s) == "containerd")
        .and_then(
            |_| match host.read_opt(super::runtime_config::CONTAINERD_CONFIG) {
                Ok(Some(t)) => Some(super::runtime_config::parse_containerd(
                    super::runtime_config::CONTAINERD_CONFIG,
                    &t,
                )),
                Ok(None) => None,
                Err(e) => Some(Err(e.to_string())),
            },
        );
    Ok(CriFacts {
        configured,
        found,
        configured_exists,
        socket,
        probe,
        containerd,
    })
}

pub fn decide(c: &CriFacts) -> Finding {
    let mut ev = Vec::new();
    if let Some(k) = &c.configured {
        ev.push(k.source.clone());
    }
    for f in &c.found {
        ev.push(format!("{f}: exists ({})", runtime_of(f)));
    }
    if let Some(Ok(cd)) = &c.containerd
        && let Some(d) = &cd.cri_disabled
    {
        ev.push(d.clone());
    }
    match (&c.configured, c.configured_exists) {
        (Some(k), None) => {
            return Finding::fail(format!(
                "the kubelet's runtime endpoint {} is not a unix socket",
                k.endpoint
            ))
            .evidence_all(ev)
            .remediation("set containerRuntimeEndpoint to unix:///run/containerd/containerd.sock (or CRI-O's /var/run/crio/crio.sock)");
        }
        (Some(k), Some(false)) => {
            return Finding::fail(format!(
                "the kubelet is configured for {} ({}), which does not exist: is the runtime installed and running?",
                k.endpoint,
                runtime_of(&k.endpoint)
            ))
            .evidence_all(ev)
            .remediation(format!(
                "install and start the runtime (`systemctl enable --now {}`), or point containerRuntimeEndpoint at the socket that exists",
                if runtime_of(&k.endpoint) == "CRI-O" { "crio" } else { "containerd" }
            ));
        }
        (None, _) if c.found.is_empty() => {
            return Finding::fail(
                "no container runtime: none of containerd's, CRI-O's or cri-dockerd's sockets exists; kubeadm's preflight fails with [ERROR CRI]",
            )
            .evidence_all(ev)
            .evidence(format!("looked for: {}", KNOWN_SOCKETS.join(", ")))
            .remediation(
                "install a CRI runtime and start it: `apt-get install containerd` (or containerd.io) then `systemctl enable --now containerd`",
            );
        }
        (None, _) if c.found.len() > 1 => {
            return Finding::fail(format!(
                "{} CRI sockets exist and none is configured: kubeadm stops with \"Found multiple CRI endpoints on the host\"",
                c.found.len()
            ))
            .evidence_all(ev)
            .remediation("pass --cri-socket unix:///PATH to kubeadm init/join (or set nodeRegistration.criSocket), or stop the runtime you do not use");
        }
        _ => {}
    }
    let sock = c.socket.clone().unwrap_or_default();
    match &c.probe {
        Probe::Answered(v) => Finding::pass(format!(
            "{} {} answers the CRI on {sock} (runtime API {})",
            v.runtime_name, v.runtime_version, v.runtime_api_version
        ))
        .evidence_all(ev)
        .evidence(format!(
            "{VERSION_PATH}: version {}, runtime {} {}, API {}",
            v.version, v.runtime_name, v.runtime_version, v.runtime_api_version
        )),
        Probe::Failed(e) => {
            let unimplemented = matches!(e, CriError::Status { code: 12, .. });
            let msg = if unimplemented {
                format!("{sock} does not serve CRI v1 ({e}): the kubelet cannot start pods")
            } else {
                format!("{sock} does not answer the CRI Version call: {e}")
            };
            let fix = if unimplemented && runtime_of(&sock) == "containerd" {
                "containerd's CRI plugin is off (Docker's containerd.io package ships disabled_plugins = [\"cri\"]) or too old for CRI v1: `containerd config default > /etc/containerd/config.toml`, set SystemdCgroup = true, `systemctl restart containerd`"
            } else {
                "start the runtime (`systemctl status containerd` / `crio`), and read its log (`journalctl -u containerd`)"
            };
            Finding::fail(msg)
                .evidence_all(ev)
                .evidence(format!("{sock}: {e}"))
                .remediation(fix)
        }
        Probe::NotRun(why) => {
            if let Some(Ok(cd)) = &c.containerd
                && cd.cri_disabled.is_some()
            {
                return Finding::fail(format!(
                    "containerd's config turns its CRI plugin off: the kubelet cannot talk to {sock}"
                ))
                .evidence_all(ev)
                .remediation("remove \"cri\" from disabled_plugins in /etc/containerd/config.toml (or regenerate it with `containerd config default`), then `systemctl restart containerd`");
            }
            Finding::pass(format!("CRI socket {sock} ({}) exists", runtime_of(&sock)))
                .evidence_all(ev)
                .evidence(format!("not called: {why}"))
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::check::Status;

    /// A VersionResponse as containerd 1.7 sends it, encoded by hand from the proto field numbers.
    fn containerd_answer() -> Vec<u8> {
        let mut m = Vec::new();
        for (field, s) in [(1u8, "0.1.0"), (2, "containerd"), (3, "1.7.2"), (4, "v1")] {
            m.push(field << 3 | 2);
            m.push(s.len() as u8);
            m.extend_from_slice(s.as_bytes());
        }
        m
    }

    #[test]
    fn version_response_decodes_and_garbage_is_an_error() {
        let v = decode_version(&containerd_answer()).unwrap();
        assert_eq!(
            (
                v.runtime_name.as_str(),
                v.runtime_version.as_str(),
                v.runtime_api_version.as_str()
            ),
            ("containerd", "1.7.2", "v1")
        );
        // Unknown varint and fixed fields are skipped.
        let mut m = vec![5 << 3, 0x96, 0x01, 6 << 3 | 5, 1, 2, 3, 4];
        m.extend(containerd_answer());
        assert_eq!(decode_version(&m).unwrap().runtime_version, "1.7.2");
        assert!(
            decode_version(&[2 << 3 | 2, 200, 1]).is_err(),
            "length past the end"
        );
        assert!(decode_version(&[0x80]).is_err(), "truncated varint");
        assert!(decode_version(&[3 << 3 | 3]).is_err(), "group wire type");
        let framed = grpc_frame(b"abc");
        assert_eq!(framed, [0, 0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(grpc_unframe(&framed).unwrap(), b"abc");
        assert!(grpc_unframe(&[0, 0, 0, 0, 9, 1]).is_err());
        assert!(grpc_unframe(&[1, 0, 0, 0, 0]).is_err());
        assert_eq!(
            percent_decode("unknown%20service%3A x"),
            "unknown service: x"
        );
    }

    #[test]
    fn endpoints_come_from_the_config_then_kubeadms_flags() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock").as_deref(),
            Some("/run/containerd/containerd.sock")
        );
        assert_eq!(
            socket_path("/var/run/crio/crio.sock").as_deref(),
            Some("/var/run/crio/crio.sock")
        );
        assert_eq!(socket_path("tcp://10.0.0.1:1234"), None);
        let c = configured_endpoint(
            Some("kind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix:///var/run/crio/crio.sock\n"),
            Some("KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///x.sock\"\n"),
        )
        .unwrap();
        assert_eq!(c.endpoint, "unix:///var/run/crio/crio.sock");
        assert_eq!(
            c.source,
            "/var/lib/kubelet/config.yaml:2: containerRuntimeEndpoint: unix:///var/run/crio/crio.sock"
        );
        let c = configured_endpoint(
            Some("kind: KubeletConfiguration\n"),
            Some("KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///x.sock\"\n"),
        )
        .unwrap();
        assert_eq!(c.endpoint, "unix:///x.sock");
        assert_eq!(configured_endpoint(None, None), None);
        assert_eq!(runtime_of("/run/containerd/containerd.sock"), "containerd");
        assert_eq!(runtime_of("/var/run/cri-dockerd.sock"), "cri-dockerd");
    }

    fn facts(found: &[&str], probe: Probe) -> CriFacts {
        CriFacts {
            configured: None,
            found: found.iter().map(|s| s.to_string()).collect(),
            configured_exists: None,
            socket: (found.len() == 1).then(|| found[0].to_string()),
            probe,
            containerd: None,
        }
    }

    #[test]
    fn verdicts() {
        let sock = "/var/run/containerd/containerd.sock";
        let v = decode_version(&containerd_answer()).unwrap();
        let f = decide(&facts(&[sock], Probe::Answered(v)));
        assert_eq!(f.status, Status::Pass);
        assert!(
            f.message.contains("containerd 1.7.2 answers"),
            "{}",
            f.message
        );
        let f = decide(&facts(&[], Probe::NotRun("x".into())));
        assert_eq!(f.status, Status::Fail);
        assert!(f.message.contains("[ERROR CRI]"));
        let f = decide(&facts(
            &[sock, "/var/run/crio/crio.sock"],
            Probe::NotRun("x".into()),
        ));
        assert!(
            f.message.contains("Found multiple CRI endpoints"),
            "{}",
            f.message
        );
        let unimpl = CriError::Status {
            code: 12,
            name: "UNIMPLEMENTED".into(),
            message: "unknown service runtime.v1.RuntimeService".into(),
        };
        let f = decide(&facts(&[sock], Probe::Failed(unimpl)));
        assert_eq!(f.status, Status::Fail);
        assert!(f.message.contains("does not serve CRI v1"), "{}", f.message);
        assert!(f.remediation.unwrap().contains("disabled_plugins"));
        let mut x = facts(&[sock], Probe::NotRun("--root".into()));
        assert_eq!(decide(&x).status, Status::Pass);
        x.containerd = Some(Ok(super::super::runtime_config::parse_containerd(
            "/etc/containerd/config.toml",
            "disabled_plugins = [\"cri\"]\n",
        )
        .unwrap()));
        assert_eq!(
            decide(&x).status,
            Status::Fail,
            "CRI off in the config, even unprobed"
        );
        let mut x = facts(&[], Probe::NotRun("x".into()));
        x.configured = Some(Configured {
            endpoint: "unix:///run/crio/crio.sock".into(),
            source: "s".into(),
        });
        x.configured_exists = Some(false);
        let f = decide(&x);
        assert!(f.message.contains("does not exist"), "{}", f.message);
    }
}
