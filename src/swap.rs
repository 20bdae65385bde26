//! Swap: `/proc/swaps`, `/etc/fstab` and systemd swap sources; the `swap.active` and `swap.persistent` checks.

use crate::{
    check::{CheckDef, Ctx, Finding, Outcome},
    facts::{Area, Fact, FactError, Facts, get},
    host::Host,
    kubelet::{self, KubeletConfig},
};

pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "swap.active",
        area: Area::Swap,
        run: active,
    },
    CheckDef {
        id: "swap.persistent",
        area: Area::Swap,
        run: persistent,
    },
];

pub const FSTAB: &str = "/etc/fstab";
pub const SWAP_WANTS: &str = "/etc/systemd/system/swap.target.wants";
pub const SYSTEMD_ETC: &str = "/etc/systemd/system";
const ZRAM_GENERATOR: &[&str] = &[
    "/etc/systemd/zram-generator.conf",
    "/usr/lib/systemd/zram-generator.conf",
];

/// One row of `/proc/swaps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapDevice {
    pub name: String,
    pub kind: String,
    pub size_kib: u64,
    pub used_kib: u64,
}

/// Parses `/proc/swaps`; the header line is skipped and `\040` escapes become spaces.
pub fn parse_proc_swaps(text: &str) -> Result<Vec<SwapDevice>, FactError> {
    let nonsense = |line: usize, what: &str| {
        Err(FactError::Unreadable(format!(
            "/proc/swaps line {line} {what}: the file is not the kernel's swap table, so no swap is counted"
        )))
    };
    let mut lines = text.lines();
    if !lines.next().is_some_and(|h| h.starts_with("Filename")) {
        return nonsense(1, "is not the header (Filename Type Size Used Priority)");
    }
    let mut out = Vec::new();
    for (i, l) in lines.enumerate() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let row = match f.as_slice() {
            [name, kind @ ("partition" | "file"), size, used, prio] => (|| {
                prio.parse::<i32>().ok()?;
                Some(SwapDevice {
                    name: unescape(name),
                    kind: kind.to_string(),
                    size_kib: size.parse().ok()?,
                    used_kib: used.parse().ok()?,
                })
            })(),
            [] => continue,
            _ => None,
        };
        match row {
            Some(d) => out.push(d),
            None => {
                return nonsense(
                    i + 2,
                    "is not a swap row (name, partition|file, size, used, priority)",
                );
            }
        }
    }
    Ok(out)
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t")
}

/// An fstab line that activates swap at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FstabSwap {
    pub line: usize,
    pub text: String,
    pub device: String,
}

/// The swap entries of an fstab that are active at boot: type `swap`, uncommented, without `noauto`.
pub fn parse_fstab_swaps(text: &str) -> Vec<FstabSwap> {
    text.lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let f: Vec<&str> = l.split_whitespace().collect();
            let opts = f.get(3).copied().unwrap_or("defaults");
            (f.len() >= 3 && f[2] == "swap" && !opts.split(',').any(|o| o == "noauto")).then(|| {
                FstabSwap {
                    line: i + 1,
                    text: l.to_string(),
                    device: unescape(f[0]),
                }
            })
        })
        .collect()
}

/// Whether a zram-generator config defines a zram device (which systemd turns into swap at boot).
pub fn zram_generator_line(text: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.trim().starts_with("[zram"))
        .map(|i| i + 1)
}

