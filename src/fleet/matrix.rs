//! The node × check matrix `fleet check` keeps while nodes report: per node its name, state,
//! reason, summary and each check's status (check ids and messages interned), and the messages
//! only where the chosen output shows them. No node's whole report is kept (it is streamed to the
//! JSON output as it arrives, see [`super::report::JsonStream`]), so memory grows by a few hundred
//! bytes per node, not by the report's tens of KiB. Renders the table, markdown and JUnit outputs,
//! and computes the summary and drift of the JSON one.

use std::{
    collections::{BTreeMap, HashMap},
    io::Write,
    sync::Arc,
};

use super::report::{Drift, FleetSummary, NodeOutcome, NodeState};
use crate::{
    core::{check::Status, config::Format},
    report::{Summary, markdown_cell, status_table},
};

/// Node columns per matrix table.
const MATRIX_NODES: usize = 12;
/// Node rows per node table.
const NODE_ROWS: usize = 50;

/// Strings seen once each, referred to by number (check ids: a few dozen for any fleet size;
/// messages: most nodes share theirs).
#[derive(Default)]
struct Interner {
    index: HashMap<Arc<str>, u32>,
    strings: Vec<Arc<str>>,
}

impl Interner {
    fn get(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let a: Arc<str> = Arc::from(s);
        let i = self.strings.len() as u32;
        self.strings.push(a.clone());
        self.index.insert(a, i);
        i
    }

    fn text(&self, i: u32) -> &str {
        &self.strings[i as usize]
    }
}

/// Which result messages an output shows, so only those are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// None: the matrix and markdown show statuses only; JSON streams whole reports instead.
    None,
    /// The table lists each node's warnings, failures and errors with their messages.
    Bad,
    /// JUnit carries the message of every failing, erroring and skipped case.
    NotPassing,
}

impl Keep {
    /// What `format` shows.
    pub fn for_format(format: Format) -> Keep {
        match format {
            Format::Table => Keep::Bad,
            Format::Junit => Keep::NotPassing,
            Format::Json | Format::Markdown => Keep::None,
        }
    }

    fn wants(self, s: Status) -> bool {
        match self {
            Keep::None => false,
            Keep::Bad => s >= Status::Warn,
            Keep::NotPassing => s != Status::Pass && s != Status::Warn,
        }
    }
}

/// One node as the matrix keeps it.
struct Row {
    name: Box<str>,
    state: NodeState,
    reason: Option<Box<str>>,
    /// The node report's summary (reported nodes).
    summary: Option<Summary>,
    /// (check id, status) in the report's order.
    cells: Box<[(u32, Status)]>,
    /// (check id, message) of the results the output shows, in the report's order.
    messages: Box<[(u32, u32)]>,
}

/// Every node so far, reduced to what the outputs need.
pub struct Matrix {
    keep: Keep,
    ids: Interner,
    texts: Interner,
    rows: Vec<Row>,
}

impl Matrix {
    pub fn new(keep: Keep) -> Matrix {
        Matrix {
            keep,
            ids: Interner::default(),
            texts: Interner::default(),
            rows: Vec::new(),
        }
    }

    /// Takes one node in; its report is dropped here (reasons and messages are masked already).
    pub fn add(&mut self, n: &NodeOutcome) {
        let mut cells = Vec::new();
        let mut messages = Vec::new();
        if let Some(r) = &n.report {
            cells.reserve_exact(r.results.len());
            for c in &r.results {
                let id = self.ids.get(&c.id);
                cells.push((id, c.status));
                if self.keep.wants(c.status) {
                    messages.push((id, self.texts.get(&c.message)));
                }
            }
        }
        self.rows.push(Row {
            name: n.name.as_str().into(),
            state: n.state,
            reason: n.reason.as_deref().map(Into::into),
            summary: n.report.as_ref().map(|r| r.summary),
            cells: cells.into(),
            messages: messages.into(),
        });
    }

