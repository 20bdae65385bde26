//! The engine: picks the checks, gathers the sources they need concurrently under one deadline, runs each pure check, builds the report.

use std::{
    collections::{BTreeMap, BTreeSet},
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Instant, SystemTime},
};

use anyhow::{Context, Result, bail};

use super::{
    catalog,
    check::{CheckDef, Ctx, DynCheck, Finding, Outcome, Role, Status},
    config::{Config, RoleChoice},
    facts::FactError,
    host::Host,
    host_info::host_info,
    source::{AnySource, Facts, Gather, Gathered, Io, panic_text},
};
use crate::{
    checks,
    report::{CheckResult, ClusterInfo, Report},
};

/// Gathers the sources: the file-only ones on this thread, every command or network source that will
/// run a command or reach the network in this run on a thread of its own; a source not back by the
/// deadline becomes an error naming the timeout.
/// Also hands back how long each source took, in milliseconds.
fn gather_all(
    sources: &[&'static dyn AnySource],
    host: &Host,
    cfg: &Config,
) -> (Facts, BTreeMap<&'static str, u64>) {
    let timeout = cfg.timeout;
    let deadline = Instant::now() + timeout;
    let shared = Arc::new((host.clone(), cfg.clone()));
    // Each worker adds what it gathered to `got` as it goes and says once on `tx` that it is done: one
    // wake-up per worker rather than one per source, and whatever a late worker got by the deadline counts.
    let got: Arc<Mutex<Vec<Gathered>>> = Arc::default();
    let (tx, rx) = mpsc::channel::<()>();
    let (files, own): (Vec<&'static dyn AnySource>, Vec<_>) = sources
        .iter()
        .partition(|s| s.io_here(host, cfg) == Io::Files);
    let gather_group =
        |group: &[&'static dyn AnySource], g: &Gather, got: &Mutex<Vec<Gathered>>| {
            let mut sent = 0;
            for source in group {
                let _ = g.value(*source); // kept in `g`, handed over below
                let done = g.gathered_since(sent);
                sent += done.len();
                got.lock().unwrap_or_else(|p| p.into_inner()).extend(done);
            }
        };
    let mut workers = 0;
    for source in own {
        let (tx, shared, got) = (tx.clone(), shared.clone(), got.clone());
        workers += 1;
        thread::spawn(move || {
            gather_group(&[source], &Gather::new(&shared.0, &shared.1), &got);
            let _ = tx.send(());
        });
    }
    drop(tx);
    // File sources never block (every open is non-blocking, every read of a regular file, capped): they
    // are read here while the others run, with no thread of their own.
    gather_group(&files, &Gather::new(host, cfg), &got);
    while workers > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if rx.recv_timeout(left).is_err() {
            break;
        }
        workers -= 1;
    }
    let mut facts = Facts::default();
    let mut pending: BTreeSet<&str> = sources.iter().map(|s| s.name()).collect();
    let mut took = BTreeMap::new();
    for done in std::mem::take(&mut *got.lock().unwrap_or_else(|p| p.into_inner())) {
        pending.remove(done.name);
        took.insert(done.name, done.ms);
        facts.insert(done.name, done.value);
    }
    for source in sources.iter().filter(|s| pending.contains(s.name())) {
        took.insert(source.name(), timeout.as_millis() as u64);
        facts.insert(
            source.name(),
            Err(FactError::Unreadable(format!(
                "timed out after {:.1}s (--timeout) gathering {} facts",
                timeout.as_secs_f64(),
                source.name()
            ))),
        );
    }
    (facts, took)
}

/// Runs one pure check; a panic becomes an `error` finding and the run goes on.
pub fn evaluate(def: &CheckDef, facts: &Facts, ctx: &Ctx) -> Finding {
    evaluate_rule(&def.run, facts, ctx)
}

/// [`evaluate`] for any rule: a built-in's `fn` or a run-time check's closure.
fn evaluate_rule(run: &dyn Fn(&Facts, &Ctx) -> Outcome, facts: &Facts, ctx: &Ctx) -> Finding {
    match catch_unwind(AssertUnwindSafe(|| run(facts, ctx))) {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => e.into(),
        Err(p) => Finding::error(format!("check panicked: {}", panic_text(&*p))),
    }
}

/// The role to check for: `--role`, or control plane when the API server's static pod manifest exists.
pub fn resolve_role(choice: RoleChoice, host: &Host) -> Role {
    match choice {
        RoleChoice::Fixed(r) => r,
        RoleChoice::Auto if host.exists("/etc/kubernetes/manifests/kube-apiserver.yaml") => {
            Role::ControlPlane
        }
        RoleChoice::Auto => Role::Worker,
    }
}

/// One check of the run, built-in or run-time: its id, sources, catalog entry and rule.
struct Planned<'a> {
    id: &'a str,
    needs: &'a [&'static dyn AnySource],
    entry: &'a catalog::Entry,
    run: &'a dyn Fn(&Facts, &Ctx) -> Outcome,
}

