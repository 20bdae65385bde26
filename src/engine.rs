//! The engine: picks the checks, gathers the areas they need concurrently under one deadline, runs each pure check, builds the report.

use std::{
    collections::BTreeSet,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::mpsc,
    thread,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, bail};

use crate::{
    catalog,
    check::{CheckDef, Ctx, Finding, Role, Status},
    config::{Config, RoleChoice},
    facts::{Area, FactError, Facts},
    host::Host,
    report::{CheckResult, ClusterInfo, HostInfo, Report},
};

/// Every implemented check; the catalog test proves this matches `checks/` one to one.
pub fn registry() -> Vec<CheckDef> {
    [
        crate::dns::CHECKS,
        crate::swap::CHECKS,
        crate::sysctl::CHECKS,
        crate::selinux::CHECKS,
        crate::cluster::CHECKS,
        crate::proxy::CHECKS,
        crate::firewall::CHECKS,
        crate::preflight::CHECKS,
    ]
    .concat()
}

/// A gathered area, ready to be put into [`Facts`].
type Install = Box<dyn FnOnce(&mut Facts) + Send>;

fn gather(area: Area, host: &Host, cfg: &Config) -> Install {
    match area {
        Area::Dns => {
            let f = crate::dns::gather(host);
            Box::new(move |x| x.dns = f)
        }
        Area::Swap => {
            let f = crate::swap::gather(host);
            Box::new(move |x| x.swap = f)
        }
        Area::Sysctl => {
            let f = crate::sysctl::gather(host);
            Box::new(move |x| x.sysctl = f)
        }
        Area::Selinux => {
            let f = crate::selinux::gather(host);
            Box::new(move |x| x.selinux = f)
        }
        Area::Cluster => {
            let f = crate::cluster::gather(host, cfg);
            Box::new(move |x| x.cluster = f)
        }
        Area::Proxy => {
            let f = crate::proxy::gather(host, cfg);
            Box::new(move |x| x.proxy = f)
        }
        Area::Firewall => {
            let f = crate::firewall::gather(host, cfg.timeout);
            Box::new(move |x| x.firewall = f)
        }
        Area::Preflight => {
            let f = crate::preflight::gather(host, cfg);
            Box::new(move |x| x.preflight = f)
        }
    }
}

fn set_error(facts: &mut Facts, area: Area, e: FactError) {
    match area {
        Area::Dns => facts.dns = Err(e),
        Area::Swap => facts.swap = Err(e),
        Area::Sysctl => facts.sysctl = Err(e),
        Area::Selinux => facts.selinux = Err(e),
        Area::Cluster => facts.cluster = Err(e),
        Area::Proxy => facts.proxy = Err(e),
        Area::Firewall => facts.firewall = Err(e),
        Area::Preflight => facts.preflight = Err(e),
    }
}

