//! `sysctl.ipv6-forward`: with a global IPv6 address (/proc/net/if_inet6), IPv6 forwarding must be on now
//! and at boot, or pods lose IPv6 beyond the node (kubeadm checks conf/default/forwarding for IPv6 clusters).

use super::{Area};
use crate::core::{check::CheckDef, source::Source};
use std::net::Ipv6Addr;

use crate::{
    core::check::Finding,
    core::facts::{Fact, FactError},
    core::host::Host,
    checks::sysctl::{self, Assignment},
};


pub const AREA: Area = Area {
    checks: &[
        CheckDef {
            id: "sysctl.ipv6-forward",
            needs: &[&IPV6],
            run: |f, _| decide(f.get(&IPV6)?),
        },
    ],
    fixes: &[],
};

/// Global IPv6 addresses and IPv6 forwarding, live and persisted.
pub const IPV6: Source<Ipv6Facts> = Source::files("ipv6-forwarding", |g| gather(g.host));

pub const ALL_FORWARDING: &str = "net.ipv6.conf.all.forwarding";
pub const DEFAULT_FORWARDING: &str = "net.ipv6.conf.default.forwarding";

/// One address of /proc/net/if_inet6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inet6 {
    pub addr: Ipv6Addr,
    pub prefix: u8,
    pub scope: u8,
    pub iface: String,
}

/// Parses /proc/net/if_inet6: `address ifindex prefixlen scope flags name`, the address as 32 hex digits.
pub fn parse_if_inet6(text: &str) -> Vec<Inet6> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let hex = f.first()?;
            let v = u128::from_str_radix(hex, 16)
                .ok()
                .filter(|_| hex.len() == 32)?;
            Some(Inet6 {
                addr: Ipv6Addr::from(v),
                prefix: u8::from_str_radix(f.get(2)?, 16).ok()?,
                scope: u8::from_str_radix(f.get(3)?, 16).ok()?,
                iface: f.get(5)?.to_string(),
            })
        })
        .collect()
}

/// Global scope (0x00) and not a ULA's cousin the loopback: what makes the node reachable over IPv6.
pub fn is_global(a: &Inet6) -> bool {
    a.scope == 0 && !a.addr.is_loopback()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Facts {
    pub global: Vec<Inet6>,
    pub all_forwarding: Fact<String>,
    pub default_forwarding: Fact<String>,
    pub persisted: Fact<Vec<Assignment>>,
}

pub fn gather(host: &Host) -> Fact<Ipv6Facts> {
    let text = host.read_opt("/proc/net/if_inet6")?.ok_or_else(|| {
        FactError::Missing("/proc/net/if_inet6 does not exist: IPv6 is off in this kernel".into())
    })?;
    let global = parse_if_inet6(&text)
        .into_iter()
        .filter(is_global)
        .collect();
    let read = |k: &str| {
        host.read(&sysctl::proc_path(k))
            .map(|t| sysctl::first_token(&t))
    };
    Ok(Ipv6Facts {
        global,
        all_forwarding: read(ALL_FORWARDING),
        default_forwarding: read(DEFAULT_FORWARDING),
        persisted: sysctl::persisted(host, &[ALL_FORWARDING, DEFAULT_FORWARDING]),
    })
}

pub fn decide(x: &Ipv6Facts) -> Result<Finding, FactError> {
    if x.global.is_empty() {
        return Ok(Finding::skip(
            "no global IPv6 address: IPv6 forwarding is not needed on this node",
        ));
    }
    let mut ev: Vec<String> = x
        .global
        .iter()
        .map(|a| format!("/proc/net/if_inet6: {}/{} on {}", a.addr, a.prefix, a.iface))
        .collect();
    let all = x.all_forwarding.clone()?;
    ev.push(format!("{} = {all}", sysctl::proc_path(ALL_FORWARDING)));
    if let Ok(d) = &x.default_forwarding {
        ev.push(format!("{} = {d}", sysctl::proc_path(DEFAULT_FORWARDING)));
    }
    let fix = format!(
        "sysctl -w {ALL_FORWARDING}=1 && echo '{ALL_FORWARDING} = 1' >> {}",
        sysctl::PERSIST_FILE
    );
    if all != "1" {
        return Ok(Finding::warn(format!(
            "the node has a global IPv6 address but {ALL_FORWARDING} = {all}: pods' IPv6 traffic is not routed; for an IPv6 cluster kubeadm fails FileContent--proc-sys-net-ipv6-conf-default-forwarding"
        ))
        .evidence_all(ev)
        .remediation(fix));
    }
    let persisted = x.persisted.clone()?;
    match persisted.iter().rfind(|a| a.key == ALL_FORWARDING) {
        Some(a) if a.value == "1" => {
            ev.push(a.cite());
            Ok(Finding::pass(format!("{ALL_FORWARDING} = 1 now and at boot")).evidence_all(ev))
        }
        Some(a) => {
            ev.push(format!("{} (the last file that sets it)", a.cite()));
            Ok(Finding::warn(format!(
                "1 now, but {} sets {ALL_FORWARDING} = {} at boot: a reboot turns IPv6 forwarding off",
                a.file, a.value
            ))
            .evidence_all(ev)
            .remediation(format!("change {}:{} to 1", a.file, a.line)))
        }
        None => {
            ev.push(format!(
                "{ALL_FORWARDING}: no sysctl.d file sets it (the kernel default is 0)"
            ));
            Ok(Finding::warn(format!(
                "1 now, but nothing sets {ALL_FORWARDING} at boot and the kernel default is 0: a reboot turns it off"
            ))
            .evidence_all(ev)
            .remediation(fix))
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::check::Status;

    const IF_INET6: &str = "00000000000000000000000000000001 01 80 10 80       lo\n\
20010db8000000000000000000000010 02 40 00 00     eth0\n\
fe80000000000000505400fffe123456 02 40 20 80     eth0\n";

    #[test]
    fn parses_if_inet6_and_keeps_global_addresses() {
        let a = parse_if_inet6(IF_INET6);
        assert_eq!(a.len(), 3);
        assert_eq!(a[1].addr, "2001:db8::10".parse::<Ipv6Addr>().unwrap());
        assert_eq!((a[1].prefix, a[1].scope), (64, 0));
        let g: Vec<_> = a.iter().filter(|x| is_global(x)).collect();
        assert_eq!(
            g.len(),
            1,
            "loopback (host scope) and link-local are not global"
        );
        assert!(parse_if_inet6("zz 01\n").is_empty());
    }

    #[test]
    fn verdicts() {
        let global: Vec<Inet6> = parse_if_inet6(IF_INET6)
            .into_iter()
            .filter(is_global)
            .collect();
        let mut x = Ipv6Facts {
            global: global.clone(),
            all_forwarding: Ok("0".into()),
            default_forwarding: Ok("0".into()),
            persisted: Ok(vec![]),
        };
        assert_eq!(decide(&x).unwrap().status, Status::Warn);
        x.all_forwarding = Ok("1".into());
        let f = decide(&x).unwrap();
        assert_eq!(f.status, Status::Warn);
        assert!(f.message.contains("kernel default is 0"));
        x.persisted = Ok(sysctl::parse_sysctl_conf(
            "/etc/sysctl.d/k8s.conf",
            "net.ipv6.conf.all.forwarding=1\n",
        ));
        assert_eq!(decide(&x).unwrap().status, Status::Pass);
        x.global.clear();
        assert_eq!(decide(&x).unwrap().status, Status::Skip);
    }
}
