//! Swap: `/proc/swaps`, `/etc/fstab` and systemd swap sources; the `swap.active` and `swap.persistent` checks.

use super::{
    Area,
    kubelet::{self, KubeletConfig},
};
use crate::{
    core::{
        check::{CheckDef, Ctx, Finding, Outcome},
        facts::{Fact, FactError, get},
        host::Host,
        source::{Facts, Gather, Source},
    },
    fix::{
        edit,
        plan::{CheckFix, Content, Files, Fix, Step},
    },
};

pub const AREA: Area = Area {
    checks: CHECKS,
    fixes: &[
        Fix {
            check: "swap.active",
            edits: |_| vec![],
            plan: swap_active,
        },
        Fix {
            check: "swap.persistent",
            edits: |f| {
                let units = f.get(&SWAP).map(|s| s.enabled_units.as_slice()).unwrap_or_default();
                std::iter::once(FSTAB.to_string())
                    .chain(units.iter().map(|u| format!("{SYSTEMD_ETC}/{u}")))
                    .collect()
            },
            plan: swap_persistent,
        },
    ],
};

/// What turns swap on, now and at boot, and whether the kubelet is set up to run with it.
pub const SWAP: Source<SwapFacts> = Source::files("swap", gather);

const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "swap.active",
        needs: &[&SWAP],
        run: active,
    },
    CheckDef {
        id: "swap.persistent",
        needs: &[&SWAP],
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

fn gather(g: &Gather) -> Fact<SwapFacts> {
    let host = g.host;
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
        kubelet: g
            .get(&kubelet::CONFIG)
            .ok()
            .and_then(|f| f.as_ref().as_ref()?.config.clone().ok()),
        cgroup_v2: host.exists("/sys/fs/cgroup/cgroup.controllers"),
    })
}

