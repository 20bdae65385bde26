//! What the firewall checks need to know about the host besides rules: node networks, interfaces, the CNI
//! (pod network and overlay interfaces) and active firewall managers. Parsers take `&str`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value;

use super::net::Net;
use crate::procnet::parse_routes;

/// A network directly attached to one of this host's interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNet {
    pub iface: String,
    pub net: Net,
    /// This host's address in it, when known.
    pub addr: Option<IpAddr>,
}

/// Interfaces that carry pod or container traffic rather than the node network.
pub fn is_overlay_or_container(iface: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "lo",
        "docker",
        "cni",
        "weave",
        "datapath",
        "vethwe",
        "flannel",
        "cali",
        "vxlan.calico",
        "tunl",
        "cilium",
        "lxc",
        "antrea",
        "veth",
        "kube-ipvs",
        "kube-bridge",
        "virbr",
        "genev",
        "nodelocaldns",
        "br-",
    ];
    iface == "lo" || PREFIXES.iter().any(|p| iface.starts_with(p))
}

/// `/proc/net/route`: directly connected IPv4 networks (no gateway, not the default route) per interface.
pub fn parse_proc_route(text: &str) -> Vec<(String, Net)> {
    parse_routes(text)
        .into_iter()
        .filter_map(|r| {
            let len = u32::from(r.mask).leading_ones() as u8;
            (r.gateway.is_unspecified() && len > 0)
                .then(|| Net::new(IpAddr::V4(r.dest), len).map(|n| (r.iface, n)))
                .flatten()
        })
        .collect()
}

/// `/proc/net/fib_trie`: this host's own IPv4 addresses (`/32 host LOCAL` leaves).
pub fn parse_fib_trie_locals(text: &str) -> Vec<Ipv4Addr> {
    let mut last: Option<Ipv4Addr> = None;
    let mut out = Vec::new();
    for l in text.lines() {
        let t = l.trim_start();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = a.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL")
            && let Some(a) = last.filter(|a| !a.is_loopback() && !out.contains(a))
        {
            out.push(a);
        }
    }
    out
}

/// `/proc/net/if_inet6`: global IPv6 addresses with their prefix, per interface (link-local ones are skipped).
pub fn parse_if_inet6(text: &str) -> Vec<NodeNet> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 || f[3] != "00" {
                return None;
            }
            let a = Ipv6Addr::from(u128::from_str_radix(f[0], 16).ok()?);
            let len = u8::from_str_radix(f[2], 16).ok()?;
            Some(NodeNet {
                iface: f[5].to_string(),
                net: Net::new(IpAddr::V6(a), len)?,
                addr: Some(IpAddr::V6(a)),
            })
        })
        .collect()
}

/// Node networks: connected routes with this host's address in each, minus loopback and overlay/container interfaces.
pub fn node_networks(route: &str, fib_trie: Option<&str>, if_inet6: Option<&str>) -> Vec<NodeNet> {
    let locals = fib_trie.map(parse_fib_trie_locals).unwrap_or_default();
    let mut out: Vec<NodeNet> = parse_proc_route(route)
        .into_iter()
        .filter(|(i, _)| !is_overlay_or_container(i))
        .map(|(iface, net)| NodeNet {
            addr: locals
                .iter()
                .map(|a| IpAddr::V4(*a))
                .find(|a| net.contains(*a)),
            iface,
            net,
        })
        .collect();
    out.extend(
        if_inet6
            .map(parse_if_inet6)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| !is_overlay_or_container(&n.iface)),
    );
    out.dedup();
    out
}

/// `/proc/net/dev`: interface names.
pub fn parse_proc_net_dev(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
        .collect()
}

/// The CNI in use: name, where that was learnt, pod networks and the interfaces its traffic arrives on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cni {
    pub name: String,
    pub source: String,
    pub pod_nets: Vec<Net>,
    pub ifaces: Vec<String>,
    /// The pod side: the bridge (or a pod interface) routed pod traffic enters and leaves this node by.
    pub bridge: String,
    /// The tunnel pod traffic crosses to other nodes on; `None` when it is routed on the node network.
    pub tunnel: Option<String>,
}

