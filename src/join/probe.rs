//! The network steps as findings, from what the network did as the tape gives it: `join.endpoint`
//! (resolve, then connect telling refused, timed out and unreachable apart) and `join.tls` (the
//! handshake, with the presented chain captured).

use std::{net::SocketAddr, time::Duration};

use rustls::pki_types::CertificateDer;

use super::{
    net::ConnectFailure,
    pin::Cert,
    steps::{Endpoint, Step},
    tape::{Connect, Handshake},
};
use crate::core::check::Finding;

/// `join.endpoint` when the name does not resolve.
pub fn resolve_failed(e: String) -> Finding {
    Finding::fail(e).remediation(
        "check the name in /etc/hosts or DNS on this node, or join with the API server's IP address",
    )
}

/// `join.endpoint`: the TCP connect's outcome, telling refused, timed out and unreachable apart.
pub fn connect(
    ep: &Endpoint,
    addrs: &[SocketAddr],
    outcome: Connect,
    timeout: Duration,
) -> Step<()> {
    match outcome {
        Connect::Established { addr, ms } => {
            let mut f = Finding::pass(format!("TCP connection to {addr} established in {ms} ms"));
            if addrs.len() > 1 || ep.host.parse::<std::net::IpAddr>().is_err() {
                f.evidence.push(format!(
                    "{} resolves to {}",
                    ep.host,
                    addrs
                        .iter()
                        .map(|a| a.ip().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            Ok((f, ()))
        }
        Connect::Failed(failed) => {
            let evidence: Vec<String> = failed
                .iter()
                .map(|a| format!("{}: {}", a.addr, a.error))
                .collect();
            let worst = failed.iter().map(|a| a.failure).next_back();
            let port = ep.port;
            let (msg, fix) = match worst {
                Some(ConnectFailure::Refused) => (
                    format!("connection to {} refused: the host answers but nothing listens on port {port} (or a firewall rejects it)", ep.authority()),
                    format!("on the control plane: check kube-apiserver is running (crictl ps | grep kube-apiserver) and listening (ss -ltnp | grep {port}); check the port in the join command"),
                ),
                Some(ConnectFailure::TimedOut) => (
                    format!("connection to {} timed out after {:.1} s (--timeout): a firewall drops the packets, or the host is down", ep.authority(), timeout.as_secs_f64()),
                    format!("open TCP {port} on the control plane's firewall (firewall-cmd --add-port={port}/tcp --permanent && firewall-cmd --reload, or ufw allow {port}/tcp) and on any firewall in between"),
                ),
                Some(ConnectFailure::Unreachable) => (
                    format!("{} is unreachable from this node: no route to it (or an ICMP unreachable/reject answer)", ep.authority()),
                    "check this node's routes (ip route get <address>) and that the address is the control plane's, reachable from this network".into(),
                ),
                _ => (
                    format!("cannot connect to {}: {}", ep.authority(), evidence.join("; ")),
                    "check the endpoint address and this node's network".into(),
                ),
            };
            Err(Finding::fail(msg).evidence_all(evidence).remediation(fix))
        }
    }
}

/// `join.tls`: the handshake completed; the presented chain is captured (not yet trusted).
pub fn tls(hs: Result<Handshake, String>) -> Step<Vec<CertificateDer<'static>>> {
    let hs = hs.map_err(|e| {
        Finding::fail(e).remediation("check that the endpoint is the API server's TLS port (6443), not another service or a TLS-intercepting proxy")
    })?;
    let chain = hs.chain().map_err(Finding::error)?;
    let mut f = Finding::pass(format!(
        "TLS handshake completed ({}); the server presented {} certificate(s), captured unverified as kubeadm's first request does",
        hs.session,
        chain.len()
    ));
    for (i, der) in chain.iter().enumerate() {
        f.evidence.push(match Cert::from_der(der) {
            Ok(c) => format!("presented [{i}]: {}", c.summary),
            Err(e) => format!("presented [{i}]: {e}"),
        });
    }
    Ok((f, chain))
}
