//! Bundles: `check --bundle FILE` records every input the run's sources read (masked) next to its
//! report; `check --from-bundle FILE` evaluates the checks again from those inputs alone, through the
//! same sources, with no host file, command or network. (`join-check`'s bundles are the same format,
//! made and replayed by `join::bundle` through what this module lends it.)

pub mod format;
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

/// Runs `check` as the config says: plain, recording a bundle, or replaying one.
pub fn run_check(cfg: &Config, extra: &[DynCheck]) -> Result<Report> {
    match (&cfg.from_bundle, &cfg.bundle) {
        (Some(b), _) => replay(cfg, extra, b),
        (None, Some(b)) => record(cfg, extra, b),
        (None, None) => engine::run_with(cfg, extra),
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
    save(path, header, &report, &rec)?;
    Ok(report)
}

/// Writes the bundle of a recorded run to `path` (`--bundle FILE`) and says so on stderr.
pub fn save(path: &Path, header: writer::Header, report: &Report, rec: &Recorder) -> Result<()> {
    let entries = rec.entries();
    let inputs = entries.len();
    let bytes = writer::write(header, report, entries)?;
    std::fs::write(path, &bytes)
        .with_context(|| format!("cannot write --bundle {}", path.display()))?;
    crate::core::stderr::note(&format!(
        "bundle of {inputs} inputs → {} ({} KiB)",
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
    if b.manifest.command != command {
        return Err(BundleError::Command {
            made_by: b.manifest.command.clone(),
            wanted: format!("`k8sdoctor {command}`"),
        })
        .with_context(context);
    }
    let now = jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%:z", &b.manifest.created_at)
        .or_else(|_| b.manifest.created_at.parse::<jiff::Timestamp>())
        .map(SystemTime::from)
        .map_err(|e| BundleError::Damaged(format!("created_at: {e}")))
        .with_context(context)?;
    Ok((b, now))
}

/// Evaluates the checks again from a bundle: the same sources, answered by the recording.
pub fn replay(cfg: &Config, extra: &[DynCheck], path: &Path) -> Result<Report> {
    let (b, now) = open_as(path, format::CHECK)?;
    let cfg = b.manifest.config.apply(cfg);
    let host = Host::replaying(&b.manifest.recorded, Arc::new(b.replay));
    engine::run_on(&cfg, extra, &host, now).map(|(r, _)| r)
}
