//! The fleet report's JSON contract: every node with its state and its own report, a summary, the
//! checks that differ between nodes; the writer that streams it as nodes arrive, and its schema.
//! (The other outputs render from the matrix, `fleet/matrix.rs`.)

use std::{collections::BTreeMap, io::Write};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::report::{ClusterInfo, Report, Tool};

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

/// A whole `k8sdoctor fleet check` run. `nodes` are in the order they finished (the document is
/// written as they do, so no node's report is held until the end); sort by `name` for a stable view.
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

/// What the fleet JSON document says before its nodes: known when the run starts.
#[derive(Debug, Clone)]
pub struct Header {
    pub started_at: String,
    pub cluster: Option<ClusterInfo>,
    pub namespace: String,
    pub run_id: String,
}

/// Writes the fleet JSON document as the run goes: the header fields, then each node as it
/// arrives (its whole report, which nothing keeps afterwards), then the summary, the drift and the
/// duration once every node is in. The result is the [`FleetReport`] document with its nodes in
/// arrival order.
pub struct JsonStream<'a> {
    out: &'a mut dyn Write,
    nodes: usize,
}

impl<'a> JsonStream<'a> {
    /// Writes the document's head, up to the opening of `nodes`.
    pub fn begin(out: &'a mut dyn Write, h: &Header) -> std::io::Result<JsonStream<'a>> {
        let field = |k: &str, v: serde_json::Value| -> std::io::Result<String> {
            Ok(format!(
                "  {}: {},\n",
                serde_json::to_string(k)?,
                indented(&v, 1)?
            ))
        };
        let mut head = String::from("{\n");
        head += &field("schema_version", FLEET_SCHEMA_VERSION.into())?;
        head += &field("tool", serde_json::to_value(Tool::default())?)?;
        head += &field("started_at", h.started_at.clone().into())?;
        head += &field("cluster", serde_json::to_value(&h.cluster)?)?;
        head += &field("namespace", h.namespace.clone().into())?;
        head += &field("run_id", h.run_id.clone().into())?;
        head += "  \"nodes\": [";
        out.write_all(head.as_bytes())?;
        Ok(JsonStream { out, nodes: 0 })
    }

    /// One node: the caller has masked it.
    pub fn node(&mut self, n: &NodeOutcome) -> std::io::Result<()> {
        let sep = if self.nodes == 0 { "\n    " } else { ",\n    " };
        self.nodes += 1;
        let text = indented(n, 2)?;
        self.out.write_all(sep.as_bytes())?;
        self.out.write_all(text.as_bytes())
    }

    /// The tail: the summary, the drift and the duration.
    pub fn end(
        self,
        summary: &FleetSummary,
        drift: &[Drift],
        duration_ms: u64,
    ) -> std::io::Result<()> {
        let close = if self.nodes == 0 { "]" } else { "\n  ]" };
        write!(
            self.out,
            "{close},\n  \"summary\": {},\n  \"drift\": {},\n  \"duration_ms\": {duration_ms}\n}}\n",
            indented(summary, 1)?,
            indented(&drift, 1)?
        )?;
        self.out.flush()
    }
}

/// Pretty JSON of `v` for a place `depth` levels deep (two spaces a level): JSON strings hold no
/// raw line breaks, so indenting every line after the first is exact.
fn indented<T: Serialize + ?Sized>(v: &T, depth: usize) -> std::io::Result<String> {
    let text = serde_json::to_string_pretty(v)?;
    let pad = "  ".repeat(depth);
    Ok(text.replace('\n', &format!("\n{pad}")))
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
pub(super) mod tests {
    use super::*;
    use crate::{
        core::check::Status,
        report::{CheckResult, HostInfo},
    };

    pub(crate) fn node_report(statuses: &[(&str, Status)]) -> Report {
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

    pub(crate) fn reported(name: &str, statuses: &[(&str, Status)]) -> NodeOutcome {
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
    fn the_streamed_document_is_the_typed_document_with_nodes_in_arrival_order() {
        use super::super::matrix::{Keep, Matrix};
        let nodes = vec![
            reported(
                "b",
                &[("swap.active", Status::Pass), ("dns.x", Status::Warn)],
            ),
            NodeOutcome {
                name: "c".into(),
                state: NodeState::Absent,
                reason: Some("node NotReady".into()),
                report: None,
            },
            reported(
                "a",
                &[("swap.active", Status::Fail), ("dns.x", Status::Pass)],
            ),
        ];
        let header = Header {
            started_at: "2026-01-01T00:00:00Z".into(),
            cluster: Some(ClusterInfo {
                server: "https://127.0.0.1:6443".into(),
                server_version: Some("v1.33.2".into()),
                context: None,
            }),
            namespace: "k8sdoctor".into(),
            run_id: "r1".into(),
        };
        let mut out = Vec::new();
        let mut matrix = Matrix::new(Keep::None);
        let mut stream = JsonStream::begin(&mut out, &header).unwrap();
        for n in &nodes {
            stream.node(n).unwrap();
            matrix.add(n);
        }
        matrix.sort();
        stream.end(&matrix.summary(), &matrix.drift(), 42).unwrap();
        let streamed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let typed = FleetReport {
            schema_version: FLEET_SCHEMA_VERSION.into(),
            tool: Tool::default(),
            started_at: header.started_at.clone(),
            duration_ms: 42,
            cluster: header.cluster.clone(),
            namespace: header.namespace.clone(),
            run_id: header.run_id.clone(),
            summary: matrix.summary(),
            nodes,
            drift: matrix.drift(),
        };
        assert_eq!(streamed, serde_json::to_value(&typed).unwrap());
        let v = jsonschema::validator_for(&schema()).unwrap();
        assert!(
            v.is_valid(&streamed),
            "{:?}",
            v.iter_errors(&streamed).next()
        );
        // And one with no node at all is still a document.
        let mut out = Vec::new();
        let stream = JsonStream::begin(&mut out, &header).unwrap();
        stream.end(&FleetSummary::default(), &[], 1).unwrap();
        let empty: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(empty["nodes"], serde_json::json!([]));
    }
}
