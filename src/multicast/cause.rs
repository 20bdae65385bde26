//! Why a sender→receiver pair failed: a pure diagnosis from what the pair measured and the evidence
//! read on the receiving node (and, for outbound drops, on the sending node).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{
    evidence::{NodeState, Snapshot, route_to},
    firewall,
    stats::StreamSummary,
};

/// The cause of a failing pair, with the lines that prove it. `code` is stable for scripts:
/// loopback-only, unicast, not-joined, firewall, rp-filter, ttl, not-routed, igmp-snooping,
/// ignored-multi, cni, no-result, unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    pub code: String,
    pub message: String,
    pub evidence: Vec<String>,
}

/// The code of a pair that was not measured because its sender had finished before the receiver
/// was up: not a finding about the network.
pub const LATE_JOIN: &str = "late-join";

impl Cause {
    pub fn new(code: &str, message: impl Into<String>) -> Cause {
        Cause {
            code: code.to_string(),
            message: message.into(),
            evidence: Vec::new(),
        }
    }

    fn evidence(mut self, line: impl Into<String>) -> Cause {
        self.evidence.push(line.into());
        self
    }
}

/// What one pair measured, as seen by its receiver.
#[derive(Debug, Clone)]
pub struct PairObs<'a> {
    pub sender: IpAddr,
    /// Datagrams the sender says it sent; `None` when the sender never reported.
    pub sent: Option<u64>,
    pub ttl: u8,
    pub main: &'a StreamSummary,
    /// The high-TTL side stream, when one was sent.
    pub side: Option<(u8, &'a StreamSummary)>,
    pub unicast_sent: u64,
    pub unicast_received: u64,
}

/// What the receiving node knows about itself.
#[derive(Debug, Clone)]
pub struct Local<'a> {
    pub local_addrs: &'a [IpAddr],
    pub iface_name: &'a str,
    pub iface_index: u32,
    pub group: IpAddr,
    pub port: u16,
    pub join_error: Option<&'a str>,
    pub state: &'a NodeState,
    pub before: &'a Snapshot,
    pub after: &'a Snapshot,
}