/// Runs `check`: the whole flow from config to report.
pub fn run(cfg: &Config) -> Result<Report> {
    run_with(cfg, &[])
}

/// Like [`run`], with run-time checks (`--policy`) beside the built-in ones.
pub fn run_with(cfg: &Config, extra: &[DynCheck]) -> Result<Report> {
    run_on(cfg, extra, &host_of(cfg)?, SystemTime::now()).map(|(report, _)| report)
}

/// The host the config names: its root, with the network read live under `--live-network`.
pub fn host_of(cfg: &Config) -> Result<Host> {
    let host = Host::new(&cfg.root).context("cannot read host files")?;
    Ok(if cfg.live_network {
        host.with_live_network()
    } else {
        host
    })
}

/// Like [`run`], and also hands back the gathered facts (for `fix`, whose planners read the same facts the checks did).
pub fn run_with_facts(cfg: &Config) -> Result<(Report, Facts)> {
    run_on(cfg, &[], &host_of(cfg)?, SystemTime::now())
}

/// The run on a given host (one that records, or a recording), with `now` as the checks' clock (a
/// replay judges expiry as of the recording).
pub fn run_on(
    cfg: &Config,
    extra: &[DynCheck],
    host: &Host,
    now: SystemTime,
) -> Result<(Report, Facts)> {
    let started = now;
    let clock = Instant::now();
    // One state of the file tree for the whole run: a path several sources read is opened once.
    let host = &host.for_one_run();
    // Built-in checks with their catalog entries, then the run-time ones (site policies), alike.
    let all: Vec<Planned> = checks::registry()
        .map(|c| Planned {
            id: c.id,
            needs: c.needs,
            entry: catalog::find(c.id)
                .unwrap_or_else(|| panic!("check {} has no catalog entry", c.id)),
            run: &c.run,
        })
        .chain(extra.iter().map(|d| Planned {
            id: &d.entry.id,
            needs: d.needs,
            entry: &d.entry,
            run: &*d.run,
        }))
        .collect();
    let known: Vec<&str> = all.iter().map(|c| c.id).collect();
    // kubeadm's preflight names (`Swap`, `Port-6443` ...) select the checks that cover them.
    let selection = cfg.selection.expanded();
    let unknown = selection.unknown_ids(&known);
    if !unknown.is_empty() {
        // A catalog entry no host check implements is a join-check step or the manifests result.
        let elsewhere = |prefix: &str| {
            unknown
                .iter()
                .any(|u| catalog::find(u).is_some() && u.to_ascii_lowercase().starts_with(prefix))
        };
        let policy = unknown
            .iter()
            .any(|u| u.to_ascii_lowercase().starts_with("policy."));
        bail!(
            "unknown check id(s): {} (see `k8sdoctor list`){}{}{}",
            unknown.join(", "),
            if elsewhere("join.") {
                "; join.* are the steps of `k8sdoctor join-check -- kubeadm join ...`"
            } else {
                ""
            },
            if elsewhere("manifests.") {
                "; manifests.api-version is the result of `k8sdoctor manifests FILE...`"
            } else {
                ""
            },
            if policy {
                "; policy.* checks come from the --policy FILE that defines them"
            } else {
                ""
            }
        );
    }
    if !cfg.offline && host.replay().is_none() {
        // A kubeconfig the user named but that cannot be read (or lacks --context) is exit 2.
        crate::checks::cluster::connect::load_named(cfg)?;
    }
    let role = resolve_role(cfg.role, host);
    let ctx = Ctx { role, now: started };
    let mut selected: Vec<Planned> = all
        .into_iter()
        .filter(|c| selection.selects(c.id))
        .collect();
    selected.sort_by(|a, b| a.id.cmp(b.id));
    let mut sources: Vec<&'static dyn AnySource> = Vec::new();
    for c in selected.iter().filter(|c| c.entry.applies_to(role)) {
        for s in c.needs {
            if !sources.iter().any(|x| x.name() == s.name()) {
                sources.push(*s);
            }
        }
    }
    // Sources read the inputs of the run-time checks that run, and only of those.
    let mut gather_cfg = cfg.clone();
    gather_cfg.extra_inputs = extra
        .iter()
        .filter(|d| d.entry.applies_to(role) && selection.selects(&d.entry.id))
        .flat_map(|d| d.inputs.iter().cloned())
        .collect();
    let (facts, took) = gather_all(&sources, host, &gather_cfg);
    let results: Vec<CheckResult> = selected
        .iter()
        .map(|c| {
            let t = Instant::now();
            let entry = c.entry;
            let finding = if entry.applies_to(role) {
                evaluate_rule(c.run, &facts, &ctx)
            } else {
                Finding::skip(format!(
                    "not applicable: this check is for {} nodes and this one is {}",
                    entry
                        .roles
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join("/"),
                    role.as_str()
                ))
            };
            let gather_ms = c
                .needs
                .iter()
                .filter(|_| entry.applies_to(role))
                .filter_map(|s| took.get(s.name()))
                .max()
                .map_or(0, |ms| *ms);
            CheckResult::from_finding(entry, finding, gather_ms + t.elapsed().as_millis() as u64)
        })
        .collect();
    let mut host_block = host_info(host, role);
    let stage =
        super::stage::Stage::resolve(cfg.stage, host.exists(super::stage::KUBELET_CONF), role);
    host_block.stage = Some(stage.as_str().into());
    let report = Report::new(
        started,
        clock.elapsed().as_millis() as u64,
        host_block,
        cluster_info(&facts),
        results,
    );
    Ok((report, facts))
}

