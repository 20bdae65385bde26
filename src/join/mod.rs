//! `k8sdoctor join-check`: runs the discovery steps of a `kubeadm join` command one by one, as
//! kubeadm does, and reports each as its own result; after a failing step the later ones are skipped.
//!
//! The steps are catalog entries (`checks/join.*.toml`) but not host checks: `check` never selects
//! them, [`STEPS`] lists them, and the catalog test covers registry and steps together.

pub(crate) mod command;
mod jws;
pub(crate) mod net;
mod pin;
mod probe;
pub(crate) mod steps;
mod token;

use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use rustls::pki_types::UnixTime;

pub use command::{CommandError, JoinCommand, shell_words};
pub use jws::detached_signature;
pub use pin::Cert;
pub use token::{CaHash, Token};

use crate::{
    core::catalog,
    core::check::{Finding, Role, Status},
    core::host::Host,
    mask::mask_secrets,
    report::{CheckResult, ClusterInfo, Report},
};

/// The result ids of join-check, in the order they run.
pub const STEPS: &[&str] = &[
    "join.parse",
    "join.endpoint",
    "join.tls",
    "join.cluster-info",
    "join.token",
    "join.ca-pin",
    "join.clock",
];

/// What `join-check` needs, built by `main.rs` from its flags.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// The join command: its words, or one pasted line as a single word.
    pub command: Vec<String>,
    /// Deadline for the whole check.
    pub timeout: Duration,
    /// Log each step to stderr (secrets masked).
    pub verbose: bool,
}

/// Runs the steps and records them; once one fails, the rest are skipped naming it.
struct Run {
    results: Vec<CheckResult>,
    stopped_by: Option<&'static str>,
    secrets: Vec<String>,
    verbose: bool,
}

impl Run {
    /// Masks every secret: token-shaped strings, and the token's own secret in whatever shape it came.
    fn redact(&self, s: &str) -> String {
        self.secrets.iter().fold(mask_secrets(s), |s, secret| {
            s.replace(secret.as_str(), &"*".repeat(secret.len()))
        })
    }

    fn log(&self, msg: &str) {
        if self.verbose {
            crate::core::stderr::note(&self.redact(msg));
        }
    }

    fn record(&mut self, id: &'static str, finding: Finding, started: Instant) {
        let entry =
            catalog::find(id).unwrap_or_else(|| panic!("join step {id} has no catalog entry"));
        if finding.status >= Status::Fail {
            self.stopped_by = Some(id);
        }
        self.log(&format!(
            "[{id}] {}: {}",
            finding.status.as_str(),
            finding.message
        ));
        self.results.push(CheckResult::from_finding(
            entry,
            finding,
            started.elapsed().as_millis() as u64,
        ));
    }

    /// Runs one step unless an earlier one failed; `Some` with the step's value when it did not fail.
    fn step<T>(&mut self, id: &'static str, f: impl FnOnce(&Self) -> steps::Step<T>) -> Option<T> {
        let t = Instant::now();
        if let Some(by) = self.stopped_by {
            self.record(id, Finding::skip(format!("not run: {by} failed")), t);
            return None;
        }
        self.log(&format!("[{id}] running"));
        match f(self) {
            Ok((finding, v)) => {
                self.record(id, finding, t);
                Some(v)
            }
            Err(finding) => {
                self.record(id, finding, t);
                // Later steps need this one's value: they never run after an `Err`, whatever its status.
                self.stopped_by = Some(id);
                None
            }
        }
    }
}

/// Refuses to start (exit 2) when the words are not a `kubeadm join` command at all.
fn read_command(words: &[String]) -> Result<JoinCommand, CommandError> {
    let words = match words {
        [one] => shell_words(one)?,
        many => many.to_vec(),
    };
    JoinCommand::parse(&words)
}

