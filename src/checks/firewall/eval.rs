//! The packet-path evaluator: would every new connection of a query (protocol, port, source and destination
//! networks, interfaces) survive every base chain of its hook (`input` for this host, `forward` for routed pod
//! traffic)?
//!
//! Base chains of the hook are walked in priority order; a packet must be accepted by all of them. Rules are
//! tested in order with jumps, gotos, `RETURN` and policies. A match the model cannot decide forks the walk:
//! both ways are followed to the end of the base chain (its policy included) and compared by reachability,
//! so `reject` and `drop` are the same answer. The check's quantifier is "every packet of the query gets
//! through": a match that can hold only for a sliver of the traffic (one MAC address) cannot make it pass,
//! so when its no-match way blocks, the answer is blocked with that rule as evidence. A network that a
//! rule's prefix covers only in part is split in halves until every piece is decided (up to a budget; past
//! it both parts are known to exist, so either one blocking blocks).

use std::{collections::HashMap, net::IpAddr};

use serde::Serialize;

use super::{
    model::{Action, AddrElem, Chain, Family, Match, Origin, Rule, Ruleset, Verdict},
    net::{Net, Overlap},
};

/// The netfilter hook a query's packets traverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// To a socket of this host.
    #[default]
    Input,
    /// Routed through this host (pod to pod across nodes, pod to service after DNAT).
    Forward,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Input => "input",
            Hook::Forward => "forward",
        }
    }
}

/// The packet in question: the first packet (NEW) of a connection or datagram flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Query {
    pub hook: Hook,
    /// IP protocol number: 6 TCP, 17 UDP, 2 IGMP, 4 IP-in-IP.
    pub proto: u8,
    /// Destination port; `None` means every port of `dports` (a rule testing it holds for some ports only).
    pub dport: Option<u16>,
    /// With `dport` `None`: the inclusive range of destination ports the query covers (`None`: every port).
    pub dports: Option<(u16, u16)>,
    /// Source port; `None` means a client's ephemeral port (32768–65535).
    pub sport: Option<u16>,
    /// The network the packet comes from.
    pub source: Net,
    /// The destination; `None` on the input hook means one of this host's own unicast addresses.
    pub dest: Option<Net>,
    /// The interface it arrives on; `None` means not known, so a rule testing it cannot be decided.
    pub iface: Option<String>,
    /// The interface it leaves on (forward hook); `None` means not known.
    pub oiface: Option<String>,
    /// An interface left `None` means every interface rather than an unknown one (a site's flow with no
    /// interface must be accepted whichever it arrives on): a rule testing some interfaces holds for part
    /// of the traffic only.
    pub any_iface: bool,
    /// Conntrack marks the connection as destination-NATed (a service address rewritten to a pod's).
    pub dnat: bool,
}

