//! Bundles: `check --bundle FILE` records every input the run's sources read (masked) next to its
//! report; `check --from-bundle FILE` evaluates the checks again from those inputs alone, through the
//! same sources, with no host file, command or network. (`join-check`'s bundles are the same format,
//! made and replayed by `join::bundle` through what this module lends it.)

pub mod fleet;
pub mod format;
pub mod frame;
pub mod reader;
pub mod writer;

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::{Context, Result};

use crate::{
    core::{
        check::DynCheck,
        config::Config,
        engine,
        host::Host,
        tape::{Recorded, Recorder},
    },
    mask::mask_secrets,
    report::Report,
};

pub use reader::{Bundle, BundleError};

/// `--bundle -`: the bundle goes to stdout, framed after the report (how a fleet pod, which has
/// no writable file, sends its node's bundle back through its log).
pub const TO_STDOUT: &str = "-";

/// Runs `check` as the config says: plain, recording a bundle, or replaying one. With
/// `--bundle -`, also the framed bundle for the caller to print after the report.
pub fn run_check(cfg: &Config, extra: &[DynCheck]) -> Result<(Report, Option<String>)> {
    match (&cfg.from_bundle, &cfg.bundle) {
        (Some(b), _) => Ok((replay(cfg, extra, b)?, None)),
        (None, Some(b)) if b.as_os_str() == TO_STDOUT => {
            let (report, bytes) = record_bytes(cfg, extra)?;
            // Too large to send, or to keep: the report still goes out, and the CLI is told why no
            // bundle came.
            let framed = match bytes {
                Ok(bytes) => frame::encode(&bytes).unwrap_or_else(|e| frame::omitted(&e)),
                Err(e) => frame::omitted(&format!("{e:#}")),
            };
            Ok((report, Some(framed)))
        }
        (None, Some(b)) => Ok((record(cfg, extra, b)?, None)),
        (None, None) => Ok((engine::run_with(cfg, extra)?, None)),
    }
}

/// The instant a recording is made: `SOURCE_DATE_EPOCH` when set (reproducible bundles), else now.
pub fn created_at() -> SystemTime {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or_else(SystemTime::now, |s| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(s)
        })
}

pub fn rfc3339(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
        .unwrap_or_default()
}

/// Runs the checks on the host while recording every input, writes the bundle, hands back the report.
pub fn record(cfg: &Config, extra: &[DynCheck], path: &Path) -> Result<Report> {
    let (report, bytes) = record_bytes(cfg, extra)?;
    write_file(path, &bytes?)?;
    Ok(report)
}

/// Runs the checks on the host while recording every input: the report, and the bundle's bytes or
/// why the recording cannot be kept as a bundle.
pub fn record_bytes(cfg: &Config, extra: &[DynCheck]) -> Result<(Report, Result<Vec<u8>>)> {
    let rec = Arc::new(Recorder::default());
    let host = engine::host_of(cfg)?.recording(rec.clone());
    let now = created_at();
    let created = rfc3339(now);
    // The report and the recording share one clock, to the second, so a replay judges alike.
    let now = jiff::Timestamp::from_second(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    )
    .map(SystemTime::from)
    .unwrap_or(now);
    let (report, facts) = engine::run_on(cfg, extra, &host, now)?;
    let header = writer::Header {
        command: format::CHECK.into(),
        created_at: created,
        command_line: mask_secrets(&std::env::args().collect::<Vec<_>>().join(" ")),
        recorded: Recorded {
            root: host.root().display().to_string(),
            live: host.is_live(),
            live_network: cfg.live_network,
        },
        config: format::RecordedConfig::of(cfg),
        sources: facts.names().map(String::from).collect(),
    };
    let bytes = writer::write(header, &report, rec.entries());
    Ok((report, bytes))
}

/// Writes the bundle of a recorded run to `path` (`--bundle FILE`) and says so on stderr.
pub fn save(path: &Path, header: writer::Header, report: &Report, rec: &Recorder) -> Result<()> {
    write_file(path, &writer::write(header, report, rec.entries())?)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes)
        .with_context(|| format!("cannot write --bundle {}", path.display()))?;
    crate::core::stderr::note(&format!(
        "bundle → {} ({} KiB)",
        path.display(),
        bytes.len().div_ceil(1024)
    ));
    Ok(())
}

/// Reads a bundle made by `command` (`--from-bundle FILE`), and the instant it was recorded at: a
/// replay judges time as of then.
pub fn open_as(path: &Path, command: &str) -> Result<(Bundle, SystemTime)> {
    let context = || format!("--from-bundle {}", path.display());
    let b = reader::open(path).with_context(context)?;
    let now = recorded_at(&b, command).with_context(context)?;
    Ok((b, now))
}

/// The instant a bundle made by `command` was recorded at; a bundle of another command is refused.
fn recorded_at(b: &Bundle, command: &str) -> Result<SystemTime, BundleError> {
    if b.manifest.command != command {
        return Err(BundleError::Command {
            made_by: b.manifest.command.clone(),
            wanted: format!("`k8sdoctor {command}`"),
        });
    }
    jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%:z", &b.manifest.created_at)
        .or_else(|_| b.manifest.created_at.parse::<jiff::Timestamp>())
        .map(SystemTime::from)
        .map_err(|e| BundleError::Damaged(format!("created_at: {e}")))
}

/// Evaluates the checks again from a bundle (of one node, with `--node`, from a fleet bundle): the
/// same sources, answered by the recording.
pub fn replay(cfg: &Config, extra: &[DynCheck], path: &Path) -> Result<Report> {
    let context = || format!("--from-bundle {}", path.display());
    let b = match &cfg.from_bundle_node {
        Some(node) => fleet::node_bundle(path, node),
        None => reader::open(path).map_err(Into::into),
    }
    .with_context(context)?;
    replay_bundle(cfg, extra, b).with_context(context)
}

/// Evaluates the checks again from a `check` bundle already read.
pub fn replay_bundle(cfg: &Config, extra: &[DynCheck], b: Bundle) -> Result<Report> {
    let now = recorded_at(&b, format::CHECK)?;
    let cfg = b.manifest.config.apply(cfg);
    let host = Host::replaying(&b.manifest.recorded, Arc::new(b.replay));
    engine::run_on(&cfg, extra, &host, now).map(|(r, _)| r)
}