/// Runs `join-check`: the report, or an error when the command cannot be checked at all.
pub fn run(opts: &JoinOptions) -> Result<Report> {
    let started = SystemTime::now();
    let clock = Instant::now();
    let deadline = clock + opts.timeout;
    let cmd = read_command(&opts.command)?;
    let mut run = Run {
        results: Vec::new(),
        stopped_by: None,
        // The token's secret, and that of a token given where the endpoint goes.
        secrets: cmd
            .token
            .iter()
            .filter(|t| t.split_once('.').is_some_and(|(_, s)| s.len() >= 8))
            .chain(cmd.endpoints.iter().filter(|e| steps::looks_like_token(e)))
            .filter_map(|t| Some(t.split_once('.')?.1.to_string()))
            .collect(),
        verbose: opts.verbose,
    };
    let disc = run.step("join.parse", |_| steps::parse(&cmd));
    let host = disc.as_ref().map(|d| d.endpoint.clone());

    let tcp = run.step("join.endpoint", |r| {
        let ep = host.as_ref().expect("parse passed");
        r.log(&format!("[join.endpoint] resolving {}", ep.host));
        let addrs = probe::resolve(ep, deadline)?;
        r.log(&format!("[join.endpoint] connecting to {addrs:?}"));
        probe::connect(ep, &addrs, deadline, opts.timeout)
    });

    let tls = run.step("join.tls", |_| {
        let ep = host.as_ref().expect("endpoint passed");
        let tcp = tcp.expect("endpoint passed");
        probe::tls(tcp, ep, deadline)
    });

    let url = host
        .as_ref()
        .map(|ep| format!("https://{}{}", ep.authority(), steps::CLUSTER_INFO_PATH));
    let mut chain = Vec::new();
    let mut date = None;
    let mut reached = None;
    let info = run.step("join.cluster-info", |r| {
        let ep = host.as_ref().expect("tls passed");
        let mut tls = tls.expect("tls passed");
        chain = std::mem::take(&mut tls.chain);
        let url = url.as_deref().unwrap_or_default();
        r.log(&format!("[join.cluster-info] GET {url}"));
        let resp = net::get(
            &mut tls,
            &ep.authority(),
            steps::CLUSTER_INFO_PATH,
            deadline,
        )
        .map_err(|e| Finding::fail(e).evidence(format!("GET {url}")))?;
        date = resp
            .header("date")
            .map(String::from)
            .map(|d| (d, jiff::Timestamp::now()));
        reached = Some(ClusterInfo {
            server: format!("https://{}", ep.authority()),
            server_version: None,
            context: None,
        });
        steps::cluster_info(&resp, url)
    });

    let disc_ref = disc.as_ref();
    run.step("join.token", |_| {
        steps::token(
            info.as_ref().expect("cluster-info passed"),
            &disc_ref.expect("parse passed").token,
        )
    });
    run.step("join.ca-pin", |_| {
        steps::ca_pin(
            info.as_ref().expect("cluster-info passed"),
            disc_ref.expect("parse passed"),
            &chain,
            UnixTime::now(),
            date.as_ref().map(|(d, _)| d.as_str()),
        )
    });
    run.step("join.clock", |_| {
        let finding = match &date {
            Some((d, at)) => steps::clock(Some(d), *at),
            None => steps::clock(None, jiff::Timestamp::now()),
        };
        Ok((finding, ()))
    });

    let role = if cmd.control_plane {
        Role::ControlPlane
    } else {
        Role::Worker
    };
    let host_info = Host::new("/")
        .map(|h| crate::core::host_info::host_info(&h, role))
        .unwrap_or_default();
    let mut report = Report::new(
        started,
        clock.elapsed().as_millis() as u64,
        host_info,
        reached,
        std::mem::take(&mut run.results),
    );
    for r in &mut report.results {
        r.message = run.redact(&r.message);
        for e in &mut r.evidence {
            *e = run.redact(e);
        }
        r.remediation = r.remediation.as_deref().map(|s| run.redact(s));
    }
    Ok(report)
}