/// Gathers each area in its own thread; an area not back by the deadline becomes an error naming the timeout.
fn gather_all(
    areas: &BTreeSet<Area>,
    timeout: Duration,
    gather: impl Fn(Area) -> Install + Send + Sync + 'static,
) -> (Facts, Vec<(Area, u64)>) {
    let deadline = Instant::now() + timeout;
    let gather = std::sync::Arc::new(gather);
    let (tx, rx) = mpsc::channel::<(Area, thread::Result<Install>, u64)>();
    let (local, remote): (Vec<Area>, Vec<Area>) = areas.iter().partition(|a| a.reads_only_files());
    let groups = std::iter::once(local)
        .filter(|g| !g.is_empty())
        .chain(remote.into_iter().map(|a| vec![a]));
    for group in groups {
        let (tx, gather) = (tx.clone(), gather.clone());
        thread::spawn(move || {
            for area in group {
                let t = Instant::now();
                let r = catch_unwind(AssertUnwindSafe(|| gather(area)));
                let _ = tx.send((area, r, t.elapsed().as_millis() as u64));
            }
        });
    }
    drop(tx);
    let mut facts = Facts::default();
    let mut pending = areas.clone();
    let mut took = Vec::new();
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((area, r, ms)) => {
                pending.remove(&area);
                took.push((area, ms));
                match r {
                    Ok(install) => install(&mut facts),
                    Err(p) => set_error(
                        &mut facts,
                        area,
                        FactError::Unreadable(format!("gathering panicked: {}", panic_text(&*p))),
                    ),
                }
            }
            Err(_) => break,
        }
    }
    for area in pending {
        took.push((area, timeout.as_millis() as u64));
        set_error(
            &mut facts,
            area,
            FactError::Unreadable(format!(
                "timed out after {:.1}s (--timeout) gathering {area:?} facts",
                timeout.as_secs_f64()
            )),
        );
    }
    (facts, took)
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs one pure check; a panic becomes an `error` finding and the run goes on.
pub fn evaluate(def: &CheckDef, facts: &Facts, ctx: &Ctx) -> Finding {
    match catch_unwind(AssertUnwindSafe(|| (def.run)(facts, ctx))) {
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

/// What the report says about the machine the doctor ran on.
pub fn host_info(
    host: &Host,
    role: Role,
    stage: Option<crate::preflight::stage::Stage>,
) -> HostInfo {
    let first_line = |p: &str| {
        host.read_opt(p)
            .ok()
            .flatten()
            .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
            .filter(|s| !s.is_empty())
    };
    let hostname = if host.is_live() {
        first_line("/proc/sys/kernel/hostname")
    } else {
        first_line("/etc/hostname")
    };
    let os = host
        .read_opt("/etc/os-release")
        .ok()
        .flatten()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim().trim_matches('"').to_string())
        });
    HostInfo {
        hostname: hostname.unwrap_or_else(|| "unknown".into()),
        kernel: first_line("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
        os: os.unwrap_or_else(|| "unknown".into()),
        root: host.root().display().to_string(),
        role: role.as_str().into(),
        stage: stage.map(|s| s.as_str().into()),
    }
}

/// Runs `check`: the whole flow from config to report.
pub fn run(cfg: &Config) -> Result<Report> {
    run_with_facts(cfg).map(|(report, _)| report)
}

