//! Writes a bundle: the recorded entries grouped by source into members, the manifest naming each with
//! its digest, all in a tar with fixed times, owners and order, gzip'd with a fixed header, so the same
//! inputs give the same bytes.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
};

use anyhow::{Context, Result};

use super::format::{
    CallRecord, FORMAT, FORMAT_VERSION, HostFile, MANIFEST, Manifest, Member, REPORT,
    REPORT_SOURCE, RecordedConfig, calls_member, sha256_hex, valid_name,
};
use crate::{
    core::tape::{Answer, Entry, Recorded},
    report::Report,
};

/// What the manifest says besides the members.
pub struct Header {
    /// The command that made it (`check`, `join-check`).
    pub command: String,
    pub created_at: String,
    pub command_line: String,
    pub recorded: Recorded,
    pub config: RecordedConfig,
    /// Every source gathered (including those that read nothing).
    pub sources: BTreeSet<String>,
}

/// The report as a bundle keeps it: timings zeroed and the start set to `created_at`, so it carries
/// nothing that differs between two recordings of the same inputs.
fn steady_report(report: &Report, created_at: &str) -> Result<Vec<u8>> {
    let mut r = report.clone();
    r.started_at = created_at.into();
    r.duration_ms = 0;
    for c in &mut r.results {
        c.duration_ms = 0;
    }
    let mut out = serde_json::to_vec_pretty(&r)?;
    out.push(b'\n');
    Ok(out)
}

/// The bundle's bytes.
pub fn write(header: Header, report: &Report, entries: Vec<Entry>) -> Result<Vec<u8>> {
    let mut members: Vec<(Member, Vec<u8>)> = Vec::new();
    let mut add = |name: String, source: &str, host_file: Option<HostFile>, bytes: Vec<u8>| {
        members.push((
            Member {
                sha256: sha256_hex(&bytes),
                size: bytes.len() as u64,
                name,
                source: source.into(),
                host_file,
            },
            bytes,
        ));
    };
    add(
        REPORT.into(),
        REPORT_SOURCE,
        None,
        steady_report(report, &header.created_at)?,
    );
    let mut by_source: BTreeMap<String, Vec<CallRecord>> = BTreeMap::new();
    for e in entries {
        by_source.entry(e.source).or_default().push(CallRecord {
            call: e.call,
            answer: e.answer,
        });
    }
    let mut used = BTreeSet::new();
    for (source, mut calls) in by_source {
        let mut files = Vec::new();
        for c in &mut calls {
            let (crate::core::tape::Call::Read { path }, Answer::File(Ok(Some(body)))) =
                (&c.call, &mut c.answer)
            else {
                continue;
            };
            let plain = format!("inputs/{source}/files{path}");
            let name = if valid_name(&plain) && !used.contains(&plain) {
                plain
            } else {
                format!("inputs/{source}/files/~{}", used.len())
            };
            used.insert(name.clone());
            body.member = name.clone();
            files.push((
                name,
                HostFile {
                    path: path.clone(),
                    mode: format!("{:04o}", body.mode),
                    uid: body.uid,
                    gid: body.gid,
                    kind: body.kind.clone(),
                },
                std::mem::take(&mut body.bytes),
            ));
        }
        let mut json = serde_json::to_vec_pretty(&calls)?;
        json.push(b'\n');
        add(calls_member(&source), &source, None, json);
        for (name, f, bytes) in files {
            add(name, &source, Some(f), bytes);
        }
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        tool: crate::report::Tool::default(),
        command: header.command,
        created_at: header.created_at,
        command_line: header.command_line,
        host: serde_json::to_value(&report.host)?,
        cluster: serde_json::to_value(&report.cluster)?,
        recorded: header.recorded,
        config: header.config,
        sources: header.sources.into_iter().collect(),
        members: members.iter().map(|(m, _)| m.clone()).collect(),
    };
    let mut manifest_bytes = serde_json::to_vec_pretty(&manifest)?;
    manifest_bytes.push(b'\n');

    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    append(&mut tar, MANIFEST, &manifest_bytes)?;
    for (m, bytes) in &members {
        append(&mut tar, &m.name, bytes)?;
    }
    let mut gz = tar.into_inner().context("cannot finish the bundle's tar")?;
    gz.flush()?;
    let bytes = gz
        .finish()
        .context("cannot finish the bundle's gzip stream")?;
    // What was recorded came from the host or a server: a bundle the reader would refuse (a member
    // over its cap, a body so repetitive it looks like a bomb) is not written at all.
    super::reader::read(&bytes).map_err(|e| {
        anyhow::anyhow!("the recorded inputs cannot make a bundle a replay would accept: {e}")
    })?;
    Ok(bytes)
}

/// Adds a member with the fixed metadata every bundle member has (regular, 0644, root, time 0).
pub(crate) fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    tar.append_data(&mut h, name, bytes)
        .with_context(|| format!("cannot add {name} to the bundle"))
}
