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
    checks::{init::InitSystem, kconfig},
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
            edits: |f| vec![persist_target(f, &[NF_CALL_IPTABLES, NF_CALL_IP6TABLES])],
            plan: plan_bridge_nf_call,
        },
        Fix {
            check: "sysctl.ip-forward",
            edits: |f| vec![persist_target(f, &[IP_FORWARD])],
            plan: plan_ip_forward,
        },
    ],
};

/// The sysctls the node needs, live and as persisted for boot, and how br_netfilter is loaded.
pub const SYSCTL: Source<SysctlFacts> = Source::files("sysctl", |g| {
    // The kernel config (shared with kernel.config, parsed once) tells a built-in br_netfilter.
    let kconfig = g.get(&kconfig::KERNEL_CONFIG).ok();
    gather(g.host, kconfig.as_deref())
});

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
/// Where our remediation (and `fix`) persists the values, unless a later file would override it.
pub const PERSIST_FILE: &str = "/etc/sysctl.d/99-kubernetes.conf";

/// The value a key has when nothing sets it: what a reboot leaves (br_netfilter starts with
/// bridge-nf-call-ip{,6}tables on; IPv4 forwarding starts off).
pub fn kernel_default(key: &str) -> Option<&'static str> {
    match key {
        NF_CALL_IPTABLES | NF_CALL_IP6TABLES => Some("1"),
        IP_FORWARD => Some("0"),
        _ => None,
    }
}

/// The file that persists `keys = 1` and wins at boot: `99-kubernetes.conf`, or a name that sorts after
/// every sysctl.d file setting one of them otherwise (`z99-kubernetes.conf` after `99-zz-disable.conf`).
/// `/etc/sysctl.conf` is applied after every sysctl.d file, so no name beats it: that line must go.
pub fn persist_file(persisted: &[Assignment], keys: &[&str]) -> String {
    let base = PERSIST_FILE.rsplit('/').next().unwrap_or_default();
    let mut name = base.to_string();
    let rivals: Vec<&str> = persisted
        .iter()
        .filter(|a| keys.contains(&a.key.as_str()) && a.value != "1" && a.file != SYSCTL_CONF)
        .map(|a| a.file.rsplit('/').next().unwrap_or_default())
        .collect();
    while rivals.iter().any(|r| *r > name.as_str()) {
        name.insert(0, 'z');
    }
    format!("/etc/sysctl.d/{name}")
}

/// Every assignment of `keys` over the sysctl.d search path and /etc/sysctl.conf, in the order they apply.
pub fn persisted(host: &Host, keys: &[&str]) -> Fact<Vec<Assignment>> {
    let mut files = config_files(host, SYSCTL_DIRS)?;
    files.push(SYSCTL_CONF.into());
    let mut out = Vec::new();
    for f in files {
        if let Some(text) = host.read_opt(&f)? {
            out.extend(
                parse_sysctl_conf(&f, &text)
                    .into_iter()
                    .filter(|a| keys.contains(&a.key.as_str())),
            );
        }
    }
    Ok(out)
}
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
    /// Whether `/proc/modules` lists br_netfilter, when it exists and is readable.
    pub module_listed: Option<bool>,
    /// Why /proc/modules gave no answer: absent (a kernel without module support) or unreadable.
    pub modules_note: Option<String>,
    /// br_netfilter is built into the kernel: modules.builtin lists it, or the kernel config says `=y`.
    pub builtin: bool,
    /// The line that shows it is built in.
    pub builtin_evidence: Option<String>,
    /// The root shows live module state at all (/proc/sys/net or /proc/modules); a bare root has neither.
    pub proc_present: bool,
    /// The init system, for what "at boot" means here.
    pub init: InitSystem,
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

