//! The packet-path evaluator: would a new connection (protocol, port, source network, interface) survive every input-hook chain?
//!
//! Base chains on the `input` hook are walked in priority order; a packet must be accepted by all of them.
//! Rules are tested in order with jumps, gotos, `RETURN` and policies. A match the model does not understand
//! makes the answer `unknown` (naming the rule) unless both ways lead to the same verdict. A source network
//! that a rule's prefix covers only in part is split in halves until every piece is decided.

use std::net::IpAddr;

use serde::Serialize;

use super::{
    model::{Action, AddrElem, Chain, Family, Match, Origin, Rule, Ruleset, Verdict},
    net::{Net, Overlap},
};

/// The packet in question: the first packet (NEW) of a connection or datagram flow to this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Query {
    /// IP protocol number: 6 TCP, 17 UDP, 2 IGMP, 4 IP-in-IP.
    pub proto: u8,
    pub dport: Option<u16>,
    /// Source port; `None` means "any ephemeral port", so a rule testing it cannot be decided.
    pub sport: Option<u16>,
    /// The network the packet comes from.
    pub source: Net,
    /// The destination address; `None` means one of this host's own unicast addresses, unspecified.
    pub dest: Option<IpAddr>,
    /// The interface it arrives on; `None` means not known, so a rule testing it cannot be decided.
    pub iface: Option<String>,
}

impl Query {
    pub fn tcp(dport: u16, source: Net) -> Query {
        Query::new(6, Some(dport), source)
    }
    pub fn udp(dport: u16, source: Net) -> Query {
        Query::new(17, Some(dport), source)
    }
    /// A packet of an IP protocol without ports (IGMP 2, IP-in-IP 4 ...).
    pub fn proto(proto: u8, source: Net) -> Query {
        Query::new(proto, None, source)
    }
    fn new(proto: u8, dport: Option<u16>, source: Net) -> Query {
        Query {
            proto,
            dport,
            sport: None,
            source,
            dest: None,
            iface: None,
        }
    }
    pub fn on(mut self, iface: impl Into<String>) -> Query {
        self.iface = Some(iface.into());
        self
    }
    pub fn to(mut self, dest: IpAddr) -> Query {
        self.dest = Some(dest);
        self
    }
    pub fn from_port(mut self, sport: u16) -> Query {
        self.sport = Some(sport);
        self
    }

    /// `tcp/6443 from 192.168.0.0/16 on eth0`.
    pub fn describe(&self) -> String {
        self.describe_for(self.source)
    }

    /// Like [`Query::describe`], for a piece of the source network.
    pub fn describe_for(&self, source: Net) -> String {
        let p = match self.proto {
            6 => "tcp".to_string(),
            17 => "udp".to_string(),
            2 => "igmp".to_string(),
            4 => "ipip".to_string(),
            n => format!("proto {n}"),
        };
        let mut s = match self.dport {
            Some(d) => format!("{p}/{d} from {source}"),
            None => format!("{p} from {source}"),
        };
        if let Some(i) = &self.iface {
            s.push_str(&format!(" on {i}"));
        }
        if let Some(d) = self.dest {
            s.push_str(&format!(" to {d}"));
        }
        s
    }
}

/// A rule (or a chain policy) cited as the reason for a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    pub origin: Origin,
    pub family: Family,
    pub table: String,
    pub chain: String,
    /// 1-based position in the chain (`iptables -I CHAIN POS`); `None` for the chain policy.
    pub position: Option<usize>,
    /// nft rule handle.
    pub handle: Option<u64>,
    pub text: String,
}

impl RuleRef {
    fn rule(c: &Chain, r: &Rule) -> RuleRef {
        RuleRef {
            origin: c.origin,
            family: c.family,
            table: c.table.clone(),
            chain: c.name.clone(),
            position: Some(r.position),
            handle: r.handle,
            text: r.text.clone(),
        }
    }
    fn policy(c: &Chain, v: Verdict) -> RuleRef {
        RuleRef {
            origin: c.origin,
            family: c.family,
            table: c.table.clone(),
            chain: c.name.clone(),
            position: None,
            handle: None,
            text: if c.origin.is_iptables() {
                format!(":{} {}", c.name, v.as_str().to_uppercase())
            } else {
                format!("policy {v}")
            },
        }
    }