/// Like [`run`], and also hands back the gathered facts (for `fix`, whose planners read the same facts the checks did).
pub fn run_with_facts(cfg: &Config) -> Result<(Report, Facts)> {
    let started = SystemTime::now();
    let clock = Instant::now();
    let host = Host::new(&cfg.root).context("cannot read host files")?;
    let all = registry();
    let known: Vec<&str> = all.iter().map(|c| c.id).collect();
    let selection = cfg.selection.expanded();
    let unknown = selection.unknown_ids(&known);
    if !unknown.is_empty() {
        let join_steps = unknown
            .iter()
            .any(|u| crate::join::STEPS.iter().any(|s| s.eq_ignore_ascii_case(u)));
        bail!(
            "unknown check id(s): {} (see `k8sdoctor list`){}",
            unknown.join(", "),
            if join_steps {
                "; join.* are the steps of `k8sdoctor join-check -- kubeadm join ...`"
            } else {
                ""
            }
        );
    }
    if !cfg.offline {
        // A kubeconfig the user named but that cannot be read (or lacks --context) is exit 2.
        crate::cluster::connect::load_named(cfg)?;
    }
    let role = resolve_role(cfg.role, &host);
    let ctx = Ctx { role, now: started };
    let mut selected: Vec<(&CheckDef, &catalog::Entry)> = all
        .iter()
        .filter(|c| selection.selects(c.id))
        .map(|c| {
            let entry = catalog::find(c.id)
                .unwrap_or_else(|| panic!("check {} has no catalog entry", c.id));
            (c, entry)
        })
        .collect();
    selected.sort_by(|a, b| a.0.id.cmp(b.0.id));
    let areas: BTreeSet<Area> = selected
        .iter()
        .filter(|(_, e)| e.applies_to(role))
        .map(|(c, _)| c.area)
        .collect();
    let (facts, took) = {
        let (host, cfg) = (host.clone(), cfg.clone());
        gather_all(&areas, cfg.timeout, move |area| gather(area, &host, &cfg))
    };
    let results: Vec<CheckResult> = selected
        .iter()
        .map(|(def, entry)| {
            let t = Instant::now();
            let finding = if entry.applies_to(role) {
                evaluate(def, &facts, &ctx)
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
            let gather_ms = took
                .iter()
                .find(|(a, _)| *a == def.area && entry.applies_to(role))
                .map_or(0, |(_, ms)| *ms);
            CheckResult::from_finding(entry, finding, gather_ms + t.elapsed().as_millis() as u64)
        })
        .collect();
    let report = Report::new(
        started,
        clock.elapsed().as_millis() as u64,
        host_info(
            &host,
            role,
            Some(crate::preflight::checks::stage(&host, cfg)),
        ),
        cluster_info(&facts),
        results,
    );
    Ok((report, facts))
}

/// The report's `cluster` block: the server the cluster checks talked to, when they did.
fn cluster_info(facts: &Facts) -> Option<ClusterInfo> {
    let c = facts.cluster.as_ref().ok()?;
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
    use super::*;

    #[test]
    fn a_panicking_check_becomes_an_error_result() {
        let def = CheckDef {
            id: "test.panics",
            area: Area::Swap,
            run: |_, _| panic!("boom"),
        };
        let ctx = Ctx {
            role: Role::Worker,
            now: SystemTime::now(),
        };
        let f = evaluate(&def, &Facts::default(), &ctx);
        assert_eq!(f.status, Status::Error);
        assert!(f.message.contains("boom"), "{}", f.message);
    }

    #[test]
    fn missing_facts_skip_and_unreadable_facts_error() {
        let ctx = Ctx {
            role: Role::Worker,
            now: SystemTime::now(),
        };
        let def = CheckDef {
            id: "test.reads-swap",
            area: Area::Swap,
            run: |f, _| crate::facts::get(&f.swap).map(|_| Finding::pass("ok")),
        };
        let mut facts = Facts::default();
        assert_eq!(evaluate(&def, &facts, &ctx).status, Status::Skip);
        facts.swap = Err(FactError::Unreadable("cannot read /proc/swaps".into()));
        let f = evaluate(&def, &facts, &ctx);
        assert_eq!(
            (f.status, f.message.as_str()),
            (Status::Error, "cannot read /proc/swaps")
        );
    }

    #[test]
    fn a_slow_or_panicking_area_becomes_an_error_at_the_deadline() {
        // A hung network area must not hold the file areas (which share a thread) past the deadline.
        let areas: BTreeSet<Area> = [Area::Cluster, Area::Swap, Area::Selinux].into();
        let t = Instant::now();
        let (facts, took) = gather_all(&areas, Duration::from_secs(3), |area| match area {
            Area::Cluster => {
                thread::sleep(Duration::from_secs(30));
                unreachable!("abandoned at the deadline")
            }
            Area::Swap => panic!("gatherer bug"),
            _ => Box::new(|f: &mut Facts| f.selinux = Err(FactError::Missing("fine".into()))),
        });
        assert!(t.elapsed() < Duration::from_secs(6), "the deadline holds");
        assert!(
            matches!(&facts.cluster, Err(FactError::Unreadable(m)) if m.contains("timed out after 3.0s")),
            "{:?}",
            facts.cluster
        );
        assert!(
            matches!(&facts.swap, Err(FactError::Unreadable(m)) if m.contains("gatherer bug")),
            "{:?}",
            facts.swap
        );
        assert_eq!(facts.selinux, Err(FactError::Missing("fine".into())));
        assert_eq!(took.len(), 3);
    }

    #[test]
    fn error_counts_at_and_above_fail() {
        assert!(Status::Error >= Status::Fail && Status::Fail >= Status::Warn);
        assert!(Status::Warn > Status::Skip && Status::Skip > Status::Pass);
    }
}

#[cfg(test)]
mod catalog_tests {
    use super::*;

    /// Host checks come from the registry; join-check's steps (`join::STEPS`) are catalog entries
    /// that `check` never selects. Together they are exactly the catalog, each id once.
    #[test]
    fn catalog_and_implementations_match_one_to_one() {
        let registry = registry();
        let mut implemented: Vec<&str> = registry.iter().map(|c| c.id).collect();
        implemented.extend_from_slice(crate::join::STEPS);
        implemented.sort();
        let before = implemented.len();
        implemented.dedup();
        assert_eq!(
            before,
            implemented.len(),
            "duplicate check ids in the registry or join steps"
        );
        let cataloged: Vec<&str> = catalog::catalog().iter().map(|e| e.id.as_str()).collect();
        assert_eq!(implemented, cataloged);
        assert!(
            registry.iter().all(|c| !c.id.starts_with("join.")),
            "join.* ids are join-check steps, not host checks"
        );
    }
}