fn active(facts: &Facts, _ctx: &Ctx) -> Outcome {
    let s = facts.get(&SWAP)?;
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

/// Each source of boot-time swap decides on its own: an unreadable fstab is reported, but does not hide a
/// zram-generator config or an enabled swap unit.
fn persistent(facts: &Facts, _ctx: &Ctx) -> Outcome {
    let s = facts.get(&SWAP)?;
    let mut evidence: Vec<String> = match &s.fstab {
        Ok(fstab) => fstab
            .iter()
            .map(|e| format!("{FSTAB}:{}: {}", e.line, e.text))
            .collect(),
        Err(_) => Vec::new(),
    };
    evidence.extend(
        s.enabled_units
            .iter()
            .map(|u| format!("{SWAP_WANTS}/{u}: enabled swap unit")),
    );
    if let Some((p, l)) = &s.zram_generator {
        evidence.push(format!("{p}:{l}: zram swap device"));
    }
    let fstab_error = s.fstab.as_ref().err();
    if evidence.is_empty() {
        return match fstab_error {
            // Nothing else turns swap on, and fstab could not be judged: say which and why.
            Some(e) => Err(e.clone()),
            None => Ok(Finding::pass("nothing turns swap on at boot")
                .evidence(format!("{FSTAB}: no active swap entry"))),
        };
    }
    let n = evidence.len();
    if let Some(e) = fstab_error {
        evidence.push(format!("{FSTAB}: not judged: {e}"));
    }
    Ok(Finding::warn(format!(
        "swap comes back at boot from {n} source(s) even after `swapoff -a`"
    ))
    .evidence_all(evidence))
}

/// Whether the kubelet is set up to run with swap (NodeSwap: `failSwapOn: false` on cgroup v2); then swap is
/// the operator's choice and the swap fixes only say so.
fn swap_intended(s: &SwapFacts, fix: &mut CheckFix) -> bool {
    let intended = s.cgroup_v2
        && s.kubelet
            .as_ref()
            .is_some_and(|k| k.fail_swap_on == Some(false));
    if intended {
        fix.note(format!(
            "{} has failSwapOn: false (NodeSwap): swap looks intended, so it is left on; run `swapoff -a` and fix {FSTAB} by hand if it is not",
            kubelet::CONFIG_PATH
        ));
    }
    intended
}

fn swap_active(facts: &Facts, _files: &Files, fix: &mut CheckFix) -> Result<(), String> {
    let s = facts.get(&SWAP).map_err(|e| e.to_string())?;
    if swap_intended(s, fix) {
        return Ok(());
    }
    for d in get(&s.swaps).map_err(|e| e.to_string())? {
        fix.step(Step::command(
            format!("turn off swap on {} ({})", d.name, d.kind),
            &["swapoff", &d.name],
            Some(&["swapon", &d.name]),
        ));
    }
    Ok(())
}

fn swap_persistent(facts: &Facts, files: &Files, fix: &mut CheckFix) -> Result<(), String> {
    let s = facts.get(&SWAP).map_err(|e| e.to_string())?;
    if swap_intended(s, fix) {
        return Ok(());
    }
    if let Some(text) = files.text(FSTAB)? {
        let lines: Vec<usize> = parse_fstab_swaps(text)
            .iter()
            .map(|e| e.line)
            .collect();
        if !lines.is_empty() {
            fix.step(Step::file(
                "comment out the swap entries so swap stays off after a reboot",
                FSTAB,
                Content::Text(text.to_string()),
                Content::Text(edit::comment_out(text, &lines)),
            ));
        }
    }
    let mut masked = false;
    for unit in &s.enabled_units {
        let path = format!("{SYSTEMD_ETC}/{unit}");
        match files.get(&path)? {
            Content::Text(_) => fix.note(format!(
                "{path} is a unit file of its own: disable it with `systemctl disable --now {unit}`"
            )),
            old => {
                fix.step(Step::file(
                    format!("mask {unit} so systemd never activates it"),
                    &path,
                    old.clone(),
                    Content::Link("/dev/null".into()),
                ));
                masked = true;
            }
        }
    }
    if masked {
        fix.step(Step::command(
            "make systemd see the masked units",
            &["systemctl", "daemon-reload"],
            Some(&["systemctl", "daemon-reload"]),
        ));
    }
    if let Some((p, l)) = &s.zram_generator {
        fix.note(format!(
            "{p}:{l} makes systemd create zram swap at boot; remove that section (or uninstall zram-generator) if the node must run without swap"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        checks::fix_test::{files, plan},
        core::check::{Role, Status},
        fix::plan::Action,
    };

    const GUIDE_SWAPS: &str = "Filename\t\t\t\tType\t\tSize\tUsed\tPriority\n/dev/dm-1                               partition\t2097148\t0\t-2\n";

    fn facts(swaps: &str, fstab: &str) -> Facts {
        Facts::default().with(
            &SWAP,
            Ok(SwapFacts {
                swaps: parse_proc_swaps(swaps),
                fstab: Ok(parse_fstab_swaps(fstab)),
                enabled_units: vec![],
                zram_generator: None,
                kubelet: None,
                cgroup_v2: false,
            }),
        )
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
        if let Some(s) = f.get_mut(&SWAP) {
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
    fn an_unreadable_fstab_does_not_hide_zram() {
        let mut f = facts("", "");
        if let Some(s) = f.get_mut(&SWAP) {
            s.fstab = Err(crate::core::facts::FactError::Unreadable(
                "cannot read /etc/fstab: Is a directory (os error 21)".into(),
            ));
            s.zram_generator = Some(("/etc/systemd/zram-generator.conf".into(), 1));
        }
        let r = persistent(&f, &ctx()).unwrap();
        assert_eq!(r.status, Status::Warn);
        assert_eq!(
            r.evidence[0],
            "/etc/systemd/zram-generator.conf:1: zram swap device"
        );
        assert!(r.evidence[1].contains("not judged"), "{:?}", r.evidence);
        if let Some(s) = f.get_mut(&SWAP) {
            s.zram_generator = None;
        }
        assert!(
            persistent(&f, &ctx()).is_err(),
            "alone, the unreadable fstab is an error"
        );
    }

    #[test]
    fn zram_generator_and_units_count_as_persistent() {
        assert_eq!(
            zram_generator_line("# comment\n[zram0]\nzram-size = ram / 2\n"),
            Some(2)
        );
        let mut f = facts("", "");
        if let Some(s) = f.get_mut(&SWAP) {
            s.enabled_units = vec!["dev-sda2.swap".into()];
        }
        assert_eq!(persistent(&f, &ctx()).unwrap().status, Status::Warn);
    }


    #[test]
    fn swap_is_turned_off_unless_the_kubelet_is_set_up_for_it() {
        let swaps = "Filename Type Size Used Priority\n/dev/dm-1 partition 2097148 0 -2\n";
        let mut fx = Facts::default().with(
            &SWAP,
            Ok(SwapFacts {
                swaps: parse_proc_swaps(swaps),
                fstab: Ok(vec![]),
                enabled_units: vec![],
                zram_generator: None,
                kubelet: None,
                cgroup_v2: true,
            }),
        );
        let fix = plan(swap_active, &fx, &files(&[]));
        assert_eq!(
            fix.steps[0].action,
            Action::Command {
                argv: vec!["swapoff".into(), "/dev/dm-1".into()],
                undo: Some(vec!["swapon".into(), "/dev/dm-1".into()]),
            }
        );
        if let Some(s) = fx.get_mut(&SWAP) {
            s.kubelet = Some(kubelet::parse("failSwapOn: false\n").unwrap());
        }
        let fix = plan(swap_active, &fx, &files(&[]));
        assert!(fix.steps.is_empty());
        assert!(fix.notes[0].contains("NodeSwap"), "{:?}", fix.notes);
    }
}