    /// Nodes sorted by name (for the renderers; the JSON stream keeps the arrival order).
    pub fn sort(&mut self) {
        self.rows.sort_by(|a, b| a.name.cmp(&b.name));
    }

    fn reported(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.summary.is_some())
    }

    fn worst_of(row: &Row) -> Option<Status> {
        match row.state {
            NodeState::Reported => row.cells.iter().map(|c| c.1).max(),
            NodeState::Absent | NodeState::Error => Some(Status::Error),
        }
    }

    /// The worst outcome over the fleet: a node that could not be checked counts as an error.
    pub fn worst(&self) -> Option<Status> {
        self.rows.iter().filter_map(Matrix::worst_of).max()
    }

    pub fn summary(&self) -> FleetSummary {
        let mut s = FleetSummary {
            nodes: self.rows.len(),
            ..Default::default()
        };
        for r in &self.rows {
            match r.state {
                NodeState::Reported => s.reported += 1,
                NodeState::Absent => s.absent += 1,
                NodeState::Error => s.error += 1,
            }
            if r.summary.is_some()
                && let Some(w) = r.cells.iter().map(|c| c.1).max()
            {
                *s.worst.entry(w.as_str().to_string()).or_default() += 1;
            }
        }
        s
    }

    /// Checks whose status differs between reported nodes (a check missing on a node counts as
    /// its own value, `not run`). Node lists follow the matrix's order (sorted after [`Self::sort`]).
    pub fn drift(&self) -> Vec<Drift> {
        let reported: Vec<&Row> = self.reported().collect();
        let mut by_id: BTreeMap<&str, BTreeMap<&'static str, Vec<&str>>> = BTreeMap::new();
        for r in &reported {
            for (id, s) in r.cells.iter() {
                by_id
                    .entry(self.ids.text(*id))
                    .or_default()
                    .entry(s.as_str())
                    .or_default()
                    .push(&r.name);
            }
        }
        by_id
            .into_iter()
            .filter_map(|(id, statuses)| {
                let mut statuses: BTreeMap<String, Vec<String>> = statuses
                    .into_iter()
                    .map(|(s, ns)| (s.to_string(), ns.into_iter().map(String::from).collect()))
                    .collect();
                let seen: usize = statuses.values().map(Vec::len).sum();
                if seen < reported.len() {
                    let missing: Vec<String> = reported
                        .iter()
                        .filter(|r| !statuses.values().any(|v| v.iter().any(|n| *n == *r.name)))
                        .map(|r| r.name.to_string())
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

    /// Check ids over every reported node, sorted.
    fn check_ids(&self) -> Vec<(u32, &str)> {
        let mut ids: Vec<(u32, &str)> = self
            .ids
            .strings
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u32, &**s))
            .collect();
        ids.sort_by(|a, b| a.1.cmp(b.1));
        ids
    }

    fn status_of(row: &Row, id: u32) -> Option<Status> {
        row.cells.iter().find(|c| c.0 == id).map(|c| c.1)
    }

    /// Renders every format but JSON (which [`super::report::JsonStream`] writes as nodes arrive).
    pub fn render(&self, format: Format, color: bool, out: &mut dyn Write) -> std::io::Result<()> {
        match format {
            Format::Table => self.render_table(color, out),
            Format::Markdown => self.render_markdown(out),
            Format::Junit => self.render_junit(out),
            Format::Json => Err(std::io::Error::other(
                "the fleet JSON report is streamed, not rendered from the matrix",
            )),
        }
    }

    fn render_table(&self, color: bool, out: &mut dyn Write) -> std::io::Result<()> {
        // The nodes too go out a table of at most NODE_ROWS at a time: a table holds every cell
        // until it is drawn, many KiB a node.
        for rows in self.rows.chunks(NODE_ROWS) {
            self.node_table(rows, color, out)?;
        }
        self.render_matrix(color, out)
    }

    fn node_table(&self, rows: &[Row], color: bool, out: &mut dyn Write) -> std::io::Result<()> {
        let mut nodes = status_table(&["node", "state", "result"], color);
        for n in rows {
            let text = match (&n.summary, &n.reason) {
                (Some(summary), why) => {
                    let bad: Vec<String> = n
                        .messages
                        .iter()
                        .filter_map(|(id, msg)| {
                            let s = Matrix::status_of(n, *id).filter(|s| *s >= Status::Warn)?;
                            Some(format!(
                                "{} {}: {}",
                                s.mark(),
                                self.ids.text(*id),
                                self.texts.text(*msg)
                            ))
                        })
                        .collect();
                    // A reported node with a reason: its report is the compact one (fleet/compact.rs).
                    let head = match why {
                        Some(w) => format!("{w}\n{summary}"),
                        None => summary.to_string(),
                    };
                    if bad.is_empty() {
                        head
                    } else {
                        format!("{head}\n{}", bad.join("\n"))
                    }
                }
                (None, Some(why)) => why.to_string(),
                (None, None) => String::new(),
            };
            nodes.add_row(vec![n.name.to_string(), state_str(n.state).into(), text]);
        }
        writeln!(out, "{nodes}")
    }

    fn render_matrix(&self, color: bool, out: &mut dyn Write) -> std::io::Result<()> {
        let ids = self.check_ids();
        let reported: Vec<&Row> = self.reported().collect();
        // A few nodes per matrix, one matrix after another: thousands of columns fit no screen,
        // and one such table would cost memory in proportion to the fleet.
        for nodes in reported.chunks(MATRIX_NODES).filter(|_| !ids.is_empty()) {
            let mut header = vec!["check"];
            header.extend(nodes.iter().map(|n| &*n.name));
            let mut matrix = status_table(&header, color);
            for (id, text) in &ids {
                let mut row = vec![text.to_string()];
                row.extend(nodes.iter().map(|n| {
                    Matrix::status_of(n, *id)
                        .map_or("·", |s| s.mark())
                        .to_string()
                }));
                matrix.add_row(row);
            }
            writeln!(out, "{matrix}")?;
        }
        let drift = self.drift();
        if !drift.is_empty() {
            writeln!(out, "Differs between nodes:")?;
            for d in &drift {
                let parts: Vec<String> = d
                    .statuses
                    .iter()
                    .map(|(s, ns)| format!("{s} on {}", ns.join(", ")))
                    .collect();
                writeln!(out, "  {}: {}", d.id, parts.join("; "))?;
            }
        }
        let s = self.summary();
        writeln!(
            out,
            "{} nodes: {} reported, {} absent, {} error",
            s.nodes, s.reported, s.absent, s.error
        )
    }

    fn render_markdown(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "# k8sdoctor fleet report\n")?;
        writeln!(out, "| node | state | summary |\n|---|---|---|")?;
        for n in &self.rows {
            let text = match (&n.summary, &n.reason) {
                (Some(s), Some(why)) => format!("{s} ({why})"),
                (Some(s), None) => s.to_string(),
                (None, Some(why)) => why.to_string(),
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
        let reported: Vec<&Row> = self.reported().collect();
        let ids = self.check_ids();
        if !ids.is_empty() {
            let names: Vec<String> = reported.iter().map(|n| markdown_cell(&n.name)).collect();
            writeln!(out, "\n| check | {} |", names.join(" | "))?;
            writeln!(out, "|---|{}", "---|".repeat(reported.len()))?;
            for (id, text) in ids {
                let cells: Vec<&str> = reported
                    .iter()
                    .map(|n| Matrix::status_of(n, id).map_or("", |s| s.as_str()))
                    .collect();
                writeln!(out, "| `{text}` | {} |", cells.join(" | "))?;
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
        for n in &self.rows {
            let name = esc(&n.name);
            if n.summary.is_some() {
                let failures = n.cells.iter().filter(|c| c.1 >= Status::Fail).count();
                writeln!(
                    out,
                    r#"  <testsuite name="{name}" tests="{}" failures="{failures}">"#,
                    n.cells.len()
                )?;
                // Messages are kept in the cells' order, so one pass pairs them up.
                let mut messages = n.messages.iter().peekable();
                for (id, status) in n.cells.iter() {
                    let msg = messages
                        .next_if(|m| m.0 == *id && self.keep.wants(*status))
                        .map_or("", |m| self.texts.text(m.1));
                    write!(
                        out,
                        r#"    <testcase classname="{name}" name="{}""#,
                        esc(self.ids.text(*id))
                    )?;
                    match status {
                        Status::Fail | Status::Error => writeln!(
                            out,
                            ">\n      <failure message=\"{}\"/>\n    </testcase>",
                            esc(msg)
                        )?,
                        Status::Skip => writeln!(
                            out,
                            ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                            esc(msg)
                        )?,
                        _ => writeln!(out, "/>")?,
                    }
                }
                writeln!(out, "  </testsuite>")?;
            } else {
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
        writeln!(out, "</testsuites>")
    }
}

pub fn state_str(s: NodeState) -> &'static str {
    match s {
        NodeState::Reported => "reported",
        NodeState::Absent => "absent",
        NodeState::Error => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::report::tests::reported;

    fn rendered(m: &Matrix, f: Format) -> String {
        let mut out = Vec::new();
        m.render(f, false, &mut out).unwrap();
        String::from_utf8(out).unwrap()
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
        let mut m = Matrix::new(Keep::Bad);
        for n in &nodes {
            m.add(n);
        }
        drop(nodes);
        m.sort();
        assert_eq!(&*m.rows[0].name, "a", "sorted by name");
        let drift = m.drift();
        assert_eq!(drift.len(), 1);
        assert_eq!(drift[0].id, "swap.active");
        assert_eq!(drift[0].statuses["fail"], ["a"]);
        assert_eq!(drift[0].statuses["pass"], ["b"]);
        let s = m.summary();
        assert_eq!((s.reported, s.absent), (2, 1));
        assert_eq!(s.worst["fail"], 1);
        assert_eq!(m.worst(), Some(Status::Error));
        let table = rendered(&m, Format::Table);
        assert!(
            table.contains("node NotReady") && table.contains("swap.active: fail on a; pass on b"),
            "{table}"
        );
        assert!(
            table.contains("✗ swap.active: swap.active is fail"),
            "{table}"
        );
        assert!(table.contains("only the compact report arrived"), "{table}");
    }

    /// The matrix keeps a node's statuses and only the messages its output shows: the report
    /// itself cannot be kept (no field of [`Row`] or [`Matrix`] has a `Report`), and check ids
    /// and shared messages are stored once however many nodes carry them.
    #[test]
    fn only_the_messages_the_output_shows_are_kept_and_shared_ones_once() {
        let statuses = [
            ("swap.active", Status::Fail),
            ("dns.x", Status::Pass),
            ("sysctl.y", Status::Skip),
            ("firewall.z", Status::Warn),
        ];
        for (keep, kept) in [(Keep::None, 0), (Keep::Bad, 2), (Keep::NotPassing, 2)] {
            let mut m = Matrix::new(keep);
            for i in 0..500 {
                m.add(&reported(&format!("n{i:03}"), &statuses));
            }
            assert_eq!(m.ids.strings.len(), 4);
            assert_eq!(m.texts.strings.len(), kept, "{keep:?}");
            assert!(m.rows.iter().all(|r| r.messages.len() == kept));
        }
        let mut m = Matrix::new(Keep::NotPassing);
        m.add(&reported("n1", &statuses));
        let junit = rendered(&m, Format::Junit);
        assert!(
            junit.contains(
                r#"name="swap.active">
      <failure message="swap.active is fail"/>"#
            ) && junit.contains(r#"<skipped message="sysctl.y is skip"/>"#)
                && junit.contains(r#"name="firewall.z"/>"#),
            "{junit}"
        );
        let md = rendered(&m, Format::Markdown);
        assert!(md.contains("| `swap.active` | fail |"), "{md}");
    }
}
