//! The node's own filtering of a multicast flow: the evaluator's answers for a group's UDP port on the
//! node's input and forward paths and for IGMP, from the node's live ruleset. Policy engines (Calico,
//! Weave-npc, kube-router) filter in the node's namespace, so a probe in a pod cannot see these rules; the
//! multicast cause code calls [`multicast_paths`] with rules read in the node's namespace (the check pods'
//! live read, [`node_multicast_paths`]).

use std::{net::IpAddr, time::Duration};

use crate::core::host::Host;

use super::{
    eval::{Answer, Hook, Query, evaluate},
    gather::read_rules,
    model::{Ruleset, Verdict},
    net::Net,
};

/// A multicast flow as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub group: IpAddr,
    pub port: u16,
    /// Where the senders are (the node network, or the pod network for pods on an overlay).
    pub source: Net,
    /// The interface the datagrams arrive on, when known (a rule testing it is otherwise undecided).
    pub iface: Option<String>,
}

/// The evaluator's answers for a flow: the group's UDP port delivered to this node (input), routed or
/// bridged through it to pods (forward), and IGMP to the group (membership reports and queries).
#[derive(Debug, Clone)]
pub struct Paths {
    pub answers: Vec<Answer>,
}

impl Paths {
    /// The paths a rule drops or rejects, each as "udp/5000 from ... (input): drop by <rule>".
    pub fn blocked(&self) -> Vec<String> {
        self.lines(|v| v.blocks())
    }

    /// The paths the evaluator could not decide (a match it does not model), naming the rule.
    pub fn undecided(&self) -> Vec<String> {
        self.lines(|v| v == Verdict::Unknown)
    }

    /// Only the answers on `hook`: a pod network's traffic crosses the node's forward path (the
    /// node delivers nothing of it to its own sockets), the node network's its input path.
    pub fn on_hook(mut self, hook: Hook) -> Paths {
        self.answers.retain(|a| a.query.hook == hook);
        self
    }

    /// What drops (`true`) or may drop (`false`, a match the evaluator does not model) the flow,
    /// each without its source so that senders with the same answer share one line:
    /// `udp/5000 to 239.1.1.1 (forward): drop by iptables-nft filter/FORWARD #3: ...`.
    pub fn findings(&self) -> Vec<(bool, String)> {
        self.answers
            .iter()
            .filter_map(|a| {
                let v = a.verdict();
                if !(v.blocks() || v == Verdict::Unknown) {
                    return None;
                }
                let q = &a.query;
                let what = match (q.proto, q.dport) {
                    (17, Some(p)) => format!("udp/{p}"),
                    (2, _) => "igmp".to_string(),
                    (p, _) => format!("proto {p}"),
                };
                let to = q.dest.map(|d| format!(" to {}", d.addr())).unwrap_or_default();
                let line = format!("{what}{to} ({}): {}", q.hook.as_str(), a.decisive().explain());
                Some((v.blocks(), line))
            })
            .collect()
    }

    fn lines(&self, pick: impl Fn(Verdict) -> bool) -> Vec<String> {
        self.answers
            .iter()
            .filter(|a| pick(a.verdict()))
            .map(|a| {
                let d = a.decisive();
                format!(
                    "{} ({}): {}",
                    a.query.describe_for(d.source),
                    a.query.hook.as_str(),
                    d.explain()
                )
            })
            .collect()
    }
}

/// The evaluator's answers for `flow` on `rules` (a pure function: any ruleset, live or saved).
pub fn multicast_paths(rules: &Ruleset, flow: &Flow) -> Paths {
    let dest = Net::host(flow.group);
    let on = |q: Query| match &flow.iface {
        Some(i) => q.on(i.clone()),
        None => q,
    };
    let queries = [
        on(Query::udp(flow.port, flow.source).to(flow.group)),
        on(Query {
            dport: Some(flow.port),
            ..Query::forward(17, flow.source, dest)
        }),
        on(Query::proto(2, flow.source).to(flow.group)),
    ];
    Paths {
        answers: queries.iter().map(|q| evaluate(rules, q)).collect(),
    }
}

