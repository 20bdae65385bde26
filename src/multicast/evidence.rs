//! Evidence about multicast read on this node: parsers for /proc/net/igmp(6), /proc/net/snmp and
//! /proc/net/netstat counters, /proc/net/route, bridge snooping state, the CNI in use, and the
//! before/after snapshot the probe diffs.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv6Addr},
};

use crate::core::host::Host;
use crate::procnet::host_order_hex;
pub use crate::procnet::{Route, parse_routes, route_to};

use super::firewall::{self, RuleCounter};

/// One interface's entry in /proc/net/igmp or /proc/net/igmp6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memberships {
    pub index: u32,
    pub name: String,
    pub groups: Vec<IpAddr>,
}

/// Parses /proc/net/igmp. Groups are printed as hex of the network-order bytes read as a host
/// integer (`010000E0` is 224.0.0.1 on a little-endian host).
pub fn parse_igmp(text: &str) -> Vec<Memberships> {
    let mut out: Vec<Memberships> = Vec::new();
    for line in text.lines().skip(1) {
        if line.starts_with(char::is_whitespace) {
            let Some(hex) = line.split_whitespace().next() else {
                continue;
            };
            if let (Some(m), Some(group)) = (out.last_mut(), host_order_hex(hex)) {
                m.groups.push(IpAddr::V4(group));
            }
        } else {
            let mut f = line.split_whitespace();
            if let (Some(Ok(index)), Some(name)) = (f.next().map(str::parse), f.next()) {
                out.push(Memberships {
                    index,
                    name: name.trim_end_matches(':').to_string(),
                    groups: Vec::new(),
                });
            }
        }
    }
    out
}

/// Parses /proc/net/igmp6: `index name group-hex users flags timer` per line.
pub fn parse_igmp6(text: &str) -> Vec<Memberships> {
    let mut out: Vec<Memberships> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(Ok(index)), Some(name), Some(hex)) =
            (f.first().map(|s| s.parse()), f.get(1), f.get(2))
        else {
            continue;
        };
        let Ok(v) = u128::from_str_radix(hex, 16) else {
            continue;
        };
        let group = IpAddr::V6(Ipv6Addr::from(v));
        match out.iter_mut().find(|m| m.index == index) {
            Some(m) => m.groups.push(group),
            None => out.push(Memberships {
                index,
                name: name.to_string(),
                groups: vec![group],
            }),
        }
    }
    out
}

/// Parses the header/value line pairs of /proc/net/snmp and /proc/net/netstat into
/// `Section.Name → value` (`Udp.IgnoredMulti`, `TcpExt.IPReversePathFilter`).
pub fn parse_counters(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((sec, names)), Some((sec2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if sec != sec2 {
            continue;
        }
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = v.parse::<u64>() {
                out.insert(format!("{sec}.{n}"), v);
            }
        }
    }
    out
}

/// Udp plus Udp6 RcvbufErrors (datagrams dropped because a socket's receive buffer was full) from
/// the text of /proc/net/snmp and, when given, /proc/net/snmp6.
pub fn rcvbuf_errors(snmp: &str, snmp6: Option<&str>) -> u64 {
    let v4 = parse_counters(snmp)
        .get("Udp.RcvbufErrors")
        .copied()
        .unwrap_or(0);
    let v6 = snmp6
        .into_iter()
        .flat_map(str::lines)
        .find_map(|l| l.strip_prefix("Udp6RcvbufErrors"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    v4 + v6
}

/// A Linux bridge's IGMP snooping state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub name: String,
    pub snooping: bool,
    pub querier: bool,
}

/// CNI plugins and whether they carry multicast (FACTS.md § Multicast).
const CNIS: &[(&str, &str)] = &[
    ("calico", "Calico does not carry multicast"),
    ("flannel", "Flannel does not carry multicast"),
    (
        "cilium",
        "Cilium carries multicast only in beta, in vxlan mode, when explicitly enabled",
    ),
    (
        "weave-net",
        "Weave Net carries multicast (project archived 2024)",
    ),
    ("antrea", "Antrea carries IPv4 multicast when enabled"),
    (
        "kube-ovn",
        "Kube-OVN carries multicast per subnet when enabled",
    ),
    (
        "ovn-k8s-cni-overlay",
        "OVN-Kubernetes carries multicast per namespace annotation",
    ),
];

/// The CNI plugin types named in a CNI config file (`"type": "calico"`), with what FACTS says of them.
pub fn cni_notes(config: &str) -> Vec<String> {
    CNIS.iter()
        .filter(|(ty, _)| {
            config.contains(&format!("\"type\": \"{ty}\""))
                || config.contains(&format!("\"type\":\"{ty}\""))
        })
        .map(|(_, note)| note.to_string())
        .collect()
}

/// Node state that does not change during a probe, read once.
#[derive(Debug, Clone, Default)]
pub struct NodeState {
    pub memberships: Option<Vec<Memberships>>,
    pub routes: Vec<Route>,
    pub bridges: Vec<Bridge>,
    pub max_memberships: Option<u64>,
    pub rp_filter: Vec<(String, String)>,
    pub cni: Vec<(String, Vec<String>)>,
}

/// Counters diffed across the probe.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub counters: BTreeMap<String, u64>,
    /// DROP/REJECT rules with their packet counters, or why they could not be read.
    pub firewall: Result<Vec<RuleCounter>, String>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            counters: BTreeMap::new(),
            firewall: Ok(Vec::new()),
        }
    }
}

