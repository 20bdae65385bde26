//! `k8sdoctor manifests`: finds removed and deprecated API versions in manifests before they break a
//! deploy, judged for a target release (the table of API lifecycles, and a cluster's discovery), and
//! with `--convert` writes them converted. One result per object in the one report model.
//!
//! [`input`] reads and splits the inputs, [`lifecycle`] is the table, [`verdict`] judges one object,
//! [`convert`] rewrites and proves one, [`cluster`] talks to the API server; this module runs them.

pub mod cluster;
pub mod convert;
pub mod input;
pub mod lifecycle;
pub mod verdict;

use std::{
    path::{Component, Path, PathBuf},
    time::{Instant, SystemTime},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{
    core::{check::Status, config::Config},
    report::{CheckResult, HostInfo, ManifestsRun, Report, Subject},
};
use convert::Outcome;
use input::Input;
use lifecycle::Minor;
use verdict::{Judge, Served};

/// What `manifests` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Files, directories, `-` for stdin.
    pub paths: Vec<PathBuf>,
    /// `--target-version`.
    pub target: Option<Minor>,
    /// `--convert DIR`.
    pub convert: Option<PathBuf>,
    /// The kubeconfig, context, `--offline`, `--timeout` and report fields.
    pub cfg: Config,
}

/// One document of an input as `--convert` writes it.
enum Out {
    /// Converted (and proved).
    Converted(Value),
    /// Kept as it was; with a comment saying why when it needed converting.
    Kept(Value, Option<String>),
    /// Could not be parsed: only the comment.
    Unparsed(String),
}

/// Runs `manifests`: every object of every input judged, and converted when asked.
pub fn run(opts: &Options, note: &dyn Fn(&str)) -> Result<Report> {
    let started = SystemTime::now();
    let clock = Instant::now();
    if opts.paths.is_empty() {
        bail!("name the manifests to check: files, directories, or - for stdin");
    }
    let inputs = input::expand(&opts.paths)?;
    let mut cluster = if opts.cfg.offline {
        None
    } else {
        cluster::connect(&opts.cfg)?
    };
    let (target, target_from) = match (opts.target, cluster.as_ref().and_then(|c| c.version)) {
        (Some(t), _) => (t, "--target-version".to_string()),
        (None, Some(v)) => (v, "the cluster's version".to_string()),
        (None, None) => (
            lifecycle::newest(),
            "the newest release the table knows".to_string(),
        ),
    };
    if let Some(dir) = &opts.convert {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create --convert {}", dir.display()))?;
    }
    let cluster_info = cluster.as_ref().map(|c| c.info.clone());
    let mut results = Vec::new();
    let (mut written, mut refused) = (0usize, 0usize);
    for inp in &inputs {
        let file = inp.name();
        let text = match input::read(inp) {
            Ok(t) => t,
            Err(e) => {
                results.push(file_result(&file, Status::Error, format!("{file}: {e}")));
                continue;
            }
        };
        let docs = input::documents_with(&text, opts.convert.is_some());
        drop(text);
        if docs.is_empty() {
            results.push(file_result(
                &file,
                Status::Skip,
                format!("{file}: no documents (empty, or only comments)"),
            ));
            continue;
        }
        let mut outs = Vec::with_capacity(if opts.convert.is_some() {
            docs.len()
        } else {
            0
        });
        let mut converted_any = false;
        let out_path = opts.convert.as_deref().map(|d| out_path(d, inp));
        for doc in &docs {
            let mut r = {
                let mut j = Judge {
                    target,
                    target_from: &target_from,
                    cluster: cluster.as_mut().map(|c| c as &mut dyn Served),
                };
                verdict::judge(&file, doc, &mut j)
            };
            if let Some(out_file) = &out_path {
                let out = convert_one(
                    doc,
                    r.status,
                    target,
                    cluster.as_mut(),
                    out_file,
                    &mut r.evidence,
                );
                match &out {
                    Out::Converted(_) => {
                        converted_any = true;
                        written += 1;
                    }
                    Out::Kept(_, Some(_)) => refused += 1,
                    _ => {}
                }
                outs.push(out);
            }
            r.evidence = verdict::evidence(std::mem::take(&mut r.evidence));
            results.push(r);
        }
        if let Some(path) = out_path.filter(|_| converted_any) {
            write_converted(&path, &outs)?;
        }
    }
    if let Some(dir) = &opts.convert {
        note(&format!(
            "converted {written} document(s) into {}; {refused} could not be converted (see each result)",
            dir.display()
        ));
    }
    let host = HostInfo {
        hostname: rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
        ..HostInfo::default()
    };
    let mut report = Report::new(
        started,
        clock.elapsed().as_millis() as u64,
        host,
        cluster_info,
        results,
    );
    report.manifests = Some(ManifestsRun {
        target_version: target.to_string(),
        target_from,
        inputs: inputs.len(),
        convert_dir: opts.convert.as_ref().map(|d| d.display().to_string()),
    });
    Ok(report)
}

