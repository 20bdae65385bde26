//! `k8sdoctor join-check`: runs the discovery steps of a `kubeadm join` command one by one, as
//! kubeadm does, and reports each as its own result; after a failing step the later ones are skipped.
//! What the steps read of the world goes through the host's tape (`tape`), so a run can be recorded
//! into a bundle and judged again from it ([`bundle`]).
//!
//! The steps are catalog entries (`checks/join.*.toml`) but not host checks: `check` never selects
//! them, [`STEPS`] lists them, and the catalog test covers registry and steps together.

pub mod bundle;
pub(crate) mod command;
mod jws;
pub(crate) mod net;
mod pin;
mod probe;
pub(crate) mod steps;
mod tape;
mod token;

use std::{
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Result, bail};
use rustls::pki_types::UnixTime;

pub use command::{CommandError, JoinCommand, shell_words};
pub use jws::detached_signature;
pub use pin::Cert;
pub use token::{CaHash, Token};

use crate::{
    core::catalog,
    core::check::{Finding, Role, Status},
    core::host::Host,
    core::tape::in_source,
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
#[derive(Debug, Clone, Default)]
pub struct JoinOptions {
    /// The join command: its words, or one pasted line as a single word (none with `from_bundle`).
    pub command: Vec<String>,
    /// Deadline for the whole check.
    pub timeout: Duration,
    /// Log each step to stderr (secrets masked).
    pub verbose: bool,
    // -- join-check bundles (docs/bundle.md) --
    /// `--bundle FILE`: also record every input the steps read, secrets masked.
    pub bundle: Option<PathBuf>,
    /// `--from-bundle FILE`: judge the steps again from a recording alone.
    pub from_bundle: Option<PathBuf>,
}

/// Runs the steps and records them; once one fails, the rest are skipped naming it.
struct Run {
    results: Vec<CheckResult>,
    stopped_by: Option<(&'static str, Status)>,
    secrets: Vec<String>,
    verbose: bool,
    /// The steps that ran: the sources a bundle holds inputs of.
    ran: Vec<&'static str>,
}

/// Masks every secret: token-shaped strings, and the token's own secret in whatever shape it came.
fn redact(secrets: &[String], s: &str) -> String {
    secrets.iter().fold(mask_secrets(s), |s, secret| {
        s.replace(secret.as_str(), &"*".repeat(secret.len()))
    })
}

impl Run {
    fn redact(&self, s: &str) -> String {
        redact(&self.secrets, s)
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
            self.stopped_by = Some((id, finding.status));
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
    /// What the step reads of the world goes through the tape under the step's id.
    fn step<T>(&mut self, id: &'static str, f: impl FnOnce(&Self) -> steps::Step<T>) -> Option<T> {
        let t = Instant::now();
        if let Some((by, status)) = self.stopped_by {
            let how = match status {
                Status::Fail => "failed",
                Status::Skip => "was skipped",
                _ => "could not run",
            };
            self.record(id, Finding::skip(format!("not run: {by} {how}")), t);
            return None;
        }
        self.log(&format!("[{id}] running"));
        self.ran.push(id);
        match in_source(id, || f(self)) {
            Ok((finding, v)) => {
                self.record(id, finding, t);
                Some(v)
            }
            Err(finding) => {
                let status = finding.status;
                self.record(id, finding, t);
                // Later steps need this one's value: they never run after an `Err`, whatever its status.
                self.stopped_by = Some((id, status));
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

/// Runs `join-check`: the report, or an error when the command cannot be checked at all. With
/// `--bundle` the run is recorded; with `--from-bundle` it is judged from a recording.
pub fn run(opts: &JoinOptions) -> Result<Report> {
    match (&opts.from_bundle, &opts.bundle) {
        (Some(b), _) => bundle::replay(opts, b),
        (None, Some(b)) => bundle::record(opts, b),
        (None, None) => Ok(discover(opts, &Host::live(), SystemTime::now())?.report),
    }
}

/// A finished run: its report, the steps that ran, and the command as recorded (secrets masked).
struct Outcome {
    report: Report,
    ran: Vec<&'static str>,
    command: JoinCommand,
    secrets: Vec<String>,
}

/// The steps, reading the world through `host`'s tape: the live host, recording or not, or a recording.
fn discover(opts: &JoinOptions, host: &Host, started: SystemTime) -> Result<Outcome> {
    let clock = Instant::now();
    let deadline = clock + opts.timeout;
    // The words are read here, except on replay, where the command is the bundle's.
    let live = match host.replay() {
        None => Some(read_command(&opts.command)?),
        Some(_) => None,
    };
    let secrets: Vec<String> = live
        .iter()
        .flat_map(|cmd| {
            // The token's secret, and that of a token given where the endpoint goes.
            cmd.token
                .iter()
                .filter(|t| t.split_once('.').is_some_and(|(_, s)| s.len() >= 8))
                .chain(
                    cmd.endpoints
                        .iter()
                        .filter(|e| command::looks_like_token(e)),
                )
                .filter_map(|t| Some(t.split_once('.')?.1.to_string()))
        })
        .collect();
    let recorded = in_source("join.parse", || {
        tape::ask(host, "command", || {
            live.as_ref().map(|cmd| tape::Command {
                command: cmd.masked(),
                token: cmd
                    .token
                    .as_deref()
                    .map(|t| steps::judge_token(t).map(|t| t.id)),
            })
        })
    });
    let recorded = match recorded {
        Ok(Some(r)) => r,
        Ok(None) => bail!("the bundle's join command is empty (a damaged bundle)"),
        Err(f) => bail!("the bundle's join command: {}", f.message),
    };
    // The token that verifies the signature: the real one, or on replay its id alone.
    let token = recorded.token.clone().map(|t| {
        t.map(|id| {
            live.as_ref()
                .and_then(|c| Token::parse(c.token.as_deref()?).ok())
                .filter(|t| t.id == id)
                .unwrap_or_else(|| Token::withheld(&id))
        })
    });
    let mut run = Run {
        results: Vec::new(),
        stopped_by: None,
        secrets,
        verbose: opts.verbose,
        ran: Vec::new(),
    };
    let cmd = &recorded.command;
    let disc = run.step("join.parse", |_| steps::parse_with(cmd, token));
    let host_ep = disc.as_ref().map(|d| d.endpoint.clone());

    let mut stream = None;
    run.step("join.endpoint", |r| {
        let ep = host_ep.as_ref().expect("parse passed");
        r.log(&format!("[join.endpoint] resolving {}", ep.host));
        let addrs = tape::ask(host, &format!("resolve {}", ep.authority()), || {
            net::resolve(&ep.host, ep.port, deadline)
        })?
        .map_err(probe::resolve_failed)?;
        r.log(&format!("[join.endpoint] connecting to {addrs:?}"));
        let outcome = tape::ask(host, "connect", || {
            tape::connect(&addrs, deadline, &mut stream)
        })?;
        probe::connect(ep, &addrs, outcome, opts.timeout)
    });

    let mut session = None;
    let chain = run.step("join.tls", |_| {
        let ep = host_ep.as_ref().expect("endpoint passed");
        let hs = tape::ask(host, "handshake", || {
            tape::handshake(stream.take(), &ep.host, deadline, &mut session)
        })?;
        probe::tls(hs)
    });

    let url = host_ep
        .as_ref()
        .map(|ep| format!("https://{}{}", ep.authority(), steps::CLUSTER_INFO_PATH));
    let mut date = None;
    let mut local = None;
    let mut reached = None;
    // The response as received: the masking layer turns the token's signature (a JWS) into `eyJ****`
    // in what is recorded, so the signature is judged on this, and the verdict recorded.
    let mut received = None;
    let info = run.step("join.cluster-info", |r| {
        let ep = host_ep.as_ref().expect("tls passed");
        let url = url.as_deref().unwrap_or_default();
        r.log(&format!("[join.cluster-info] GET {url}"));
        let got = tape::ask(host, &format!("GET {}", steps::CLUSTER_INFO_PATH), || {
            let tls = session
                .as_mut()
                .ok_or_else(|| "no TLS session to send the request on".to_string())?;
            let resp = net::get(tls, &ep.authority(), steps::CLUSTER_INFO_PATH, deadline)?;
            received = Some(resp.clone());
            Ok::<_, String>(tape::Answer::from(resp))
        })?;
        let resp = got
            .and_then(tape::Answer::response)
            .map_err(|e| Finding::fail(e).evidence(format!("GET {url}")))?;
        // This node's clock as the answer came, to the second: the clock step and the chain's validity.
        local = Some(tape::ask(host, "clock", || {
            jiff::Timestamp::now().as_second()
        })?);
        date = resp.header("date").map(String::from);
        reached = Some(ClusterInfo {
            server: format!("https://{}", ep.authority()),
            server_version: None,
            context: None,
        });
        steps::cluster_info(&resp, url)
    });
    let local = local.unwrap_or_else(|| jiff::Timestamp::now().as_second());

    let disc_ref = disc.as_ref();
    run.step("join.token", |_| {
        let info = info.as_ref().expect("cluster-info passed");
        let token = &disc_ref.expect("parse passed").token;
        let signed = received
            .as_ref()
            .and_then(|r| steps::cluster_info(r, "").ok())
            .map(|(_, i)| i);
        steps::token(info, token, |sig, content| {
            let key = format!("{}{}", steps::JWS_PREFIX, token.id);
            tape::ask(host, &key, || {
                let (sig, content) = signed
                    .as_ref()
                    .and_then(|i| Some((i.data.get(&key)?.as_str(), i.kubeconfig())))
                    .unwrap_or((sig, content));
                jws::verify(sig, content, token)
            })
        })
    });
    run.step("join.ca-pin", |_| {
        steps::ca_pin(
            info.as_ref().expect("cluster-info passed"),
            disc_ref.expect("parse passed"),
            chain.as_deref().unwrap_or_default(),
            UnixTime::since_unix_epoch(Duration::from_secs(local.max(0) as u64)),
            date.as_deref(),
        )
    });
    run.step("join.clock", |_| {
        let at = jiff::Timestamp::from_second(local).unwrap_or_else(|_| jiff::Timestamp::now());
        Ok((steps::clock(date.as_deref(), at), ()))
    });

    let role = if cmd.control_plane {
        Role::ControlPlane
    } else {
        Role::Worker
    };
    let host_info = crate::core::host_info::host_info(host, role);
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
    Ok(Outcome {
        report,
        ran: run.ran,
        command: recorded.command,
        secrets: run.secrets,
    })
}
