//! The one report model every renderer reads, and the versioned JSON contract it serializes to.

mod junit;
mod markdown;
mod table;

use std::io::Write;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    core::catalog,
    core::check::{Finding, Status},
    core::config::Format,
    mask::mask_secrets,
};

pub use markdown::cell as markdown_cell;
pub use table::status_table;

/// Bump when a field is renamed or removed; adding fields keeps it.
pub const SCHEMA_VERSION: &str = "1";

/// A whole `k8sdoctor check` run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    pub schema_version: String,
    pub tool: Tool,
    /// RFC 3339 time the run started.
    pub started_at: String,
    pub duration_ms: u64,
    pub host: HostInfo,
    /// The cluster the checks talked to, or null when none was reached.
    pub cluster: Option<ClusterInfo>,
    pub summary: Summary,
    pub results: Vec<CheckResult>,
    /// What `k8sdoctor manifests` judged against (absent from every other command's report).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub manifests: Option<ManifestsRun>,
}

/// The target of a `k8sdoctor manifests` run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ManifestsRun {
    /// The Kubernetes minor release the objects were judged for (`1.32`).
    pub target_version: String,
    /// Where it came from: `--target-version`, `the cluster`, or `the newest release the table knows`.
    pub target_from: String,
    /// How many inputs (files, stdin) were read.
    pub inputs: usize,
    /// Where `--convert` wrote the converted documents, if asked.
    pub convert_dir: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

impl Default for Tool {
    fn default() -> Self {
        Tool {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct HostInfo {
    pub hostname: String,
    pub kernel: String,
    pub os: String,
    /// The root the host files were read from (`/` for the live host).
    pub root: String,
    pub role: String,
    /// `check`'s install stage: pre-init, pre-join or installed (absent for join-check).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stage: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ClusterInfo {
    pub server: String,
    pub server_version: Option<String>,
    pub context: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
    pub error: usize,
}

impl Summary {
    pub fn of(results: &[CheckResult]) -> Summary {
        let mut s = Summary::default();
        for r in results {
            *match r.status {
                Status::Pass => &mut s.pass,
                Status::Warn => &mut s.warn,
                Status::Fail => &mut s.fail,
                Status::Skip => &mut s.skip,
                Status::Error => &mut s.error,
            } += 1;
        }
        s
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} passed, {} warnings, {} failed, {} skipped, {} errors",
            self.pass, self.warn, self.fail, self.skip, self.error
        )
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckResult {
    pub id: String,
    pub title: String,
    pub status: Status,
    pub message: String,
    /// The files, lines or values that prove the status.
    pub evidence: Vec<String>,
    /// How to fix it; null when there is nothing to fix.
    pub remediation: Option<String>,
    pub fix_available: bool,
    pub duration_ms: u64,
    /// The object a `manifests` result is about (absent from every other command's results).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subject: Option<Subject>,
    /// Where a removed or deprecated API's objects go (`manifests`; absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub replacement: Option<ApiReplacement>,
}

/// The manifest object a result is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Subject {
    /// The file as named or found (`-` for stdin).
    pub file: String,
    /// 1-based line the document starts on.
    pub line: usize,
    /// 0-based index among the file's non-empty documents; `D.I` for item I of a List in document D.
    pub document: String,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub api_version: Option<String>,
}

/// The replacement of a removed or deprecated API version, from the table of API lifecycles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApiReplacement {
    /// The apiVersion to use instead; null when nothing replaces it (PodSecurityPolicy).
    pub api_version: Option<String>,
    /// The release that deprecated the old version (`1.16`).
    pub deprecated_in: String,
    /// The first release that no longer serves it.
    pub removed_in: String,
    /// What else must change besides apiVersion.
    pub changes: Vec<String>,
}

/// Evidence lines a result keeps; the rest are counted in one last line.
pub const MAX_EVIDENCE: usize = 25;
/// Characters an evidence line or message keeps (a line of a file can be megabytes long).
pub const MAX_LINE: usize = 1000;

/// At most [`MAX_EVIDENCE`] lines of at most [`MAX_LINE`] characters, "… and M more" after them.
/// Masked before it is cut, so a cut never leaves part of a secret showing.
pub fn bounded_evidence(evidence: Vec<String>) -> Vec<String> {
    let total = evidence.len();
    let mut out: Vec<String> = evidence
        .into_iter()
        .take(MAX_EVIDENCE)
        .map(|e| bounded_line(&e))
        .collect();
    if total > MAX_EVIDENCE {
        out.push(format!("… and {} more", total - MAX_EVIDENCE));
    }
    out
}

/// A line masked, then cut to [`MAX_LINE`] characters with "… (N more characters)".
pub fn bounded_line(s: &str) -> String {
    let masked = mask_secrets(s);
    match masked.char_indices().nth(MAX_LINE) {
        None => masked,
        Some((cut, _)) => {
            let rest = masked[cut..].chars().count();
            format!("{}… ({rest} more characters)", &masked[..cut])
        }
    }
}

impl CheckResult {
    /// A result from a finding and its catalog entry: the entry's remediation fills in when the
    /// finding is a problem and names none. Evidence is bounded ([`bounded_evidence`]).
    pub fn from_finding(entry: &catalog::Entry, finding: Finding, duration_ms: u64) -> CheckResult {
        let problem = matches!(finding.status, Status::Warn | Status::Fail);
        CheckResult {
            id: entry.id.clone(),
            title: entry.title.clone(),
            status: finding.status,
            message: bounded_line(&finding.message),
            evidence: bounded_evidence(finding.evidence),
            remediation: finding
                .remediation
                .or_else(|| problem.then(|| entry.remediation.clone())),
            fix_available: entry.fix,
            duration_ms,
            subject: None,
            replacement: None,
        }
    }
}

impl Report {
    /// A masked report of `results` for a run that started at `started`.
    pub fn new(
        started: std::time::SystemTime,
        duration_ms: u64,
        host: HostInfo,
        cluster: Option<ClusterInfo>,
        results: Vec<CheckResult>,
    ) -> Report {
        Report {
            schema_version: SCHEMA_VERSION.into(),
            tool: Tool::default(),
            started_at: jiff::Timestamp::try_from(started)
                .map(|t| t.round(jiff::Unit::Millisecond).unwrap_or(t).to_string())
                .unwrap_or_default(),
            duration_ms,
            host,
            cluster,
            summary: Summary::of(&results),
            results,
            manifests: None,
        }
        .masked()
    }

