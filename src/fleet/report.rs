//! The fleet report: every node with its state and its own report, a summary, the checks that
//! differ between nodes; its renderers (table matrix, JSON contract, JUnit, markdown) and schema.

use std::{collections::BTreeMap, io::Write};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    core::{check::Status, config::Format},
    mask::mask_secrets,
    report::{ClusterInfo, Report, Tool, markdown_cell, status_table},
};

/// Bump when a field is renamed or removed.
pub const FLEET_SCHEMA_VERSION: &str = "1";

/// What became of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Its pod ran and handed back a node report.
    Reported,
    /// No pod ran there; `reason` says why.
    Absent,
    /// The pod ran but gave no report; `reason` carries its message.
    Error,
}

/// One node of the fleet.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NodeOutcome {
    pub name: String,
    pub state: NodeState,
    /// Why the node is absent or in error; null when reported.
    pub reason: Option<String>,
    /// The node's own report (`k8sdoctor check -o json` on that node), when reported.
    pub report: Option<Report>,
}

/// Counts over the fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FleetSummary {
    pub nodes: usize,
    pub reported: usize,
    pub absent: usize,
    pub error: usize,
    /// Nodes whose worst result is each status (reported nodes only).
    pub worst: BTreeMap<String, usize>,
}

/// A check whose status is not the same on every reported node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Drift {
    pub id: String,
    /// Status → the nodes that have it.
    pub statuses: BTreeMap<String, Vec<String>>,
}

/// A whole `k8sdoctor fleet check` run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FleetReport {
    pub schema_version: String,
    pub tool: Tool,
    pub started_at: String,
    pub duration_ms: u64,
    pub cluster: Option<ClusterInfo>,
    pub namespace: String,
    /// The run's label value (`k8sdoctor.io/run`).
    pub run_id: String,
    pub summary: FleetSummary,
    pub nodes: Vec<NodeOutcome>,
    pub drift: Vec<Drift>,
}

impl FleetReport {
    /// Builds the summary and drift from the node outcomes, masking every free-text reason.
    pub fn new(
        started_at: String,
        duration_ms: u64,
        cluster: Option<ClusterInfo>,
        namespace: String,
        run_id: String,
        mut nodes: Vec<NodeOutcome>,
    ) -> FleetReport {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        for n in &mut nodes {
            n.reason = n.reason.as_deref().map(mask_secrets);
            n.report = n.report.take().map(Report::masked);
        }
        let mut summary = FleetSummary {
            nodes: nodes.len(),
            ..Default::default()
        };
        for n in &nodes {
            match n.state {
                NodeState::Reported => summary.reported += 1,
                NodeState::Absent => summary.absent += 1,
                NodeState::Error => summary.error += 1,
            }
            if let Some(w) = n.report.as_ref().and_then(Report::worst) {
                *summary.worst.entry(w.as_str().to_string()).or_default() += 1;
            }
        }
        let drift = drift(&nodes);
        FleetReport {
            schema_version: FLEET_SCHEMA_VERSION.into(),
            tool: Tool::default(),
            started_at,
            duration_ms,
            cluster,
            namespace,
            run_id,
            summary,
            nodes,
            drift,
        }
    }

    /// The worst outcome over the fleet: a node that could not be checked counts as an error.
    pub fn worst(&self) -> Option<Status> {
        self.nodes
            .iter()
            .map(|n| match n.state {
                NodeState::Reported => n.report.as_ref().and_then(Report::worst),
                NodeState::Absent | NodeState::Error => Some(Status::Error),
            })
            .max()
            .flatten()
    }

    pub fn render(&self, format: Format, color: bool, out: &mut dyn Write) -> std::io::Result<()> {
        match format {
            Format::Json => {
                serde_json::to_writer_pretty(&mut *out, self)?;
                writeln!(out)
            }
            Format::Table => self.render_table(color, out),
            Format::Markdown => self.render_markdown(out),
            Format::Junit => self.render_junit(out),
        }
    }

