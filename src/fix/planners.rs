//! One planner per fixable check: reads the facts the check read (and the files it would edit), adds the steps.

use std::collections::BTreeMap;

use crate::{
    dns,
    facts::{Facts, get},
    firewall::{self, Origin, SAVED_IPTABLES},
    kubelet, selinux,
    swap::{self, FSTAB, SYSTEMD_ETC},
    sysctl::{self, IP_FORWARD, NF_CALL_IP6TABLES, NF_CALL_IPTABLES},
};

use super::{
    edit,
    plan::{Action, CheckFix, Content, Files, NftRuleStep, RuleStep, Step},
};

/// Where the sysctl fixes persist their values.
pub const SYSCTL_PERSIST: &str = "/etc/sysctl.d/99-kubernetes.conf";
/// Where the br_netfilter fix makes the module load at boot.
pub const MODULES_CONF: &str = "/etc/modules-load.d/k8s.conf";

/// Adds the steps that fix one check to `fix`; an `Err` is why it cannot be planned.
pub type Planner = fn(&Facts, &Files, &mut CheckFix) -> Result<(), String>;

const PLANNERS: &[(&str, Planner)] = &[
    ("dns.loopback-nameserver", dns_loopback),
    ("firewall.apiserver-port", firewall_paths),
    ("firewall.control-plane-ports", firewall_paths),
    ("firewall.kubelet-port", firewall_paths),
    ("firewall.overlay", firewall_paths),
    ("kernel.br-netfilter", br_netfilter),
    ("selinux.mode", selinux_mode),
    ("swap.active", swap_active),
    ("swap.persistent", swap_persistent),
    ("sysctl.bridge-nf-call-iptables", bridge_nf_call),
    ("sysctl.ip-forward", ip_forward),
];

/// The planner of a check, when it has one.
pub fn planner(id: &str) -> Option<Planner> {
    PLANNERS.iter().find(|(i, _)| *i == id).map(|(_, p)| *p)
}

