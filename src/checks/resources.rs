//! `host.cpu-memory`: kubeadm's NumCPU (≥ 2) and Mem (≥ 1700 MB) for a control plane, from /sys and
//! /proc — and from the cgroup limits a container runs under, which /proc/meminfo does not show.

use super::{Area};
use crate::core::{check::CheckDef, source::Source};
use crate::{
    core::check::Finding,
    core::facts::{Fact, FactError},
    core::host::Host,
};

use super::cgroup::CGROUP_ROOT;


pub const AREA: Area = Area {
    checks: &[
        CheckDef {
            id: "host.cpu-memory",
            needs: &[&RESOURCES],
            run: |f, _| Ok(decide(f.get(&RESOURCES)?)),
        },
    ],
    fixes: &[],
};

/// CPUs and memory, and the cgroup limits on them.
pub const RESOURCES: Source<ResourceFacts> = Source::files("cpu-memory", |g| gather(g.host));

pub const MIN_CPUS: f64 = 2.0;
/// kubeadm's ControlPlaneMem, in MiB (it divides bytes by 1024 twice and calls it MB).
pub const MIN_MEM_MIB: u64 = 1700;
/// A v1 memory limit this large means "no limit" (the kernel prints 2^63 rounded down to pages).
const V1_UNLIMITED: u64 = 1 << 62;

/// CPUs in a list such as `0-3,5,7-8` (sysfs `online`, `cpuset.cpus.effective`).
pub fn count_cpu_list(text: &str) -> Option<u32> {
    let t = text.trim();
    if t.is_empty() {
        return Some(0);
    }
    t.split(',').try_fold(0u32, |n, part| {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                (b >= a).then(|| n + (b - a + 1))
            }
            None => part.parse::<u32>().ok().map(|_| n + 1),
        }
    })
}

/// `MemTotal` of /proc/meminfo, in KiB.
pub fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// cgroup v2 `cpu.max` (`max 100000` or `150000 100000`): the CPUs the quota allows, None when unlimited.
pub fn cpu_max(text: &str) -> Option<f64> {
    let mut f = text.split_whitespace();
    let quota: f64 = f.next()?.parse().ok()?;
    let period: f64 = f.next().unwrap_or("100000").parse().ok()?;
    (period > 0.0).then(|| quota / period)
}

