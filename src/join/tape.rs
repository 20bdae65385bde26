//! What `join-check` reads from the outside world, as the values a bundle records: the command as
//! discovery reads it (the token's secret withheld, the verdict on its form kept), the resolver's
//! answer, every connect attempt's outcome, the handshake (session and presented chain), the
//! cluster-info response, the local clock, and the verdict on the token's signature. Each goes through
//! the host's tape ([`Host::probe`]) under the step it feeds: recorded (masked) by `--bundle`, answered
//! from the recording by `--from-bundle`, where nothing is resolved, dialled or read.

use std::{
    net::{SocketAddr, TcpStream},
    time::Instant,
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{
    command::JoinCommand,
    net::{self, ConnectFailure, Response, Tls},
};
use crate::{
    bundle::format::hex,
    core::{check::Finding, facts::FactError, host::Host},
};

/// A recorded input as a step's outcome: absent from the bundle is `skip`, unreadable is `error`.
pub fn ask<T: Serialize + DeserializeOwned>(
    host: &Host,
    key: &str,
    f: impl FnOnce() -> T,
) -> Result<T, Finding> {
    host.probe(key, f).map_err(|e| match e {
        FactError::Missing(m) => Finding::skip(m),
        FactError::Unreadable(m) => Finding::error(m),
    })
}

/// The command as a bundle holds it: the parsed command with the token's secret masked, and the
/// verdict on the token's form (`Ok(id)`, or why kubeadm would refuse it) judged on the real one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Command {
    pub command: JoinCommand,
    pub token: Option<Result<String, String>>,
}

/// What one TCP connect did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Connect {
    Established {
        addr: SocketAddr,
        ms: u64,
    },
    /// Every address tried, each with why it failed.
    Failed(Vec<Attempt>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub addr: SocketAddr,
    pub failure: ConnectFailure,
    /// The error as the system said it (`Connection refused (os error 111)`).
    pub error: String,
}

/// Connects to the first address that answers, leaving the stream in `stream` for the handshake.
pub fn connect(addrs: &[SocketAddr], deadline: Instant, stream: &mut Option<TcpStream>) -> Connect {
    let t = Instant::now();
    match net::connect(addrs, deadline) {
        Ok((s, addr)) => {
            *stream = Some(s);
            Connect::Established {
                addr,
                ms: t.elapsed().as_millis() as u64,
            }
        }
        Err(failed) => Connect::Failed(
            failed
                .into_iter()
                .map(|(addr, e)| Attempt {
                    addr,
                    failure: net::classify(&e),
                    error: e.to_string(),
                })
                .collect(),
        ),
    }
}

/// What the TLS handshake showed: the session, and the presented chain as hex DER (hex, not base64,
/// so no run of it can ever look like a credential to the masking layer and be altered).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Handshake {
    pub session: String,
    pub chain: Vec<String>,
}

/// Runs the handshake on the connected stream, leaving the session in `session` for the request.
pub fn handshake(
    stream: Option<TcpStream>,
    host: &str,
    deadline: Instant,
    session: &mut Option<Tls>,
) -> Result<Handshake, String> {
    let tcp = stream.ok_or("no TCP connection to run the TLS handshake on")?;
    let tls = net::handshake(tcp, host, deadline)?;
    let hs = Handshake {
        session: tls.session.clone(),
        chain: tls.chain.iter().map(|c| hex(c)).collect(),
    };
    *session = Some(tls);
    Ok(hs)
}

impl Handshake {
    /// The presented chain as DER.
    pub fn chain(&self) -> Result<Vec<CertificateDer<'static>>, String> {
        self.chain
            .iter()
            .enumerate()
            .map(|(i, h)| {
                unhex(h)
                    .map(CertificateDer::from)
                    .ok_or_else(|| format!("the recorded certificate [{i}] is not hex"))
            })
            .collect()
    }
}

/// An HTTP response as recorded: the body as text when it is UTF-8 (so the masking layer reads it),
/// else base64.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// The body's size as received, before masking.
    pub size: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Body {
    Text(String),
    Base64(String),
}

impl From<Response> for Answer {
    fn from(r: Response) -> Answer {
        let body = match String::from_utf8(r.body) {
            Ok(t) => Body::Text(t),
            Err(e) => Body::Base64(B64.encode(e.into_bytes())),
        };
        Answer {
            status: r.status,
            headers: r.headers,
            body,
            size: r.size,
        }
    }
}

impl Answer {
    pub fn response(self) -> Result<Response, String> {
        let body = match self.body {
            Body::Text(t) => t.into_bytes(),
            Body::Base64(b) => B64
                .decode(b)
                .map_err(|e| format!("the recorded response body is not base64: {e}"))?,
        };
        Ok(Response {
            status: self.status,
            headers: self.headers,
            body,
            size: self.size,
        })
    }
}

/// Hex back to bytes.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_and_bodies_come_back_as_they_went() {
        let der = vec![0x30, 0x82, 0x01, 0xff, 0x00];
        let hs = Handshake {
            session: "TLSv1_3".into(),
            chain: vec![hex(&der)],
        };
        assert_eq!(hs.chain().unwrap(), [CertificateDer::from(der)]);
        let bad = Handshake {
            session: String::new(),
            chain: vec!["3g".into(), "abc".into()],
        };
        assert!(bad.chain().is_err());
        for body in [b"{\"data\":{}}".to_vec(), vec![0xff, 0xfe, 0x00]] {
            let r = Response {
                status: 200,
                headers: vec![("date".into(), "x".into())],
                size: body.len(),
                body,
            };
            let a = Answer::from(r.clone());
            let json = serde_json::to_value(&a).unwrap();
            let back: Answer = serde_json::from_value(json).unwrap();
            assert_eq!(back.response().unwrap(), r);
        }
    }
}