/// Every host path a planner may edit, given the facts: read into [`Files`] before planning.
pub fn paths(facts: &Facts) -> Vec<String> {
    let mut v: Vec<String> = [
        FSTAB,
        SYSCTL_PERSIST,
        MODULES_CONF,
        selinux::CONFIG,
        kubelet::CONFIG_PATH,
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(SAVED_IPTABLES.iter().map(|(p, _)| p.to_string()))
    .chain(firewall::SAVED_NFT.iter().map(|p| p.to_string()))
    .collect();
    if let Ok(s) = &facts.swap {
        v.extend(s.enabled_units.iter().map(|u| format!("{SYSTEMD_ETC}/{u}")));
    }
    v
}

/// Whether the kubelet is set up to run with swap (NodeSwap: `failSwapOn: false` on cgroup v2); then swap is
/// the operator's choice and the swap fixes only say so.
fn swap_intended(s: &swap::SwapFacts, fix: &mut CheckFix) -> bool {
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
    let s = get(&facts.swap).map_err(|e| e.to_string())?;
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
    let s = get(&facts.swap).map_err(|e| e.to_string())?;
    if swap_intended(s, fix) {
        return Ok(());
    }
    if let Some(text) = files.text(FSTAB)? {
        let lines: Vec<usize> = swap::parse_fstab_swaps(text)
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

fn br_netfilter(facts: &Facts, files: &Files, fix: &mut CheckFix) -> Result<(), String> {
    let s = get(&facts.sysctl).map_err(|e| e.to_string())?;
    if !(s.bridge_sysctls || s.module_listed == Some(true)) {
        fix.step(Step::command(
            "load br_netfilter so bridged pod traffic passes through iptables",
            &["modprobe", "br_netfilter"],
            Some(&["modprobe", "-r", "br_netfilter"]),
        ));
    }
    if !s.builtin && s.load_at_boot.is_empty() {
        let old = files.text(MODULES_CONF)?;
        fix.step(Step::file(
            "load br_netfilter at every boot",
            MODULES_CONF,
            old.map_or(Content::Absent, |t| Content::Text(t.to_string())),
            Content::Text(edit::append_line(old.unwrap_or(""), "br_netfilter")),
        ));
    }
    Ok(())
}

/// Whether a sysctl.d file is applied after ours: a later name, or `/etc/sysctl.conf` (always last).
fn applied_after_ours(file: &str) -> bool {
    let ours = SYSCTL_PERSIST.rsplit('/').next().unwrap_or_default();
    file == sysctl::SYSCTL_CONF || file.rsplit('/').next().is_some_and(|n| n > ours)
}

/// Sets each key to 1 now and in [`SYSCTL_PERSIST`]; names any later file that would override it at boot.
fn sysctl_one(
    facts: &Facts,
    files: &Files,
    fix: &mut CheckFix,
    keys: &[&str],
) -> Result<(), String> {
    let s = get(&facts.sysctl).map_err(|e| e.to_string())?;
    for k in keys {
        match s.live.get(*k).map(get) {
            Some(Ok(v)) if v != "1" => fix.step(Step::command(
                format!("set {k} to 1 now (it is {v})"),
                &["sysctl", "-w", &format!("{k}=1")],
                Some(&["sysctl", "-w", &format!("{k}={v}")]),
            )),
            Some(Err(e)) => fix.note(format!("{k} cannot be set now: {e}")),
            _ => {}
        }
    }
    let persisted = get(&s.persisted).map_err(|e| e.to_string())?;
    let old = files.text(SYSCTL_PERSIST)?;
    let mut text = old.unwrap_or("").to_string();
    let ours = sysctl::parse_sysctl_conf(SYSCTL_PERSIST, &text);
    for k in keys {
        let mine: Vec<_> = ours.iter().filter(|a| a.key == *k).collect();
        if mine.is_empty() {
            text = edit::append_line(&text, &format!("{k} = 1"));
        }
        for a in mine.iter().filter(|a| a.value != "1") {
            text = edit::replace_line(&text, a.line, &format!("{k} = 1"));
        }
        for a in persisted
            .iter()
            .filter(|a| a.key == *k && a.value != "1" && applied_after_ours(&a.file))
        {
            fix.note(format!(
                "{} is applied after {SYSCTL_PERSIST} and wins at boot: remove that line",
                a.cite()
            ));
        }
    }
    if Some(text.as_str()) != old {
        fix.step(Step::file(
            format!("persist {} = 1 for the next boot", keys.join(", ")),
            SYSCTL_PERSIST,
            old.map_or(Content::Absent, |t| Content::Text(t.to_string())),
            Content::Text(text),
        ));
    }
    Ok(())
}

fn ip_forward(facts: &Facts, files: &Files, fix: &mut CheckFix) -> Result<(), String> {
    sysctl_one(facts, files, fix, &[IP_FORWARD])
}

fn bridge_nf_call(facts: &Facts, files: &Files, fix: &mut CheckFix) -> Result<(), String> {
    sysctl_one(facts, files, fix, &[NF_CALL_IPTABLES, NF_CALL_IP6TABLES])
}

fn selinux_mode(facts: &Facts, files: &Files, fix: &mut CheckFix) -> Result<(), String> {
    let s = get(&facts.selinux).map_err(|e| e.to_string())?;
    if s.enforcing_now == Some(true) {
        fix.step(Step::command(
            "switch SELinux to permissive now",
            &["setenforce", "0"],
            Some(&["setenforce", "1"]),
        ));
    }
    if let Some(text) = files.text(selinux::CONFIG)?
        && let Some((mode, line)) = selinux::parse_config(text)
        && mode == "enforcing"
    {
        fix.step(Step::file(
            "boot SELinux in permissive mode",
            selinux::CONFIG,
            Content::Text(text.to_string()),
            Content::Text(edit::replace_line(text, line, "SELINUX=permissive")),
        ));
    }
    Ok(())
}

fn dns_loopback(facts: &Facts, files: &Files, fix: &mut CheckFix) -> Result<(), String> {
    let d = get(&facts.dns).map_err(|e| e.to_string())?;
    let Some(up) = dns::upstreams(d) else {
        fix.note(format!(
            "no file with real upstream nameservers exists here ({} is absent or lists only loopback): put your upstream nameservers in {} yourself",
            dns::RESOLVED_UPSTREAM,
            dns::ETC_RESOLV
        ));
        return Ok(());
    };
    let Some(text) = files.text(kubelet::CONFIG_PATH)? else {
        fix.note(format!(
            "the kubelet is not configured yet: kubeadm sets its resolvConf to {} when systemd-resolved runs; run this again after `kubeadm init`/`join`",
            up.path
        ));
        return Ok(());
    };
    let cfg = kubelet::parse(text).map_err(|e| format!("{}: {e}", kubelet::CONFIG_PATH))?;
    if cfg.resolv_conf.as_deref() == Some(up.path.as_str()) {
        fix.note(format!(
            "the kubelet already uses {}; the problem is in that file: edit it by hand",
            up.path
        ));
        return Ok(());
    }
    let body = format!("resolvConf: {}", up.path);
    let new = match kubelet::line_of(text, "resolvConf") {
        Some(l) => edit::replace_line(text, l, &body),
        None => edit::append_line(text, &body),
    };
    fix.step(Step::file(
        format!(
            "hand pods the real upstreams ({})",
            up.nameservers
                .iter()
                .map(|n| n.text.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        kubelet::CONFIG_PATH,
        Content::Text(text.to_string()),
        Content::Text(new),
    ));
    fix.step(Step::command(
        "make the kubelet read its new configuration (restart it again after an undo)",
        &["systemctl", "restart", "kubelet"],
        None,
    ));
    Ok(())
}

/// A saved rules file being edited: (as read, as edited so far); `None` when it is absent or cannot be edited.
fn saved_text<'a>(
    texts: &'a mut BTreeMap<&'static str, (String, String)>,
    files: &Files,
    path: &'static str,
    fix: &mut CheckFix,
) -> Option<&'a mut (String, String)> {
    if !texts.contains_key(path) {
        match files.text(path) {
            Ok(Some(t)) => {
                texts.insert(path, (t.to_string(), t.to_string()));
            }
            Ok(None) => return None,
            Err(e) => {
                fix.note(e);
                return None;
            }
        }
    }
    texts.get_mut(path)
}

/// Opens each path the check found blocked: an ACCEPT inserted before the deciding rule in the running ruleset
/// (`iptables -C` first, or the nft chain searched for it, so it lands once), and the same line in the
/// distribution's saved rules file (iptables-save files, nftables.conf) when one is in use. Under `--root` the
/// saved file is what the check read, so only the file changes.
fn firewall_paths(facts: &Facts, files: &Files, fix: &mut CheckFix) -> Result<(), String> {
    let fw = get(&facts.firewall).map_err(|e| e.to_string())?;
    let blocked = firewall::blocked_paths(&fix.id, fw).map_err(|e| e.to_string())?;
    if blocked.is_empty() {
        fix.note("no path is blocked outright: the finding is about rules the evaluator cannot decide; check them by hand");
    }
    for m in &fw.managers {
        fix.note(format!(
            "{} manages the firewall ({}): it drops these rules on its next reload; open the ports through it as well",
            m.name, m.evidence
        ));
    }
    let mut texts: BTreeMap<&str, (String, String)> = BTreeMap::new();
    let mut seen = vec![];
    let mut unsaved = false;
    let mut nft_unsaved = false;
    for b in &blocked {
        for d in b.answer.parts.iter().filter(|d| d.verdict.blocks()) {
            let q = &b.answer.query;
            let Some(at) = d.insert_point() else {
                fix.note(format!(
                    "{}: no place to insert a rule was found",
                    q.describe_for(d.source)
                ));
                continue;
            };
            let accept = firewall::accept_rule(fw, q, d.source, &at);
            let key = (
                accept.tool.clone(),
                at.table.clone(),
                at.chain.clone(),
                accept.rule.clone(),
            );
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let by = d.rule.as_ref().map(|r| r.cite()).unwrap_or_default();
            let guessed = if b.guessed {
                " (a CNI default pod range: no CNI is configured yet)"
            } else {
                ""
            };
            if !at.origin.is_iptables() {
                if fw.live {
                    fix.step(Step {
                        why: format!("accept {}{guessed} before {by}", q.describe_for(d.source)),
                        action: Action::NftRule(NftRuleStep {
                            family: at.family.as_str().into(),
                            table: at.table.clone(),
                            chain: at.chain.clone(),
                            before: at.handle,
                            rule: accept.rule.clone(),
                        }),
                    });
                }
                let line = accept.rule.join(" ");
                let before = d.rule.as_ref().map(|r| r.text.as_str());
                let mut saved = false;
                for path in firewall::SAVED_NFT {
                    let Some(entry) = saved_text(&mut texts, files, path, fix) else {
                        continue;
                    };
                    if let Some(new) = edit::insert_nft_rule(
                        &entry.1,
                        at.family.as_str(),
                        &at.table,
                        &at.chain,
                        before,
                        at.position,
                        &line,
                    ) {
                        entry.1 = new;
                    }
                    saved |= entry
                        .1
                        .lines()
                        .any(|l| l.split('#').next().unwrap_or("").trim() == line);
                }
                nft_unsaved |= !saved;
                continue;
            }
            if at.origin != Origin::IptablesSaved {
                fix.step(Step {
                    why: format!("accept {}{guessed} before {by}", q.describe_for(d.source)),
                    action: Action::Rule(RuleStep {
                        program: accept.tool.clone(),
                        table: at.table.clone(),
                        chain: at.chain.clone(),
                        position: at.position,
                        spec: accept.rule.clone(),
                    }),
                });
            }
            let line = format!("-A {} {}", at.chain, accept.rule.join(" "));
            let before = d.rule.as_ref().map(|r| r.text.as_str());
            let mut saved = false;
            for (path, _) in SAVED_IPTABLES.iter().filter(|(_, f)| *f == at.family) {
                let Some(entry) = saved_text(&mut texts, files, path, fix) else {
                    continue;
                };
                if let Some(new) = edit::insert_saved_rule(
                    &entry.1,
                    &at.table,
                    &at.chain,
                    before,
                    at.position,
                    &line,
                ) {
                    entry.1 = new;
                }
                saved |= entry.1.lines().any(|l| l.trim() == line);
            }
            unsaved |= !saved;
        }
    }
    for (path, (old, new)) in texts {
        if old != new {
            fix.step(Step::file(
                format!("keep the rules across reboots in {path}"),
                path,
                Content::Text(old),
                Content::Text(new),
            ));
        }
    }
    if nft_unsaved {
        fix.note(format!(
            "no saved nftables ruleset here ({}) holds that chain: add the rules to the file your system loads at boot by hand{}",
            firewall::SAVED_NFT.join(", "),
            if fw.live { ", or they last until the next reboot" } else { "" }
        ));
    }
    if unsaved && fw.live {
        fix.note(format!(
            "no saved rules file ({}) is in use: the rules last until the next reboot unless your distribution's tool saves them",
            SAVED_IPTABLES.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        catalog,
        check::Status,
        fix::plan::Action,
        sysctl::{Assignment, SysctlFacts},
    };
    use std::collections::BTreeMap;

    #[test]
    fn every_fixable_check_has_a_planner_and_no_other() {
        for e in catalog::catalog() {
            assert_eq!(
                e.fix,
                planner(&e.id).is_some(),
                "{}: catalog fix vs planner",
                e.id
            );
        }
        for (id, _) in PLANNERS {
            assert!(catalog::find(id).is_some(), "{id} has no catalog entry");
        }
    }

    fn sysctl_facts(live: &str, persisted: Vec<Assignment>) -> Facts {
        let mut l = BTreeMap::new();
        for k in [IP_FORWARD, NF_CALL_IPTABLES, NF_CALL_IP6TABLES] {
            l.insert(k.to_string(), Ok(live.to_string()));
        }
        Facts {
            sysctl: Ok(SysctlFacts {
                live: l,
                persisted: Ok(persisted),
                bridge_sysctls: true,
                module_listed: Some(true),
                builtin: false,
                load_at_boot: vec![],
            }),
            ..Facts::default()
        }
    }

    fn files(entries: &[(&str, Content)]) -> Files {
        let mut f = Files::default();
        for p in paths(&Facts::default()) {
            f.insert(&p, Ok(Content::Absent));
        }
        for (p, c) in entries {
            f.insert(p, Ok(c.clone()));
        }
        f
    }

    fn plan(p: Planner, facts: &Facts, files: &Files) -> CheckFix {
        let mut fix = CheckFix::new("x", Status::Fail, "");
        p(facts, files, &mut fix).unwrap();
        fix
    }

    #[test]
    fn ip_forward_sets_now_persists_and_names_a_later_override() {
        let mut p = sysctl::parse_sysctl_conf(SYSCTL_PERSIST, "net.ipv4.ip_forward=0\n");
        p.extend(sysctl::parse_sysctl_conf(
            sysctl::SYSCTL_CONF,
            "# x\nnet.ipv4.ip_forward = 0\n",
        ));
        let fx = sysctl_facts("0", p);
        let f = files(&[(
            SYSCTL_PERSIST,
            Content::Text("# mine\nnet.ipv4.ip_forward=0\n".into()),
        )]);
        let fix = plan(ip_forward, &fx, &f);
        assert_eq!(
            fix.steps[0].action,
            Action::Command {
                argv: vec!["sysctl".into(), "-w".into(), "net.ipv4.ip_forward=1".into()],
                undo: Some(vec![
                    "sysctl".into(),
                    "-w".into(),
                    "net.ipv4.ip_forward=0".into()
                ]),
            }
        );
        let Action::File { new, .. } = &fix.steps[1].action else {
            panic!()
        };
        assert_eq!(
            *new,
            Content::Text("# mine\nnet.ipv4.ip_forward = 1\n".into())
        );
        assert_eq!(fix.notes.len(), 1);
        assert!(
            fix.notes[0].starts_with("/etc/sysctl.conf:2"),
            "{:?}",
            fix.notes
        );
    }

    #[test]
    fn settled_sysctls_plan_nothing() {
        let p = sysctl::parse_sysctl_conf(SYSCTL_PERSIST, "net.ipv4.ip_forward = 1\n");
        let f = files(&[(
            SYSCTL_PERSIST,
            Content::Text("net.ipv4.ip_forward = 1\n".into()),
        )]);
        let fix = plan(ip_forward, &sysctl_facts("1", p), &f);
        assert!(fix.steps.is_empty() && fix.notes.is_empty(), "{fix:?}");
    }

    #[test]
    fn swap_is_turned_off_unless_the_kubelet_is_set_up_for_it() {
        let swaps = "Filename Type Size Used Priority\n/dev/dm-1 partition 2097148 0 -2\n";
        let mut fx = Facts {
            swap: Ok(swap::SwapFacts {
                swaps: swap::parse_proc_swaps(swaps),
                fstab: Ok(vec![]),
                enabled_units: vec![],
                zram_generator: None,
                kubelet: None,
                cgroup_v2: true,
            }),
            ..Facts::default()
        };
        let fix = plan(swap_active, &fx, &files(&[]));
        assert_eq!(
            fix.steps[0].action,
            Action::Command {
                argv: vec!["swapoff".into(), "/dev/dm-1".into()],
                undo: Some(vec!["swapon".into(), "/dev/dm-1".into()]),
            }
        );
        if let Ok(s) = &mut fx.swap {
            s.kubelet = Some(kubelet::parse("failSwapOn: false\n").unwrap());
        }
        let fix = plan(swap_active, &fx, &files(&[]));
        assert!(fix.steps.is_empty());
        assert!(fix.notes[0].contains("NodeSwap"), "{:?}", fix.notes);
    }

    #[test]
    fn br_netfilter_loads_and_creates_the_modules_file() {
        let mut fx = sysctl_facts("1", vec![]);
        if let Ok(s) = &mut fx.sysctl {
            s.bridge_sysctls = false;
            s.module_listed = Some(false);
        }
        let fix = plan(br_netfilter, &fx, &files(&[]));
        assert_eq!(fix.steps.len(), 2);
        assert!(fix.steps[0].action.is_runtime());
        let Action::File { old, new, .. } = &fix.steps[1].action else {
            panic!()
        };
        assert_eq!(
            (old, new),
            (&Content::Absent, &Content::Text("br_netfilter\n".into()))
        );
    }

    #[test]
    fn selinux_goes_permissive_now_and_at_boot() {
        let fx = Facts {
            selinux: Ok(selinux::SelinuxFacts {
                enforcing_now: Some(true),
                at_boot: Some(("enforcing".into(), 2)),
            }),
            ..Facts::default()
        };
        let cfg = "# SELinux\nSELINUX=enforcing\r\nSELINUXTYPE=targeted\n";
        let fix = plan(
            selinux_mode,
            &fx,
            &files(&[(selinux::CONFIG, Content::Text(cfg.into()))]),
        );
        let Action::File { new, .. } = &fix.steps[1].action else {
            panic!()
        };
        assert_eq!(
            *new,
            Content::Text("# SELinux\nSELINUX=permissive\r\nSELINUXTYPE=targeted\n".into())
        );
    }
}
