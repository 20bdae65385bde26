//! `kubectl proxy` reached through `localhost`: how `localhost` resolves here (/etc/hosts, then the
//! resolver) and, on the live host, which of 127.0.0.1 and localhost reach the proxy port.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs},
    sync::mpsc,
    time::Duration,
};

use super::Area;
use crate::core::{
    check::{CheckDef, Ctx, Finding, Outcome},
    config::Config,
    facts::Fact,
    host::Host,
    source::{Facts, Source},
};

pub const AREA: Area = Area {
    checks: CHECKS,
    fixes: &[],
};

/// How `localhost` resolves here and, on the live host, what answers on the proxy port.
pub const PROXY: Source<ProxyFacts> = Source::network("proxy", |g| gather(g.host, g.cfg)).reaching(crate::core::source::Reach::LiveHost);

const CHECKS: &[CheckDef] = &[CheckDef {
    id: "proxy.localhost",
    needs: &[&PROXY],
    run: localhost,
}];

/// The dashboard's URL through `kubectl proxy`, as its README gives it.
pub const DASHBOARD_PATH: &str =
    "/api/v1/namespaces/kubernetes-dashboard/services/https:kubernetes-dashboard:/proxy/";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyFacts {
    /// `localhost` entries of /etc/hosts in file order: (address, line number).
    pub hosts: Vec<(IpAddr, usize)>,
    /// What the system resolver answers for `localhost`, in order (live host only).
    pub resolver: Option<Result<Vec<IpAddr>, String>>,
    pub port: u16,
    pub probe: Probe,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Probe {
    NotRun(String),
    /// Nothing accepts on 127.0.0.1:port.
    NotListening(String),
    Listening {
        /// GET /api through 127.0.0.1: HTTP status line or error.
        via_ip: Result<String, String>,
        /// The address localhost led to, and GET /api through it.
        via_localhost: Option<(IpAddr, Result<String, String>)>,
        /// Whether [::1]:port accepts too.
        ipv6_listens: bool,
        dashboard: Result<String, String>,
    },
}

/// The addresses `localhost` has in /etc/hosts text, with their 1-based line numbers.
pub fn parse_hosts(text: &str) -> Vec<(IpAddr, usize)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.split('#').next()?;
            let mut f = l.split_whitespace();
            let ip: IpAddr = f.next()?.parse().ok()?;
            f.any(|n| n.eq_ignore_ascii_case("localhost"))
                .then_some((ip, i + 1))
        })
        .collect()
}

pub fn gather(host: &Host, cfg: &Config) -> Fact<ProxyFacts> {
    let hosts = parse_hosts(&host.read_opt("/etc/hosts")?.unwrap_or_default());
    let port = cfg.proxy_port;
    let step = cfg.timeout.mul_f64(0.2).min(Duration::from_secs(2));
    let live = host.is_live();
    let resolver = match live {
        true => Some(host.probe("resolver: localhost", || resolve("localhost", step))?),
        false => None,
    };
    let probe = if !live {
        Probe::NotRun(format!(
            "--root {} is not the live host: no probe of 127.0.0.1:{port}",
            host.root().display()
        ))
    } else if cfg.offline {
        Probe::NotRun(format!("--offline: no probe of 127.0.0.1:{port}"))
    } else {
        host.probe(&format!("kubectl proxy on port {port}"), || {
            probe(port, &hosts, resolver.as_ref(), step)
        })?
    };
    Ok(ProxyFacts {
        hosts,
        resolver,
        port,
        probe,
    })
}

/// The system resolver's answer for a name, bounded by `timeout` (getaddrinfo has no timeout of its own).
pub fn resolve(name: &str, timeout: Duration) -> Result<Vec<IpAddr>, String> {
    let (tx, rx) = mpsc::channel();
    let name = name.to_string();
    std::thread::spawn(move || {
        let r = (name.as_str(), 0)
            .to_socket_addrs()
            .map(|a| a.map(|s| s.ip()).collect::<Vec<_>>())
            .map_err(|e| e.to_string());
        let _ = tx.send(r);
    });
    rx.recv_timeout(timeout)
        .unwrap_or_else(|_| Err(format!("no answer within {:.1}s", timeout.as_secs_f64())))
}