impl Local<'_> {
    fn counter_delta(&self, key: &str) -> u64 {
        let get = |s: &Snapshot| s.counters.get(key).copied().unwrap_or(0);
        get(self.after).saturating_sub(get(self.before))
    }

    fn grown_rules(&self, outbound: bool) -> Vec<firewall::Grown> {
        match (&self.before.firewall, &self.after.firewall) {
            (Ok(b), Ok(a)) => firewall::grown(b, a, self.port, &self.group.to_string())
                .into_iter()
                .filter(|g| g.rule.outbound() == outbound)
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn firewall_cause(grown: &[firewall::Grown], direction: &str) -> Option<Cause> {
    let first = grown.first()?;
    let mut c = Cause::new(
        "firewall",
        format!(
            "firewall: {} dropped {} packet(s) {direction} during the probe",
            first.rule.describe(),
            first.delta
        ),
    );
    for g in grown.iter().take(3) {
        c = c.evidence(format!(
            "{} chain {}: {} (+{} packets during the probe)",
            g.rule.source, g.rule.chain, g.rule.rule, g.delta
        ));
    }
    Some(c)
}

/// A sender's own reason for loss at every receiver: an outbound rule that dropped the probe.
pub fn outbound(local: &Local) -> Option<Cause> {
    firewall_cause(&local.grown_rules(true), "on the sending node")
}

/// The cause of a failing pair, from the receiver's point of view.
pub fn diagnose(p: &PairObs, l: &Local) -> Cause {
    let s = p.sender;
    if l.local_addrs.contains(&s) {
        return Cause::new(
            "loopback-only",
            format!(
                "loopback only: {s} is an address of this same network namespace, so multicast between \
                 these two participants could only pass through loopback (msend turns it on), which says \
                 nothing about the network; run the probe on two nodes"
            ),
        )
        .evidence(format!("{s} is configured on this node ({} lists it)", l.iface_name));
    }
    // A cause rests on something observed: no report from the sender and no unicast probe is
    // nothing measured, not a unicast failure ("0 of 0 answered").
    if p.sent.is_none() && !(p.unicast_sent > 0 && p.unicast_received == 0) {
        return Cause::new(
            "no-result",
            format!(
                "no report from {s}: its probe never said what it sent, so this pair was not measured \
                 ({} of {} unicast probes to {s} answered)",
                p.unicast_received, p.unicast_sent
            ),
        );
    }
    if p.unicast_sent > 0 && p.unicast_received == 0 {
        let mut c = Cause::new(
            "unicast",
            format!(
                "unicast fails too: {} of {} unicast probes to {s} answered — fix unicast reachability \
                 (routes, firewall) first; this is not a multicast problem",
                p.unicast_received, p.unicast_sent
            ),
        );
        if let IpAddr::V4(v4) = s
            && let Some(r) = route_to(&l.state.routes, v4)
        {
            c = c.evidence(format!("route to {s}: {}", r.describe()));
        }
        return c;
    }
    if let Some(e) = l.join_error {
        let mut c = Cause::new("not-joined", format!("group not joined: {e}"));
        if let Some(m) = l.state.max_memberships {
            c = c.evidence(format!("net.ipv4.igmp_max_memberships = {m}"));
        }
        return c;
    }
    if let Some(m) = &l.state.memberships {
        let on_iface = m.iter().find(|m| m.index == l.iface_index);
        if !on_iface.is_some_and(|m| m.groups.contains(&l.group)) {
            let file = if l.group.is_ipv4() {
                "/proc/net/igmp"
            } else {
                "/proc/net/igmp6"
            };
            let listed = on_iface.map_or("nothing".to_string(), |m| {
                m.groups
                    .iter()
                    .map(|g| g.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            return Cause::new(
                "not-joined",
                format!(
                    "group not joined: {} is absent from {file} on {}",
                    l.group, l.iface_name
                ),
            )
            .evidence(format!("{file} {}: {listed}", l.iface_name));
        }
    }
    if let Some(c) = firewall_cause(&l.grown_rules(false), "on the receiving node") {
        return c;
    }
    let rpf = l.counter_delta("TcpExt.IPReversePathFilter");
    if rpf > 0 {
        let mut c = Cause::new(
            "rp-filter",
            format!(
                "rp_filter: the kernel dropped {rpf} packet(s) whose source is not routed back out of the \
                 interface they came in on (IPReversePathFilter grew); set rp_filter to 2 (loose) or add the route"
            ),
        );
        for (i, v) in &l.state.rp_filter {
            c = c.evidence(format!("net.ipv4.conf.{i}.rp_filter = {v}"));
        }
        return c.evidence(format!(
            "/proc/net/netstat TcpExt IPReversePathFilter +{rpf}"
        ));
    }
    let side_received = p.side.map_or(0, |(_, s)| s.received);
    if p.main.received == 0 && side_received > 0 {
        let (side_ttl, side) = p.side.expect("side stream");
        let hops = side.ttl.map_or(1, |t| side_ttl.saturating_sub(t));
        return Cause::new(
            "ttl",
            format!(
                "TTL too low: the TTL-{side_ttl} stream from {s} arrived after {hops} hop(s), the TTL-{} \
                 stream did not; use --ttl {} or more",
                p.ttl,
                hops + 1
            ),
        )
        .evidence(format!(
            "TTL-{side_ttl} stream: {} received, TTL-{} stream: 0 received",
            side.received, p.ttl
        ));
    }
    if p.main.received == 0
        && let IpAddr::V4(v4) = s
        && let Some(r) = route_to(&l.state.routes, v4).filter(|r| !r.gateway.is_unspecified())
    {
        let side = p
            .side
            .map(|(t, s)| {
                format!(
                    "; the TTL-{t} stream did not arrive either ({} received)",
                    s.received
                )
            })
            .unwrap_or_default();
        return Cause::new(
            "not-routed",
            format!(
                "not routed: {s} is behind the router {} and the group is not routed across it \
                 (no multicast routing there; a TTL-{} datagram cannot cross a router at all){side}",
                r.gateway, p.ttl
            ),
        )
        .evidence(format!("route to {s}: {}", r.describe()));
    }
    let quiet_bridges: Vec<String> = l
        .state
        .bridges
        .iter()
        .filter(|b| b.snooping && !b.querier)
        .map(|b| {
            format!(
                "/sys/class/net/{0}/bridge/multicast_snooping = 1, /sys/class/net/{0}/bridge/multicast_querier = 0",
                b.name
            )
        })
        .collect();
    let stopped = match (p.sent, p.main.max_seq) {
        (Some(sent), Some(max)) if p.main.received > 0 => sent.saturating_sub(max + 1) > sent / 10,
        _ => false,
    };
    if stopped || (p.main.received == 0 && !quiet_bridges.is_empty()) {
        let when = match (p.main.first_ns, p.main.last_ns) {
            (Some(a), Some(b)) if stopped => format!(
                "datagrams arrived for {:.0} s, then stopped: ",
                (b.saturating_sub(a)) as f64 / 1e9
            ),
            _ => String::new(),
        };
        let mut c = Cause::new(
            "igmp-snooping",
            format!(
                "{when}IGMP snooping without a querier: the switch or bridge forgets the membership \
                 (~260 s) when nobody sends IGMP queries; enable a querier (multicast_querier 1) or disable snooping"
            ),
        );
        for b in quiet_bridges {
            c = c.evidence(b);
        }
        return c;
    }
    let ignored = l.counter_delta("Udp.IgnoredMulti");
    if p.main.received == 0 && ignored > 0 {
        return Cause::new(
            "ignored-multi",
            format!(
                "datagrams reached this node for a group or port no socket joined (IgnoredMulti +{ignored}): \
                 check --group and --port match on every participant"
            ),
        );
    }
    let cni: Vec<String> = l
        .state
        .cni
        .iter()
        .flat_map(|(f, notes)| notes.iter().map(move |n| format!("{f}: {n}")))
        .collect();
    if let Some(first) = cni
        .iter()
        .find(|n| n.contains("does not") || n.contains("beta"))
    {
        let mut c = Cause::new("cni", format!("CNI: {first}"));
        for n in &cni {
            c = c.evidence(n.clone());
        }
        return c;
    }
    let unread = match (&l.before.firewall, &l.after.firewall) {
        (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
        _ => None,
    };
    let mut c = if let Some(why) = unread {
        // Without the rules, "nothing explains it" would be a claim the probe cannot make.
        Cause::new(
            "unknown",
            format!(
                "{} from {s}, and the firewall could not be read: {why} — a rule on this node may \
                 drop them; give the probe CAP_NET_ADMIN or read the rules on the node",
                if p.main.received == 0 {
                    "no datagram arrived"
                } else {
                    "datagrams were lost"
                }
            ),
        )
    } else if p.main.received == 0 {
        Cause::new(
            "unknown",
            format!(
                "no datagram from {s} arrived and nothing on this node explains it: look between the nodes \
                 (switch IGMP snooping, a cloud network that carries no multicast)"
            ),
        )
    } else {
        Cause::new(
            "unknown",
            "datagrams were lost and no rule on this node dropped them: congestion or a lossy link; \
             rerun with a larger --count to measure",
        )
    };
    if let IpAddr::V4(g) = l.group {
        c = c.evidence(match route_to(&l.state.routes, g) {
            Some(r) if r.iface != l.iface_name => format!(
                "route to {g}: {} — not {}, the interface the probe used: msend/mreceive without -i would use {}",
                r.describe(),
                l.iface_name,
                r.iface
            ),
            Some(r) => format!("route to {g}: {}", r.describe()),
            None => format!(
                "no route to {g}: msend/mreceive without -i cannot join or send (ip route add 224.0.0.0/4 dev {})",
                l.iface_name
            ),
        });
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multicast::{
        evidence::{Bridge, Memberships, Route},
        firewall::RuleCounter,
    };

    fn state() -> NodeState {
        NodeState {
            memberships: Some(vec![Memberships {
                index: 2,
                name: "eth0".into(),
                groups: vec!["224.1.1.1".parse().unwrap()],
            }]),
            routes: vec![
                Route {
                    iface: "eth0".into(),
                    dest: "10.0.1.0".parse().unwrap(),
                    gateway: "0.0.0.0".parse().unwrap(),
                    mask: "255.255.255.0".parse().unwrap(),
                    metric: 0,
                },
                Route {
                    iface: "eth0".into(),
                    dest: "0.0.0.0".parse().unwrap(),
                    gateway: "10.0.1.1".parse().unwrap(),
                    mask: "0.0.0.0".parse().unwrap(),
                    metric: 0,
                },
            ],
            ..NodeState::default()
        }
    }

    fn received(n: u64) -> StreamSummary {
        StreamSummary {
            received: n,
            first_seq: (n > 0).then_some(0),
            max_seq: (n > 0).then(|| n - 1),
            ttl: (n > 0).then_some(1),
            ..StreamSummary::default()
        }
    }

    /// A pair from 10.0.1.9 with unicast working and no side stream.
    fn obs(main: &StreamSummary) -> PairObs<'_> {
        PairObs {
            sender: "10.0.1.9".parse().unwrap(),
            sent: Some(100),
            ttl: 1,
            main,
            side: None,
            unicast_sent: 10,
            unicast_received: 10,
        }
    }

    fn diag(sender: &str, main: u64, side: u64, l: &Local) -> Cause {
        let (m, s) = (
            received(main),
            StreamSummary {
                ttl: Some(6),
                ..received(side)
            },
        );
        let p = PairObs {
            sender: sender.parse().unwrap(),
            sent: Some(100),
            ttl: 1,
            main: &m,
            side: Some((8, &s)),
            unicast_sent: 10,
            unicast_received: 10,
        };
        diagnose(&p, l)
    }

    fn local<'a>(
        state: &'a NodeState,
        before: &'a Snapshot,
        after: &'a Snapshot,
        addrs: &'a [IpAddr],
    ) -> Local<'a> {
        Local {
            local_addrs: addrs,
            iface_name: "eth0",
            iface_index: 2,
            group: "224.1.1.1".parse().unwrap(),
            port: 4444,
            join_error: None,
            state,
            before,
            after,
        }
    }

    #[test]
    fn each_cause_is_told_apart() {
        let st = state();
        let snap = Snapshot::default();
        let me: Vec<IpAddr> = vec!["10.0.1.2".parse().unwrap(), "10.0.1.3".parse().unwrap()];
        let l = local(&st, &snap, &snap, &me);
        assert_eq!(diag("10.0.1.3", 0, 0, &l).code, "loopback-only");
        assert_eq!(diag("10.0.1.9", 0, 50, &l).code, "ttl");
        assert!(diag("10.0.1.9", 0, 50, &l).message.contains("--ttl 3"));
        let nr = diag("10.0.2.9", 0, 0, &l);
        assert_eq!(nr.code, "not-routed");
        assert_eq!(
            nr.evidence,
            vec!["route to 10.0.2.9: 0.0.0.0/0 via 10.0.1.1 dev eth0 metric 0"]
        );
        let unknown = diag("10.0.1.9", 0, 0, &l);
        assert_eq!(unknown.code, "unknown");
        assert_eq!(
            unknown.evidence,
            vec!["route to 224.1.1.1: 0.0.0.0/0 via 10.0.1.1 dev eth0 metric 0"]
        );
        let other = Local {
            iface_name: "eth1",
            ..l.clone()
        };
        assert!(diag("10.0.1.9", 0, 0, &other).evidence[0].contains("without -i would use eth0"));
        assert_eq!(diag("10.0.1.9", 95, 95, &l).code, "unknown");

        let m = received(0);
        let p = PairObs {
            unicast_received: 0,
            ..obs(&m)
        };
        assert_eq!(diagnose(&p, &l).code, "unicast");
        assert_eq!(
            diagnose(
                &PairObs {
                    sent: None,
                    unicast_received: 10,
                    ..p.clone()
                },
                &l
            )
            .code,
            "no-result",
            "unicast answers: no unicast cause"
        );
        let nothing = diagnose(
            &PairObs {
                sent: None,
                unicast_sent: 0,
                unicast_received: 0,
                ..p.clone()
            },
            &l,
        );
        assert_eq!(nothing.code, "no-result", "0 of 0 is no observation");
        assert!(
            !nothing.message.contains("unicast fails"),
            "{}",
            nothing.message
        );

        let mut st2 = state();
        st2.memberships.as_mut().unwrap()[0].groups.clear();
        let l2 = local(&st2, &snap, &snap, &me);
        let c = diag("10.0.1.9", 0, 0, &l2);
        assert_eq!(c.code, "not-joined");
        assert_eq!(c.evidence, vec!["/proc/net/igmp eth0: "]);
        let e = Local {
            join_error: Some("cannot join 224.1.1.1: No buffer space"),
            ..l.clone()
        };
        assert_eq!(diag("10.0.1.9", 0, 0, &e).code, "not-joined");
    }

    #[test]
    fn counters_that_grew_name_the_firewall_rule_or_rp_filter() {
        let st = state();
        let rule = |n| RuleCounter {
            source: "iptables",
            table: "filter".into(),
            chain: "INPUT".into(),
            rule: "-A INPUT -p udp -m udp --dport 4444 -j DROP".into(),
            packets: n,
        };
        let before = Snapshot {
            firewall: Ok(vec![rule(0)]),
            ..Snapshot::default()
        };
        let after = Snapshot {
            firewall: Ok(vec![rule(100)]),
            ..Snapshot::default()
        };
        let l = local(&st, &before, &after, &[]);
        let c = diag("10.0.1.9", 0, 0, &l);
        assert_eq!(c.code, "firewall");
        assert!(
            c.message
                .contains("-A INPUT -p udp -m udp --dport 4444 -j DROP"),
            "{}",
            c.message
        );
        assert!(c.evidence[0].ends_with("(+100 packets during the probe)"));
        assert_eq!(outbound(&l), None);

        let mut before = Snapshot::default();
        before
            .counters
            .insert("TcpExt.IPReversePathFilter".into(), 5);
        let mut after = before.clone();
        after
            .counters
            .insert("TcpExt.IPReversePathFilter".into(), 105);
        let mut st = state();
        st.rp_filter = vec![("all".into(), "1".into())];
        let c = diag("10.0.1.9", 0, 0, &local(&st, &before, &after, &[]));
        assert_eq!(c.code, "rp-filter");
        assert!(c.message.contains("dropped 100 packet"));
        assert_eq!(c.evidence[0], "net.ipv4.conf.all.rp_filter = 1");
    }

    #[test]
    fn a_stream_that_stops_on_a_snooping_bridge_without_querier() {
        let mut st = state();
        st.bridges = vec![Bridge {
            name: "cni0".into(),
            snooping: true,
            querier: false,
        }];
        let snap = Snapshot::default();
        let l = local(&st, &snap, &snap, &[]);
        let mut m = received(40);
        m.first_ns = Some(0);
        m.last_ns = Some(260_000_000_000);
        let c = diagnose(&obs(&m), &l);
        assert_eq!(c.code, "igmp-snooping");
        assert!(
            c.message
                .starts_with("datagrams arrived for 260 s, then stopped"),
            "{}",
            c.message
        );
        assert_eq!(c.evidence.len(), 1);
    }
}