pub fn gather(host: &Host, kconfig: Option<&kconfig::KernelConfig>) -> Fact<SysctlFacts> {
    let live = KEYS
        .iter()
        .map(|k| {
            (
                k.to_string(),
                host.read(&proc_path(k)).map(|t| first_token(&t)),
            )
        })
        .collect();
    let release = host
        .read_opt("/proc/sys/kernel/osrelease")
        .ok()
        .flatten()
        .map(|t| first_token(&t));
    let mut builtin_evidence = release.as_ref().and_then(|r| {
        let f = format!("/lib/modules/{r}/modules.builtin");
        let t = host.read_opt(&f).ok().flatten()?;
        t.lines()
            .any(|l| l.ends_with("/br_netfilter.ko"))
            .then(|| format!("{f}: br_netfilter is built into the kernel"))
    });
    if builtin_evidence.is_none()
        && let Some(k) = kconfig
        && let Some((_, kconfig::Opt::BuiltIn)) = k.get("BRIDGE_NETFILTER", &[])
    {
        let modules = match k.get("MODULES", &[]) {
            Some((_, kconfig::Opt::BuiltIn)) => "",
            _ => ", and CONFIG_MODULES is not set (no loadable modules at all)",
        };
        builtin_evidence = Some(format!("{}: CONFIG_BRIDGE_NETFILTER=y{modules}", k.file));
    }
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
    let (module_listed, modules_note) = match host.read_opt("/proc/modules") {
        Ok(Some(t)) => (
            Some(t.lines().any(|l| l.starts_with("br_netfilter "))),
            None,
        ),
        Ok(None) => (
            None,
            Some("/proc/modules: does not exist (a kernel without loadable modules)".to_string()),
        ),
        Err(e) => (None, Some(format!("/proc/modules: {e}"))),
    };
    Ok(SysctlFacts {
        live,
        persisted: persisted(host, KEYS),
        bridge_sysctls: host.exists("/proc/sys/net/bridge"),
        module_listed,
        modules_note,
        builtin: builtin_evidence.is_some(),
        builtin_evidence,
        proc_present: host.exists("/proc/sys/net") || host.exists("/proc/modules"),
        init: InitSystem::detect(host),
        load_at_boot,
    })
}

fn br_netfilter(facts: &Facts, _ctx: &Ctx) -> Outcome {
    let s = facts.get(&SYSCTL)?;
    if !s.proc_present {
        return Ok(Finding::skip(
            "neither /proc/sys/net nor /proc/modules exists under this root: whether br_netfilter is loaded is known only on the live node",
        ));
    }
    let loaded = s.bridge_sysctls || s.module_listed == Some(true);
    if !loaded {
        return Ok(Finding::fail(
            "br_netfilter is not loaded: bridged pod traffic bypasses iptables, so Services and NetworkPolicy break",
        )
        .evidence("/proc/sys/net/bridge: does not exist")
        .evidence(match (&s.module_listed, &s.modules_note) {
            (Some(_), _) => "/proc/modules: no br_netfilter line".to_string(),
            (None, Some(n)) => n.clone(),
            (None, None) => "/proc/modules: not read".to_string(),
        }));
    }
    let mut ev = vec![if s.bridge_sysctls {
        "/proc/sys/net/bridge: present".to_string()
    } else {
        "/proc/modules: br_netfilter".to_string()
    }];
    if let Some(b) = &s.builtin_evidence {
        ev.push(b.clone());
        return Ok(
            Finding::pass("br_netfilter is built into the kernel: present at every boot")
                .evidence_all(ev),
        );
    }
    if s.load_at_boot.is_empty() {
        return Ok(Finding::warn(
            "br_netfilter is loaded now but nothing loads it at boot: after a reboot pod traffic bypasses iptables",
        )
        .evidence_all(ev)
        .evidence("modules-load.d: no file lists br_netfilter")
        .remediation(format!(
            "echo br_netfilter > /etc/modules-load.d/k8s.conf ({})",
            s.init.modules_at_boot()
        )));
    }
    ev.extend(s.load_at_boot.iter().cloned());
    Ok(Finding::pass("br_netfilter is loaded and loaded at boot").evidence_all(ev))
}