    /// Masks every secret-shaped string in the report, the last line of defence before output.
    pub fn masked(mut self) -> Report {
        for r in &mut self.results {
            r.message = mask_secrets(&r.message);
            for e in &mut r.evidence {
                *e = mask_secrets(e);
            }
            r.remediation = r.remediation.as_deref().map(mask_secrets);
        }
        if let Some(c) = &mut self.cluster {
            c.server = mask_secrets(&c.server);
        }
        self
    }

    /// The worst status in the run.
    pub fn worst(&self) -> Option<Status> {
        self.results.iter().map(|r| r.status).max()
    }

    /// Renders the report in a format; the table folds skipped checks that share a reason.
    pub fn render(&self, format: Format, color: bool, out: &mut dyn Write) -> std::io::Result<()> {
        self.render_with(format, color, false, out)
    }

    /// Renders the report; `show_skipped` lists every skipped check on its own table row.
    pub fn render_with(
        &self,
        format: Format,
        color: bool,
        show_skipped: bool,
        out: &mut dyn Write,
    ) -> std::io::Result<()> {
        match format {
            Format::Json => {
                serde_json::to_writer_pretty(&mut *out, self)?;
                writeln!(out)
            }
            Format::Table => table::render(self, color, show_skipped, out),
            Format::Junit => junit::render(self, out),
            Format::Markdown => markdown::render(self, out),
        }
    }
}

/// The JSON Schema of [`Report`], as `k8sdoctor schema` prints it.
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Report)).expect("schema serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_is_bounded_with_a_count_of_the_rest() {
        let many: Vec<String> = (0..5_000_000)
            .map(|i| format!("/etc/resolv.conf:{i}: nameserver 127.0.0.1"))
            .collect();
        let e = bounded_evidence(many);
        assert_eq!(e.len(), MAX_EVIDENCE + 1);
        assert_eq!(
            e.last().unwrap(),
            &format!("… and {} more", 5_000_000 - MAX_EVIDENCE)
        );
        let long = format!("x{}", "é".repeat(5000));
        let cut = bounded_line(&long);
        assert!(
            cut.ends_with("… (4001 more characters)"),
            "{}",
            &cut[cut.len() - 40..]
        );
        // A token at the cut is masked first: no part of its secret shows.
        let edge = format!("{}a24a11.0e6b932b0907deff", "y".repeat(MAX_LINE - 10));
        assert!(!bounded_line(&edge).contains("0e6b"));
    }
}
