//! Kernel networking prerequisites: br_netfilter, `bridge-nf-call-ip{,6}tables` and `ip_forward`, live and as persisted for boot.

use std::collections::BTreeMap;

use super::Area;
use crate::{
    core::{
        check::{CheckDef, Ctx, Finding, Outcome},
        facts::{Fact, FactError, get},
        host::Host,
        source::{Facts, Source},
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
            check: "kernel.br-netfilter",
            edits: |_| vec![MODULES_CONF.into()],
            plan: plan_br_netfilter,
        },
        Fix {
            check: "sysctl.bridge-nf-call-iptables",
            edits: |_| vec![SYSCTL_PERSIST.into()],
            plan: plan_bridge_nf_call,
        },
        Fix {
            check: "sysctl.ip-forward",
            edits: |_| vec![SYSCTL_PERSIST.into()],
            plan: plan_ip_forward,
        },
    ],
};

/// The sysctls the node needs, live and as persisted for boot, and how br_netfilter is loaded.
pub const SYSCTL: Source<SysctlFacts> = Source::files("sysctl", |g| gather(g.host));

const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "kernel.br-netfilter",
        needs: &[&SYSCTL],
        run: br_netfilter,
    },
    CheckDef {
        id: "sysctl.bridge-nf-call-iptables",
        needs: &[&SYSCTL],
        run: bridge_nf_call,
    },
    CheckDef {
        id: "sysctl.ip-forward",
        needs: &[&SYSCTL],
        run: ip_forward,
    },
];

pub const IP_FORWARD: &str = "net.ipv4.ip_forward";
pub const NF_CALL_IPTABLES: &str = "net.bridge.bridge-nf-call-iptables";
pub const NF_CALL_IP6TABLES: &str = "net.bridge.bridge-nf-call-ip6tables";
const KEYS: &[&str] = &[IP_FORWARD, NF_CALL_IPTABLES, NF_CALL_IP6TABLES];

/// The sysctl.d search path, highest precedence first (systemd-sysctl(8)); `/etc/sysctl.conf` is applied last.
pub const SYSCTL_DIRS: &[&str] = &[
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
];
pub const SYSCTL_CONF: &str = "/etc/sysctl.conf";
/// Where our remediation (and `fix`) persists the values.
pub const PERSIST_FILE: &str = "/etc/sysctl.d/99-kubernetes.conf";
pub const MODULES_LOAD_DIRS: &[&str] = &[
    "/etc/modules-load.d",
    "/run/modules-load.d",
    "/usr/local/lib/modules-load.d",
    "/usr/lib/modules-load.d",
    "/lib/modules-load.d",
];

/// `net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`.
pub fn proc_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// One `key = value` line of a sysctl.d file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub value: String,
}

impl Assignment {
    pub fn cite(&self) -> String {
        format!("{}:{}: {} = {}", self.file, self.line, self.key, self.value)
    }
}

/// Parses a sysctl.d file: `#`/`;` comments, `-` prefix (ignore errors), `/` or `.` separators.
pub fn parse_sysctl_conf(file: &str, text: &str) -> Vec<Assignment> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            let key = k.trim().trim_start_matches('-').replace('/', ".");
            Some(Assignment {
                file: file.to_string(),
                line: i + 1,
                key,
                value: v.trim().to_string(),
            })
        })
        .collect()
}

/// Lists `.conf` files over a search path the way systemd does: a name in an earlier dir masks the same name later; order by name.
pub fn config_files(host: &Host, dirs: &[&str]) -> Result<Vec<String>, FactError> {
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for dir in dirs {
        for name in host.list_dir(dir)? {
            if name.ends_with(".conf") {
                by_name
                    .entry(name.clone())
                    .or_insert_with(|| format!("{dir}/{name}"));
            }
        }
    }
    Ok(by_name.into_values().collect())
}