/// The bridge a CNI config names, wherever it sits: top level or any `plugins[]` entry (kube-router's
/// `kube-bridge` is in `plugins[0]`), or flannel's `delegate`.
pub fn cni_bridge(text: &str) -> Option<String> {
    fn find(v: &Value) -> Option<String> {
        match v {
            Value::Object(o) => o
                .get("bridge")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| o.values().find_map(find)),
            Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    find(&serde_json::from_str::<Value>(text).ok()?)
}

/// The pod-side interface of a CNI: the config's bridge, else the CNI's own (an existing one for the
/// per-pod interfaces of Calico `cali*` and Cilium `lxc*`).
pub fn pod_side(cni: &str, bridge: Option<&str>, ifaces: &[String]) -> String {
    if let Some(b) = bridge {
        return b.to_string();
    }
    let first = |p: &str, dflt: &str| {
        ifaces
            .iter()
            .find(|i| i.starts_with(p) && *i != "cilium_host")
            .cloned()
            .unwrap_or_else(|| dflt.to_string())
    };
    match cni {
        "weave" => "weave".into(),
        "calico" => first("cali", "cali0"),
        "cilium" => first("lxc", "lxc0"),
        "antrea" => "antrea-gw0".into(),
        "kube-router" => "kube-bridge".into(),
        _ => "cni0".into(),
    }
}

/// The tunnel a CNI carries pod traffic to other nodes on: the one that exists, else the CNI's default
/// (flannel VXLAN `flannel.1`, Calico IP-in-IP `tunl0` or `vxlan.calico`, Cilium `cilium_vxlan`); `None`
/// for routed setups (flannel host-gw, kube-router, Calico BGP without encapsulation) when interfaces are known.
pub fn tunnel(cni: &str, ifaces: &[String]) -> Option<String> {
    let wanted: &[&str] = match cni {
        "weave" => &["weave"],
        "flannel" => &["flannel.1", "flannel-wg"],
        "calico" => &["vxlan.calico", "tunl0", "wireguard.cali"],
        "cilium" => &["cilium_vxlan", "cilium_geneve"],
        "antrea" => &["antrea-tun0"],
        _ => &[],
    };
    if let Some(t) = wanted.iter().find(|w| ifaces.iter().any(|i| i == *w)) {
        return Some(t.to_string());
    }
    // Only loopback known (or nothing): a saved root, so take the CNI's default encapsulation.
    let known = ifaces.iter().any(|i| i != "lo");
    match (known, cni) {
        (_, "weave") => Some("weave".into()),
        (false, "flannel") => Some("flannel.1".into()),
        (false, "calico") => Some("tunl0".into()),
        (false, "cilium") => Some("cilium_vxlan".into()),
        _ => None,
    }
}

/// Default pod networks when the CNI does not name one.
pub fn default_pod_net(cni: &str) -> Option<Net> {
    Some(
        match cni {
            "weave" => "10.32.0.0/12",
            "flannel" => "10.244.0.0/16",
            "calico" => "192.168.0.0/16",
            "cilium" => "10.0.0.0/8",
            _ => return None,
        }
        .parse()
        .expect("valid default"),
    )
}

/// The defaults the issue names, used when no CNI is configured yet.
pub const COMMON_DEFAULTS: &[(&str, &str)] = &[
    ("weave", "10.32.0.0/12"),
    ("flannel", "10.244.0.0/16"),
    ("calico", "192.168.0.0/16"),
];

/// The CNI a network config names: plugin types of a `.conf`/`.conflist` (JSON), plus every `subnet` in it.
pub fn parse_cni_config(text: &str) -> Option<(String, Vec<Net>)> {
    let v: Value = serde_json::from_str(text).ok()?;
    let mut types = Vec::new();
    let mut subnets = Vec::new();
    walk(&v, &mut types, &mut subnets);
    // kube-router configures the stock bridge plugin on its own bridge.
    let kube_router = cni_bridge(text).as_deref() == Some("kube-bridge");
    let name = types
        .iter()
        .find_map(|t| cni_name(t))
        .or_else(|| kube_router.then(|| "kube-router".to_string()))
        .or_else(|| types.first().map(|t| t.to_string()))?;
    Some((name, subnets))
}

fn walk(v: &Value, types: &mut Vec<String>, subnets: &mut Vec<Net>) {
    match v {
        Value::Object(o) => {
            // This object's own plugin type before those of nested objects (ipam), whatever the key order.
            if let Some(Value::String(t)) = o.get("type") {
                types.push(t.clone());
            }
            for (k, x) in o {
                match (k.as_str(), x) {
                    ("type", Value::String(_)) => {}
                    ("subnet", Value::String(s)) | ("Network", Value::String(s)) => {
                        subnets.extend(s.parse::<Net>().ok())
                    }
                    _ => walk(x, types, subnets),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, types, subnets)),
        _ => {}
    }
}

fn cni_name(plugin: &str) -> Option<String> {
    Some(
        match plugin {
            "weave-net" | "weave-plugin-2.8.1" => "weave",
            p if p.starts_with("weave") => "weave",
            "flannel" => "flannel",
            "calico" => "calico",
            "cilium-cni" => "cilium",
            "antrea" => "antrea",
            "kube-router" => "kube-router",
            _ => return None,
        }
        .to_string(),
    )
}

/// The CNI guessed from interfaces that exist.
pub fn cni_from_ifaces(ifaces: &[String]) -> Option<String> {
    let has = |p: &str| ifaces.iter().any(|i| i.starts_with(p));
    Some(
        if has("weave") {
            "weave"
        } else if has("flannel") {
            "flannel"
        } else if has("cali") || has("vxlan.calico") || has("tunl0") {
            "calico"
        } else if has("cilium") {
            "cilium"
        } else if has("antrea") {
            "antrea"
        } else {
            return None;
        }
        .to_string(),
    )
}

/// Interfaces pod traffic of this CNI arrives on: those that exist, else the CNI's usual names.
pub fn overlay_ifaces(cni: &str, ifaces: &[String], bridge: Option<&str>) -> Vec<String> {
    let wanted: &[&str] = match cni {
        "weave" => &["weave"],
        "flannel" => &["cni0", "flannel.1"],
        "calico" => &["cali", "vxlan.calico", "tunl0"],
        "cilium" => &["cilium_host"],
        "antrea" => &["antrea-gw0"],
        "kube-router" => &["kube-bridge"],
        _ => &[],
    };
    let mut out: Vec<String> = Vec::new();
    for w in wanted {
        // Calico's pod interfaces are cali<hash>: one of them stands for all.
        let found = if *w == "cali" {
            ifaces.iter().find(|i| i.starts_with("cali")).cloned()
        } else {
            ifaces.iter().find(|i| i == w).cloned()
        };
        out.extend(found);
    }
    if let Some(b) = bridge.filter(|b| !out.iter().any(|o| o == b)) {
        out.push(b.to_string());
    }
    if out.is_empty() {
        out.push(match wanted.first() {
            Some(&"cali") => "cali0".to_string(),
            Some(w) => w.to_string(),
            None => "cni0".to_string(),
        });
    }
    out
}

/// `FLANNEL_NETWORK=10.244.0.0/16` from `/run/flannel/subnet.env`.
pub fn parse_flannel_env(text: &str) -> Option<Net> {
    text.lines()
        .find_map(|l| l.strip_prefix("FLANNEL_NETWORK=")?.trim().parse().ok())
}

/// `ENABLED=yes` in `/etc/ufw/ufw.conf`.
pub fn ufw_enabled(conf: &str) -> bool {
    conf.lines().any(|l| {
        let l = l.trim();
        l.strip_prefix("ENABLED=")
            .is_some_and(|v| v.trim().trim_matches('"').eq_ignore_ascii_case("yes"))
    })
}

/// Whether a `/proc/PID/cmdline` (NUL-separated) runs firewalld.
pub fn is_firewalld_cmdline(cmdline: &str) -> bool {
    cmdline
        .split('\0')
        .take(3)
        .any(|a| a.rsplit('/').next() == Some("firewalld"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\neth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\neth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\nweave\t0000200A\t00000000\t0001\t0\t0\t0\t0000F0FF\t0\t0\t0\ndocker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
    const FIB: &str = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 192.168.1.0/24 2 0 2\n        |-- 192.168.1.0\n           /24 link UNICAST\n        |-- 192.168.1.10\n           /32 host LOCAL\n     |-- 127.0.0.1\n        /32 host LOCAL\n";

    #[test]
    fn node_networks_from_proc() {
        let n = node_networks(
            ROUTE,
            Some(FIB),
            Some(
                "fe800000000000000000000000000001 02 40 20 80 eth0\nfd000000000000000000000000000002 02 40 00 80 eth0\n",
            ),
        );
        assert_eq!(n.len(), 2, "{n:?}");
        assert_eq!(
            (n[0].iface.as_str(), n[0].net.to_string()),
            ("eth0", "192.168.1.0/24".into())
        );
        assert_eq!(n[0].addr, Some("192.168.1.10".parse().unwrap()));
        assert_eq!(n[1].net.to_string(), "fd00::/64");
        let all = parse_proc_route(ROUTE);
        assert_eq!(all[1], ("weave".into(), "10.32.0.0/12".parse().unwrap()));
    }

    #[test]
    fn cni_configs_name_the_plugin_and_subnets() {
        let weave = r#"{"cniVersion":"0.3.0","name":"weave","plugins":[{"name":"weave","type":"weave-net","hairpinMode":true},{"type":"portmap","capabilities":{"portMappings":true},"snat":true}]}"#;
        assert_eq!(parse_cni_config(weave), Some(("weave".into(), vec![])));
        let bridge = r#"{"cniVersion":"0.4.0","name":"mynet","type":"bridge","bridge":"cni0","ipam":{"type":"host-local","ranges":[[{"subnet":"10.85.0.0/16"}]]}}"#;
        assert_eq!(
            parse_cni_config(bridge),
            Some(("bridge".into(), vec!["10.85.0.0/16".parse().unwrap()]))
        );
        assert_eq!(parse_cni_config("not json"), None);
        assert_eq!(
            parse_flannel_env("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n"),
            "10.244.0.0/16".parse().ok()
        );
        let ifs: Vec<String> = ["lo", "eth0", "cali1234abcd", "vxlan.calico"]
            .map(String::from)
            .into();
        assert_eq!(cni_from_ifaces(&ifs).as_deref(), Some("calico"));
        assert_eq!(
            overlay_ifaces("calico", &ifs, None),
            ["cali1234abcd", "vxlan.calico"]
        );
        assert_eq!(overlay_ifaces("weave", &[], None), ["weave"]);
    }

    #[test]
    fn cni_interfaces_come_from_the_whole_conflist() {
        // kube-router: the stock bridge plugin, its bridge named in plugins[0].
        let kr = r#"{"cniVersion":"0.3.0","name":"mynet","plugins":[{"name":"kubernetes","type":"bridge","bridge":"kube-bridge","isDefaultGateway":true,"ipam":{"type":"host-local"}},{"type":"portmap","capabilities":{"snat":true,"portMappings":true}}]}"#;
        assert_eq!(cni_bridge(kr).as_deref(), Some("kube-bridge"));
        assert_eq!(parse_cni_config(kr).unwrap().0, "kube-router");
        assert_eq!(
            pod_side("kube-router", cni_bridge(kr).as_deref(), &[]),
            "kube-bridge"
        );
        assert_eq!(tunnel("kube-router", &["lo".into(), "eth0".into()]), None);
        // flannel: the delegate names no bridge, so cni0; VXLAN unless the host shows host-gw (no flannel.1).
        let fl = r#"{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},{"type":"portmap","capabilities":{"portMappings":true}}]}"#;
        assert_eq!(cni_bridge(fl), None);
        assert_eq!(pod_side("flannel", None, &[]), "cni0");
        assert_eq!(tunnel("flannel", &[]).as_deref(), Some("flannel.1"));
        assert_eq!(
            tunnel("flannel", &["lo".into(), "eth0".into(), "cni0".into()]),
            None
        );
        // Calico and Cilium: an existing per-pod interface stands for all; the tunnel that exists wins.
        let ifs: Vec<String> = [
            "lo",
            "eth0",
            "cali1234abcd",
            "vxlan.calico",
            "lxc9f",
            "cilium_host",
            "cilium_vxlan",
        ]
        .map(String::from)
        .into();
        assert_eq!(pod_side("calico", None, &ifs), "cali1234abcd");
        assert_eq!(tunnel("calico", &ifs).as_deref(), Some("vxlan.calico"));
        assert_eq!(pod_side("cilium", None, &ifs), "lxc9f");
        assert_eq!(tunnel("cilium", &ifs).as_deref(), Some("cilium_vxlan"));
    }

    #[test]
    fn managers() {
        assert!(ufw_enabled("# comment\nENABLED=yes\nLOGLEVEL=low\n"));
        assert!(!ufw_enabled("ENABLED=no\n"));
        assert!(is_firewalld_cmdline(
            "/usr/bin/python3\0-s\0/usr/sbin/firewalld\0--nofork\0"
        ));
        assert!(!is_firewalld_cmdline(
            "vim\0/etc/firewalld/zones/public.xml\0"
        ));
        assert_eq!(
            parse_proc_net_dev("Inter-| x\n face | y\n    lo: 1 2\n  eth0: 3 4\n"),
            ["lo", "eth0"]
        );
    }
}
