//! `join-check --bundle FILE` records every input the steps read (masked, the token's secret never)
//! in a bundle of the same format as `check`'s; `join-check --from-bundle FILE` judges the steps again
//! from it alone, with no resolver, network or host file.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Result;

use super::{JoinOptions, Outcome, discover, redact};
use crate::{
    bundle::{self, format, writer},
    core::{
        config::Config,
        host::Host,
        tape::{Recorded, Recorder},
    },
    report::Report,
};

/// Runs the steps on the live network while recording what they read, writes the bundle, hands back
/// the report.
pub fn record(opts: &JoinOptions, path: &Path) -> Result<Report> {
    let rec = Arc::new(Recorder::default());
    let host = Host::live().recording(rec.clone());
    let created = bundle::created_at();
    let out = discover(opts, &host, created)?;
    let header = writer::Header {
        command: format::JOIN_CHECK.into(),
        created_at: bundle::rfc3339(created),
        command_line: command_line(opts, &out),
        recorded: Recorded {
            root: host.root().display().to_string(),
            live: host.is_live(),
            live_network: false,
        },
        config: format::RecordedConfig::of(&Config {
            timeout: opts.timeout,
            ..Config::default()
        }),
        sources: out.ran.iter().map(|s| s.to_string()).collect(),
    };
    bundle::save(path, header, &out.report, &rec)?;
    Ok(out.report)
}

/// The command line that made the bundle: k8sdoctor's own words as given, then the join command as
/// discovery read it (token secret masked, values of the flags it ignores left out).
fn command_line(opts: &JoinOptions, out: &Outcome) -> String {
    let argv: Vec<String> = std::env::args().collect();
    let own = argv.len().saturating_sub(opts.command.len());
    let mut line = argv[..own].join(" ");
    if !line.ends_with(" --") {
        line.push_str(" --");
    }
    line.push(' ');
    line.push_str(&out.command.shown());
    redact(&out.secrets, &line)
}

/// Judges the steps again from a bundle that `join-check --bundle` made: the recorded command,
/// network answers, clock and signature verdict, as of the instant it was recorded.
pub fn replay(opts: &JoinOptions, path: &Path) -> Result<Report> {
    let (b, created) = bundle::open_as(path, format::JOIN_CHECK)?;
    let opts = JoinOptions {
        timeout: Duration::from_millis(b.manifest.config.timeout_ms),
        command: Vec::new(),
        ..opts.clone()
    };
    let host = Host::replaying(&b.manifest.recorded, Arc::new(b.replay));
    Ok(discover(&opts, &host, created)?.report)
}