/// A first-token value of a /proc file, e.g. `1` from "1\n".
pub fn first_token(text: &str) -> String {
    text.split_whitespace().next().unwrap_or("").to_string()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlFacts {
    /// Live values by key, from /proc/sys.
    pub live: BTreeMap<String, Fact<String>>,
    /// Every assignment of our keys in boot order: the last one per key wins.
    pub persisted: Fact<Vec<Assignment>>,
    /// `/proc/sys/net/bridge` exists: br_netfilter (or the built-in) is active.
    pub bridge_sysctls: bool,
    /// Whether `/proc/modules` lists br_netfilter, when readable.
    pub module_listed: Option<bool>,
    /// `modules.builtin` of the running kernel lists br_netfilter.
    pub builtin: bool,
    /// Where br_netfilter is loaded at boot: `file:line`.
    pub load_at_boot: Vec<String>,
}

fn mentions_module(text: &str, module: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.split('#').next().unwrap_or("").trim();
            l == module || l.replace('-', "_") == module
        })
        .map(|i| i + 1)
}

pub fn gather(host: &Host) -> Fact<SysctlFacts> {
    let live = KEYS
        .iter()
        .map(|k| {
            (
                k.to_string(),
                host.read(&proc_path(k)).map(|t| first_token(&t)),
            )
        })
        .collect();
    let persisted = (|| {
        let mut files = config_files(host, SYSCTL_DIRS)?;
        files.push(SYSCTL_CONF.into());
        let mut out = Vec::new();
        for f in files {
            if let Some(text) = host.read_opt(&f)? {
                out.extend(
                    parse_sysctl_conf(&f, &text)
                        .into_iter()
                        .filter(|a| KEYS.contains(&a.key.as_str())),
                );
            }
        }
        Ok(out)
    })();
    let release = host
        .read_opt("/proc/sys/kernel/osrelease")
        .ok()
        .flatten()
        .map(|t| first_token(&t));
    let builtin = release
        .and_then(|r| {
            host.read_opt(&format!("/lib/modules/{r}/modules.builtin"))
                .ok()
                .flatten()
        })
        .is_some_and(|t| t.lines().any(|l| l.ends_with("/br_netfilter.ko")));
    let mut load_at_boot = Vec::new();
    let mut files = config_files(host, MODULES_LOAD_DIRS).unwrap_or_default();
    files.push("/etc/modules".into());
    for f in files {
        if let Some(line) = host
            .read_opt(&f)
            .ok()
            .flatten()
            .and_then(|t| mentions_module(&t, "br_netfilter"))
        {
            load_at_boot.push(format!("{f}:{line}: br_netfilter"));
        }
    }
    Ok(SysctlFacts {
        live,
        persisted,
        bridge_sysctls: host.exists("/proc/sys/net/bridge"),
        module_listed: host
            .read_opt("/proc/modules")
            .ok()
            .flatten()
            .map(|t| t.lines().any(|l| l.starts_with("br_netfilter "))),
        builtin,
        load_at_boot,
    })
}

fn br_netfilter(facts: &Facts, _ctx: &Ctx) -> Outcome {
    let s = facts.get(&SYSCTL)?;
    let loaded = s.bridge_sysctls || s.module_listed == Some(true);
    if !loaded {
        return Ok(Finding::fail(
            "br_netfilter is not loaded: bridged pod traffic bypasses iptables, so Services and NetworkPolicy break",
        )
        .evidence("/proc/sys/net/bridge: does not exist")
        .evidence(match s.module_listed {
            Some(_) => "/proc/modules: no br_netfilter line",
            None => "/proc/modules: not readable",
        }));
    }
    let mut ev = vec![if s.bridge_sysctls {
        "/proc/sys/net/bridge: present".to_string()
    } else {
        "/proc/modules: br_netfilter".to_string()
    }];
    if s.builtin {
        ev.push("modules.builtin: br_netfilter is built into the kernel".into());
        return Ok(Finding::pass("br_netfilter is built into the kernel").evidence_all(ev));
    }
    if s.load_at_boot.is_empty() {
        return Ok(Finding::warn(
            "br_netfilter is loaded now but nothing loads it at boot: after a reboot pod traffic bypasses iptables",
        )
        .evidence_all(ev)
        .evidence("modules-load.d: no file lists br_netfilter")
        .remediation("echo br_netfilter > /etc/modules-load.d/k8s.conf"));
    }
    ev.extend(s.load_at_boot.iter().cloned());
    Ok(Finding::pass("br_netfilter is loaded and loaded at boot").evidence_all(ev))
}

