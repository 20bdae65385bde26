//! The shape every check shares: its finding, the context it runs in, and its definition (id, sources, rule).

use std::{sync::Arc, time::SystemTime};

pub use super::status::{Role, Status};
use super::{
    catalog::Entry,
    facts::FactError,
    source::{AnySource, Facts},
};

/// What a check found: data, never a Rust error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub status: Status,
    pub message: String,
    pub evidence: Vec<String>,
    /// Overrides the catalog's remediation when the check knows a more precise one.
    pub remediation: Option<String>,
}

impl Finding {
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Finding {
            status,
            message: message.into(),
            evidence: Vec::new(),
            remediation: None,
        }
    }
    pub fn pass(message: impl Into<String>) -> Self {
        Self::new(Status::Pass, message)
    }
    pub fn warn(message: impl Into<String>) -> Self {
        Self::new(Status::Warn, message)
    }
    pub fn fail(message: impl Into<String>) -> Self {
        Self::new(Status::Fail, message)
    }
    pub fn skip(message: impl Into<String>) -> Self {
        Self::new(Status::Skip, message)
    }
    pub fn error(message: impl Into<String>) -> Self {
        Self::new(Status::Error, message)
    }
    pub fn evidence(mut self, line: impl Into<String>) -> Self {
        self.evidence.push(line.into());
        self
    }
    pub fn evidence_all<I: IntoIterator<Item = S>, S: Into<String>>(mut self, lines: I) -> Self {
        self.evidence.extend(lines.into_iter().map(Into::into));
        self
    }
    pub fn remediation(mut self, text: impl Into<String>) -> Self {
        self.remediation = Some(text.into());
        self
    }
}

impl From<FactError> for Finding {
    fn from(e: FactError) -> Self {
        match e {
            FactError::Missing(why) => Finding::skip(why),
            FactError::Unreadable(why) => Finding::error(why),
        }
    }
}

/// What a check returns: a finding, or the fact error that kept it from deciding.
pub type Outcome = Result<Finding, FactError>;

/// What a check may know besides the facts.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub role: Role,
    pub now: SystemTime,
}

/// One check: its stable id, the sources it reads, and the pure function that decides.
#[derive(Clone, Copy)]
pub struct CheckDef {
    pub id: &'static str,
    /// Every source `run` reads; only these are gathered for it.
    pub needs: &'static [&'static dyn AnySource],
    pub run: fn(&Facts, &Ctx) -> Outcome,
}

impl std::fmt::Debug for CheckDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckDef")
            .field("id", &self.id)
            .field(
                "needs",
                &self.needs.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A check's pure rule as a value: a built-in's `fn`, or a closure holding a run-time check's data.
pub type Rule = Arc<dyn Fn(&Facts, &Ctx) -> Outcome + Send + Sync>;

pub use super::config::Input;

/// A check made at run time rather than compiled in (a site policy's entries): it carries its own
/// catalog entry, so `list`, `explain`, `--only`/`--skip` and the report treat it like a built-in.
#[derive(Clone)]
pub struct DynCheck {
    pub entry: Entry,
    pub needs: &'static [&'static dyn AnySource],
    /// What its sources must read for it (they gather the inputs of the selected run-time checks).
    pub inputs: Vec<Input>,
    pub run: Rule,
}

impl std::fmt::Debug for DynCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynCheck")
            .field("id", &self.entry.id)
            .field("inputs", &self.inputs)
            .finish()
    }
}
