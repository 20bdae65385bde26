//! `join-check --bundle FILE` records every input the steps read (masked, the token's secret never)
//! in a bundle of the same format as `check`'s; `join-check --from-bundle FILE` judges the steps again
//! from it alone, with no resolver, network or host file.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Result;

use super::{JoinOptions, Outcome, discover, redact};
use crate::{
    bundle::{self, format, writer},
    core::{
        config::Config,
        host::Host,
        tape::{Recorded, Recorder, Replay},
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
    let timeout = Duration::from_millis(b.manifest.config.timeout_ms);
    replay_tape(opts, b.replay, &b.manifest.recorded, created, timeout)
}

/// Judges the steps from a recording (what [`replay`] read from a bundle; the fuzz target's input).
pub fn replay_tape(
    opts: &JoinOptions,
    replay: Replay,
    recorded: &Recorded,
    created: SystemTime,
    timeout: Duration,
) -> Result<Report> {
    let opts = JoinOptions {
        timeout,
        command: Vec::new(),
        ..opts.clone()
    };
    let host = Host::replaying(recorded, Arc::new(replay));
    Ok(discover(&opts, &host, created)?.report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{check::Status, tape::Entry};

    /// The fuzz seed: a recorded join whose signature verdict is `valid`, and the same with it flipped.
    fn replayed(verdict: &str) -> Vec<(String, Status)> {
        let seed = include_str!("../../fuzz/seeds/join_replay/healthy.json")
            .replace("\"value\": \"valid\"", &format!("\"value\": {verdict}"));
        let entries: Vec<Entry> = serde_json::from_str(&seed).unwrap();
        let recorded = Recorded {
            root: "/".into(),
            live: true,
            live_network: false,
        };
        let r = replay_tape(
            &JoinOptions::default(),
            Replay::new(
                entries,
                super::super::STEPS.iter().map(|s| s.to_string()).collect(),
            ),
            &recorded,
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(10),
        )
        .unwrap();
        r.results.into_iter().map(|c| (c.id, c.status)).collect()
    }

    #[test]
    fn the_token_step_is_judged_from_the_recorded_verdict_without_the_secret() {
        let ok = replayed("\"valid\"");
        assert_eq!(ok[4], ("join.token".into(), Status::Pass), "{ok:?}");
        let wrong = replayed("\"wrong-secret\"");
        assert_eq!(wrong[4], ("join.token".into(), Status::Fail), "{wrong:?}");
        let garbage = replayed("17");
        assert_eq!(
            garbage[4],
            ("join.token".into(), Status::Error),
            "{garbage:?}"
        );
    }
}