/// Reads the live ruleset of this process's network namespace (gated as `check --live-network` reads it)
/// and evaluates `flow`. `Err` says why the rules could not be examined ("the firewall could not be read:
/// no CAP_NET_ADMIN ..."), so a cause never rests on rules that were not read. The tools run in the calling
/// thread's namespace, while the legacy table lists come from `/proc/net`, the process's: call it from a
/// process in the node's namespace (a hostNetwork pod), as `check --live-network` runs.
pub fn node_multicast_paths(flow: &Flow, timeout: Duration) -> Result<Paths, String> {
    read_node_rules(timeout).map(|rules| multicast_paths(&rules, flow))
}

/// The live ruleset of this process's network namespace, read whole, or why it could not be (a
/// partial read is refused too: a cause must not rest on the half that was read). Read once and
/// evaluate [`multicast_paths`] for each sender.
pub fn read_node_rules(timeout: Duration) -> Result<Ruleset, String> {
    let read = read_rules(&Host::live(), timeout);
    match read.rules {
        Ok(rules) if read.problems.is_empty() => Ok(rules),
        Ok(_) => Err(format!(
            "the firewall could only partly be read: {}",
            read.problems.join("; ")
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::firewall::{iptables, model::Family, model::Origin};

    fn rules(text: &str) -> Ruleset {
        iptables::parse(text, Origin::IptablesLegacy, Family::Ip).unwrap()
    }

    fn flow() -> Flow {
        Flow {
            group: "239.1.1.1".parse().unwrap(),
            port: 5000,
            source: "10.32.0.0/12".parse().unwrap(),
            iface: Some("weave".into()),
        }
    }

    #[test]
    fn a_policy_drop_in_forward_and_an_input_drop_are_named() {
        let p = multicast_paths(
            &rules("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n-A INPUT -p udp -m udp --dport 5000 -j DROP\n-A FORWARD -i weave -j DROP\nCOMMIT\n"),
            &flow(),
        );
        let b = p.blocked();
        assert_eq!(b.len(), 2, "IGMP is not dropped: {b:?}");
        assert!(b[0].contains("(input)") && b[0].contains("filter/INPUT #1: -A INPUT -p udp -m udp --dport 5000 -j DROP"), "{b:?}");
        assert!(b[1].contains("(forward)") && b[1].contains("filter/FORWARD #1: -A FORWARD -i weave -j DROP"), "{b:?}");
        // Another port, IGMP on input: delivered.
        let open = multicast_paths(
            &rules("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p udp -m udp --dport 6000 -j DROP\nCOMMIT\n"),
            &flow(),
        );
        assert!(open.blocked().is_empty(), "{:?}", open.blocked());
        let igmp = multicast_paths(
            &rules("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p igmp -j DROP\nCOMMIT\n"),
            &flow(),
        );
        assert_eq!(igmp.blocked().len(), 1, "{:?}", igmp.blocked());
        assert!(igmp.blocked()[0].starts_with("igmp"), "{:?}", igmp.blocked());
        // The same answers without the source, and only the forward path's when asked.
        let f = p.on_hook(Hook::Forward).findings();
        assert_eq!(
            f,
            vec![(
                true,
                "udp/5000 to 239.1.1.1 (forward): drop by iptables-legacy filter/FORWARD #1: -A FORWARD -i weave -j DROP".to_string()
            )]
        );
        let undecided = multicast_paths(
            &rules("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m bpf --bytecode 1 -j DROP\nCOMMIT\n"),
            &flow(),
        )
        .on_hook(Hook::Forward)
        .findings();
        assert_eq!(undecided.len(), 1, "{undecided:?}");
        assert!(!undecided[0].0 && undecided[0].1.contains("cannot evaluate"), "{undecided:?}");
    }
}