    /// `iptables-nft filter/INPUT #5: -A INPUT -j REJECT --reject-with icmp-host-prohibited`.
    pub fn cite(&self) -> String {
        let table = if self.origin.is_iptables() {
            self.table.clone()
        } else {
            format!("{} {}", self.family.as_str(), self.table)
        };
        match self.position {
            Some(p) => format!(
                "{} {table}/{} #{p}: {}",
                self.origin.as_str(),
                self.chain,
                self.text
            ),
            None => format!(
                "{} {table}/{} policy: {}",
                self.origin.as_str(),
                self.chain,
                self.text
            ),
        }
    }
}

/// Where to insert a rule so that it is evaluated before the deciding one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InsertPoint {
    pub origin: Origin,
    pub family: Family,
    pub table: String,
    /// A base chain (INPUT, input ...): the rule placed here is seen before the jump that led to the decision.
    pub chain: String,
    /// 1-based: `iptables -I chain position`; one past the end means append.
    pub position: usize,
    /// For nft: insert before the rule with this handle (`nft insert rule ... position HANDLE`); `None` = add at the end.
    pub handle: Option<u64>,
}

/// The verdict for one piece of the queried source network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub source: Net,
    pub verdict: Verdict,
    /// The rule or policy that decided; `None` when no chain on the input hook sees this family.
    pub rule: Option<RuleRef>,
    /// For `unknown`: what the evaluator could not model.
    pub reason: Option<String>,
    /// The jump/goto rules from the base chain down to `rule`, outermost first.
    pub path: Vec<RuleRef>,
    /// Other base chains that also accepted (a packet must pass them all).
    pub also: Vec<RuleRef>,
    /// Rules in the base chain of the decision: used to place an insert after a policy decision.
    #[serde(skip)]
    base_len: usize,
}

impl Decision {
    /// Where a rule accepting this packet must go to be seen before the deciding rule.
    pub fn insert_point(&self) -> Option<InsertPoint> {
        let r = self.path.first().or(self.rule.as_ref())?;
        Some(InsertPoint {
            origin: r.origin,
            family: r.family,
            table: r.table.clone(),
            chain: r.chain.clone(),
            position: r.position.unwrap_or(self.base_len + 1),
            handle: r.handle,
        })
    }

    /// One evidence line: `tcp/6443 from 10.0.0.0/8: reject by iptables-nft filter/INPUT #5: ...`.
    pub fn explain(&self) -> String {
        let by = match &self.rule {
            Some(r) => r.cite(),
            None => "no input-hook chain filters this address family".into(),
        };
        let via = if self.path.is_empty() {
            String::new()
        } else {
            format!(
                " (via {})",
                self.path
                    .iter()
                    .map(|p| format!("{} #{}", p.chain, p.position.unwrap_or(0)))
                    .collect::<Vec<_>>()
                    .join(" → ")
            )
        };
        match &self.reason {
            Some(why) => format!("{} by {by}{via}: cannot evaluate {why}", self.verdict),
            None => format!("{} by {by}{via}", self.verdict),
        }
    }
}

/// The answer to a query: one decision per piece of the source network (usually one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    pub query: Query,
    pub parts: Vec<Decision>,
}

impl Answer {
    /// Blocked if any piece is blocked, else unknown if any piece is unknown, else accepted.
    pub fn verdict(&self) -> Verdict {
        self.decisive().verdict
    }

    /// The piece that sets [`Answer::verdict`].
    pub fn decisive(&self) -> &Decision {
        self.parts
            .iter()
            .find(|d| d.verdict.blocks())
            .or_else(|| self.parts.iter().find(|d| d.verdict == Verdict::Unknown))
            .unwrap_or(&self.parts[0])
    }

    /// Evidence lines: the query and each piece's deciding rule.
    pub fn explain(&self) -> Vec<String> {
        let q = self.query.describe();
        if self.parts.len() == 1 {
            return vec![format!("{q}: {}", self.parts[0].explain())];
        }
        self.parts
            .iter()
            .map(|d| format!("{q} [part {}]: {}", d.source, d.explain()))
            .collect()
    }
}

const MAX_PIECES: usize = 64;
const MAX_STEPS: usize = 1_000_000;
const MAX_DEPTH: usize = 64;

/// Answers a query against a ruleset.
pub fn evaluate(rs: &Ruleset, q: &Query) -> Answer {
    let mut parts = Vec::new();
    let mut todo = vec![q.source];
    while let Some(src) = todo.pop() {
        let piece = Query {
            source: src,
            ..q.clone()
        };
        match evaluate_piece(rs, &piece) {
            Some(d) => parts.push(d),
            None => match src.halves() {
                Some((a, b)) if parts.len() + todo.len() + 2 <= MAX_PIECES => {
                    todo.push(b);
                    todo.push(a);
                }
                _ => parts.push(Decision {
                    source: src,
                    verdict: Verdict::Unknown,
                    rule: None,
                    reason: Some(format!(
                        "the source network: rules split {} into more than {MAX_PIECES} pieces",
                        q.source
                    )),
                    path: vec![],
                    also: vec![],
                    base_len: 0,
                }),
            },
        }
    }
    parts.sort_by_key(|d| d.source);
    merge_adjacent(&mut parts);
    Answer {
        query: q.clone(),
        parts,
    }
}

