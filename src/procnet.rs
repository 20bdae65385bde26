//! /proc/net tables more than one area reads: the IPv4 routing table and its host-order hex.

use std::net::Ipv4Addr;

/// A host-order hex address as /proc/net/route and /proc/net/igmp print it (`0100A8C0` = 192.168.0.1).
pub fn host_order_hex(s: &str) -> Option<Ipv4Addr> {
    u32::from_str_radix(s, 16)
        .ok()
        .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
}

/// One IPv4 route of /proc/net/route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub iface: String,
    pub dest: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub mask: Ipv4Addr,
    pub metric: u32,
}

impl Route {
    /// Whether `ip` falls inside this route's destination.
    pub fn covers(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.mask) == u32::from(self.dest) & u32::from(self.mask)
    }

    pub fn describe(&self) -> String {
        let prefix = u32::from(self.mask).count_ones();
        if self.gateway.is_unspecified() {
            format!(
                "{}/{prefix} dev {} metric {}",
                self.dest, self.iface, self.metric
            )
        } else {
            format!(
                "{}/{prefix} via {} dev {} metric {}",
                self.dest, self.gateway, self.iface, self.metric
            )
        }
    }
}

/// Parses /proc/net/route (addresses in host-order hex, like /proc/net/igmp).
pub fn parse_routes(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(Route {
                iface: f.first()?.to_string(),
                dest: host_order_hex(f.get(1)?)?,
                gateway: host_order_hex(f.get(2)?)?,
                metric: f.get(6)?.parse().ok()?,
                mask: host_order_hex(f.get(7)?)?,
            })
        })
        .collect()
}

/// The route the kernel would pick for `ip`: longest prefix, then lowest metric.
pub fn route_to(routes: &[Route], ip: Ipv4Addr) -> Option<&Route> {
    routes
        .iter()
        .filter(|r| r.covers(ip))
        .max_by_key(|r| (u32::from(r.mask).count_ones(), std::cmp::Reverse(r.metric)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
weave\t0000200A\t00000000\t0001\t0\t0\t0\t0000F0FF\t0\t0\t0\n";

    #[test]
    fn routes_decode_host_order_and_pick_the_longest_prefix() {
        let r = parse_routes(ROUTE);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].gateway, Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(r[1].describe(), "192.168.1.0/24 dev eth0 metric 100");
        assert_eq!(r[2].dest, Ipv4Addr::new(10, 32, 0, 0));
        assert_eq!(
            route_to(&r, Ipv4Addr::new(10, 40, 0, 3)).unwrap().iface,
            "weave"
        );
        assert_eq!(
            route_to(&r, Ipv4Addr::new(8, 8, 8, 8)).unwrap().iface,
            "eth0"
        );
        assert!(r[1].covers(Ipv4Addr::new(192, 168, 1, 77)));
        assert_eq!(
            host_order_hex("010000E0"),
            Some(Ipv4Addr::new(224, 0, 0, 1))
        );
        assert!(parse_routes("garbage\nx y\n").is_empty());
    }
}