/// A memory limit file (`memory.max` = bytes or `max`; v1 `memory.limit_in_bytes`), None when unlimited.
pub fn memory_limit(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|b| *b < V1_UNLIMITED)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit<T> {
    pub value: T,
    pub file: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceFacts {
    /// Online CPUs and where they were counted.
    pub cpus: Limit<u32>,
    /// cpuset CPUs of this cgroup, when set.
    pub cpuset: Option<Limit<u32>>,
    /// CPU quota in CPUs, when set.
    pub quota: Option<Limit<f64>>,
    pub mem_kib: Limit<u64>,
    /// Memory limit in bytes, when set.
    pub mem_limit: Option<Limit<u64>>,
}

fn first<T>(host: &Host, files: &[&str], parse: impl Fn(&str) -> Option<T>) -> Option<Limit<T>> {
    files.iter().find_map(|f| {
        let text = host.read_opt(f).ok().flatten()?;
        parse(&text).map(|value| Limit {
            value,
            file: f.to_string(),
        })
    })
}

pub fn gather(host: &Host) -> Fact<ResourceFacts> {
    let cpus = match first(host, &["/sys/devices/system/cpu/online"], count_cpu_list) {
        Some(c) => c,
        None => {
            let info = host.read("/proc/cpuinfo")?;
            Limit {
                value: info.lines().filter(|l| l.starts_with("processor")).count() as u32,
                file: "/proc/cpuinfo".into(),
            }
        }
    };
    let mem_kib = Limit {
        value: mem_total_kib(&host.read("/proc/meminfo")?)
            .ok_or_else(|| FactError::Unreadable("/proc/meminfo: no MemTotal line".into()))?,
        file: "/proc/meminfo".into(),
    };
    // In a container with its own cgroup namespace, /sys/fs/cgroup is the container's cgroup.
    let v2 = |f: &str| format!("{CGROUP_ROOT}/{f}");
    let cpuset = first(
        host,
        &[
            &v2("cpuset.cpus.effective"),
            &v2("cpuset/cpuset.effective_cpus"),
        ],
        count_cpu_list,
    )
    .filter(|c| c.value > 0);
    let quota = first(host, &[&v2("cpu.max")], cpu_max).or_else(|| {
        let q: i64 = host
            .read_opt(&v2("cpu/cpu.cfs_quota_us"))
            .ok()??
            .trim()
            .parse()
            .ok()?;
        let p: i64 = host
            .read_opt(&v2("cpu/cpu.cfs_period_us"))
            .ok()??
            .trim()
            .parse()
            .ok()?;
        (q > 0 && p > 0).then(|| Limit {
            value: q as f64 / p as f64,
            file: v2("cpu/cpu.cfs_quota_us"),
        })
    });
    let mem_limit = first(
        host,
        &[&v2("memory.max"), &v2("memory/memory.limit_in_bytes")],
        memory_limit,
    );
    Ok(ResourceFacts {
        cpus,
        cpuset,
        quota,
        mem_kib,
        mem_limit,
    })
}

pub fn decide(r: &ResourceFacts) -> Finding {
    let mut ev = vec![format!("{}: {} CPU(s)", r.cpus.file, r.cpus.value)];
    let mut cpus = f64::from(r.cpus.value);
    if let Some(c) = &r.cpuset {
        ev.push(format!("{}: {} CPU(s)", c.file, c.value));
        cpus = cpus.min(f64::from(c.value));
    }
    if let Some(q) = &r.quota {
        ev.push(format!("{}: quota of {:.2} CPU(s)", q.file, q.value));
        cpus = cpus.min(q.value);
    }
    let mut mem_mib = r.mem_kib.value / 1024;
    ev.push(format!("{}: MemTotal {} MiB", r.mem_kib.file, mem_mib));
    if let Some(m) = &r.mem_limit {
        ev.push(format!("{}: limit {} MiB", m.file, m.value / 1024 / 1024));
        mem_mib = mem_mib.min(m.value / 1024 / 1024);
    }
    let mut bad = Vec::new();
    if cpus < MIN_CPUS {
        bad.push(format!(
            "{cpus:.2} CPU(s) usable, a control plane needs {MIN_CPUS} ([ERROR NumCPU])"
        ));
    }
    if mem_mib < MIN_MEM_MIB {
        bad.push(format!(
            "{mem_mib} MiB of memory usable, a control plane needs {MIN_MEM_MIB} ([ERROR Mem])"
        ));
    }
    if bad.is_empty() {
        return Finding::pass(format!("{cpus:.2} CPU(s) and {mem_mib} MiB usable"))
            .evidence_all(ev);
    }
    let limited = r.cpuset.is_some() || r.quota.is_some() || r.mem_limit.is_some();
    Finding::fail(bad.join("; ")).evidence_all(ev).remediation(if limited {
        "raise the container's or VM's limits (cgroup cpu.max / memory.max shown above) to at least 2 CPUs and 1700 MiB; the control plane's static pods alone need about that"
    } else {
        "give the machine at least 2 CPUs and 2 GB of RAM (kubeadm's minimum for a control plane)"
    })
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::check::Status;

    #[test]
    fn parsers() {
        assert_eq!(count_cpu_list("0-3\n"), Some(4));
        assert_eq!(count_cpu_list("0-1,4,6-7"), Some(5));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("x"), None);
        assert_eq!(
            mem_total_kib("MemTotal:        2014580 kB\nMemFree: 1 kB\n"),
            Some(2014580)
        );
        assert_eq!(mem_total_kib("nothing"), None);
        assert_eq!(cpu_max("max 100000\n"), None);
        assert_eq!(cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(memory_limit("max\n"), None);
        assert_eq!(memory_limit("1073741824\n"), Some(1 << 30));
        assert_eq!(
            memory_limit("9223372036854771712\n"),
            None,
            "v1's unlimited"
        );
    }

    fn facts(cpus: u32, mem_kib: u64) -> ResourceFacts {
        ResourceFacts {
            cpus: Limit {
                value: cpus,
                file: "/sys/devices/system/cpu/online".into(),
            },
            cpuset: None,
            quota: None,
            mem_kib: Limit {
                value: mem_kib,
                file: "/proc/meminfo".into(),
            },
            mem_limit: None,
        }
    }

    #[test]
    fn verdicts_honour_cgroup_limits() {
        assert_eq!(decide(&facts(4, 8 << 20)).status, Status::Pass);
        // A 1 GB droplet: kubeadm's Mem error.
        let f = decide(&facts(1, 1_004_000));
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.message.contains("[ERROR NumCPU]") && f.message.contains("[ERROR Mem]"),
            "{}",
            f.message
        );
        // An LXC/Docker container on a big host: /proc shows the host, the cgroup the truth.
        let mut c = facts(32, 64 << 20);
        c.quota = Some(Limit {
            value: 1.5,
            file: "/sys/fs/cgroup/cpu.max".into(),
        });
        c.mem_limit = Some(Limit {
            value: 1 << 30,
            file: "/sys/fs/cgroup/memory.max".into(),
        });
        let f = decide(&c);
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.message.contains("1.50 CPU(s)") && f.message.contains("1024 MiB"),
            "{}",
            f.message
        );
        assert!(f.remediation.unwrap().contains("container"));
        let mut c = facts(32, 64 << 20);
        c.cpuset = Some(Limit {
            value: 2,
            file: "/sys/fs/cgroup/cpuset.cpus.effective".into(),
        });
        assert_eq!(decide(&c).status, Status::Pass);
    }
}
