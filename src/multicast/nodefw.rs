//! `multicast node-firewall`: the node's own filtering of a group's traffic, as each participant
//! sends it. Policy engines (Calico, Weave-npc, kube-router) filter pod traffic in the *node's*
//! network namespace, where a probe in a pod cannot look; run in that namespace (a hostNetwork pod
//! of `fleet multicast`, or a shell on the node), this reads the live ruleset once and evaluates
//! the group's UDP port on the node's forward path (pods on an overlay) or input path (the node
//! network) for every sender, naming the rule that drops it — or saying why the rules could not be
//! read, so that no cause rests on rules nobody read.

use std::{collections::BTreeMap, io::Write, net::IpAddr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::checks::firewall::{
    eval::Hook,
    model::Ruleset,
    multicast::{Flow, multicast_paths, read_node_rules},
    net::Net,
};

/// What the node's live ruleset does to the group's traffic from each sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeFirewall {
    pub group: String,
    pub port: u16,
    /// `forward` (the senders and receivers are pods the node bridges or routes) or `input`.
    pub path: String,
    /// Why the live ruleset could not be examined; then nothing else is claimed.
    pub error: Option<String>,
    /// Distinct findings, without their sender: what drops (`blocks`) or may drop the traffic.
    pub findings: Vec<Finding>,
    /// Sender address → indices into `findings`; a sender with nothing found is not listed.
    pub senders: BTreeMap<String, Vec<usize>>,
    /// How many senders were evaluated.
    pub evaluated: usize,
    /// Findings or senders left out to keep the result within a termination message.
    #[serde(default)]
    pub truncated: bool,
}

/// One rule the evaluator names for the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// It drops or rejects the flow; `false`: a match the evaluator cannot decide, so it may.
    pub blocks: bool,
    /// `udp/5000 to 239.1.1.1 (forward): drop by iptables-nft filter/FORWARD #3: ...`.
    pub line: String,
}

/// The most a pod's termination message carries (the kubelet keeps the last 4096 bytes).
pub const COMPACT_LIMIT: usize = 4096;

impl NodeFirewall {
    /// The findings for traffic from `sender` (empty: the rules, read, drop nothing of it).
    pub fn for_sender(&self, sender: &str) -> Vec<&Finding> {
        self.senders
            .get(sender)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.findings.get(i))
            .collect()
    }

    /// A node whose rules could not be read.
    fn unread(group: IpAddr, port: u16, path: Hook, why: String) -> NodeFirewall {
        NodeFirewall {
            group: group.to_string(),
            port,
            path: path.as_str().into(),
            error: Some(why),
            findings: Vec::new(),
            senders: BTreeMap::new(),
            evaluated: 0,
            truncated: false,
        }
    }

    /// One line of JSON within [`COMPACT_LIMIT`] bytes: finding lines are cut to 300 characters
    /// and the least-shared ones dropped first, then senders, saying so in `truncated`.
    pub fn compact(&self) -> String {
        let mut c = self.clone();
        for f in &mut c.findings {
            if f.line.chars().count() > 300 {
                f.line = f.line.chars().take(299).chain(['…']).collect();
            }
        }
        loop {
            let text = serde_json::to_string(&c).unwrap_or_default();
            if text.len() <= COMPACT_LIMIT {
                return text;
            }
            c.truncated = true;
            if c.senders.len() > 1 {
                // Keep about the share of senders that fits (a few rounds, not one per sender).
                let keep = (c.senders.len() * COMPACT_LIMIT / text.len()).saturating_sub(1);
                let cut: Vec<String> = c.senders.keys().skip(keep).cloned().collect();
                for k in cut {
                    c.senders.remove(&k);
                }
            } else if let Some(e) = &mut c.error {
                e.truncate(COMPACT_LIMIT / 2);
                c.findings.clear();
                c.senders.clear();
            } else {
                c.findings.clear();
                c.senders.clear();
            }
        }
    }

    /// The human form: each finding with the senders it concerns.
    pub fn render(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if let Some(e) = &self.error {
            return writeln!(out, "the node's firewall could not be read: {e}");
        }
        for (i, f) in self.findings.iter().enumerate() {
            let from: Vec<&str> = self
                .senders
                .iter()
                .filter(|(_, ix)| ix.contains(&i))
                .map(|(s, _)| s.as_str())
                .collect();
            let mark = if f.blocks { "✗" } else { "?" };
            writeln!(out, "{mark} {} — from {}", f.line, from.join(", "))?;
        }
        if self.findings.is_empty() {
            writeln!(
                out,
                "✓ nothing in this node's live ruleset drops udp/{} to {} ({}) from the {} sender(s)",
                self.port, self.group, self.path, self.evaluated
            )?;
        }
        Ok(())
    }

    /// Whether a rule drops the traffic of some sender.
    pub fn blocks(&self) -> bool {
        self.findings.iter().any(|f| f.blocks)
    }
}

