//! Firewall evidence for the probe: DROP/REJECT rules with their packet counters, read from
//! `iptables-save -c` / `ip6tables-save -c` (or `nft -a list ruleset` when those give nothing), and
//! the rules whose counters grew during the probe. Kept apart so it can move to the firewall evaluator.

use std::time::Duration;

use crate::core::host::run_command;

/// A dropping rule (or a chain's DROP policy) and its packet counter at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCounter {
    /// `iptables`, `ip6tables` or `nft`.
    pub source: &'static str,
    pub table: String,
    pub chain: String,
    /// The rule as the tool prints it, without the counters.
    pub rule: String,
    pub packets: u64,
}

impl RuleCounter {
    /// Whether the rule acts on packets this host sends (so it explains loss at the receivers).
    pub fn outbound(&self) -> bool {
        matches!(
            self.chain.to_ascii_lowercase().as_str(),
            "output" | "postrouting"
        )
    }

    pub fn describe(&self) -> String {
        format!("{} table {}: {}", self.source, self.table, self.rule)
    }
}

fn drops(target: &str) -> bool {
    matches!(target, "DROP" | "REJECT")
}

/// Parses `iptables-save -c`: `:CHAIN POLICY [pkts:bytes]` and `[pkts:bytes] -A CHAIN ... -j TARGET`.
pub fn parse_iptables_save(text: &str, source: &'static str) -> Vec<RuleCounter> {
    let mut table = String::new();
    let mut out = Vec::new();
    let counter =
        |s: &str| -> Option<u64> { s.trim_matches(['[', ']']).split(':').next()?.parse().ok() };
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.trim().to_string();
        } else if let Some(policy) = line.strip_prefix(':') {
            let f: Vec<&str> = policy.split_whitespace().collect();
            if let [chain, target, c] = f[..]
                && drops(target)
                && let Some(packets) = counter(c)
            {
                out.push(RuleCounter {
                    source,
                    table: table.clone(),
                    chain: chain.to_string(),
                    rule: format!("chain {chain} policy {target}"),
                    packets,
                });
            }
        } else if line.starts_with('[') {
            let Some((c, rule)) = line.split_once(' ') else {
                continue;
            };
            let f: Vec<&str> = rule.split_whitespace().collect();
            let target = f.iter().position(|w| *w == "-j").and_then(|i| f.get(i + 1));
            if let (Some(packets), Some(t), Some(chain)) = (counter(c), target, f.get(1))
                && drops(t)
            {
                out.push(RuleCounter {
                    source,
                    table: table.clone(),
                    chain: chain.to_string(),
                    rule: rule.to_string(),
                    packets,
                });
            }
        }
    }
    out
}

/// Parses `nft -a list ruleset`: rules with a `counter packets N bytes M` that end in drop/reject.
pub fn parse_nft(text: &str) -> Vec<RuleCounter> {
    let (mut table, mut chain) = (String::new(), String::new());
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        let words: Vec<&str> = l.split_whitespace().collect();
        match words.first() {
            Some(&"table") => table = words.get(1..3).map(|w| w.join(" ")).unwrap_or_default(),
            Some(&"chain") => chain = words.get(1).unwrap_or(&"").to_string(),
            _ => {}
        }
        let body = l.split(" # handle").next().unwrap_or(l);
        let Some(i) = words.iter().position(|w| *w == "packets") else {
            continue;
        };
        let verdict = body
            .split_whitespace()
            .any(|w| w == "drop" || w == "reject");
        let Some(Ok(packets)) = words.get(i + 1).map(|p| p.parse::<u64>()) else {
            continue;
        };
        if verdict && words.get(i.wrapping_sub(1)) == Some(&"counter") {
            let rule = body
                .replace(
                    &format!(
                        "counter packets {packets} bytes {} ",
                        words.get(i + 3).unwrap_or(&"")
                    ),
                    "counter ",
                )
                .to_string();
            let handle = l.split(" # handle ").nth(1).unwrap_or("?");
            out.push(RuleCounter {
                source: "nft",
                table: table.clone(),
                chain: chain.clone(),
                rule: format!("chain {chain} handle {handle}: {rule}"),
                packets,
            });
        }
    }
    out
}

const TIMEOUT: Duration = Duration::from_secs(3);