/// Joins sibling pieces decided the same way by the same rule back into their parent prefix.
fn merge_adjacent(parts: &mut Vec<Decision>) {
    loop {
        let mut merged = false;
        let mut i = 0;
        while i + 1 < parts.len() {
            let (a, b) = (&parts[i], &parts[i + 1]);
            let parent = Net::new(a.source.addr(), a.source.prefix_len().saturating_sub(1));
            let siblings = a.source.prefix_len() == b.source.prefix_len()
                && a.source.prefix_len() > 0
                && parent.and_then(|p| p.halves()) == Some((a.source, b.source));
            if siblings && a.verdict == b.verdict && a.rule == b.rule && a.path == b.path {
                parts[i].source = parent.expect("checked");
                parts.remove(i + 1);
                merged = true;
            } else {
                i += 1;
            }
        }
        if !merged {
            break;
        }
    }
}

/// What walking a chain produced.
#[derive(Debug, Clone)]
enum Out {
    Final {
        verdict: Verdict,
        rule: RuleRef,
        path: Vec<RuleRef>,
    },
    /// RETURN or the end of a user chain: back to the caller (or the policy of a base chain).
    Fallthrough,
    Unknown {
        rule: RuleRef,
        reason: String,
        path: Vec<RuleRef>,
    },
    /// The source network must be split: a rule covers it only in part.
    Split,
}

impl Out {
    fn same_as(&self, other: &Out) -> bool {
        match (self, other) {
            (Out::Final { verdict: a, .. }, Out::Final { verdict: b, .. }) => a == b,
            (Out::Fallthrough, Out::Fallthrough) => true,
            _ => false,
        }
    }
    fn via(self, hop: RuleRef) -> Out {
        match self {
            Out::Final {
                verdict,
                rule,
                mut path,
            } => {
                path.insert(0, hop);
                Out::Final {
                    verdict,
                    rule,
                    path,
                }
            }
            Out::Unknown {
                rule,
                reason,
                mut path,
            } => {
                path.insert(0, hop);
                Out::Unknown { rule, reason, path }
            }
            o => o,
        }
    }
}

/// A rule's matches against the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
enum M {
    Yes,
    No,
    Maybe(String),
    Split,
}

fn bool_m(b: bool, neg: bool) -> M {
    if b != neg { M::Yes } else { M::No }
}

struct Walker<'a> {
    rs: &'a Ruleset,
    q: &'a Query,
    steps: usize,
}

/// One piece: `None` when the source must be split further.
fn evaluate_piece(rs: &Ruleset, q: &Query) -> Option<Decision> {
    let v6 = q.source.is_v6();
    let mut bases: Vec<&Chain> = rs
        .chains
        .iter()
        .filter(|c| c.family.sees(v6))
        .filter(|c| c.base.as_ref().is_some_and(|b| b.hook == "input"))
        .collect();
    bases.sort_by_key(|c| c.base.as_ref().map_or(0, |b| b.priority));
    let mut w = Walker { rs, q, steps: 0 };
    let mut accepted: Vec<(RuleRef, Vec<RuleRef>)> = Vec::new();
    let mut unknown: Option<Decision> = None;
    for c in bases {
        let decision = |verdict, rule, reason, path| Decision {
            source: q.source,
            verdict,
            rule: Some(rule),
            reason,
            path,
            also: vec![],
            base_len: c.rules.len(),
        };
        match w.chain(c, 0) {
            Out::Split => return None,
            Out::Fallthrough => {
                let p = c.base.as_ref().map_or(Verdict::Accept, |b| b.policy);
                if p == Verdict::Accept {
                    accepted.push((RuleRef::policy(c, p), vec![]));
                } else {
                    return Some(decision(p, RuleRef::policy(c, p), None, vec![]));
                }
            }
            Out::Final {
                verdict: Verdict::Accept,
                rule,
                path,
            } => accepted.push((rule, path)),
            Out::Final {
                verdict,
                rule,
                path,
            } => return Some(decision(verdict, rule, None, path)),
            Out::Unknown { rule, reason, path } => {
                if unknown.is_none() {
                    unknown = Some(decision(Verdict::Unknown, rule, Some(reason), path));
                }
            }
        }
    }
    if let Some(u) = unknown {
        return Some(u);
    }
    let mut it = accepted.into_iter();
    let (rule, path) = it.next().map_or((None, vec![]), |(r, p)| (Some(r), p));
    Some(Decision {
        source: q.source,
        verdict: Verdict::Accept,
        rule,
        reason: None,
        path,
        also: it.map(|(r, _)| r).collect(),
        base_len: 0,
    })
}