/// The shell command that persists `key = 1` for each key.
fn persist_command(keys: &[&str]) -> String {
    format!(
        "printf '%s\\n' {} >> {PERSIST_FILE}",
        keys.iter()
            .map(|k| format!("'{k} = 1'"))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Live value 1 and a persisted 1 for each key; `module` marks keys that exist only with br_netfilter.
fn sysctl_is_one(s: &SysctlFacts, keys: &[&str], why: &str) -> Outcome {
    let mut bad = Vec::new();
    let mut ev = Vec::new();
    for k in keys {
        let v = get(s.live.get(*k).expect("gathered key"))?;
        ev.push(format!("{} = {v}", proc_path(k)));
        if v != "1" {
            bad.push(format!("{k} = {v}"));
        }
    }
    if !bad.is_empty() {
        let sets = keys
            .iter()
            .map(|k| format!("sysctl -w {k}=1"))
            .collect::<Vec<_>>()
            .join(" && ");
        return Ok(Finding::fail(format!("{} ({why})", bad.join(", ")))
            .evidence_all(ev)
            .remediation(format!("{sets} && {}", persist_command(keys))));
    }
    let persisted = get(&s.persisted)?;
    let mut not_kept = Vec::new();
    for k in keys {
        match persisted.iter().rfind(|a| a.key == *k) {
            Some(a) if a.value == "1" => ev.push(a.cite()),
            Some(a) => {
                ev.push(format!("{} (overrides every earlier file)", a.cite()));
                not_kept.push(format!("{k} is set to {} at boot by {}", a.value, a.file));
            }
            None => {
                ev.push(format!("{k}: no sysctl.d file sets it"));
                not_kept.push(format!("{k} is not persisted"));
            }
        }
    }
    if not_kept.is_empty() {
        return Ok(
            Finding::pass(format!("{} = 1 now and at boot", keys.join(", "))).evidence_all(ev),
        );
    }
    Ok(Finding::warn(format!("1 now, but {}: a reboot undoes it", not_kept.join("; ")))
        .evidence_all(ev)
        .remediation(format!(
            "{}, and remove any later line that sets it otherwise (files apply in name order, /etc/sysctl.conf last)",
            persist_command(keys)
        )))
}

fn bridge_nf_call(facts: &Facts, _ctx: &Ctx) -> Outcome {
    let s = facts.get(&SYSCTL)?;
    if !s.bridge_sysctls {
        return Ok(Finding::skip(
            "br_netfilter is not loaded, so these sysctls do not exist (kernel.br-netfilter reports it)",
        ));
    }
    sysctl_is_one(
        s,
        &[NF_CALL_IPTABLES, NF_CALL_IP6TABLES],
        "bridged traffic skips iptables: Service traffic between pods on one node is not NATed",
    )
}

fn ip_forward(facts: &Facts, _ctx: &Ctx) -> Outcome {
    let s = facts.get(&SYSCTL)?;
    sysctl_is_one(
        s,
        &[IP_FORWARD],
        "the node drops pod traffic it should route; kubeadm's preflight fails FileContent--proc-sys-net-ipv4-ip_forward",
    )
}

/// Where the sysctl fixes persist their values.
pub const SYSCTL_PERSIST: &str = "/etc/sysctl.d/99-kubernetes.conf";
/// Where the br_netfilter fix makes the module load at boot.
pub const MODULES_CONF: &str = "/etc/modules-load.d/k8s.conf";

fn plan_br_netfilter(facts: &Facts, files: &Files, fix: &mut CheckFix) -> Result<(), String> {
    let s = facts.get(&SYSCTL).map_err(|e| e.to_string())?;
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
    file == SYSCTL_CONF || file.rsplit('/').next().is_some_and(|n| n > ours)
}

/// Sets each key to 1 now and in [`SYSCTL_PERSIST`]; names any later file that would override it at boot.
fn sysctl_one(
    facts: &Facts,
    files: &Files,
    fix: &mut CheckFix,
    keys: &[&str],
) -> Result<(), String> {
    let s = facts.get(&SYSCTL).map_err(|e| e.to_string())?;
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
    let ours = parse_sysctl_conf(SYSCTL_PERSIST, &text);
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

fn plan_ip_forward(facts: &Facts, files: &Files, fix: &mut CheckFix) -> Result<(), String> {
    sysctl_one(facts, files, fix, &[IP_FORWARD])
}

fn plan_bridge_nf_call(facts: &Facts, files: &Files, fix: &mut CheckFix) -> Result<(), String> {
    sysctl_one(facts, files, fix, &[NF_CALL_IPTABLES, NF_CALL_IP6TABLES])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        checks::fix_test::{files, plan},
        core::check::{Role, Status},
        fix::plan::Action,
    };

    fn ctx() -> Ctx {
        Ctx {
            role: Role::Worker,
            now: std::time::SystemTime::now(),
        }
    }

    fn facts(live: &[(&str, &str)], persisted: Vec<Assignment>) -> Facts {
        let mut l: BTreeMap<String, Fact<String>> = KEYS
            .iter()
            .map(|k| (k.to_string(), Ok("1".to_string())))
            .collect();
        for (k, v) in live {
            l.insert(k.to_string(), Ok(v.to_string()));
        }
        Facts::default().with(
            &SYSCTL,
            Ok(SysctlFacts {
                live: l,
                persisted: Ok(persisted),
                bridge_sysctls: true,
                module_listed: Some(true),
                builtin: false,
                load_at_boot: vec!["/etc/modules-load.d/k8s.conf:1: br_netfilter".into()],
            }),
        )
    }

    #[test]
    fn parses_sysctl_files_with_odd_syntax() {
        let a = parse_sysctl_conf(
            "/etc/sysctl.d/k8s.conf",
            "# c\n; c\nnet.bridge.bridge-nf-call-ip6tables = 1\n-net/ipv4/ip_forward=1   \n\tnet.ipv4.ip_forward\t=\t0\nbogus line\n",
        );
        let kv: Vec<_> = a
            .iter()
            .map(|a| (a.line, a.key.as_str(), a.value.as_str()))
            .collect();
        assert_eq!(
            kv,
            [
                (3, NF_CALL_IP6TABLES, "1"),
                (4, IP_FORWARD, "1"),
                (5, IP_FORWARD, "0")
            ]
        );
        assert_eq!(first_token("1  \n"), "1");
    }

    #[test]
    fn ip_forward_zero_fails_and_persisted_one_passes() {
        let f = ip_forward(&facts(&[(IP_FORWARD, "0")], vec![]), &ctx()).unwrap();
        assert_eq!(f.status, Status::Fail);
        assert_eq!(f.evidence, ["/proc/sys/net/ipv4/ip_forward = 0"]);
        let p = parse_sysctl_conf("/etc/sysctl.d/k8s.conf", "net.ipv4.ip_forward = 1\n");
        assert_eq!(
            ip_forward(&facts(&[], p), &ctx()).unwrap().status,
            Status::Pass
        );
    }

    #[test]
    fn a_later_file_overriding_to_zero_warns_naming_it() {
        let mut p = parse_sysctl_conf("/etc/sysctl.d/k8s.conf", "net.ipv4.ip_forward = 1\n");
        p.extend(parse_sysctl_conf(
            "/etc/sysctl.conf",
            "\nnet.ipv4.ip_forward = 0\n",
        ));
        let f = ip_forward(&facts(&[], p), &ctx()).unwrap();
        assert_eq!(f.status, Status::Warn);
        assert!(
            f.evidence
                .iter()
                .any(|e| e.starts_with("/etc/sysctl.conf:2")),
            "{f:?}"
        );
        let f = ip_forward(&facts(&[], vec![]), &ctx()).unwrap();
        assert_eq!(f.status, Status::Warn);
    }

    #[test]
    fn bridge_sysctls_need_both_keys_and_skip_without_the_module() {
        let f = bridge_nf_call(&facts(&[(NF_CALL_IP6TABLES, "0")], vec![]), &ctx()).unwrap();
        assert_eq!(f.status, Status::Fail);
        assert!(f.message.contains("ip6tables = 0"));
        let mut x = facts(&[], vec![]);
        if let Some(s) = x.get_mut(&SYSCTL) {
            s.bridge_sysctls = false;
        }
        assert_eq!(bridge_nf_call(&x, &ctx()).unwrap().status, Status::Skip);
    }

    #[test]
    fn br_netfilter_states() {
        let mut x = facts(&[], vec![]);
        assert_eq!(br_netfilter(&x, &ctx()).unwrap().status, Status::Pass);
        if let Some(s) = x.get_mut(&SYSCTL) {
            s.load_at_boot.clear();
        }
        assert_eq!(br_netfilter(&x, &ctx()).unwrap().status, Status::Warn);
        if let Some(s) = x.get_mut(&SYSCTL) {
            s.bridge_sysctls = false;
            s.module_listed = Some(false);
        }
        assert_eq!(br_netfilter(&x, &ctx()).unwrap().status, Status::Fail);
        assert_eq!(
            mentions_module("# br_netfilter\nbr-netfilter # for k8s\n", "br_netfilter"),
            Some(2)
        );
    }

    fn sysctl_facts(live: &str, persisted: Vec<Assignment>) -> Facts {
        let mut l = BTreeMap::new();
        for k in [IP_FORWARD, NF_CALL_IPTABLES, NF_CALL_IP6TABLES] {
            l.insert(k.to_string(), Ok(live.to_string()));
        }
        Facts::default().with(
            &SYSCTL,
            Ok(SysctlFacts {
                live: l,
                persisted: Ok(persisted),
                bridge_sysctls: true,
                module_listed: Some(true),
                builtin: false,
                load_at_boot: vec![],
            }),
        )
    }

    #[test]
    fn ip_forward_sets_now_persists_and_names_a_later_override() {
        let mut p = parse_sysctl_conf(SYSCTL_PERSIST, "net.ipv4.ip_forward=0\n");
        p.extend(parse_sysctl_conf(
            SYSCTL_CONF,
            "# x\nnet.ipv4.ip_forward = 0\n",
        ));
        let fx = sysctl_facts("0", p);
        let f = files(&[(
            SYSCTL_PERSIST,
            Content::Text("# mine\nnet.ipv4.ip_forward=0\n".into()),
        )]);
        let fix = plan(plan_ip_forward, &fx, &f);
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
        let p = parse_sysctl_conf(SYSCTL_PERSIST, "net.ipv4.ip_forward = 1\n");
        let f = files(&[(
            SYSCTL_PERSIST,
            Content::Text("net.ipv4.ip_forward = 1\n".into()),
        )]);
        let fix = plan(plan_ip_forward, &sysctl_facts("1", p), &f);
        assert!(fix.steps.is_empty() && fix.notes.is_empty(), "{fix:?}");
    }

    #[test]
    fn br_netfilter_loads_and_creates_the_modules_file() {
        let mut fx = sysctl_facts("1", vec![]);
        if let Some(s) = fx.get_mut(&SYSCTL) {
            s.bridge_sysctls = false;
            s.module_listed = Some(false);
        }
        let fix = plan(plan_br_netfilter, &fx, &files(&[]));
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
}
