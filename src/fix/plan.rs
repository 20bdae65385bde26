//! The plan model: per check, the runtime steps (commands, firewall rules) and file changes that fix it; pure data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::{check::Status, source::Facts};

/// How one check is fixed: the host files its planner may edit (read into [`Files`] before planning,
/// given the facts) and the planner, which adds the steps; an `Err` is why it cannot be planned.
#[derive(Clone, Copy)]
pub struct Fix {
    pub check: &'static str,
    pub edits: fn(&Facts) -> Vec<String>,
    pub plan: fn(&Facts, &Files, &mut CheckFix) -> Result<(), String>,
}

/// The state of one host path, before or after a file step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Content {
    Absent,
    /// A regular file with UTF-8 text.
    Text(String),
    /// A symbolic link and its target.
    Link(String),
}

/// One iptables rule to insert: checked with `iptables -C` first, so applying twice adds it once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleStep {
    /// `iptables` or `ip6tables`.
    pub program: String,
    pub table: String,
    pub chain: String,
    /// 1-based position: the rule is inserted here, before the rule that decides against the traffic.
    pub position: usize,
    /// The rule specification, e.g. `-p tcp --dport 6443 -j ACCEPT`.
    pub spec: Vec<String>,
}

impl RuleStep {
    fn base(&self, op: &str) -> Vec<String> {
        let mut v = vec![
            self.program.clone(),
            "-w".into(),
            "5".into(),
            "-t".into(),
            self.table.clone(),
            op.into(),
            self.chain.clone(),
        ];
        if op == "-I" {
            v.push(self.position.to_string());
        }
        v.extend(self.spec.iter().cloned());
        v
    }
    /// `iptables -C`: exit 0 when the rule is already there.
    pub fn check_argv(&self) -> Vec<String> {
        self.base("-C")
    }
    pub fn insert_argv(&self) -> Vec<String> {
        self.base("-I")
    }
    pub fn delete_argv(&self) -> Vec<String> {
        self.base("-D")
    }
}

/// One nftables rule to insert before the rule with handle `before` (or append): looked for in the chain first,
/// so applying twice adds it once; its handle is journaled so an undo deletes exactly it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftRuleStep {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub before: Option<u64>,
    /// Statement words, e.g. `ip saddr 10.0.0.0/8 iifname "eth0" tcp dport 6443 accept`.
    pub rule: Vec<String>,
}

impl NftRuleStep {
    fn at(&self, op: &str) -> Vec<String> {
        vec![
            "nft".into(),
            op.into(),
            "rule".into(),
            self.family.clone(),
            self.table.clone(),
            self.chain.clone(),
        ]
    }
    /// `nft -a list chain ...`: the chain with handles, to find the rule.
    pub fn list_argv(&self) -> Vec<String> {
        let mut v = vec!["nft".into(), "-a".into(), "list".into(), "chain".into()];
        v.extend([self.family.clone(), self.table.clone(), self.chain.clone()]);
        v
    }
    pub fn insert_argv(&self) -> Vec<String> {
        let mut v = match self.before {
            Some(h) => {
                let mut v = self.at("insert");
                v.extend(["position".into(), h.to_string()]);
                v
            }
            None => self.at("add"),
        };
        v.extend(self.rule.iter().cloned());
        v
    }
    pub fn delete_argv(&self, handle: u64) -> Vec<String> {
        let mut v = self.at("delete");
        v.extend(["handle".into(), handle.to_string()]);
        v
    }
    /// The handle of this rule in a `nft -a list chain` listing, when it is there.
    pub fn find(&self, listing: &str) -> Option<u64> {
        let want = self.rule.join(" ");
        listing.lines().find_map(|l| {
            let (body, handle) = l.rsplit_once("# handle ")?;
            (body.trim() == want).then(|| handle.trim().parse().ok())?
        })
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// A command that changes the running system; `undo` reverses it when that is possible.
    Command {
        argv: Vec<String>,
        undo: Option<Vec<String>>,
    },
    /// A firewall rule inserted into the running ruleset.
    Rule(RuleStep),
    /// An nftables rule inserted into the running ruleset.
    NftRule(NftRuleStep),
    /// A host path (absolute, as on the host) changed from `old` to `new`.
    File {
        path: String,
        old: Content,
        new: Content,
    },
}

impl Action {
    /// Runtime steps change the running system; they are skipped when `--root` is not `/`.
    pub fn is_runtime(&self) -> bool {
        !matches!(self, Action::File { .. })
    }
}

/// One step of a fix and why it is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub why: String,
    #[serde(flatten)]
    pub action: Action,
}

impl Step {
    pub fn command(why: impl Into<String>, argv: &[&str], undo: Option<&[&str]>) -> Step {
        let own = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Step {
            why: why.into(),
            action: Action::Command {
                argv: own(argv),
                undo: undo.map(own),
            },
        }
    }
    pub fn file(why: impl Into<String>, path: &str, old: Content, new: Content) -> Step {
        Step {
            why: why.into(),
            action: Action::File {
                path: path.into(),
                old,
                new,
            },
        }
    }
}

/// The fix of one check: the finding it answers, its steps, and what is left to the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckFix {
    pub id: String,
    pub before: Status,
    pub message: String,
    pub steps: Vec<Step>,
    /// What the fix does not do and why (an override it will not touch, a choice left to the operator).
    pub notes: Vec<String>,
}

impl CheckFix {
    pub fn new(id: &str, before: Status, message: &str) -> CheckFix {
        CheckFix {
            id: id.into(),
            before,
            message: message.into(),
            steps: vec![],
            notes: vec![],
        }
    }
    pub fn step(&mut self, s: Step) {
        self.steps.push(s);
    }
    pub fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }
}

/// The host files a fix may edit, read once before planning; planners stay pure by reading only this and the facts.
#[derive(Debug, Clone, Default)]
pub struct Files {
    map: BTreeMap<String, Result<Content, String>>,
}

impl Files {
    pub fn insert(&mut self, path: &str, c: Result<Content, String>) {
        self.map.insert(path.to_string(), c);
    }

    /// The state of a path, or why it cannot be edited; a path not read is an error naming it.
    pub fn get(&self, path: &str) -> Result<&Content, String> {
        match self.map.get(path) {
            Some(Ok(c)) => Ok(c),
            Some(Err(e)) => Err(e.clone()),
            None => Err(format!("{path} was not read")),
        }
    }

    /// A text file's content, `None` when it is absent; a link or unreadable file is an error saying so.
    pub fn text(&self, path: &str) -> Result<Option<&str>, String> {
        match self.get(path)? {
            Content::Absent => Ok(None),
            Content::Text(t) => Ok(Some(t)),
            Content::Link(t) => Err(format!(
                "{path} is a symbolic link to {t}; edit the file it points at by hand"
            )),
        }
    }
}
