//! `host.hostname`: the node name (kubelet's `--hostname-override`, else the hostname) is a lowercase
//! DNS-1123 subdomain and resolves — from /etc/hosts, and on the live host through the system resolver.

use super::{Area};
use crate::core::{check::CheckDef, source::Source};
use std::{net::IpAddr, time::Duration};

use crate::{
    core::check::Finding,
    core::facts::Fact,
    core::host::Host,
    checks::kubelet,
};


pub const AREA: Area = Area {
    checks: &[
        CheckDef {
            id: "host.hostname",
            needs: &[&NODE_NAME],
            run: |f, _| Ok(decide(f.get(&NODE_NAME)?)),
        },
    ],
    fixes: &[],
};

/// The node name and how it resolves (the resolver is a network call: its own thread).
pub const NODE_NAME: Source<HostnameFacts> = Source::network("node-name", |g| gather(g.host, g.cfg.offline, g.cfg.timeout.mul_f64(0.3).min(Duration::from_secs(3)))).reaching(crate::core::source::Reach::LiveOnline);

/// Why a name is not a DNS-1123 subdomain (what a Node's name must be), or None when it is.
pub fn dns1123_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".into());
    }
    if name.len() > 253 {
        return Some(format!(
            "it is {} characters long (at most 253)",
            name.len()
        ));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Some(format!(
            "it has upper-case letters: the kubelet registers the node as {:?}",
            name.to_ascii_lowercase()
        ));
    }
    for label in name.split('.') {
        let ok_chars = label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        let ends_ok = label
            .chars()
            .next()
            .zip(label.chars().last())
            .is_some_and(|(a, b)| a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric());
        if label.is_empty() || label.len() > 63 || !ok_chars || !ends_ok {
            return Some(format!(
                "label {label:?} is not [a-z0-9]([-a-z0-9]*[a-z0-9])? of at most 63 characters"
            ));
        }
    }
    None
}

/// The /etc/hosts lines naming `name` (case-insensitively): (line, address).
pub fn hosts_entries(text: &str, name: &str) -> Vec<(usize, IpAddr)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.split('#').next()?;
            let mut f = l.split_whitespace();
            let ip: IpAddr = f.next()?.parse().ok()?;
            f.any(|n| n.eq_ignore_ascii_case(name))
                .then_some((i + 1, ip))
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostnameFacts {
    pub name: String,
    /// Where the name came from.
    pub source: String,
    /// /etc/hosts lines for it.
    pub hosts: Vec<(usize, IpAddr)>,
    /// The resolver's answer (live host and not --offline only), or why it was not asked.
    pub resolver: Result<Vec<IpAddr>, String>,
    /// Whether the resolver was asked at all.
    pub asked: bool,
}

pub fn gather(host: &Host, offline: bool, timeout: Duration) -> Fact<HostnameFacts> {
    let override_name = host
        .read_opt(kubelet::FLAGS_ENV)?
        .and_then(|t| kubelet::flag(&t, "hostname-override"));
    let (name, source) = match override_name {
        Some(n) => (n, format!("{}: --hostname-override", kubelet::FLAGS_ENV)),
        None => {
            let file = if host.is_live() {
                "/proc/sys/kernel/hostname"
            } else {
                "/etc/hostname"
            };
            let text = host.read(file)?;
            let n = text.lines().next().unwrap_or("").trim().to_string();
            (n, file.to_string())
        }
    };
    let hosts = hosts_entries(&host.read_opt("/etc/hosts")?.unwrap_or_default(), &name);
    let (resolver, asked) = if !hosts.is_empty() {
        (Err("found in /etc/hosts".into()), false)
    } else if !host.is_live() {
        (
            Err(format!(
                "--root {}: only its /etc/hosts was read, the resolver was not asked",
                host.root().display()
            )),
            false,
        )
    } else if offline {
        (Err("--offline: the resolver was not asked".into()), false)
    } else {
        let key = format!("resolver: {name}");
        (host.probe(&key, || super::proxy::resolve(&name, timeout))?, true)
    };
    Ok(HostnameFacts {
        name,
        source,
        hosts,
        resolver,
        asked,
    })
}