/// Evaluates the group's traffic from each of `senders` on `rules` (pure: any ruleset).
pub fn evaluate(
    rules: &Ruleset,
    senders: &[IpAddr],
    group: IpAddr,
    port: u16,
    path: Hook,
) -> NodeFirewall {
    let mut fw = NodeFirewall::unread(group, port, path, String::new());
    fw.error = None;
    for s in senders {
        let flow = Flow {
            group,
            port,
            source: Net::host(*s),
            // Which interface a sender's datagrams arrive on depends on the CNI; a rule that
            // tests one is then named as one that may drop them, never silently passed.
            iface: None,
        };
        let mut ix = Vec::new();
        for (blocks, line) in multicast_paths(rules, &flow).on_hook(path).findings() {
            let i = match fw.findings.iter().position(|f| f.line == line) {
                Some(i) => i,
                None => {
                    fw.findings.push(Finding { blocks, line });
                    fw.findings.len() - 1
                }
            };
            ix.push(i);
        }
        if !ix.is_empty() {
            fw.senders.insert(s.to_string(), ix);
        }
        fw.evaluated += 1;
    }
    fw
}

/// Reads this network namespace's live ruleset (once) and evaluates every sender; an unreadable
/// ruleset is the answer's `error`, with the reason (no CAP_NET_ADMIN, no userland ...).
pub fn observe(
    senders: &[IpAddr],
    group: IpAddr,
    port: u16,
    path: Hook,
    timeout: Duration,
) -> NodeFirewall {
    match read_node_rules(timeout) {
        Ok(rules) => evaluate(&rules, senders, group, port, path),
        Err(why) => NodeFirewall::unread(group, port, path, why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::firewall::{
        iptables,
        model::{Family, Origin},
    };

    fn rules(text: &str) -> Ruleset {
        iptables::parse(text, Origin::IptablesNft, Family::Ip).unwrap()
    }

    const POLICY: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
        -A INPUT -p udp -m udp --dport 4700 -j DROP\n\
        -A FORWARD ! -s 10.244.3.0/24 -p udp -m udp --dport 4700 -j DROP\nCOMMIT\n";

    fn senders() -> Vec<IpAddr> {
        ["10.244.1.5", "10.244.2.7", "10.244.3.9"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect()
    }

    #[test]
    fn each_sender_gets_the_rule_that_drops_its_traffic_on_the_path_asked() {
        let g: IpAddr = "239.1.1.1".parse().unwrap();
        let fw = evaluate(&rules(POLICY), &senders(), g, 4700, Hook::Forward);
        assert_eq!(fw.evaluated, 3);
        assert_eq!(fw.findings.len(), 1, "{fw:?}");
        let line = "udp/4700 to 239.1.1.1 (forward): drop by iptables-nft filter/FORWARD #1: \
                    -A FORWARD ! -s 10.244.3.0/24 -p udp -m udp --dport 4700 -j DROP";
        for s in ["10.244.1.5", "10.244.2.7"] {
            let f = fw.for_sender(s);
            assert_eq!(f.len(), 1, "{s}: {fw:?}");
            assert!(f[0].blocks && f[0].line == line, "{:?}", f[0]);
        }
        assert!(
            fw.for_sender("10.244.3.9").is_empty(),
            "the node's own pods"
        );
        // The input path (the node network): the INPUT rule, for every sender.
        let input = evaluate(&rules(POLICY), &senders(), g, 4700, Hook::Input);
        assert_eq!(input.senders.len(), 3, "{input:?}");
        assert!(
            input.findings[0]
                .line
                .contains("(input): drop by iptables-nft filter/INPUT #1")
        );
        // Another port: nothing.
        let other = evaluate(&rules(POLICY), &senders(), g, 4800, Hook::Forward);
        assert!(other.findings.is_empty() && other.senders.is_empty() && !other.blocks());
        let mut t = Vec::new();
        other.render(&mut t).unwrap();
        assert!(String::from_utf8(t).unwrap().starts_with("✓ nothing"));
    }

    #[test]
    fn the_compact_form_fits_a_termination_message_and_reads_back() {
        let g: IpAddr = "239.1.1.1".parse().unwrap();
        let many: Vec<IpAddr> = (0..2000u32)
            .map(|i| IpAddr::from([10, 244, (i / 250) as u8, (i % 250) as u8 + 1]))
            .collect();
        let fw = evaluate(&rules(POLICY), &many, g, 4700, Hook::Forward);
        assert_eq!(fw.senders.len(), 1750, "all but 10.244.3.x");
        let text = fw.compact();
        assert!(text.len() <= COMPACT_LIMIT, "{}", text.len());
        let back: NodeFirewall = serde_json::from_str(&text).unwrap();
        assert!(back.truncated && back.findings == fw.findings);
        assert_eq!(back.for_sender("10.244.0.1"), fw.for_sender("10.244.0.1"));
        assert!(back.senders.len() > 20, "{}", back.senders.len());
        let small = evaluate(&rules(POLICY), &senders(), g, 4700, Hook::Forward);
        let back: NodeFirewall = serde_json::from_str(&small.compact()).unwrap();
        assert_eq!(back, small, "nothing lost when it fits");
        let unread = NodeFirewall::unread(g, 4700, Hook::Forward, "x".repeat(10_000));
        assert!(unread.compact().len() <= COMPACT_LIMIT);
    }
}