/// Reads the counters now (counters from /proc, rules from iptables-save/nft).
pub fn snapshot(host: &Host) -> Snapshot {
    let mut counters = BTreeMap::new();
    for f in ["/proc/net/snmp", "/proc/net/netstat", "/proc/net/snmp6"] {
        if let Ok(Some(t)) = host.read_opt(f) {
            if f.ends_with("snmp6") {
                for l in t.lines() {
                    let mut it = l.split_whitespace();
                    if let (Some(k), Some(Ok(v))) = (it.next(), it.next().map(str::parse::<u64>)) {
                        counters.insert(format!("Ip6.{k}"), v);
                    }
                }
            } else {
                counters.extend(parse_counters(&t));
            }
        }
    }
    Snapshot {
        counters,
        firewall: firewall::read_counters(),
    }
}

/// Reads the node state the causes refer to.
pub fn node_state(host: &Host, v6: bool) -> NodeState {
    let memberships = if v6 {
        host.read_opt("/proc/net/igmp6")
            .ok()
            .flatten()
            .map(|t| parse_igmp6(&t))
    } else {
        host.read_opt("/proc/net/igmp")
            .ok()
            .flatten()
            .map(|t| parse_igmp(&t))
    };
    let routes = host
        .read_opt("/proc/net/route")
        .ok()
        .flatten()
        .map(|t| parse_routes(&t))
        .unwrap_or_default();
    let flag = |p: String| host.read_opt(&p).ok().flatten().map(|v| v.trim() == "1");
    let bridges = host
        .list_dir("/sys/class/net")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|name| {
            let snooping = flag(format!("/sys/class/net/{name}/bridge/multicast_snooping"))?;
            let querier = flag(format!("/sys/class/net/{name}/bridge/multicast_querier"))?;
            Some(Bridge {
                name,
                snooping,
                querier,
            })
        })
        .collect();
    let max_memberships = host
        .read_opt("/proc/sys/net/ipv4/igmp_max_memberships")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse().ok());
    let rp_filter = host
        .list_dir("/proc/sys/net/ipv4/conf")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| {
            let v = host
                .read_opt(&format!("/proc/sys/net/ipv4/conf/{i}/rp_filter"))
                .ok()??;
            Some((i, v.trim().to_string()))
        })
        .collect();
    let cni = host
        .list_dir("/etc/cni/net.d")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| {
            let t = host.read_opt(&format!("/etc/cni/net.d/{f}")).ok()??;
            let notes = cni_notes(&t);
            (!notes.is_empty()).then(|| (format!("/etc/cni/net.d/{f}"), notes))
        })
        .collect();
    NodeState {
        memberships,
        routes,
        bridges,
        max_memberships,
        rp_filter,
        cni,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a Debian 12 node that joined 224.1.1.1 on eth0.
    const IGMP: &str = "Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter
1\tlo        :     1      V3
\t\t\t\t010000E0     1 0:00000000\t\t0
2\teth0      :     2      V3
\t\t\t\t010101E0     1 0:00000000\t\t1
\t\t\t\t010000E0     1 0:00000000\t\t0
";

    #[cfg(target_endian = "little")]
    #[test]
    fn igmp_groups_are_host_order_hex() {
        let m = parse_igmp(IGMP);
        assert_eq!(m.len(), 2);
        assert_eq!((m[1].index, m[1].name.as_str()), (2, "eth0"));
        assert_eq!(
            m[1].groups,
            vec![
                "224.1.1.1".parse::<IpAddr>().unwrap(),
                "224.0.0.1".parse().unwrap()
            ]
        );
        assert_eq!(m[0].groups, vec!["224.0.0.1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn igmp6_lists_groups_per_interface() {
        let t = "1    lo              ff020000000000000000000000000001     1 0000000C 0
2    eth0            ff2e0000000000000000000000000001     1 00000004 0
2    eth0            ff020000000000000000000000000001     1 0000000C 0
";
        let m = parse_igmp6(t);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].groups[0], "ff2e::1".parse::<IpAddr>().unwrap());
        assert_eq!(m[1].groups.len(), 2);
    }

    #[test]
    fn rcvbuf_errors_add_udp_and_udp6() {
        let snmp = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors
Udp: 10 2 0 12 5 0
";
        let snmp6 = "Udp6InDatagrams                 \t4\nUdp6RcvbufErrors                \t3\n";
        assert_eq!(rcvbuf_errors(snmp, Some(snmp6)), 8);
        assert_eq!(rcvbuf_errors(snmp, None), 5);
        assert_eq!(rcvbuf_errors("garbage", Some("x")), 0);
    }

    #[test]
    fn snmp_and_netstat_counters_by_section() {
        let snmp = "Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 1234
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 10 2 0 12 0 0 0 7 0
";
        let c = parse_counters(snmp);
        assert_eq!(c["Udp.IgnoredMulti"], 7);
        assert_eq!(c["Ip.DefaultTTL"], 64);
        let netstat = "TcpExt: SyncookiesSent IPReversePathFilter
TcpExt: 0 3
IpExt: InNoRoutes InMcastPkts
IpExt: 0 99
";
        let c = parse_counters(netstat);
        assert_eq!(c["TcpExt.IPReversePathFilter"], 3);
        assert_eq!(c["IpExt.InMcastPkts"], 99);
        assert!(parse_counters("garbage\n").is_empty());
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn routes_pick_the_longest_prefix() {
        let t =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0101000A\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth1\t000000E0\t00000000\t0001\t0\t0\t0\t000000F0\t0\t0\t0
";
        let r = parse_routes(t);
        assert_eq!(r.len(), 3);
        let to = |ip: &str| route_to(&r, ip.parse().unwrap()).unwrap().describe();
        assert_eq!(to("224.1.1.1"), "224.0.0.0/4 dev eth1 metric 0");
        assert_eq!(to("10.0.1.7"), "10.0.1.0/24 dev eth0 metric 0");
        assert_eq!(to("10.2.0.2"), "0.0.0.0/0 via 10.0.1.1 dev eth0 metric 100");
        assert!(route_to(&r[1..2], "8.8.8.8".parse().unwrap()).is_none());
    }

    #[test]
    fn cni_configs_name_their_multicast_support() {
        let calico =
            r#"{"name": "k8s-pod-network", "plugins": [{"type": "calico"}, {"type": "portmap"}]}"#;
        assert_eq!(cni_notes(calico), vec!["Calico does not carry multicast"]);
        assert!(cni_notes(r#"{"type":"bridge"}"#).is_empty());
    }

    #[test]
    fn node_state_reads_a_host_root() {
        let dir = tempfile::tempdir().unwrap();
        let w = |p: &str, s: &str| {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        w("proc/net/igmp", IGMP);
        w("sys/class/net/cni0/bridge/multicast_snooping", "1\n");
        w("sys/class/net/cni0/bridge/multicast_querier", "0\n");
        w("sys/class/net/eth0/mtu", "1500\n");
        w("proc/sys/net/ipv4/igmp_max_memberships", "20\n");
        w("proc/sys/net/ipv4/conf/all/rp_filter", "1\n");
        w(
            "etc/cni/net.d/10-flannel.conflist",
            r#"{"plugins":[{"type":"flannel"}]}"#,
        );
        let s = node_state(&Host::new(dir.path()).unwrap(), false);
        assert_eq!(s.memberships.unwrap().len(), 2);
        assert_eq!(
            s.bridges,
            vec![Bridge {
                name: "cni0".into(),
                snooping: true,
                querier: false
            }]
        );
        assert_eq!(s.max_memberships, Some(20));
        assert_eq!(s.rp_filter, vec![("all".to_string(), "1".to_string())]);
        assert_eq!(s.cni[0].1, vec!["Flannel does not carry multicast"]);
    }
}