pub fn decide(h: &HostnameFacts) -> Finding {
    let mut ev = vec![format!("{}: {}", h.source, h.name)];
    let mut problems = Vec::new();
    if let Some(p) = dns1123_problem(&h.name) {
        problems.push(format!("{:?} is not a valid node name: {p}", h.name));
    }
    for (line, ip) in &h.hosts {
        ev.push(format!("/etc/hosts:{line}: {ip} {}", h.name));
    }
    let resolves = if !h.hosts.is_empty() {
        true
    } else {
        match &h.resolver {
            Ok(a) if !a.is_empty() => {
                ev.push(format!(
                    "resolver: {}",
                    a.iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                true
            }
            Ok(_) => {
                ev.push("resolver: no address".into());
                false
            }
            Err(e) => {
                ev.push(format!("resolver: {e}"));
                false
            }
        }
    };
    if !resolves {
        if h.asked {
            problems.push(format!(
                "{:?} does not resolve; kubeadm warns [WARNING Hostname]: hostname \"{}\" could not be reached",
                h.name, h.name
            ));
        } else {
            problems.push(format!(
                "{:?} is not in /etc/hosts, and the resolver was not asked",
                h.name
            ));
        }
    }
    if problems.is_empty() {
        return Finding::pass(format!("node name {} is valid and resolves", h.name))
            .evidence_all(ev);
    }
    Finding::warn(problems.join("; ")).evidence_all(ev).remediation(format!(
        "set a lowercase hostname (`hostnamectl set-hostname {}`) and add it to /etc/hosts with the node's address (`echo \"<node-ip> {}\" >> /etc/hosts`)",
        h.name.to_ascii_lowercase(),
        h.name.to_ascii_lowercase()
    ))
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::check::Status;

    #[test]
    fn dns1123() {
        assert_eq!(dns1123_problem("k8s-master.example.com"), None);
        assert_eq!(dns1123_problem("node1"), None);
        assert!(
            dns1123_problem("K8S-Master")
                .unwrap()
                .contains("\"k8s-master\"")
        );
        assert!(dns1123_problem("node_1").is_some());
        assert!(dns1123_problem("-node").is_some());
        assert!(dns1123_problem("node.").is_some());
        assert!(dns1123_problem(&"a".repeat(64)).is_some());
        assert!(dns1123_problem("").is_some());
    }

    #[test]
    fn resolution_from_hosts_or_not_asked() {
        let hosts =
            "127.0.0.1 localhost\n192.168.1.10 k8s-master.example.com K8S-MASTER # the node\n";
        assert_eq!(
            hosts_entries(hosts, "k8s-master"),
            vec![(2, "192.168.1.10".parse().unwrap())]
        );
        let mut h = HostnameFacts {
            name: "k8s-master".into(),
            source: "/etc/hostname".into(),
            hosts: hosts_entries(hosts, "k8s-master"),
            resolver: Err("found in /etc/hosts".into()),
            asked: false,
        };
        assert_eq!(decide(&h).status, Status::Pass);
        h.hosts.clear();
        h.resolver = Err("not asked".into());
        let f = decide(&h);
        assert_eq!(f.status, Status::Warn);
        assert!(f.message.contains("not in /etc/hosts"));
        h.asked = true;
        h.resolver = Err("failed to lookup".into());
        assert!(decide(&h).message.contains("[WARNING Hostname]"));
        h.resolver = Ok(vec!["10.0.0.5".parse().unwrap()]);
        assert_eq!(decide(&h).status, Status::Pass);
        h.name = "Node_1".into();
        assert_eq!(decide(&h).status, Status::Warn);
    }
}