fn probe(
    port: u16,
    hosts: &[(IpAddr, usize)],
    resolver: Option<&Result<Vec<IpAddr>, String>>,
    step: Duration,
) -> Probe {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    if let Err(e) = TcpStream::connect_timeout(&v4, step) {
        return Probe::NotListening(e.to_string());
    }
    let first = resolver
        .and_then(|r| r.as_ref().ok()?.first().copied())
        .or_else(|| hosts.first().map(|h| h.0));
    Probe::Listening {
        via_ip: http_get(v4, "127.0.0.1", port, "/api", step),
        via_localhost: first.map(|ip| {
            (
                ip,
                http_get(SocketAddr::new(ip, port), "localhost", port, "/api", step),
            )
        }),
        ipv6_listens: TcpStream::connect_timeout(
            &SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
            step,
        )
        .is_ok(),
        dashboard: http_get(v4, "127.0.0.1", port, DASHBOARD_PATH, step),
    }
}

/// A bounded HTTP/1.1 GET on loopback; returns the status line.
fn http_get(
    addr: SocketAddr,
    host: &str,
    port: u16,
    path: &str,
    t: Duration,
) -> Result<String, String> {
    // A read or write timeout surfaces as EAGAIN ("os error 11"): say what it means.
    let err = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("no answer within {:.1}s", t.as_secs_f64())
        }
        _ => e.to_string(),
    };
    let mut s = TcpStream::connect_timeout(&addr, t).map_err(err)?;
    s.set_read_timeout(Some(t)).map_err(err)?;
    s.set_write_timeout(Some(t)).map_err(err)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(err)?;
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).map_err(err)?;
    if n == 0 {
        return Err("the connection closed without an answer".into());
    }
    let text = String::from_utf8_lossy(&buf[..n]);
    match text.lines().next() {
        Some(l) if l.starts_with("HTTP/") => Ok(l.trim().to_string()),
        _ => Err("the answer is not HTTP".into()),
    }
}

fn is_ok(r: &Result<String, String>) -> bool {
    r.as_ref().is_ok_and(|l| l.split(' ').nth(1) == Some("200"))
}

fn show(r: &Result<String, String>) -> String {
    match r {
        Ok(l) => l.clone(),
        Err(e) => format!("failed: {e}"),
    }
}