impl Walker<'_> {
    fn chain(&mut self, c: &Chain, depth: usize) -> Out {
        self.rest(c, 0, depth)
    }

    /// Walks `c` from rule index `from`.
    fn rest(&mut self, c: &Chain, from: usize, depth: usize) -> Out {
        for (i, r) in c.rules.iter().enumerate().skip(from) {
            self.steps += 1;
            if self.steps > MAX_STEPS || depth > MAX_DEPTH {
                return Out::Unknown {
                    rule: RuleRef::rule(c, r),
                    reason: "the ruleset: evaluation exceeded its step or jump-depth budget".into(),
                    path: vec![],
                };
            }
            if r.action == Action::Continue {
                continue;
            }
            match self.rule(r) {
                M::No => continue,
                M::Split => return Out::Split,
                M::Yes => match self.act(c, r, &r.action, depth) {
                    None => continue,
                    Some(o) => return o,
                },
                M::Maybe(why) => {
                    let taken = self.act(c, r, &r.action, depth);
                    let skipped = self.rest(c, i + 1, depth);
                    return match taken {
                        None => skipped,
                        Some(Out::Split) => Out::Split,
                        Some(t) if t.same_as(&skipped) => skipped,
                        Some(_) if matches!(skipped, Out::Split) => Out::Split,
                        Some(_) => Out::Unknown {
                            rule: RuleRef::rule(c, r),
                            reason: why,
                            path: vec![],
                        },
                    };
                }
            }
        }
        Out::Fallthrough
    }

    /// Applies an action: `None` means evaluation goes on with the next rule.
    fn act(&mut self, c: &Chain, r: &Rule, a: &Action, depth: usize) -> Option<Out> {
        let fin = |verdict| Out::Final {
            verdict,
            rule: RuleRef::rule(c, r),
            path: vec![],
        };
        let unknown = |reason: String| Out::Unknown {
            rule: RuleRef::rule(c, r),
            reason,
            path: vec![],
        };
        match a {
            Action::Accept => Some(fin(Verdict::Accept)),
            Action::Drop => Some(fin(Verdict::Drop)),
            Action::Reject => Some(fin(Verdict::Reject)),
            Action::Return => Some(Out::Fallthrough),
            Action::Continue => None,
            Action::Unknown(t) => Some(unknown(format!("the action {t:?}"))),
            Action::Jump(t) | Action::Goto(t) => {
                let Some(target) = self.rs.target(c, t) else {
                    return Some(unknown(format!(
                        "a jump to chain {t:?}, which does not exist"
                    )));
                };
                let o = self.chain(target, depth + 1).via(RuleRef::rule(c, r));
                match (a, o) {
                    (Action::Jump(_), Out::Fallthrough) => None,
                    (_, o) => Some(o),
                }
            }
            Action::Vmap(entries) => {
                for (m, act) in entries {
                    match self.one(m) {
                        M::No => continue,
                        M::Yes => return self.act(c, r, act, depth),
                        M::Split => return Some(Out::Split),
                        M::Maybe(why) => return Some(unknown(why)),
                    }
                }
                None
            }
        }
    }

    fn rule(&self, r: &Rule) -> M {
        let mut acc = M::Yes;
        for m in &r.matches {
            match self.one(m) {
                M::No => return M::No,
                M::Split => acc = M::Split,
                M::Maybe(w) if acc == M::Yes => acc = M::Maybe(w),
                _ => {}
            }
        }
        acc
    }

    fn one(&self, m: &Match) -> M {
        let q = self.q;
        let ports =
            |neg: bool, proto: &Option<u8>, any_of: &[(u16, u16)], p: Option<u16>, what: &str| {
                let proto_ok = match proto {
                    Some(want) => q.proto == *want,
                    None => matches!(q.proto, 6 | 17 | 132 | 136),
                };
                if !proto_ok {
                    return M::No;
                }
                match p {
                    Some(p) => bool_m(any_of.iter().any(|(lo, hi)| (*lo..=*hi).contains(&p)), neg),
                    None => M::Maybe(format!("the {what} (not part of the query)")),
                }
            };
        match m {
            Match::Source { neg, any_of } => {
                let mut partial = false;
                for e in any_of {
                    let o = match e {
                        AddrElem::Net(n) => q.source.overlap_with(n),
                        AddrElem::Range(lo, hi) => q.source.overlap_with_range(*lo, *hi),
                    };
                    match o {
                        Overlap::Inside => return bool_m(true, *neg),
                        Overlap::Partial => partial = true,
                        Overlap::Disjoint => {}
                    }
                }
                if partial {
                    M::Split
                } else {
                    bool_m(false, *neg)
                }
            }
            Match::Dest { neg, any_of } => match q.dest {
                // An unnamed destination is a unicast address of this host: never loopback or multicast.
                None if any_of.iter().all(not_unicast_host) => bool_m(false, *neg),
                None => M::Maybe("the destination address (the query names none)".into()),
                Some(d) => {
                    let h = Net::host(d);
                    let hit = any_of.iter().any(|e| match e {
                        AddrElem::Net(n) => h.overlap_with(n) == Overlap::Inside,
                        AddrElem::Range(lo, hi) => {
                            h.overlap_with_range(*lo, *hi) == Overlap::Inside
                        }
                    });
                    bool_m(hit, *neg)
                }
            },
            Match::InIface { neg, any_of } => match &q.iface {
                // Traffic from another network never arrives on loopback.
                None if any_of.iter().all(|p| p == "lo") => bool_m(false, *neg),
                None => M::Maybe("the input interface (the query names none)".into()),
                Some(i) => bool_m(any_of.iter().any(|p| iface_matches(p, i)), *neg),
            },
            Match::Proto { neg, any_of } => bool_m(any_of.contains(&q.proto), *neg),
            Match::DPort { neg, proto, any_of } => {
                ports(*neg, proto, any_of, q.dport, "destination port")
            }
            Match::SPort { neg, proto, any_of } => {
                ports(*neg, proto, any_of, q.sport, "source port")
            }
            Match::CtState { neg, any_of } => bool_m(any_of.iter().any(|s| s == "new"), *neg),
            Match::CtStatus { neg, .. } => bool_m(false, *neg),
            Match::Family { neg, v6 } => bool_m(q.source.is_v6() == *v6, *neg),
            Match::DstType { neg, any_of } => {
                bool_m(any_of.iter().any(|t| t == dst_type(q.dest)), *neg)
            }
            Match::SrcType { neg, any_of } => bool_m(any_of.iter().any(|t| t == "UNICAST"), *neg),
            Match::PktType { neg, any_of } => {
                let t = match dst_type(q.dest) {
                    "MULTICAST" => "multicast",
                    "BROADCAST" => "broadcast",
                    _ => "host",
                };
                bool_m(
                    any_of
                        .iter()
                        .any(|x| x == t || (t == "host" && x == "unicast")),
                    *neg,
                )
            }
            Match::TcpFlags { neg, mask, comp } => {
                if q.proto != 6 {
                    return M::No;
                }
                // The first packet of a TCP connection: SYN alone.
                bool_m(0x02 & mask == *comp, *neg)
            }
            // The probed traffic reaches a host port directly, so nothing marked it: mark 0.
            Match::Mark { neg, value, .. } => bool_m(*value == 0, *neg),
            Match::Unknown(what) => M::Maybe(what.clone()),
        }
    }
}

/// Whether a destination element holds only loopback or multicast addresses.
fn not_unicast_host(e: &AddrElem) -> bool {
    const SPECIAL: &[&str] = &["127.0.0.0/8", "224.0.0.0/4", "::1/128", "ff00::/8"];
    let n = match e {
        AddrElem::Net(n) => *n,
        AddrElem::Range(..) => return false,
    };
    SPECIAL
        .iter()
        .any(|s| n.overlap_with(&s.parse().expect("valid prefix")) == Overlap::Inside)
}

fn dst_type(d: Option<IpAddr>) -> &'static str {
    match d {
        Some(a) if a.is_multicast() => "MULTICAST",
        Some(IpAddr::V4(a)) if a.is_broadcast() => "BROADCAST",
        _ => "LOCAL",
    }
}

/// `eth+` (iptables) and `eth*` (nft) match by prefix; anything else exactly.
pub fn iface_matches(pattern: &str, name: &str) -> bool {
    match pattern
        .strip_suffix('+')
        .or_else(|| pattern.strip_suffix('*'))
    {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}