/// Reads the dropping rules of this namespace with their counters.
pub fn read_counters() -> Result<Vec<RuleCounter>, String> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (prog, source) in [
        ("iptables-save", "iptables"),
        ("ip6tables-save", "ip6tables"),
    ] {
        match run_command(prog, &["-c"], TIMEOUT) {
            Ok(t) => out.extend(parse_iptables_save(&t, source)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if out.is_empty() {
        match run_command("nft", &["-a", "list", "ruleset"], TIMEOUT) {
            Ok(t) => out.extend(parse_nft(&t)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if out.is_empty() && errors.len() == 3 {
        if !net_admin() {
            return Err(format!("no CAP_NET_ADMIN ({})", errors.join("; ")));
        }
        return Err(errors.join("; "));
    }
    Ok(out)
}

/// Whether this process holds CAP_NET_ADMIN (bit 12 of `CapEff`), which reading rules needs.
fn net_admin() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 12) != 0)
}

/// A dropping rule whose counter grew during the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grown {
    pub rule: RuleCounter,
    pub delta: u64,
}

/// Whether a rule could be the one dropping the probe: it names the port, IGMP or the group,
/// or names no port at all (a catch-all drop).
fn relevant(rule: &str, port: u16, group: &str) -> bool {
    let names_port = [
        format!("dport {port}"),
        format!("dports {port}"),
        format!("dport {port},"),
    ]
    .iter()
    .any(|p| rule.contains(p.as_str()));
    let names_other_port = rule.contains("dport") || rule.contains("sport");
    names_port || rule.contains("igmp") || rule.contains(group) || !names_other_port
}

/// Rules whose packet counter grew between two readings and that could concern `port`/`group`,
/// most packets first.
pub fn grown(before: &[RuleCounter], after: &[RuleCounter], port: u16, group: &str) -> Vec<Grown> {
    let mut out: Vec<Grown> = after
        .iter()
        .filter_map(|a| {
            let b = before
                .iter()
                .find(|b| b.source == a.source && b.table == a.table && b.rule == a.rule)
                .map_or(0, |b| b.packets);
            (a.packets > b && relevant(&a.rule, port, group)).then(|| Grown {
                rule: a.clone(),
                delta: a.packets - b,
            })
        })
        .collect();
    out.sort_by_key(|g| std::cmp::Reverse(g.delta));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE_BEFORE: &str = "# Generated by iptables-save v1.8.9 (nf_tables) on Wed Nov 25 16:00:00 2026
*filter
:INPUT ACCEPT [10:840]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [10:840]
[0:0] -A INPUT -p udp -m udp --dport 4444 -j DROP
[3:180] -A INPUT -p tcp -m tcp --dport 22 -j REJECT --reject-with icmp-port-unreachable
[0:0] -A INPUT -p udp -m udp --dport 4444 -m statistic --mode random --probability 0.05000000000 -j DROP
[5:300] -A INPUT -s 10.9.9.9/32 -j ACCEPT
COMMIT
";

    #[test]
    fn iptables_save_rules_and_policies_that_drop() {
        let r = parse_iptables_save(SAVE_BEFORE, "iptables");
        let rules: Vec<&str> = r.iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(
            rules,
            vec![
                "chain FORWARD policy DROP",
                "-A INPUT -p udp -m udp --dport 4444 -j DROP",
                "-A INPUT -p tcp -m tcp --dport 22 -j REJECT --reject-with icmp-port-unreachable",
                "-A INPUT -p udp -m udp --dport 4444 -m statistic --mode random --probability 0.05000000000 -j DROP",
            ]
        );
        assert_eq!(
            (r[2].packets, r[2].chain.as_str(), r[2].table.as_str()),
            (3, "INPUT", "filter")
        );
    }

    #[test]
    fn only_relevant_rules_that_grew_are_named() {
        let before = parse_iptables_save(SAVE_BEFORE, "iptables");
        let after_text = SAVE_BEFORE
            .replace(
                "[0:0] -A INPUT -p udp -m udp --dport 4444 -j DROP",
                "[100:8400] -A INPUT -p udp -m udp --dport 4444 -j DROP",
            )
            .replace("[3:180] -A INPUT -p tcp", "[9:540] -A INPUT -p tcp");
        let after = parse_iptables_save(&after_text, "iptables");
        let g = grown(&before, &after, 4444, "224.1.1.1");
        assert_eq!(g.len(), 1, "{g:?}");
        assert_eq!(g[0].delta, 100);
        assert_eq!(
            g[0].rule.describe(),
            "iptables table filter: -A INPUT -p udp -m udp --dport 4444 -j DROP"
        );
        assert!(!g[0].rule.outbound());
        // The same port on another probe run is not this one's rule.
        assert!(grown(&before, &after, 5555, "224.1.1.1").is_empty());
    }

    #[test]
    fn nft_rules_with_counters() {
        let t = "table inet fw { # handle 7
\tchain input { # handle 1
\t\ttype filter hook input priority filter; policy accept;
\t\tudp dport 4444 counter packets 12 bytes 1008 drop # handle 3
\t\tip protocol igmp counter packets 2 bytes 64 reject # handle 4
\t\tudp dport 53 counter packets 5 bytes 300 accept # handle 5
\t}
\tchain output { # handle 2
\t\ttype filter hook output priority filter; policy accept;
\t\tudp dport 4444 drop # handle 6
\t}
}
";
        let r = parse_nft(t);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(
            r[0].rule,
            "chain input handle 3: udp dport 4444 counter drop"
        );
        assert_eq!((r[0].packets, r[0].table.as_str()), (12, "inet fw"));
        assert_eq!(r[1].packets, 2);
        let g = grown(&[], &r, 4444, "224.1.1.1");
        assert_eq!(g.len(), 2);
    }
}