/// The report's `cluster` block: the server the cluster checks talked to, when they did.
fn cluster_info(facts: &Facts) -> Option<ClusterInfo> {
    let c = facts.get(&crate::checks::cluster::CLUSTER).ok()?;
    Some(ClusterInfo {
        server: c.server.clone(),
        server_version: c.api.as_ref().ok().map(|a| a.version.clone()),
        context: c.context.clone(),
    })
}

/// Whether the report should make the process exit 1 under `--fail-on`.
pub fn fails(report: &Report, fail_on: Status) -> bool {
    report.results.iter().any(|r| r.status >= fail_on)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::core::source::Source;

    fn ctx() -> Ctx {
        Ctx {
            role: Role::Worker,
            now: SystemTime::now(),
        }
    }

    const SWAPS: Source<u32> = Source::files("test-swaps", |_| Ok(1));

    #[test]
    fn a_panicking_check_becomes_an_error_result() {
        let def = CheckDef {
            id: "test.panics",
            needs: &[&SWAPS],
            run: |_, _| panic!("boom"),
        };
        let f = evaluate(&def, &Facts::default(), &ctx());
        assert_eq!(f.status, Status::Error);
        assert!(f.message.contains("boom"), "{}", f.message);
    }

    #[test]
    fn missing_facts_skip_and_unreadable_facts_error() {
        let def = CheckDef {
            id: "test.reads-swap",
            needs: &[&SWAPS],
            run: |f, _| f.get(&SWAPS).map(|_| Finding::pass("ok")),
        };
        let mut facts = Facts::default();
        assert_eq!(evaluate(&def, &facts, &ctx()).status, Status::Skip);
        facts.set(
            &SWAPS,
            Err(FactError::Unreadable("cannot read /proc/swaps".into())),
        );
        let f = evaluate(&def, &facts, &ctx());
        assert_eq!(
            (f.status, f.message.as_str()),
            (Status::Error, "cannot read /proc/swaps")
        );
        facts.set(&SWAPS, Ok(7));
        assert_eq!(evaluate(&def, &facts, &ctx()).status, Status::Pass);
    }

    const HUNG: Source<()> = Source::network("test-hung", |_| {
        thread::sleep(Duration::from_secs(30));
        unreachable!("abandoned at the deadline")
    });
    const BUGGY: Source<()> = Source::files("test-buggy", |_| panic!("gatherer bug"));
    static BASE_GATHERED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    const BASE: Source<String> = Source::files("test-base", |_| {
        BASE_GATHERED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok("parsed once".into())
    });
    /// Two sources built on one base: the base is gathered once and shared.
    const ON_BASE_A: Source<usize> = Source::files("test-on-base-a", |g| Ok(g.get(&BASE)?.len()));
    const ON_BASE_B: Source<bool> = Source::files("test-on-base-b", |g| {
        Ok(g.get(&BASE)?.starts_with("parsed"))
    });

    #[test]
    fn a_slow_or_panicking_source_becomes_an_error_at_the_deadline() {
        // A hung network source must not hold the file sources (which share a thread) past the deadline.
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path()).unwrap();
        let cfg = Config {
            timeout: Duration::from_secs(3),
            ..Config::default()
        };
        let sources: [&'static dyn AnySource; 4] = [&HUNG, &BUGGY, &ON_BASE_A, &ON_BASE_B];
        let t = Instant::now();
        let (facts, took) = gather_all(&sources, &host, &cfg);
        assert!(t.elapsed() < Duration::from_secs(6), "the deadline holds");
        let hung = facts.get(&HUNG).unwrap_err();
        assert!(
            matches!(&hung, FactError::Unreadable(m) if m.contains("timed out after 3.0s") && m.contains("test-hung")),
            "{hung:?}"
        );
        let buggy = facts.get(&BUGGY).unwrap_err();
        assert!(
            matches!(&buggy, FactError::Unreadable(m) if m.contains("gatherer bug")),
            "{buggy:?}"
        );
        // The base was gathered once (by A) and handed to B; it also reaches the facts for checks.
        assert_eq!(facts.get(&ON_BASE_A), Ok(&11));
        assert_eq!(facts.get(&ON_BASE_B), Ok(&true));
        assert_eq!(BASE_GATHERED.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(facts.get(&BASE).map(String::as_str), Ok("parsed once"));
        assert_eq!(took.len(), 5, "{took:?}");
    }

    #[test]
    fn sources_nobody_needs_are_not_gathered() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path()).unwrap();
        let (facts, _) = gather_all(&[&SWAPS], &host, &Config::default());
        assert_eq!(facts.get(&SWAPS), Ok(&1));
        assert_eq!(
            facts.get(&BASE),
            Err(FactError::Missing("not gathered".into()))
        );
    }

    #[test]
    fn error_counts_at_and_above_fail() {
        assert!(Status::Error >= Status::Fail && Status::Fail >= Status::Warn);
        assert!(Status::Warn > Status::Skip && Status::Skip > Status::Pass);
    }
}