    /// Check ids over every reported node, sorted.
    fn check_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .nodes
            .iter()
            .filter_map(|n| n.report.as_ref())
            .flat_map(|r| r.results.iter().map(|c| c.id.as_str()))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    fn status_of(&self, node: &NodeOutcome, id: &str) -> Option<Status> {
        node.report
            .as_ref()?
            .results
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.status)
    }

    fn render_table(&self, color: bool, out: &mut dyn Write) -> std::io::Result<()> {
        let mut nodes = status_table(&["node", "state", "result"], color);
        for n in &self.nodes {
            let text = match (&n.report, &n.reason) {
                (Some(r), why) => {
                    let bad: Vec<String> = r
                        .results
                        .iter()
                        .filter(|c| c.status >= Status::Warn)
                        .map(|c| format!("{} {}: {}", c.status.mark(), c.id, c.message))
                        .collect();
                    // A reported node with a reason: its report is the compact one (fleet/compact.rs).
                    let head = match why {
                        Some(w) => format!("{w}\n{}", r.summary),
                        None => r.summary.to_string(),
                    };
                    if bad.is_empty() {
                        head
                    } else {
                        format!("{head}\n{}", bad.join("\n"))
                    }
                }
                (None, Some(why)) => why.clone(),
                (None, None) => String::new(),
            };
            nodes.add_row(vec![n.name.clone(), state_str(n.state).into(), text]);
        }
        writeln!(out, "{nodes}")?;
        let ids = self.check_ids();
        let reported: Vec<&NodeOutcome> =
            self.nodes.iter().filter(|n| n.report.is_some()).collect();
        if !ids.is_empty() {
            let mut header = vec!["check"];
            header.extend(reported.iter().map(|n| n.name.as_str()));
            let mut matrix = status_table(&header, color);
            for id in &ids {
                let mut row = vec![id.to_string()];
                row.extend(
                    reported
                        .iter()
                        .map(|n| self.status_of(n, id).map_or("·", |s| s.mark()).to_string()),
                );
                matrix.add_row(row);
            }
            writeln!(out, "{matrix}")?;
        }
        if !self.drift.is_empty() {
            writeln!(out, "Differs between nodes:")?;
            for d in &self.drift {
                let parts: Vec<String> = d
                    .statuses
                    .iter()
                    .map(|(s, ns)| format!("{s} on {}", ns.join(", ")))
                    .collect();
                writeln!(out, "  {}: {}", d.id, parts.join("; "))?;
            }
        }
        writeln!(
            out,
            "{} nodes: {} reported, {} absent, {} error",
            self.summary.nodes, self.summary.reported, self.summary.absent, self.summary.error
        )
    }

    fn render_markdown(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "# k8sdoctor fleet report\n")?;
        writeln!(out, "| node | state | summary |\n|---|---|---|")?;
        for n in &self.nodes {
            let text = match (&n.report, &n.reason) {
                (Some(r), Some(why)) => format!("{} ({why})", r.summary),
                (Some(r), None) => r.summary.to_string(),
                (None, Some(why)) => why.clone(),
                (None, None) => String::new(),
            };
            writeln!(
                out,
                "| {} | {} | {} |",
                markdown_cell(&n.name),
                state_str(n.state),
                markdown_cell(&text)
            )?;
        }
        let reported: Vec<&NodeOutcome> =
            self.nodes.iter().filter(|n| n.report.is_some()).collect();
        let ids = self.check_ids();
        if !ids.is_empty() {
            let names: Vec<String> = reported.iter().map(|n| markdown_cell(&n.name)).collect();
            writeln!(out, "\n| check | {} |", names.join(" | "))?;
            writeln!(out, "|---|{}", "---|".repeat(reported.len()))?;
            for id in ids {
                let cells: Vec<&str> = reported
                    .iter()
                    .map(|n| self.status_of(n, id).map_or("", |s| s.as_str()))
                    .collect();
                writeln!(out, "| `{id}` | {} |", cells.join(" | "))?;
            }
        }
        Ok(())
    }

    /// One test suite per node; an absent or failed node is one failing case of its own.
    fn render_junit(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
        writeln!(out, r#"<testsuites name="k8sdoctor fleet">"#)?;
        for n in &self.nodes {
            let name = esc(&n.name);
            match &n.report {
                Some(r) => {
                    let failures = r
                        .results
                        .iter()
                        .filter(|c| c.status >= Status::Fail)
                        .count();
                    writeln!(
                        out,
                        r#"  <testsuite name="{name}" tests="{}" failures="{failures}">"#,
                        r.results.len()
                    )?;
                    for c in &r.results {
                        write!(
                            out,
                            r#"    <testcase classname="{name}" name="{}""#,
                            esc(&c.id)
                        )?;
                        match c.status {
                            Status::Fail | Status::Error => writeln!(
                                out,
                                ">\n      <failure message=\"{}\"/>\n    </testcase>",
                                esc(&c.message)
                            )?,
                            Status::Skip => writeln!(
                                out,
                                ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                                esc(&c.message)
                            )?,
                            _ => writeln!(out, "/>")?,
                        }
                    }
                    writeln!(out, "  </testsuite>")?;
                }
                None => {
                    writeln!(
                        out,
                        r#"  <testsuite name="{name}" tests="1" failures="1">
    <testcase classname="{name}" name="node">
      <failure message="{}: {}"/>
    </testcase>
  </testsuite>"#,
                        state_str(n.state),
                        esc(n.reason.as_deref().unwrap_or(""))
                    )?;
                }
            }
        }
        writeln!(out, "</testsuites>")
    }
}