/// A unit masked in /etc (a link to /dev/null) never starts, whatever wants it.
pub fn is_masked(host: &Host, unit: &str) -> bool {
    host.link_target(&format!("{SYSTEMD_ETC}/{unit}"))
        .is_some_and(|t| t == std::path::Path::new("/dev/null"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapFacts {
    pub swaps: Fact<Vec<SwapDevice>>,
    pub fstab: Fact<Vec<FstabSwap>>,
    /// Swap units enabled in `swap.target.wants` and not masked.
    pub enabled_units: Vec<String>,
    /// A zram-generator config that creates swap at boot: path and line.
    pub zram_generator: Option<(String, usize)>,
    pub kubelet: Option<KubeletConfig>,
    pub cgroup_v2: bool,
}

pub fn gather(host: &Host) -> Fact<SwapFacts> {
    Ok(SwapFacts {
        swaps: host.read("/proc/swaps").and_then(|t| parse_proc_swaps(&t)),
        fstab: host.read(FSTAB).map(|t| parse_fstab_swaps(&t)),
        enabled_units: host
            .list_dir(SWAP_WANTS)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.ends_with(".swap") && !is_masked(host, n))
            .collect(),
        zram_generator: ZRAM_GENERATOR.iter().find_map(|p| {
            let text = host.read_opt(p).ok().flatten()?;
            zram_generator_line(&text).map(|l| (p.to_string(), l))
        }),
        kubelet: host
            .read_opt(kubelet::CONFIG_PATH)
            .ok()
            .flatten()
            .and_then(|t| kubelet::parse(&t).ok()),
        cgroup_v2: host.exists("/sys/fs/cgroup/cgroup.controllers"),
    })
}

fn active(facts: &Facts, _ctx: &Ctx) -> Outcome {
    let s = get(&facts.swap)?;
    let swaps = get(&s.swaps)?;
    if swaps.is_empty() {
        return Ok(Finding::pass("no swap is active").evidence("/proc/swaps: header only"));
    }
    let evidence = swaps.iter().map(|d| {
        format!(
            "/proc/swaps: {} ({}, {} KiB, {} KiB used)",
            d.name, d.kind, d.size_kib, d.used_kib
        )
    });
    let tolerated = s.kubelet.as_ref().filter(|k| k.fail_swap_on == Some(false));
    if let (Some(k), true) = (tolerated, s.cgroup_v2) {
        let behavior = k
            .memory_swap
            .as_ref()
            .and_then(|m| m.swap_behavior.clone())
            .unwrap_or_else(|| "NoSwap".into());
        return Ok(Finding::warn(format!(
            "{} swap device(s) active; the kubelet tolerates it (failSwapOn: false, swapBehavior: {behavior}, cgroup v2)",
            swaps.len()
        ))
        .evidence_all(evidence)
        .evidence(format!("{}: failSwapOn: false", kubelet::CONFIG_PATH))
        .remediation("make sure swap is intended: NodeSwap needs Kubernetes 1.28+ on cgroup v2; otherwise `swapoff -a`"));
    }
    Ok(Finding::fail(format!(
        "{} swap device(s) active: the kubelet refuses to start (\"running with swap on is not supported\")",
        swaps.len()
    ))
    .evidence_all(evidence))
}

fn persistent(facts: &Facts, _ctx: &Ctx) -> Outcome {
    let s = get(&facts.swap)?;
    let fstab = get(&s.fstab)?;
    let mut evidence: Vec<String> = fstab
        .iter()
        .map(|e| format!("{FSTAB}:{}: {}", e.line, e.text))
        .collect();
    evidence.extend(
        s.enabled_units
            .iter()
            .map(|u| format!("{SWAP_WANTS}/{u}: enabled swap unit")),
    );
    if let Some((p, l)) = &s.zram_generator {
        evidence.push(format!("{p}:{l}: zram swap device"));
    }
    if evidence.is_empty() {
        return Ok(Finding::pass("nothing turns swap on at boot")
            .evidence(format!("{FSTAB}: no active swap entry")));
    }
    Ok(Finding::warn(format!(
        "swap comes back at boot from {} source(s) even after `swapoff -a`",
        evidence.len()
    ))
    .evidence_all(evidence))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Role, Status};

    const GUIDE_SWAPS: &str = "Filename\t\t\t\tType\t\tSize\tUsed\tPriority\n/dev/dm-1                               partition\t2097148\t0\t-2\n";

    fn facts(swaps: &str, fstab: &str) -> Facts {
        Facts {
            swap: Ok(SwapFacts {
                swaps: parse_proc_swaps(swaps),
                fstab: Ok(parse_fstab_swaps(fstab)),
                enabled_units: vec![],
                zram_generator: None,
                kubelet: None,
                cgroup_v2: false,
            }),
            ..Facts::default()
        }
    }
    fn ctx() -> Ctx {
        Ctx {
            role: Role::Worker,
            now: std::time::SystemTime::now(),
        }
    }

    #[test]
    fn parses_partitions_files_and_zram() {
        let t = "Filename Type Size Used Priority\n/dev/dm-1 partition 2097148 0 -2\n/swap\\040file file 1024 12 -3\n/dev/zram0 partition 8388604 0 100\n";
        let d = parse_proc_swaps(t).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d[1].name, "/swap file");
        assert_eq!(d[2].name, "/dev/zram0");
        assert!(
            parse_proc_swaps("Filename Type Size Used Priority\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn nonsense_in_proc_swaps_is_an_error_not_a_count() {
        // Random bytes used to count as thousands of swap devices.
        let mut x: u32 = 7;
        let noise: String = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                char::from(b" \n\tab0123456789-/zq"[(x % 19) as usize])
            })
            .collect();
        for text in [
            noise.as_str(),
            "",
            "Filename Type Size Used Priority\n/dev/dm-1 partition 20x 0 -2\n",
            "Filename Type Size Used Priority\na b c d\n",
            "Filename Type Size Used Priority\n/dev/sda2 disk 1 0 -2\n",
        ] {
            let e = parse_proc_swaps(text).unwrap_err();
            assert!(e.to_string().contains("not the kernel's swap table"), "{e}");
        }
        let facts = facts(&noise, "");
        assert_eq!(
            active(&facts, &ctx()).unwrap_or_else(|e| e.into()).status,
            Status::Error
        );
    }

    #[test]
    fn active_swap_fails_with_each_device() {
        let f = active(&facts(GUIDE_SWAPS, ""), &ctx()).unwrap();
        assert_eq!(f.status, Status::Fail);
        assert_eq!(
            f.evidence,
            ["/proc/swaps: /dev/dm-1 (partition, 2097148 KiB, 0 KiB used)"]
        );
        let f = active(&facts("Filename Type Size Used Priority\n", ""), &ctx()).unwrap();
        assert_eq!(f.status, Status::Pass);
    }

    #[test]
    fn nodeswap_configured_on_cgroup_v2_only_warns() {
        let mut f = facts(GUIDE_SWAPS, "");
        if let Ok(s) = &mut f.swap {
            s.kubelet = Some(
                kubelet::parse("failSwapOn: false\nmemorySwap:\n  swapBehavior: LimitedSwap\n")
                    .unwrap(),
            );
            s.cgroup_v2 = true;
        }
        let r = active(&f, &ctx()).unwrap();
        assert_eq!(r.status, Status::Warn);
        assert!(r.message.contains("LimitedSwap"));
    }

    #[test]
    fn fstab_swap_entries_are_told_from_lookalikes() {
        let fstab = "# /dev/sda2 none swap sw 0 0\n/dev/mapper/centos-root /                       xfs     defaults        0 0\n/dev/mapper/centos-swap swap                    swap    defaults        0 0\n/dev/sdb1\t/srv/swapdata\text4\tdefaults\t0 2\nUUID=1234 none swap noauto,sw 0 0\n   /swapfile   none   swap   sw   0   0   \n";
        let e = parse_fstab_swaps(fstab);
        assert_eq!(e.iter().map(|e| e.line).collect::<Vec<_>>(), [3, 6]);
        let f = persistent(&facts("", fstab), &ctx()).unwrap();
        assert_eq!(f.status, Status::Warn);
        assert_eq!(
            f.evidence[0],
            "/etc/fstab:3: /dev/mapper/centos-swap swap                    swap    defaults        0 0"
        );
        let f = persistent(&facts("", "# /dev/sda2 none swap sw 0 0\n"), &ctx()).unwrap();
        assert_eq!(f.status, Status::Pass);
    }

    #[test]
    fn zram_generator_and_units_count_as_persistent() {
        assert_eq!(
            zram_generator_line("# comment\n[zram0]\nzram-size = ram / 2\n"),
            Some(2)
        );
        let mut f = facts("", "");
        if let Ok(s) = &mut f.swap {
            s.enabled_units = vec!["dev-sda2.swap".into()];
        }
        assert_eq!(persistent(&f, &ctx()).unwrap().status, Status::Warn);
    }
}