/// A result about a whole input (unreadable, empty).
fn file_result(file: &str, status: Status, message: String) -> CheckResult {
    CheckResult {
        id: verdict::ID.into(),
        title: verdict::TITLE.into(),
        status,
        message: verdict::line(message),
        evidence: vec![],
        remediation: None,
        fix_available: false,
        duration_ms: 0,
        subject: Some(Subject {
            file: file.into(),
            line: 1,
            document: "-".into(),
            kind: None,
            name: None,
            namespace: None,
            api_version: None,
        }),
        replacement: None,
    }
}

/// Converts one document if its verdict asks for it, proves the result (typed decode, and a dry-run
/// create when a cluster is connected), and says what happened in the result's evidence.
fn convert_one(
    doc: &input::Doc,
    status: Status,
    target: Minor,
    cluster: Option<&mut cluster::Cluster>,
    out_file: &Path,
    evidence: &mut Vec<String>,
) -> Out {
    let body = match &doc.body {
        Ok(b) => b,
        Err(e) => return Out::Unparsed(format!("document {} not parsed: {e}", doc.document)),
    };
    if !matches!(status, Status::Warn | Status::Fail) {
        return Out::Kept(body.clone(), None);
    }
    match convert::convert(body, target) {
        Outcome::Unchanged => Out::Kept(body.clone(), None),
        Outcome::Refused(why) => {
            evidence.push(format!("convert: refused: {why}"));
            Out::Kept(body.clone(), Some(format!("not converted: {why}")))
        }
        Outcome::Converted { value, notes } => {
            let proof = convert::prove(&value).map_err(|e| {
                format!("the converted object does not decode as its typed k8s-openapi object: {e}")
            });
            let proof = proof.and_then(|()| match cluster {
                Some(c) => c
                    .dry_run_create(&value)
                    .map(|()| " and a server-side dry-run create")
                    .map_err(|e| format!("the cluster's dry-run create rejected it: {e}")),
                None => Ok(""),
            });
            match proof {
                Ok(how) => {
                    evidence.push(format!(
                        "convert: written to {} (proved by a typed decode{how})",
                        out_file.display()
                    ));
                    evidence.extend(notes.iter().map(|n| format!("convert: {n}")));
                    Out::Converted(value)
                }
                Err(e) => {
                    evidence.push(format!("convert: not written: {e}"));
                    Out::Kept(body.clone(), Some(format!("not converted: {e}")))
                }
            }
        }
    }
}

/// Where an input's converted documents go: DIR plus the input's path made relative (`/`, `..`
/// dropped); stdin is `stdin.yaml`.
fn out_path(dir: &Path, inp: &Input) -> PathBuf {
    match inp {
        Input::Stdin => dir.join("stdin.yaml"),
        Input::File(p) => {
            let rel: PathBuf = p
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .collect();
            dir.join(rel)
        }
    }
}

/// Writes an input's documents, converted where they were, as YAML (comments of the input are lost:
/// the documents are written from their parsed form).
fn write_converted(path: &Path, outs: &[Out]) -> Result<()> {
    let mut text = String::from("# Converted by k8sdoctor manifests --convert\n");
    for out in outs {
        text.push_str("---\n");
        match out {
            Out::Converted(v) | Out::Kept(v, None) => {
                text.push_str(&serde_saphyr::to_string(v).context("cannot write YAML")?)
            }
            Out::Kept(v, Some(why)) => {
                for l in why.lines() {
                    text.push_str(&format!("# k8sdoctor: {l}\n"));
                }
                text.push_str(&serde_saphyr::to_string(v).context("cannot write YAML")?);
            }
            Out::Unparsed(why) => {
                for l in why.lines() {
                    text.push_str(&format!("# k8sdoctor: {l}\n"));
                }
            }
        }
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    if path.exists() {
        bail!(
            "--convert would overwrite {} (an input, or an earlier conversion): name an empty directory",
            path.display()
        );
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