fn state_str(s: NodeState) -> &'static str {
    match s {
        NodeState::Reported => "reported",
        NodeState::Absent => "absent",
        NodeState::Error => "error",
    }
}

/// Checks whose status differs between reported nodes (a check missing on a node counts as its own value).
fn drift(nodes: &[NodeOutcome]) -> Vec<Drift> {
    let reported: Vec<&NodeOutcome> = nodes.iter().filter(|n| n.report.is_some()).collect();
    let mut by_id: BTreeMap<&str, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for n in &reported {
        for r in &n.report.as_ref().expect("filtered").results {
            by_id
                .entry(r.id.as_str())
                .or_default()
                .entry(r.status.as_str().to_string())
                .or_default()
                .push(n.name.clone());
        }
    }
    by_id
        .into_iter()
        .filter_map(|(id, mut statuses)| {
            let seen: usize = statuses.values().map(Vec::len).sum();
            if seen < reported.len() {
                let missing: Vec<String> = reported
                    .iter()
                    .filter(|n| !statuses.values().any(|v| v.contains(&n.name)))
                    .map(|n| n.name.clone())
                    .collect();
                statuses.insert("not run".into(), missing);
            }
            (statuses.len() > 1).then(|| Drift {
                id: id.to_string(),
                statuses,
            })
        })
        .collect()
}

/// Finds the node report in a pod log: the first JSON object that parses as a report, whatever
/// noise (runtime warnings, stderr lines) surrounds it.
pub fn report_from_log(log: &str) -> Option<Report> {
    let mut offset = 0;
    for line in log.split_inclusive('\n') {
        if line.starts_with('{') {
            let mut it = serde_json::Deserializer::from_str(&log[offset..]).into_iter::<Report>();
            if let Some(Ok(r)) = it.next() {
                return Some(r);
            }
        }
        offset += line.len();
    }
    None
}

/// The JSON Schema of [`FleetReport`], as `k8sdoctor schema --fleet` prints it.
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(FleetReport)).expect("schema serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CheckResult, HostInfo};

    fn node_report(statuses: &[(&str, Status)]) -> Report {
        let results = statuses
            .iter()
            .map(|(id, s)| CheckResult {
                id: id.to_string(),
                title: String::new(),
                status: *s,
                message: format!("{id} is {}", s.as_str()),
                evidence: vec![],
                remediation: None,
                fix_available: false,
                duration_ms: 0,
                subject: None,
                replacement: None,
            })
            .collect();
        Report::new(
            std::time::SystemTime::now(),
            1,
            HostInfo::default(),
            None,
            results,
        )
    }

    fn reported(name: &str, statuses: &[(&str, Status)]) -> NodeOutcome {
        NodeOutcome {
            name: name.into(),
            state: NodeState::Reported,
            reason: None,
            report: Some(node_report(statuses)),
        }
    }

    #[test]
    fn the_report_is_found_among_log_noise() {
        let r = node_report(&[("swap.active", Status::Fail)]);
        let json = serde_json::to_string_pretty(&r).unwrap();
        let log =
            format!("W1201 runtime warning {{not json}}\n{{ broken\n{json}\ntrailing noise\n");
        let found = report_from_log(&log).expect("report found");
        assert_eq!(found.results[0].id, "swap.active");
        assert!(report_from_log("no report here\n{\"a\": 1}\n").is_none());
    }

    #[test]
    fn drift_names_the_nodes_per_status_and_absent_nodes_are_errors() {
        let nodes = vec![
            NodeOutcome {
                reason: Some("only the compact report arrived".into()),
                ..reported(
                    "b",
                    &[("swap.active", Status::Pass), ("dns.x", Status::Pass)],
                )
            },
            reported(
                "a",
                &[("swap.active", Status::Fail), ("dns.x", Status::Pass)],
            ),
            NodeOutcome {
                name: "c".into(),
                state: NodeState::Absent,
                reason: Some("node NotReady".into()),
                report: None,
            },
        ];
        let f = FleetReport::new("t".into(), 1, None, "k8sdoctor".into(), "r".into(), nodes);
        assert_eq!(f.nodes[0].name, "a", "sorted by name");
        assert_eq!(f.drift.len(), 1);
        assert_eq!(f.drift[0].id, "swap.active");
        assert_eq!(f.drift[0].statuses["fail"], ["a"]);
        assert_eq!(f.drift[0].statuses["pass"], ["b"]);
        assert_eq!((f.summary.reported, f.summary.absent), (2, 1));
        assert_eq!(f.worst(), Some(Status::Error));
        let mut table = Vec::new();
        f.render(Format::Table, false, &mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(
            table.contains("node NotReady") && table.contains("swap.active: fail on a; pass on b"),
            "{table}"
        );
        assert!(table.contains("only the compact report arrived"), "{table}");
    }
}
