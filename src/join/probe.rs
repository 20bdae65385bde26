//! The network steps as findings: `join.endpoint` (resolve, then connect telling refused, timed out
//! and unreachable apart) and `join.tls` (the handshake, with the presented chain captured).

use std::{
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use super::{
    net::{self, ConnectFailure, Tls},
    pin::Cert,
    steps::{Endpoint, Step},
};
use crate::core::check::Finding;

pub fn resolve(ep: &Endpoint, deadline: Instant) -> Result<Vec<SocketAddr>, Finding> {
    net::resolve(&ep.host, ep.port, deadline).map_err(|e| {
        Finding::fail(e).remediation(
            "check the name in /etc/hosts or DNS on this node, or join with the API server's IP address",
        )
    })
}

/// `join.endpoint`: TCP connect, telling refused, timed out and unreachable apart.
pub fn connect(
    ep: &Endpoint,
    addrs: &[SocketAddr],
    deadline: Instant,
    timeout: Duration,
) -> Step<TcpStream> {
    let t = Instant::now();
    match net::connect(addrs, deadline) {
        Ok((s, addr)) => {
            let mut f = Finding::pass(format!(
                "TCP connection to {addr} established in {} ms",
                t.elapsed().as_millis()
            ));
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
            Ok((f, s))
        }
        Err(failed) => {
            let evidence: Vec<String> = failed.iter().map(|(a, e)| format!("{a}: {e}")).collect();
            let worst = failed.iter().map(|(_, e)| net::classify(e)).next_back();
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

/// `join.tls`: the handshake completes; the presented chain is captured (not yet trusted).
pub fn tls(tcp: TcpStream, ep: &Endpoint, deadline: Instant) -> Step<Tls> {
    let tls = net::handshake(tcp, &ep.host, deadline).map_err(|e| {
        Finding::fail(e).remediation("check that the endpoint is the API server's TLS port (6443), not another service or a TLS-intercepting proxy")
    })?;
    let mut f = Finding::pass(format!(
        "TLS handshake completed ({}); the server presented {} certificate(s), captured unverified as kubeadm's first request does",
        tls.session,
        tls.chain.len()
    ));
    for (i, der) in tls.chain.iter().enumerate() {
        f.evidence.push(match Cert::from_der(der) {
            Ok(c) => format!("presented [{i}]: {}", c.summary),
            Err(e) => format!("presented [{i}]: {e}"),
        });
    }
    Ok((f, tls))
}
