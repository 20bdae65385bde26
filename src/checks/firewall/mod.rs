//! Firewall: reads the active (or saved) iptables and nftables rulesets, evaluates the input path for the
//! traffic a Kubernetes node needs, and owns the `firewall.*` checks.
//!
//! Other areas use the evaluator through [`evaluate`] with a [`Query`]: the answer names the verdict and
//! the deciding rule (table, chain, position, text) and where an ACCEPT would have to go ([`Decision::insert_point`]).

mod checks;
pub mod eval;
mod fix;
mod gather;
pub mod multicast;
pub mod hostnet;
pub mod iptables;
pub mod model;
pub mod net;
pub mod nft;
pub mod nft_text;

pub use checks::{
    Accept, Blocked, Probe, accept_command, accept_rule, blocked_paths, exact_accept, insert_command,
    judge, node_addr, persist_note,
};
pub use eval::{Answer, Decision, Hook, InsertPoint, Query, RuleRef, evaluate};
pub use gather::{
    LiveGate, ReadRules, Runner, SAVED_IPTABLES, SAVED_NFT, gather, read_live_rules, read_rules,
    read_saved,
};
pub use model::{Origin, Ruleset, Verdict};
pub use net::Net;

use super::Area;
use crate::{
    core::{facts::Fact, source::Source},
    fix::plan::Fix,
};
use hostnet::{Cni, NodeNet};

pub const AREA: Area = Area {
    checks: checks::CHECKS,
    fixes: &[
        path_fix("firewall.apiserver-port"),
        path_fix("firewall.control-plane-ports"),
        path_fix("firewall.forward"),
        path_fix("firewall.kubelet-port"),
        path_fix("firewall.overlay"),
    ],
};

const fn path_fix(check: &'static str) -> Fix {
    Fix {
        check,
        edits: fix::edits,
        plan: fix::firewall_paths,
    }
}

/// The rulesets (live, or saved under `--root`), node networks, CNI and firewall managers.
pub const FIREWALL: Source<FirewallFacts> =
    Source::command("firewall", |g| gather(g.host, g.cfg.timeout))
        .reaching(crate::core::source::Reach::LiveHost);

/// A firewall manager that rewrites rules on reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manager {
    pub name: String,
    pub evidence: String,
}

/// The saved rules beside the live ones.
#[derive(Debug, Clone)]
pub struct Saved {
    pub rules: Ruleset,
    /// The files they came from (`/etc/sysconfig/iptables: 12 rules`).
    pub sources: Vec<String>,
}

/// Everything the firewall checks read.
#[derive(Debug, Clone)]
pub struct FirewallFacts {
    /// All rules from every source, merged.
    pub rules: Fact<Ruleset>,
    /// Where the rules came from (`iptables-nft-save: 12 rules`, `/etc/sysconfig/iptables`).
    pub sources: Vec<String>,
    /// Sources that could not be read; the rules from the others are still used.
    pub problems: Vec<String>,
    /// Whether these are the running rules (live host, or `--live-network`) rather than saved files.
    pub live: bool,
    /// With live rules: the saved rule files under the root (what a reboot or reload loads), when any
    /// exists and parsed, to tell a rule that is not persisted.
    pub saved: Option<Saved>,
    /// `iptables --version` backend: `nf_tables` or `legacy`.
    pub iptables_backend: Option<String>,
    pub node_nets: Fact<Vec<NodeNet>>,
    pub interfaces: Vec<String>,
    pub cni: Option<Cni>,
    pub managers: Vec<Manager>,
    /// Where running firewall processes were looked for, and how many processes each table showed.
    pub processes: Vec<(String, usize)>,
}

#[cfg(test)]
mod tests;
