//! The ruleset model both parsers produce: chains (base chains carry hook, priority, policy), rules as matches plus an action.

use std::fmt;

use serde::Serialize;

use super::net::Net;

/// Which tool the rules came from; `fix` uses it to choose the command that edits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// `iptables-save` of the legacy (x_tables) backend.
    IptablesLegacy,
    /// `iptables-save` of the nf_tables backend (iptables-nft).
    IptablesNft,
    /// A saved iptables-restore file under `--root`; the backend that will load it is unknown.
    IptablesSaved,
    /// Native nftables (`nft -j list ruleset`, or `nftables.conf`).
    Nftables,
}

impl Origin {
    pub fn is_iptables(self) -> bool {
        !matches!(self, Origin::Nftables)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::IptablesLegacy => "iptables-legacy",
            Origin::IptablesNft => "iptables-nft",
            Origin::IptablesSaved => "iptables (saved)",
            Origin::Nftables => "nftables",
        }
    }
}

/// The address families a chain sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ip,
    Ip6,
    /// nftables `inet`: both.
    Inet,
}

impl Family {
    pub fn sees(self, v6: bool) -> bool {
        match self {
            Family::Ip => !v6,
            Family::Ip6 => v6,
            Family::Inet => true,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
        }
    }
}

/// What a base chain is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub hook: String,
    pub priority: i32,
    /// Accept or Drop.
    pub policy: Verdict,
}

/// A final verdict on a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accept,
    Drop,
    Reject,
    /// A rule whose match or action the evaluator does not understand could decide.
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Drop => "drop",
            Verdict::Reject => "reject",
            Verdict::Unknown => "unknown",
        }
    }
    pub fn blocks(self) -> bool {
        matches!(self, Verdict::Drop | Verdict::Reject)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One element of an address match: a prefix or an inclusive range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrElem {
    Net(Net),
    Range(std::net::IpAddr, std::net::IpAddr),
}

/// What a packet is tested against. `neg` inverts the test (`!` / `!=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    Source {
        neg: bool,
        any_of: Vec<AddrElem>,
    },
    Dest {
        neg: bool,
        any_of: Vec<AddrElem>,
    },
    /// Input interface names; a trailing `+` (iptables) or `*` (nft) is a prefix wildcard.
    InIface {
        neg: bool,
        any_of: Vec<String>,
    },
    /// Output interface names (forwarded packets; a packet for this host has none).
    OutIface {
        neg: bool,
        any_of: Vec<String>,
    },
    /// IP protocol numbers (6 tcp, 17 udp, 2 igmp ...).
    Proto {
        neg: bool,
        any_of: Vec<u8>,
    },
    /// Inclusive destination port ranges; only packets of protocol `proto` (None: tcp/udp/sctp/udplite) can match.
    DPort {
        neg: bool,
        proto: Option<u8>,
        any_of: Vec<(u16, u16)>,
    },
    SPort {
        neg: bool,
        proto: Option<u8>,
        any_of: Vec<(u16, u16)>,
    },
    /// Conntrack state names, lowercase (`new`, `established` ...).
    CtState {
        neg: bool,
        any_of: Vec<String>,
    },
    /// Conntrack status names, lowercase (`dnat`, `snat` ...).
    CtStatus {
        neg: bool,
        any_of: Vec<String>,
    },
    /// `meta nfproto` / implicit family of a payload match.
    Family {
        neg: bool,
        v6: bool,
    },
    /// Destination address type (`LOCAL`, `MULTICAST`, `BROADCAST`, `UNICAST` ...), uppercase.
    DstType {
        neg: bool,
        any_of: Vec<String>,
    },
    /// Source address type; a packet from another host is `UNICAST`.
    SrcType {
        neg: bool,
        any_of: Vec<String>,
    },
    /// Packet type (`host`/`unicast`, `multicast`, `broadcast`), lowercase.
    PktType {
        neg: bool,
        any_of: Vec<String>,
    },
    /// TCP flags under a mask must equal `comp` (bit values: fin 1, syn 2, rst 4, psh 8, ack 16, urg 32).
    TcpFlags {
        neg: bool,
        mask: u8,
        comp: u8,
    },
    /// Packet mark under a mask must equal `value`.
    Mark {
        neg: bool,
        value: u32,
        mask: u32,
    },
    /// A match that holds for a few hosts at most (`-m mac --mac-source`, `ether saddr`): no network of
    /// nodes or pods can match it as a whole. `neg`: everything but those hosts.
    Sliver {
        neg: bool,
        what: String,
    },
    /// A match the evaluator does not model; it may or may not match.
    Unknown(String),
}

/// What a rule does when all its matches hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Accept,
    Drop,
    Reject,
    Return,
    Jump(String),
    Goto(String),
    /// No verdict: counters, logging, marking — evaluation goes on with the next rule.
    Continue,
    /// An nft verdict map: the first entry whose match holds decides; none holding means continue.
    Vmap(Vec<(Match, Action)>),
    /// A verdict the evaluator does not model (NFQUEUE, a vendor target ...).
    Unknown(String),
}

/// One rule: its 1-based position in its chain, its text as the tool prints it, and its meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub position: usize,
    /// nft rule handle (for `nft insert rule ... position HANDLE`).
    pub handle: Option<u64>,
    pub text: String,
    pub matches: Vec<Match>,
    pub action: Action,
}

/// A chain of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub origin: Origin,
    pub family: Family,
    pub table: String,
    pub name: String,
    pub base: Option<Base>,
    pub rules: Vec<Rule>,
}

/// Every chain the host holds, from every source that was read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub chains: Vec<Chain>,
}

impl Ruleset {
    pub fn extend(&mut self, other: Ruleset) {
        self.chains.extend(other.chains);
    }

    /// The chain a jump from `from` names: same origin, family and table.
    pub fn target(&self, from: &Chain, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| {
            c.origin == from.origin
                && c.family == from.family
                && c.table == from.table
                && c.name == name
        })
    }

    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }

    /// Whether any rule or a non-accept policy exists for this origin: "this backend holds rules".
    pub fn holds_rules(&self, origin: Origin) -> bool {
        self.chains.iter().filter(|c| c.origin == origin).any(|c| {
            !c.rules.is_empty() || c.base.as_ref().is_some_and(|b| b.policy != Verdict::Accept)
        })
    }
}

/// IP protocol number from a name as iptables or nft print it.
pub fn proto_number(name: &str) -> Option<u8> {
    Some(match name.to_ascii_lowercase().as_str() {
        "icmp" => 1,
        "igmp" => 2,
        "ipip" | "ipencap" | "ipv4" => 4,
        "tcp" => 6,
        "udp" => 17,
        "ipv6" => 41,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "icmpv6" | "ipv6-icmp" => 58,
        "sctp" => 132,
        "udplite" => 136,
        n => return n.parse().ok(),
    })
}