/// The ports a client connects from (Linux 32768–60999, Windows and BSD 49152–65535).
const EPHEMERAL: (u16, u16) = (32768, 65535);

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
    /// Routed traffic of protocol `proto` to every port of `dest`.
    pub fn forward(proto: u8, source: Net, dest: Net) -> Query {
        Query {
            hook: Hook::Forward,
            dest: Some(dest),
            ..Query::new(proto, None, source)
        }
    }
    fn new(proto: u8, dport: Option<u16>, source: Net) -> Query {
        Query {
            hook: Hook::Input,
            proto,
            dport,
            dports: None,
            sport: None,
            source,
            dest: None,
            iface: None,
            oiface: None,
            any_iface: false,
            dnat: false,
        }
    }
    pub fn on(mut self, iface: impl Into<String>) -> Query {
        self.iface = Some(iface.into());
        self
    }
    pub fn out(mut self, iface: impl Into<String>) -> Query {
        self.oiface = Some(iface.into());
        self
    }
    pub fn to(mut self, dest: IpAddr) -> Query {
        self.dest = Some(Net::host(dest));
        self
    }
    /// Every destination port from `lo` to `hi` (a range a site requires open, `30000-32767`).
    pub fn ports(mut self, lo: u16, hi: u16) -> Query {
        self.dport = None;
        self.dports = Some((lo, hi));
        self
    }
    pub fn from_port(mut self, sport: u16) -> Query {
        self.sport = Some(sport);
        self
    }
    pub fn dnat(mut self) -> Query {
        self.dnat = true;
        self
    }

    /// `tcp/6443 from 192.168.0.0/16 on eth0`.
    pub fn describe(&self) -> String {
        self.describe_for(self.source)
    }

    /// Like [`Query::describe`], for a piece of the source network.
    pub fn describe_for(&self, source: Net) -> String {
        self.describe_piece(source, self.dest)
    }

    /// Like [`Query::describe`], for a piece of the source and destination networks.
    pub fn describe_piece(&self, source: Net, dest: Option<Net>) -> String {
        let p = match self.proto {
            1 => "icmp".to_string(),
            6 => "tcp".to_string(),
            17 => "udp".to_string(),
            2 => "igmp".to_string(),
            4 => "ipip".to_string(),
            58 => "icmpv6".to_string(),
            132 => "sctp".to_string(),
            n => format!("proto {n}"),
        };
        let mut s = match (self.dport, self.dports) {
            (Some(d), _) => format!("{p}/{d} from {source}"),
            (None, Some((lo, hi))) => format!("{p}/{lo}-{hi} from {source}"),
            (None, None) => format!("{p} from {source}"),
        };
        let on = if self.hook == Hook::Input {
            "on"
        } else {
            "in on"
        };
        if let Some(i) = &self.iface {
            s.push_str(&format!(" {on} {i}"));
        }
        if let Some(d) = dest {
            if d.prefix_len() == if d.is_v6() { 128 } else { 32 } {
                s.push_str(&format!(" to {}", d.addr()));
            } else {
                s.push_str(&format!(" to {d}"));
            }
        }
        if let Some(o) = &self.oiface {
            s.push_str(&format!(" out on {o}"));
        }
        if self.dnat {
            s.push_str(" (a service address DNATed to it)");
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

/// The verdict for one piece of the queried source (and destination) network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub source: Net,
    /// The piece of the queried destination network, when the query names one.
    pub dest: Option<Net>,
    pub verdict: Verdict,
    /// The rule or policy that decided; `None` when no chain on the hook sees this family.
    pub rule: Option<RuleRef>,
    /// For `unknown`: what the evaluator could not model.
    pub reason: Option<String>,
    /// An undecidable rule the decision was reached across (`... limit rate 1/second reject` when both of
    /// its ways block), with what it could not decide.
    pub across: Option<(RuleRef, String)>,
    /// The jump/goto rules from the base chain down to `rule`, outermost first.
    pub path: Vec<RuleRef>,
    /// Other base chains that also accepted (a packet must pass them all).
    pub also: Vec<RuleRef>,
    /// Rules in the base chain of the decision: used to place an insert after a policy decision.
    #[serde(skip)]
    base_len: usize,
}

impl Decision {
    /// Where a rule accepting this packet must go to be seen before the deciding rule (and before an
    /// undecidable rule the decision was reached across, which may block as well).
    pub fn insert_point(&self) -> Option<InsertPoint> {
        let across = self.across.as_ref().map(|(r, _)| r).filter(|r| {
            Some(&r.chain) == self.path.first().or(self.rule.as_ref()).map(|x| &x.chain)
        });
        let first = self.path.first().or(self.rule.as_ref())?;
        let r = match across {
            Some(a) if a.position < first.position || first.position.is_none() => a,
            _ => first,
        };
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
            None => "no base chain on this hook filters this address family".into(),
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
        let across = match &self.across {
            Some((r, why)) => format!("; {} cannot change that ({why})", r.cite()),
            None => String::new(),
        };
        match &self.reason {
            Some(why) => format!("{} by {by}{via}: cannot evaluate {why}", self.verdict),
            None => format!("{} by {by}{via}{across}", self.verdict),
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
            .map(|d| {
                let piece = match d.dest.filter(|_| self.query.dest != d.dest) {
                    Some(dest) => format!("{} to {dest}", d.source),
                    None => d.source.to_string(),
                };
                format!("{q} [part {piece}]: {}", d.explain())
            })
            .collect()
    }
}

const MAX_PIECES: usize = 64;
const MAX_STEPS: usize = 1_000_000;
const MAX_DEPTH: usize = 64;
/// Undecidable rules followed both ways at once (each one nests the walk).
const MAX_FORKS: usize = 200;

/// Which network of the query a rule covers only in part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dim {
    Source,
    Dest,
}

/// Answers a query against a ruleset.
pub fn evaluate(rs: &Ruleset, q: &Query) -> Answer {
    let index = Index::new(rs);
    let mut parts = Vec::new();
    let mut todo = vec![(q.source, q.dest)];
    while let Some((src, dst)) = todo.pop() {
        let piece = Query {
            source: src,
            dest: dst,
            ..q.clone()
        };
        let budget = parts.len() + todo.len() + 2 <= MAX_PIECES;
        match evaluate_piece(rs, &index, &piece, budget) {
            Ok(d) => parts.push(d),
            Err(dim) => {
                let halves = match dim {
                    Dim::Source => src.halves().map(|(a, b)| ((a, dst), (b, dst))),
                    Dim::Dest => dst
                        .and_then(|d| d.halves())
                        .map(|(a, b)| ((src, Some(a)), (src, Some(b)))),
                };
                match halves {
                    Some((a, b)) => {
                        todo.push(b);
                        todo.push(a);
                    }
                    // A single address is never covered in part; stay total anyway.
                    None => parts.push(evaluate_piece(rs, &index, &piece, false).unwrap_or_else(
                        |_| Decision {
                            source: src,
                            dest: dst,
                            verdict: Verdict::Unknown,
                            rule: None,
                            reason: Some("the address match".into()),
                            across: None,
                            path: vec![],
                            also: vec![],
                            base_len: 0,
                        },
                    )),
                }
            }
        }
    }
    parts.sort_by_key(|d| (d.source, d.dest));
    merge_adjacent(&mut parts);
    Answer {
        query: q.clone(),
        parts,
    }
}

/// `a` and `b` are the two halves of one prefix: that prefix.
fn parent_of(a: Net, b: Net) -> Option<Net> {
    let parent = Net::new(a.addr(), a.prefix_len().checked_sub(1)?)?;
    (parent.halves() == Some((a, b))).then_some(parent)
}

/// Joins sibling pieces decided the same way by the same rule back into their parent prefix.
fn merge_adjacent(parts: &mut Vec<Decision>) {
    loop {
        let mut merged = false;
        let mut i = 0;
        while i + 1 < parts.len() {
            let (a, b) = (&parts[i], &parts[i + 1]);
            let same = a.verdict == b.verdict && a.rule == b.rule && a.path == b.path;
            let joined = if !same {
                None
            } else if a.dest == b.dest {
                parent_of(a.source, b.source).map(|s| (s, a.dest))
            } else if a.source == b.source {
                match (a.dest, b.dest) {
                    (Some(x), Some(y)) => parent_of(x, y).map(|d| (a.source, Some(d))),
                    _ => None,
                }
            } else {
                None
            };
            if let Some((s, d)) = joined {
                parts[i].source = s;
                parts[i].dest = d;
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

/// Chains by (origin, family, table, name): jumps are looked up once each, not by scanning every chain.
struct Index<'a> {
    by_name: HashMap<(Origin, Family, &'a str, &'a str), usize>,
}

impl<'a> Index<'a> {
    fn new(rs: &'a Ruleset) -> Index<'a> {
        let mut by_name = HashMap::with_capacity(rs.chains.len());
        for (i, c) in rs.chains.iter().enumerate() {
            by_name
                .entry((c.origin, c.family, c.table.as_str(), c.name.as_str()))
                .or_insert(i);
        }
        Index { by_name }
    }
    fn target(&self, from: &Chain, name: &str) -> Option<usize> {
        self.by_name
            .get(&(from.origin, from.family, from.table.as_str(), name))
            .copied()
    }
}

/// An undecidable rule a decision was reached across, and what it could not decide.
type Across = (RuleRef, String);

/// What walking a base chain to its end (policy included) produced.
#[derive(Debug, Clone)]
enum Res {
    Final {
        verdict: Verdict,
        rule: RuleRef,
        path: Vec<RuleRef>,
        across: Option<(RuleRef, String)>,
    },
    Unknown {
        rule: RuleRef,
        reason: String,
        path: Vec<RuleRef>,
    },
    /// A network of the query must be split: a rule covers it only in part.
    Split(Dim),
}

/// Reachability: accept, block (drop and reject alike) or unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Pass,
    Block,
    Unknown,
}

impl Res {
    fn reach(&self) -> Reach {
        match self {
            Res::Final { verdict, .. } if verdict.blocks() => Reach::Block,
            Res::Final { .. } => Reach::Pass,
            _ => Reach::Unknown,
        }
    }
}

/// Which ways of an undecidable match some packet of the query surely takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sure {
    taken: bool,
    skipped: bool,
}

impl Sure {
    /// Nothing known (`limit`, `recent`, an unmodelled match).
    const NONE: Sure = Sure {
        taken: false,
        skipped: false,
    };
    /// A part of the query matches and a part does not (a port match when every port is queried).
    const BOTH: Sure = Sure {
        taken: true,
        skipped: true,
    };
    /// The match can hold for a sliver of the traffic only (one MAC address): most of it does not match.
    const SLIVER: Sure = Sure {
        taken: false,
        skipped: true,
    };
    /// Both matches must hold: the rule is taken surely only when both are, skipped surely when either is.
    fn and(self, o: Sure) -> Sure {
        Sure {
            taken: self.taken && o.taken,
            skipped: self.skipped || o.skipped,
        }
    }
    fn not(self) -> Sure {
        Sure {
            taken: self.skipped,
            skipped: self.taken,
        }
    }
}

/// A rule's matches against the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
enum M {
    Yes,
    No,
    Maybe(Sure, String),
    Split(Dim),
}

fn bool_m(b: bool, neg: bool) -> M {
    if b != neg { M::Yes } else { M::No }
}

/// A match that holds for part of a queried network: split it, or (past the piece budget) both ways exist.
fn partial(dim: Dim, split: bool, what: &str) -> M {
    if split {
        M::Split(dim)
    } else {
        M::Maybe(Sure::BOTH, format!("the {what} (a rule covers part of it)"))
    }
}

/// One frame of the walk: a chain, the next rule in it, and the jump/goto rule that entered it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Frame {
    chain: usize,
    next: usize,
    /// The jump (or jump and gotos) that led here from the frame below.
    via: Vec<(usize, usize)>,
}

struct Walker<'a> {
    rs: &'a Ruleset,
    index: &'a Index<'a>,
    q: &'a Query,
    split: bool,
    steps: usize,
    forks: usize,
    /// Results of walks from a state already seen (the rest of a chain after an undecidable rule).
    memo: HashMap<Vec<Frame>, Res>,
}

/// One piece: `Err` when a network of the query must be split first.
fn evaluate_piece(
    rs: &Ruleset,
    index: &Index<'_>,
    q: &Query,
    split: bool,
) -> Result<Decision, Dim> {
    let v6 = q.source.is_v6();
    let hook = q.hook.as_str();
    let mut bases: Vec<usize> = (0..rs.chains.len())
        .filter(|&i| rs.chains[i].family.sees(v6))
        .filter(|&i| rs.chains[i].base.as_ref().is_some_and(|b| b.hook == hook))
        .collect();
    bases.sort_by_key(|&i| rs.chains[i].base.as_ref().map_or(0, |b| b.priority));
    let mut w = Walker {
        rs,
        index,
        q,
        split,
        steps: 0,
        forks: 0,
        memo: HashMap::new(),
    };
    let mut accepted: Vec<(RuleRef, Vec<RuleRef>, Option<Across>)> = Vec::new();
    let mut unknown: Option<Decision> = None;
    for b in bases {
        let c = &rs.chains[b];
        let decision = |verdict, rule, reason, path, across| Decision {
            source: q.source,
            dest: q.dest,
            verdict,
            rule: Some(rule),
            reason,
            across,
            path,
            also: vec![],
            base_len: c.rules.len(),
        };
        w.memo.clear();
        match w.run(vec![Frame {
            chain: b,
            next: 0,
            via: vec![],
        }]) {
            Res::Split(d) => return Err(d),
            Res::Final {
                verdict: Verdict::Accept,
                rule,
                path,
                across,
            } => accepted.push((rule, path, across)),
            Res::Final {
                verdict,
                rule,
                path,
                across,
            } => return Ok(decision(verdict, rule, None, path, across)),
            Res::Unknown { rule, reason, path } => {
                if unknown.is_none() {
                    unknown = Some(decision(Verdict::Unknown, rule, Some(reason), path, None));
                }
            }
        }
    }
    if let Some(u) = unknown {
        return Ok(u);
    }
    let mut it = accepted.into_iter();
    let (rule, path, across) = it
        .next()
        .map_or((None, vec![], None), |(r, p, a)| (Some(r), p, a));
    Ok(Decision {
        source: q.source,
        dest: q.dest,
        verdict: Verdict::Accept,
        rule,
        reason: None,
        across,
        path,
        also: it.map(|(r, _, _)| r).collect(),
        base_len: 0,
    })
}

impl Walker<'_> {
    fn rule_ref(&self, chain: usize, rule: usize) -> RuleRef {
        let c = &self.rs.chains[chain];
        RuleRef::rule(c, &c.rules[rule])
    }

    fn path(&self, stack: &[Frame]) -> Vec<RuleRef> {
        stack
            .iter()
            .flat_map(|f| f.via.iter().map(|&(c, r)| self.rule_ref(c, r)))
            .collect()
    }

    fn fin(&self, stack: &[Frame], chain: usize, rule: usize, verdict: Verdict) -> Res {
        Res::Final {
            verdict,
            rule: self.rule_ref(chain, rule),
            path: self.path(stack),
            across: None,
        }
    }

    fn unknown(&self, stack: &[Frame], chain: usize, rule: usize, reason: String) -> Res {
        Res::Unknown {
            rule: self.rule_ref(chain, rule),
            reason,
            path: self.path(stack),
        }
    }

    /// Walks from the state `stack` (innermost frame last) to the end of the base chain.
    fn run(&mut self, mut stack: Vec<Frame>) -> Res {
        loop {
            let Some(top) = stack.last_mut() else {
                unreachable!("the base frame is popped only at its end")
            };
            let (ci, ri) = (top.chain, top.next);
            let c = &self.rs.chains[ci];
            if ri >= c.rules.len() {
                // End of the chain, like RETURN.
                if let Some(r) = self.pop(&mut stack) {
                    return r;
                }
                continue;
            }
            top.next += 1;
            let r = &c.rules[ri];
            self.steps += 1;
            if self.steps > MAX_STEPS || stack.len() > MAX_DEPTH {
                return self.unknown(
                    &stack,
                    ci,
                    ri,
                    "the ruleset: evaluation exceeded its step or jump-depth budget".into(),
                );
            }
            if r.action == Action::Continue {
                continue;
            }
            match self.rule(r) {
                M::No => continue,
                M::Split(d) => return Res::Split(d),
                M::Yes => {
                    if let Some(res) = self.act(&mut stack, ci, ri, &r.action) {
                        return res;
                    }
                }
                M::Maybe(sure, why) => return self.fork(stack, ci, ri, sure, why),
            }
        }
    }

    /// Leaves the innermost chain (RETURN or its end): `Some` with the policy's verdict when that was the
    /// base chain, or the memoised result of the state returned to.
    fn pop(&mut self, stack: &mut Vec<Frame>) -> Option<Res> {
        let f = stack.pop().expect("a frame");
        if stack.is_empty() {
            let c = &self.rs.chains[f.chain];
            let p = c.base.as_ref().map_or(Verdict::Accept, |b| b.policy);
            return Some(Res::Final {
                verdict: p,
                rule: RuleRef::policy(c, p),
                path: vec![],
                across: None,
            });
        }
        self.memo.get(stack.as_slice()).cloned()
    }

    /// Follows an undecidable rule both ways and compares the ends by reachability.
    fn fork(&mut self, stack: Vec<Frame>, ci: usize, ri: usize, sure: Sure, why: String) -> Res {
        self.forks += 1;
        if self.forks > MAX_FORKS {
            return self.unknown(&stack, ci, ri, why);
        }
        // The way past the rule first: a jump taken below returns to this very state and finds it memoised.
        let skipped = match self.memo.get(&stack) {
            Some(r) => r.clone(),
            None => {
                let r = self.run(stack.clone());
                self.memo.insert(stack.clone(), r.clone());
                r
            }
        };
        let mut taken_stack = stack.clone();
        let action = &self.rs.chains[ci].rules[ri].action;
        let taken = match self.act(&mut taken_stack, ci, ri, action) {
            Some(r) => r,
            None => self.run(taken_stack),
        };
        self.forks -= 1;
        let here = self.rule_ref(ci, ri);
        let path = self.path(&stack);
        match (taken.reach(), skipped.reach()) {
            _ if matches!(taken, Res::Split(_)) => taken,
            _ if matches!(skipped, Res::Split(_)) => skipped,
            // Same reachability both ways: decided. Cite the block met first (an accept must go before
            // it), or the way most packets take when both accept.
            (Reach::Block, Reach::Block) => with_across(skipped, here, why),
            (Reach::Pass, Reach::Pass) => with_across(skipped, here, why),
            // Some packets surely take a way that blocks: not every packet gets through.
            (_, Reach::Block) if sure.skipped => with_across(skipped, here, why),
            (Reach::Block, _) if sure.taken => with_across(taken, here, why),
            _ => Res::Unknown {
                rule: here,
                reason: why,
                path,
            },
        }
    }

    /// Applies a rule's action on the walk: `None` means evaluation goes on from `stack`.
    fn act(&mut self, stack: &mut Vec<Frame>, ci: usize, ri: usize, a: &Action) -> Option<Res> {
        match a {
            Action::Accept => Some(self.fin(stack, ci, ri, Verdict::Accept)),
            Action::Drop => Some(self.fin(stack, ci, ri, Verdict::Drop)),
            Action::Reject => Some(self.fin(stack, ci, ri, Verdict::Reject)),
            Action::Return => self.pop(stack),
            Action::Continue => None,
            Action::Unknown(t) => Some(self.unknown(stack, ci, ri, format!("the action {t:?}"))),
            Action::Jump(t) | Action::Goto(t) => {
                let from = &self.rs.chains[ci];
                let Some(target) = self.index.target(from, t) else {
                    return Some(self.unknown(
                        stack,
                        ci,
                        ri,
                        format!("a jump to chain {t:?}, which does not exist"),
                    ));
                };
                let mut frame = Frame {
                    chain: target,
                    next: 0,
                    via: vec![(ci, ri)],
                };
                if matches!(a, Action::Goto(_)) {
                    if stack.len() > 1 {
                        // The goto target returns to the caller of this chain: it takes this chain's frame.
                        let mut gone = stack.pop().expect("frame").via;
                        gone.append(&mut frame.via);
                        frame.via = gone;
                    } else {
                        // From a base chain the target's end is the base chain's policy.
                        let base = stack.last_mut().expect("base frame");
                        base.next = self.rs.chains[base.chain].rules.len();
                    }
                }
                stack.push(frame);
                None
            }
            Action::Vmap(entries) => {
                for (m, act) in entries {
                    match self.one(m) {
                        M::No => continue,
                        M::Yes => return self.act(stack, ci, ri, act),
                        M::Split(d) => return Some(Res::Split(d)),
                        M::Maybe(_, why) => {
                            return Some(self.unknown(stack, ci, ri, why));
                        }
                    }
                }
                None
            }
        }
    }

    fn rule(&self, r: &Rule) -> M {
        let mut acc = M::Yes;
        for m in &r.matches {
            match (self.one(m), &acc) {
                (M::No, _) => return M::No,
                (M::Split(d), _) => acc = M::Split(d),
                (M::Maybe(s, w), M::Yes) => acc = M::Maybe(s, w),
                (M::Maybe(s, w), M::Maybe(t, v)) => {
                    acc = M::Maybe(t.and(s), format!("{v}; {w}"));
                }
                _ => {}
            }
        }
        acc
    }

    fn one(&self, m: &Match) -> M {
        let q = self.q;
        let proto_ok = |proto: &Option<u8>| match proto {
            Some(want) => q.proto == *want,
            None => matches!(q.proto, 6 | 17 | 132 | 136),
        };
        match m {
            Match::Source { neg, any_of } => match addr_overlap(&q.source, any_of) {
                Overlap::Inside => bool_m(true, *neg),
                Overlap::Disjoint => bool_m(false, *neg),
                Overlap::Partial => partial(Dim::Source, self.split, "source network"),
            },
            Match::Dest { neg, any_of } => match q.dest {
                // An unnamed destination is a unicast address of this host: never loopback or multicast.
                None if any_of.iter().all(not_unicast_host) => bool_m(false, *neg),
                None => M::Maybe(
                    Sure::NONE,
                    "the destination address (the query names none)".into(),
                ),
                Some(d) => match addr_overlap(&d, any_of) {
                    Overlap::Inside => bool_m(true, *neg),
                    Overlap::Disjoint => bool_m(false, *neg),
                    Overlap::Partial => partial(Dim::Dest, self.split, "destination network"),
                },
            },
            Match::InIface { neg, any_of } => match &q.iface {
                // Traffic from another network never arrives on loopback.
                None if any_of.iter().all(|p| p == "lo") => bool_m(false, *neg),
                None if q.any_iface => every_iface(any_of, *neg, "input"),
                None => M::Maybe(
                    Sure::NONE,
                    "the input interface (the query names none)".into(),
                ),
                Some(i) => bool_m(any_of.iter().any(|p| iface_matches(p, i)), *neg),
            },
            Match::OutIface { neg, any_of } => match (q.hook, &q.oiface) {
                // A packet for this host has no output interface.
                (Hook::Input, _) => bool_m(any_of.iter().any(|p| iface_matches(p, "")), *neg),
                (Hook::Forward, None) if any_of.iter().all(|p| p == "lo") => bool_m(false, *neg),
                (Hook::Forward, None) if q.any_iface => every_iface(any_of, *neg, "output"),
                (Hook::Forward, None) => M::Maybe(
                    Sure::NONE,
                    "the output interface (the query names none)".into(),
                ),
                (Hook::Forward, Some(o)) => {
                    bool_m(any_of.iter().any(|p| iface_matches(p, o)), *neg)
                }
            },
            Match::Proto { neg, any_of } => bool_m(any_of.contains(&q.proto), *neg),
            Match::DPort { neg, proto, any_of } => {
                if !proto_ok(proto) {
                    return M::No;
                }
                match q.dport {
                    Some(p) => bool_m(any_of.iter().any(|(lo, hi)| (*lo..=*hi).contains(&p)), *neg),
                    None => ports_cover(
                        any_of,
                        q.dports.unwrap_or((0, 65535)),
                        *neg,
                        "destination port",
                    ),
                }
            }
            Match::SPort { neg, proto, any_of } => {
                if !proto_ok(proto) {
                    return M::No;
                }
                match q.sport {
                    Some(p) => bool_m(any_of.iter().any(|(lo, hi)| (*lo..=*hi).contains(&p)), *neg),
                    None => ports_cover(any_of, EPHEMERAL, *neg, "source port"),
                }
            }
            Match::CtState { neg, any_of } => bool_m(
                any_of.iter().any(|s| s == "new" || (q.dnat && s == "dnat")),
                *neg,
            ),
            Match::CtStatus { neg, any_of } => {
                bool_m(q.dnat && any_of.iter().any(|s| s == "dnat"), *neg)
            }
            Match::Family { neg, v6 } => bool_m(q.source.is_v6() == *v6, *neg),
            Match::DstType { neg, any_of } => bool_m(any_of.iter().any(|t| t == dst_type(q)), *neg),
            Match::SrcType { neg, any_of } => bool_m(any_of.iter().any(|t| t == "UNICAST"), *neg),
            Match::PktType { neg, any_of } => {
                let t = match dst_type(q) {
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
            Match::Sliver { neg, what } => {
                let sure = if *neg {
                    Sure::SLIVER.not()
                } else {
                    Sure::SLIVER
                };
                M::Maybe(sure, format!("{what} (true for a few hosts at most)"))
            }
            Match::Unknown(what) => M::Maybe(Sure::NONE, what.clone()),
        }
    }
}

/// An interface match when the query covers every interface: a wildcard for all (`+`, `*`) holds, any
/// other name holds for part of the traffic.
fn every_iface(any_of: &[String], neg: bool, what: &str) -> M {
    if any_of.iter().any(|p| p == "+" || p == "*") {
        return bool_m(true, neg);
    }
    M::Maybe(
        Sure::BOTH,
        format!("the {what} interface (the query covers every interface, the rule some)"),
    )
}

/// Attaches the undecidable rule a result was reached across.
fn with_across(r: Res, rule: RuleRef, why: String) -> Res {
    match r {
        Res::Final {
            verdict,
            rule: decided,
            path,
            across,
        } if decided != rule => Res::Final {
            verdict,
            rule: decided,
            path,
            across: across.or(Some((rule, why))),
        },
        o => o,
    }
}

/// How a queried network relates to the union of a match's elements.
fn addr_overlap(n: &Net, any_of: &[AddrElem]) -> Overlap {
    let mut partial = false;
    for e in any_of {
        let o = match e {
            AddrElem::Net(m) => n.overlap_with(m),
            AddrElem::Range(lo, hi) => n.overlap_with_range(*lo, *hi),
        };
        match o {
            Overlap::Inside => return Overlap::Inside,
            Overlap::Partial => partial = true,
            Overlap::Disjoint => {}
        }
    }
    if partial {
        Overlap::Partial
    } else {
        Overlap::Disjoint
    }
}

/// A port match when the query covers the ports `want`: decided when the ranges cover all or none of them,
/// else both ways exist.
fn ports_cover(any_of: &[(u16, u16)], want: (u16, u16), neg: bool, what: &str) -> M {
    let (lo, hi) = (u32::from(want.0), u32::from(want.1));
    let mut ranges: Vec<(u32, u32)> = any_of
        .iter()
        .map(|&(a, b)| (u32::from(a).max(lo), u32::from(b).min(hi)))
        .filter(|(a, b)| a <= b)
        .collect();
    if ranges.is_empty() {
        return bool_m(false, neg);
    }
    ranges.sort_unstable();
    let mut next = lo;
    for (a, b) in ranges {
        if a > next {
            break;
        }
        next = next.max(b + 1);
    }
    if next > hi {
        return bool_m(true, neg);
    }
    M::Maybe(
        Sure::BOTH,
        format!("the {what} (the query covers more ports than the rule)"),
    )
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

/// The address type of the query's destination: a host address on input, a remote unicast one when forwarded.
fn dst_type(q: &Query) -> &'static str {
    let d = q
        .dest
        .filter(|d| d.prefix_len() == if d.is_v6() { 128 } else { 32 });
    match d.map(|d| d.addr()) {
        Some(a) if a.is_multicast() => "MULTICAST",
        Some(IpAddr::V4(a)) if a.is_broadcast() => "BROADCAST",
        _ if q.hook == Hook::Forward => "UNICAST",
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
