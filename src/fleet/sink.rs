//! Where each node's outcome goes the moment it arrives: masked once, then written to the JSON
//! document (`-o json`, its whole report) and to the fleet bundle (`--bundle`, the node's own
//! bundle), and reduced into the matrix. Nothing else keeps it, so a run's memory does not grow
//! with its nodes' reports.

use std::{io::Write, path::PathBuf};

use anyhow::{Context, Result};

use super::{
    matrix::{Keep, Matrix},
    report::{Header, JsonStream, NodeOutcome},
};
use crate::{bundle::fleet as archive, mask::mask_secrets, report::Report};

/// A node's bundle as it came back: the bytes, or why there are none (None: none was asked for).
pub type NodeBundle = Option<Result<Vec<u8>, String>>;

/// What the run writes as it goes.
pub struct Output<'a> {
    /// The JSON document's destination (`-o json`); None for the other formats.
    pub json: Option<&'a mut dyn Write>,
    /// Which messages the matrix keeps (the chosen format's).
    pub keep: Keep,
    /// `--bundle FILE`: the fleet bundle to write.
    pub bundle: Option<PathBuf>,
    /// The command line, for the fleet bundle's manifest.
    pub command_line: String,
}

pub struct Sink<'a> {
    matrix: Matrix,
    header: Header,
    /// Until the first node arrives (or the run ends), nothing is written: a run that fails
    /// before any node leaves no half document and no archive.
    pending: Option<Output<'a>>,
    json: Option<JsonStream<'a>>,
    archive: Option<archive::Writer>,
    bundles: bool,
    count: usize,
}

impl<'a> Sink<'a> {
    pub fn begin(output: Output<'a>, header: &Header) -> Result<Sink<'a>> {
        Ok(Sink {
            matrix: Matrix::new(output.keep),
            header: header.clone(),
            bundles: output.bundle.is_some(),
            pending: Some(output),
            json: None,
            archive: None,
            count: 0,
        })
    }

    /// Opens the outputs and writes the JSON document's head (once).
    fn open(&mut self) -> Result<()> {
        let Some(output) = self.pending.take() else {
            return Ok(());
        };
        if let Some(out) = output.json {
            self.json = Some(
                JsonStream::begin(out, &self.header).context("cannot write the fleet report")?,
            );
        }
        if let Some(path) = &output.bundle {
            self.archive = Some(archive::Writer::create(
                path,
                archive::RunInfo {
                    command_line: mask_secrets(&output.command_line),
                    cluster: serde_json::to_value(&self.header.cluster)?,
                    namespace: self.header.namespace.clone(),
                    run_id: self.header.run_id.clone(),
                    started_at: self.header.started_at.clone(),
                },
            )?);
        }
        Ok(())
    }

    /// Whether the pods are to send their bundles.
    pub fn wants_bundles(&self) -> bool {
        self.bundles
    }

    /// Nodes taken so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// One node: masked, written where asked, kept in the matrix, then dropped.
    pub fn add(&mut self, mut n: NodeOutcome, bundle: NodeBundle) -> Result<()> {
        self.open()?;
        n.reason = n.reason.as_deref().map(mask_secrets);
        n.report = n.report.take().map(Report::masked);
        if let Some(a) = &mut self.archive {
            let bundle = bundle.unwrap_or_else(|| {
                Err(n
                    .reason
                    .as_deref()
                    .unwrap_or("the node sent none")
                    .to_string())
            });
            a.add(
                &n.name,
                super::matrix::state_str(n.state),
                n.reason.as_deref(),
                bundle,
            )?;
        }
        if let Some(j) = &mut self.json {
            j.node(&n).context("cannot write the fleet report")?;
        }
        self.matrix.add(&n);
        self.count += 1;
        Ok(())
    }

    /// Closes the outputs: the JSON document's summary and drift, the bundle's manifest. The
    /// matrix, sorted by node name, is what the other formats render.
    pub fn finish(mut self, duration_ms: u64) -> Result<Matrix> {
        self.open()?;
        self.matrix.sort();
        if let Some(a) = self.archive.take() {
            a.finish()?;
        }
        if let Some(j) = self.json.take() {
            j.end(&self.matrix.summary(), &self.matrix.drift(), duration_ms)
                .context("cannot write the fleet report")?;
        }
        Ok(self.matrix)
    }
}

/// Now, RFC 3339 to the millisecond.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