fn localhost(f: &Facts, _: &Ctx) -> Outcome {
    let p = f.get(&PROXY)?;
    let mut ev: Vec<String> = p
        .hosts
        .iter()
        .map(|(ip, line)| format!("/etc/hosts:{line}: {ip} localhost"))
        .collect();
    if p.hosts.is_empty() {
        ev.push("/etc/hosts: no localhost entry".into());
    }
    let order: Vec<IpAddr> = match &p.resolver {
        Some(Ok(addrs)) => {
            let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
            ev.push(format!("resolver: localhost → {}", list.join(", ")));
            addrs.clone()
        }
        Some(Err(e)) => {
            ev.push(format!("resolver: localhost does not resolve: {e}"));
            Vec::new()
        }
        None => p.hosts.iter().map(|h| h.0).collect(),
    };
    let url = format!("http://localhost:{}", p.port);
    if order.is_empty() && p.hosts.is_empty() {
        return Ok(Finding::warn(format!(
            "localhost does not resolve here: {url} (the dashboard's kubectl proxy URL) cannot work"
        ))
        .evidence_all(ev)
        .remediation("add \"127.0.0.1 localhost\" (and \"::1 localhost\") to /etc/hosts"));
    }
    let first = order[0];
    match &p.probe {
        Probe::NotRun(why) => ev.push(format!("probe: {why}")),
        Probe::NotListening(e) => ev.push(format!(
            "127.0.0.1:{}: nothing listens ({e}); kubectl proxy is not running",
            p.port
        )),
        Probe::Listening {
            via_ip,
            via_localhost,
            ipv6_listens,
            dashboard,
        } => {
            ev.push(format!(
                "GET http://127.0.0.1:{}/api → {}",
                p.port,
                show(via_ip)
            ));
            if let Some((ip, r)) = via_localhost {
                ev.push(format!("GET {url}/api (localhost → {ip}) → {}", show(r)));
            }
            ev.push(format!(
                "[::1]:{} {}",
                p.port,
                if *ipv6_listens { "accepts" } else { "refuses" }
            ));
            ev.push(format!(
                "GET http://127.0.0.1:{}{DASHBOARD_PATH} → {}",
                p.port,
                show(dashboard)
            ));
            let localhost_ok = via_localhost.as_ref().is_some_and(|(_, r)| is_ok(r));
            if first.is_ipv6() && is_ok(via_ip) && !ipv6_listens {
                return Ok(Finding::warn(format!(
                    "localhost resolves to {first} first while kubectl proxy listens on 127.0.0.1 only: {url} {} but http://127.0.0.1:{} works",
                    if localhost_ok { "works only by falling back" } else { "fails" },
                    p.port
                ))
                .evidence_all(ev)
                .remediation(format!("open http://127.0.0.1:{}{DASHBOARD_PATH} instead of localhost, or run kubectl proxy --address=::1 (or put 127.0.0.1 first for localhost in /etc/hosts)", p.port)));
            }
            let which = match (is_ok(via_ip), localhost_ok) {
                (true, true) => "both 127.0.0.1 and localhost reach it",
                (true, false) => "127.0.0.1 reaches it, localhost does not",
                (false, true) => "localhost reaches it, 127.0.0.1 does not",
                (false, false) => {
                    let how = match via_ip {
                        Ok(status) => format!("GET /api answers {status:?}, not 200"),
                        Err(e) => format!("GET /api gets no HTTP answer ({e})"),
                    };
                    return Ok(Finding::warn(format!(
                        "something accepts connections on 127.0.0.1:{} but it is not a working kubectl proxy: {how}",
                        p.port
                    ))
                    .evidence_all(ev)
                    .remediation(format!("find what holds the port (ss -ltnp 'sport = :{}'), stop it, and start kubectl proxy --port={} again", p.port, p.port)));
                }
            };
            return Ok(Finding::pass(format!(
                "something listens on 127.0.0.1:{}: {which}",
                p.port
            ))
            .evidence_all(ev));
        }
    }
    Ok(Finding::pass(format!("localhost resolves to {first} first")).evidence_all(ev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::check::Status;

    fn run(p: ProxyFacts) -> Finding {
        let facts = Facts::default().with(&PROXY, Ok(p));
        let ctx = Ctx {
            role: crate::core::check::Role::Worker,
            now: std::time::SystemTime::now(),
        };
        localhost(&facts, &ctx).unwrap()
    }

    #[test]
    fn parses_localhost_lines_in_order() {
        let h = parse_hosts(
            "# c\n::1 ip6-localhost localhost\n127.0.0.1\tlocalhost  # v4\n10.0.0.1 node1\nbogus localhost\n",
        );
        assert_eq!(
            h,
            vec![
                ("::1".parse().unwrap(), 2),
                ("127.0.0.1".parse().unwrap(), 3)
            ]
        );
    }

    #[test]
    fn warns_when_localhost_goes_to_v6_and_the_proxy_listens_on_v4_only() {
        let f = run(ProxyFacts {
            hosts: parse_hosts("::1 localhost\n127.0.0.1 localhost\n"),
            resolver: Some(Ok(vec![
                "::1".parse().unwrap(),
                "127.0.0.1".parse().unwrap(),
            ])),
            port: 8001,
            probe: Probe::Listening {
                via_ip: Ok("HTTP/1.1 200 OK".into()),
                via_localhost: Some(("::1".parse().unwrap(), Err("Connection refused".into()))),
                ipv6_listens: false,
                dashboard: Ok("HTTP/1.1 503 Service Unavailable".into()),
            },
        });
        assert_eq!(f.status, Status::Warn, "{f:?}");
        assert!(
            f.message.contains("::1 first") && f.message.contains("fails"),
            "{}",
            f.message
        );
        assert!(
            f.evidence
                .iter()
                .any(|e| e.contains("/etc/hosts:1: ::1 localhost"))
        );
        assert!(f.evidence.iter().any(|e| e.contains("503")));
    }

    #[test]
    fn a_listener_that_never_answers_http_is_not_a_pass() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepts (the kernel completes the handshake) and never answers.
        let hosts = parse_hosts("127.0.0.1 localhost\n");
        let probe = probe(port, &hosts, None, Duration::from_millis(300));
        let Probe::Listening { via_ip, .. } = &probe else {
            panic!("{probe:?}")
        };
        assert_eq!(via_ip, &Err("no answer within 0.3s".to_string()));
        let f = run(ProxyFacts {
            hosts,
            resolver: None,
            port,
            probe,
        });
        assert_eq!(f.status, Status::Warn, "{f:?}");
        assert!(f.message.contains("no HTTP answer"), "{}", f.message);
        drop(listener);
    }

    #[test]
    fn warns_when_localhost_does_not_resolve_and_passes_otherwise() {
        let f = run(ProxyFacts {
            hosts: vec![],
            resolver: Some(Err("Name or service not known".into())),
            port: 8001,
            probe: Probe::NotRun("offline".into()),
        });
        assert_eq!(f.status, Status::Warn);
        let f = run(ProxyFacts {
            hosts: parse_hosts("127.0.0.1 localhost\n"),
            resolver: None,
            port: 8001,
            probe: Probe::NotListening("Connection refused".into()),
        });
        assert_eq!(f.status, Status::Pass, "{f:?}");
        assert!(f.evidence.iter().any(|e| e.contains("not running")));
    }
}