/// The shell command that persists `key = 1` for each key in `file`.
fn persist_command(keys: &[&str], file: &str) -> String {
    format!(
        "printf '%s\\n' {} >> {file}",
        keys.iter()
            .map(|k| format!("'{k} = 1'"))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Live value 1 and a persisted 1 for each key; `module` marks keys that exist only with br_netfilter.
/// The remediation that persists `keys = 1` where it wins at boot, naming what it must beat.
fn persist_advice(s: &SysctlFacts, persisted: &[Assignment], keys: &[&str]) -> String {
    let file = persist_file(persisted, keys);
    let mut text = persist_command(keys, &file);
    let rivals: Vec<&Assignment> = persisted
        .iter()
        .filter(|a| keys.contains(&a.key.as_str()) && a.value != "1")
        .collect();
    if file != PERSIST_FILE
        && let Some(r) = rivals
            .iter()
            .filter(|a| a.file != SYSCTL_CONF)
            .max_by_key(|a| a.file.rsplit('/').next())
    {
        text.push_str(&format!(
            " ({file} sorts after {}, which sets {} = {}; or override that file by creating /etc/sysctl.d/ with its name)",
            r.file, r.key, r.value
        ));
    }
    if let Some(c) = rivals.iter().find(|a| a.file == SYSCTL_CONF) {
        text.push_str(&format!(
            ", and change {}:{} to 1 ({SYSCTL_CONF} is applied after every sysctl.d file)",
            c.file, c.line
        ));
    }
    format!("{text}; {}", s.init.sysctl_at_boot())
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
    let persisted = s.persisted.as_deref().unwrap_or_default();
    if !bad.is_empty() {
        let sets = keys
            .iter()
            .map(|k| format!("sysctl -w {k}=1"))
            .collect::<Vec<_>>()
            .join(" && ");
        return Ok(Finding::fail(format!("{} ({why})", bad.join(", ")))
            .evidence_all(ev)
            .remediation(format!("{sets} && {}", persist_advice(s, persisted, keys))));
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
            // Not persisted is not reverted when the kernel starts with 1 anyway.
            None if kernel_default(k) == Some("1") => ev.push(format!(
                "{k}: no sysctl.d file sets it; the kernel default is 1"
            )),
            None => {
                ev.push(format!(
                    "{k}: no sysctl.d file sets it; the kernel default is {}",
                    kernel_default(k).unwrap_or("unknown")
                ));
                not_kept.push(format!("{k} is not persisted"));
            }
        }
    }
    if not_kept.is_empty() {
        return Ok(
            Finding::pass(format!("{} = 1 now and at boot", keys.join(", "))).evidence_all(ev),
        );
    }
    Ok(Finding::warn(format!(
        "1 now, but {}: a reboot undoes it",
        not_kept.join("; ")
    ))
    .evidence_all(ev)
    .remediation(persist_advice(s, persisted, keys)))
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
pub const SYSCTL_PERSIST: &str = PERSIST_FILE;

/// The file the sysctl fixes write for `keys`: one that sorts after every file setting them otherwise.
fn persist_target(facts: &Facts, keys: &[&str]) -> String {
    match facts.get(&SYSCTL).map(|s| s.persisted.as_ref()) {
        Ok(Ok(p)) => persist_file(p, keys),
        _ => PERSIST_FILE.to_string(),
    }
}
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

/// Whether a sysctl.d file is applied after `ours`: a later name, or `/etc/sysctl.conf` (always last).
fn applied_after(file: &str, ours: &str) -> bool {
    let ours = ours.rsplit('/').next().unwrap_or_default();
    file == SYSCTL_CONF || file.rsplit('/').next().is_some_and(|n| n > ours)
}

/// Sets each key to 1 now and in a sysctl.d file that sorts after every file setting it otherwise
/// ([`persist_file`]); names /etc/sysctl.conf lines, which no sysctl.d file can beat.
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
    let target = persist_file(persisted, keys);
    let old = files.text(&target)?;
    let mut text = old.unwrap_or("").to_string();
    let ours = parse_sysctl_conf(&target, &text);
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
            .filter(|a| {
                a.key == *k && a.value != "1" && a.file != target && applied_after(&a.file, &target)
            })
        {
            fix.note(format!(
                "{} is applied after {target} and wins at boot: remove that line",
                a.cite()
            ));
        }
    }
    if Some(text.as_str()) != old {
        fix.step(Step::file(
            format!("persist {} = 1 for the next boot", keys.join(", ")),
            &target,
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
                modules_note: None,
                builtin: false,
                builtin_evidence: None,
                proc_present: true,
                init: InitSystem::Systemd,
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
    fn a_kernel_default_of_one_is_not_reverted_by_a_reboot() {
        let f = bridge_nf_call(&facts(&[], vec![]), &ctx()).unwrap();
        assert_eq!(f.status, Status::Pass, "{f:?}");
        assert!(f.evidence.iter().any(|e| e.contains("kernel default is 1")));
        // ... but a file that sets it to 0 still reverts it.
        let p = parse_sysctl_conf(
            "/usr/lib/sysctl.d/00-system.conf",
            "net.bridge.bridge-nf-call-iptables = 0\n",
        );
        assert_eq!(
            bridge_nf_call(&facts(&[], p), &ctx()).unwrap().status,
            Status::Warn
        );
    }

    #[test]
    fn the_persist_file_sorts_after_the_file_it_must_beat() {
        let p = parse_sysctl_conf(
            "/etc/sysctl.d/99-zz-disable.conf",
            "net.ipv4.ip_forward = 0\n",
        );
        assert_eq!(
            persist_file(&p, &[IP_FORWARD]),
            "/etc/sysctl.d/z99-kubernetes.conf"
        );
        let mut p2 = p.clone();
        p2.extend(parse_sysctl_conf(
            "/etc/sysctl.d/zzz.conf",
            "net.ipv4.ip_forward = 0\n",
        ));
        let f = persist_file(&p2, &[IP_FORWARD]);
        assert!(f.rsplit('/').next().unwrap() > "zzz.conf", "{f}");
        assert_eq!(persist_file(&[], &[IP_FORWARD]), PERSIST_FILE);
        let early = parse_sysctl_conf(
            "/usr/lib/sysctl.d/50-default.conf",
            "net.ipv4.ip_forward = 0\n",
        );
        assert_eq!(persist_file(&early, &[IP_FORWARD]), PERSIST_FILE);
        let f = ip_forward(&facts(&[(IP_FORWARD, "0")], p), &ctx()).unwrap();
        let r = f.remediation.unwrap();
        assert!(
            r.contains(">> /etc/sysctl.d/z99-kubernetes.conf")
                && r.contains("sorts after /etc/sysctl.d/99-zz-disable.conf"),
            "{r}"
        );
        let c = parse_sysctl_conf(SYSCTL_CONF, "net.ipv4.ip_forward = 0\n");
        let r = ip_forward(&facts(&[], c), &ctx())
            .unwrap()
            .remediation
            .unwrap();
        assert!(r.contains("change /etc/sysctl.conf:1 to 1"), "{r}");
    }

    #[test]
    fn boot_advice_names_the_init_system() {
        let mut x = facts(&[(IP_FORWARD, "0")], vec![]);
        if let Some(s) = x.get_mut(&SYSCTL) {
            s.init = InitSystem::OpenRc;
        }
        assert!(
            ip_forward(&x, &ctx())
                .unwrap()
                .remediation
                .unwrap()
                .contains("rc-update add sysctl boot")
        );
    }

    #[test]
    fn built_in_br_netfilter_and_rootless_proc() {
        let mut x = facts(&[], vec![]);
        if let Some(s) = x.get_mut(&SYSCTL) {
            s.load_at_boot.clear();
            s.module_listed = None;
            s.modules_note =
                Some("/proc/modules: does not exist (a kernel without loadable modules)".into());
            s.builtin = true;
            s.builtin_evidence = Some("/boot/config-6.1.0: CONFIG_BRIDGE_NETFILTER=y, and CONFIG_MODULES is not set (no loadable modules at all)".into());
        }
        let f = br_netfilter(&x, &ctx()).unwrap();
        assert_eq!(f.status, Status::Pass, "{f:?}");
        if let Some(s) = x.get_mut(&SYSCTL) {
            s.bridge_sysctls = false;
            s.builtin = false;
            s.builtin_evidence = None;
        }
        let f = br_netfilter(&x, &ctx()).unwrap();
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.evidence[1].contains("does not exist"),
            "absent is not 'not readable': {f:?}"
        );
        if let Some(s) = x.get_mut(&SYSCTL) {
            s.proc_present = false;
        }
        assert_eq!(br_netfilter(&x, &ctx()).unwrap().status, Status::Skip);
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
                modules_note: None,
                builtin: false,
                builtin_evidence: None,
                proc_present: true,
                init: InitSystem::Systemd,
                load_at_boot: vec![],
            }),
        )
    }

    #[test]
    fn a_later_sysctl_d_file_gets_a_persist_file_that_sorts_after_it() {
        let p = parse_sysctl_conf(
            "/etc/sysctl.d/99-zz-disable-forwarding.conf",
            "net.ipv4.ip_forward = 0\n",
        );
        let fx = sysctl_facts("0", p);
        let fix = AREA.fixes.iter().find(|f| f.check == "sysctl.ip-forward").unwrap();
        assert_eq!((fix.edits)(&fx), ["/etc/sysctl.d/z99-kubernetes.conf"]);
        let plan = plan(
            plan_ip_forward,
            &fx,
            &files(&[("/etc/sysctl.d/z99-kubernetes.conf", Content::Absent)]),
        );
        let Action::File { path, new, .. } = &plan.steps[1].action else {
            panic!("{plan:?}")
        };
        assert_eq!(path, "/etc/sysctl.d/z99-kubernetes.conf");
        assert_eq!(*new, Content::Text("net.ipv4.ip_forward = 1\n".into()));
        assert!(plan.notes.is_empty(), "the new file wins: {:?}", plan.notes);
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
