//! Gathering: the live rulesets (`iptables-*-save`, `nft -j list ruleset`) or, under `--root`, the saved rule
//! files; node networks, interfaces, the CNI and firewall managers.

use std::time::Duration;

use crate::{
    core::facts::{Fact, FactError},
    core::host::{CmdError, Host},
};

use super::{
    FirewallFacts, Manager, Saved,
    hostnet::{self, Cni},
    iptables,
    model::{Family, Origin, Ruleset},
    nft, nft_text,
};

pub const SAVED_IPTABLES: &[(&str, Family)] = &[
    ("/etc/sysconfig/iptables", Family::Ip),
    ("/etc/sysconfig/ip6tables", Family::Ip6),
    ("/etc/iptables/rules.v4", Family::Ip),
    ("/etc/iptables/rules.v6", Family::Ip6),
];
pub const SAVED_NFT: &[&str] = &["/etc/nftables.conf", "/etc/sysconfig/nftables.conf"];
pub const CNI_DIR: &str = "/etc/cni/net.d";

pub fn gather(host: &Host, timeout: Duration) -> Fact<FirewallFacts> {
    let rules = read_rules(host, timeout);
    // Beside the running rules, what the host would load at boot: a disagreement is a rule that is not persisted.
    let saved = if host.network_is_live() {
        let r = read_saved(host);
        r.rules.ok().map(|rules| Saved {
            rules,
            sources: r.sources,
        })
    } else {
        None
    };
    let interfaces = host
        .read_opt("/proc/net/dev")
        .ok()
        .flatten()
        .map(|t| hostnet::parse_proc_net_dev(&t))
        .unwrap_or_default();
    let node_nets = host.read("/proc/net/route").map(|route| {
        let fib = host.read_opt("/proc/net/fib_trie").ok().flatten();
        let v6 = host.read_opt("/proc/net/if_inet6").ok().flatten();
        hostnet::node_networks(&route, fib.as_deref(), v6.as_deref())
    });
    let cni = cni(host, &interfaces);
    let (managers, processes) = managers(host, rules.rules.as_ref().ok());
    Ok(FirewallFacts {
        rules: rules.rules,
        sources: rules.sources,
        problems: rules.problems,
        live: host.network_is_live(),
        saved,
        iptables_backend: rules.backend,
        node_nets,
        interfaces,
        cni,
        managers,
        processes,
    })
}

/// The rules and where they came from.
#[derive(Debug, Clone)]
pub struct ReadRules {
    pub rules: Fact<Ruleset>,
    pub sources: Vec<String>,
    pub problems: Vec<String>,
    pub backend: Option<String>,
}

impl ReadRules {
    fn empty() -> ReadRules {
        ReadRules {
            rules: Ok(Ruleset::default()),
            sources: vec![],
            problems: vec![],
            backend: None,
        }
    }
}

/// Reads the running rules when the network is live (the live host, or `--live-network`), the saved rule
/// files under another root.
///
/// The live read runs the userland in this process's PATH, never the node's binaries under `--root`: in the
/// image that is the image's own pinned iptables/nft (see deploy/image/rootfs.sh). The node's binaries are
/// linked against the node's libraries and loader, so running them would mean chrooting into the node and
/// executing its code with CAP_NET_ADMIN; a node may also have no userland at all (or only one backend's),
/// while the kernel's rules are the same whichever userland dumps them.
pub fn read_rules(host: &Host, timeout: Duration) -> ReadRules {
    if host.network_is_live() {
        // The gate reads this process's own /proc (outside any root): one probe through the host's tape.
        let gate = host
            .probe("firewall-live-gate", || LiveGate::read(host))
            .unwrap_or_else(|e| LiveGate::unknown(&e.to_string()));
        read_live_rules(&|p: &str, a: &[&str]| host.run(p, a, timeout), &gate)
    } else {
        read_saved(host)
    }
}

/// The saved rule files under the host's root (`/etc/sysconfig/iptables`, `/etc/nftables.conf` ...).
pub fn read_saved(host: &Host) -> ReadRules {
    let mut out = ReadRules::empty();
    let mut rs = Ruleset::default();
    saved_rules(host, &mut rs, &mut out);
    finish(
        || {
            format!(
                "no saved firewall rules under {} ({}, {})",
                host.root().display(),
                SAVED_IPTABLES
                    .iter()
                    .map(|(p, _)| *p)
                    .collect::<Vec<_>>()
                    .join(", "),
                SAVED_NFT.join(", ")
            )
        },
        rs,
        &mut out,
    );
    out
}

/// A way to run a command: the host's, with the run's timeout, or (in tests) inside a network namespace.
pub type Runner<'a> = dyn Fn(&str, &[&str]) -> Result<String, CmdError> + 'a;

/// What decides, before any tool runs, which backends may be asked: a dump must neither fail for want of
/// privilege nor make the kernel load a module (`check` is read-only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveGate {
    /// Whether this process holds CAP_NET_ADMIN (`CapEff` in /proc/self/status): iptables' getsockopt and
    /// nft's netlink dump both answer EPERM without it. `Err` when that could not be read.
    pub net_admin: Result<bool, String>,
    /// `/proc/net/ip_tables_names`, `/proc/net/ip6_tables_names`: the legacy tables that exist (`None`: the
    /// file is absent, x_tables is not loaded). Only listed tables are dumped: asking for another would make
    /// the kernel load its module.
    pub legacy: [Option<Vec<String>>; 2],
    /// Whether nf_tables is in the running kernel (loaded, built in, or a kernel without modules). `Err`
    /// says why that could not be told; nft and iptables-nft are then not run, since their first netlink
    /// message would load it.
    pub nf_tables: Result<bool, String>,
}

/// CAP_NET_ADMIN's bit in the capability sets.
const CAP_NET_ADMIN: u32 = 12;

impl LiveGate {
    /// Reads the gate from the kernel: /proc/self/status and /proc/modules of this process (the kernel is the
    /// node's), the legacy table lists of its network namespace, `modules.builtin` under the host's root.
    pub fn read(host: &Host) -> LiveGate {
        let me = Host::live();
        let net_admin = me
            .read("/proc/self/status")
            .map_err(|e| e.to_string())
            .and_then(|s| has_cap(&s, CAP_NET_ADMIN));
        let legacy = ["/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"].map(|p| {
            host.read_opt(p)
                .ok()
                .flatten()
                .map(|t| t.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect())
        });
        let nf_tables = match me.read_opt("/proc/modules") {
            // A kernel built without module support: nothing can be loaded, so asking is safe.
            Ok(None) => Ok(true),
            Err(e) => Err(format!("cannot tell whether nf_tables is loaded: {e}")),
            Ok(Some(m)) if module_listed(&m, "nf_tables") => Ok(true),
            Ok(Some(_)) => {
                let release = me
                    .read("/proc/sys/kernel/osrelease")
                    .map(|r| r.trim().to_string())
                    .unwrap_or_default();
                let builtin = format!("/lib/modules/{release}/modules.builtin");
                match host.read_opt(&builtin).ok().flatten().or_else(|| me.read_opt(&builtin).ok().flatten()) {
                    Some(b) => Ok(b.lines().any(|l| l.ends_with("/nf_tables.ko"))),
                    None => Err(format!(
                        "nf_tables is not in /proc/modules and {builtin} is missing, so whether it is built in is unknown"
                    )),
                }
            }
        };
        LiveGate {
            net_admin,
            legacy,
            nf_tables,
        }
    }

    /// Nothing may be asked: why the gate itself could not be read.
    fn unknown(why: &str) -> LiveGate {
        LiveGate {
            net_admin: Err(why.to_string()),
            legacy: [None, None],
            nf_tables: Err(why.to_string()),
        }
    }

    /// Every backend may be asked (tests that made the rules themselves, so every module is loaded).
    pub fn assume_all() -> LiveGate {
        LiveGate {
            net_admin: Ok(true),
            legacy: [
                Some(vec!["filter".into(), "nat".into(), "mangle".into(), "raw".into()]),
                Some(vec!["filter".into(), "nat".into(), "mangle".into(), "raw".into()]),
            ],
            nf_tables: Ok(true),
        }
    }
}

/// Whether capability `bit` is in `CapEff` of a /proc/PID/status text.
fn has_cap(status: &str, bit: u32) -> Result<bool, String> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .ok_or("/proc/self/status has no CapEff line")?;
    let caps = u64::from_str_radix(hex.trim(), 16)
        .map_err(|e| format!("/proc/self/status CapEff {:?}: {e}", hex.trim()))?;
    Ok(caps & (1u64 << bit) != 0)
}

/// Whether `/proc/modules` lists `name` (first field).
fn module_listed(modules: &str, name: &str) -> bool {
    modules
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

/// Reads the running rules with `run` executing the tools: iptables-nft-save / iptables-legacy-save (or
/// iptables-save), the same for ip6tables, and `nft -j list ruleset` without iptables-nft's own tables;
/// `gate` says which backends may be asked.
pub fn read_live_rules(run: &Runner<'_>, gate: &LiveGate) -> ReadRules {
    let mut out = ReadRules::empty();
    let mut rs = Ruleset::default();
    match &gate.net_admin {
        Ok(true) => live_rules(run, gate, &mut rs, &mut out),
        Ok(false) => out.problems.push(
            "the firewall could not be read: no CAP_NET_ADMIN (iptables and nft answer EPERM without it): \
             run k8sdoctor as root, in a container with NET_ADMIN added to its capabilities"
                .into(),
        ),
        Err(e) => out.problems.push(format!("the firewall could not be read: {e}")),
    }
    finish(
        || {
            "the live firewall could not be read: no iptables-save, iptables-nft-save, \
             iptables-legacy-save or nft in PATH"
                .to_string()
        },
        rs,
        &mut out,
    );
    out
}

/// Settles the rules: none from any source is `Missing` (`missing` says what was looked for), or
/// `Unreadable` when a source failed.
fn finish(missing: impl FnOnce() -> String, rs: Ruleset, out: &mut ReadRules) {
    out.rules = if out.sources.is_empty() {
        Err(if out.problems.is_empty() {
            FactError::Missing(missing())
        } else {
            FactError::Unreadable(out.problems.join("; "))
        })
    } else {
        Ok(rs)
    };
}

fn live_rules(run: &Runner<'_>, gate: &LiveGate, rs: &mut Ruleset, out: &mut ReadRules) {
    // `iptables v1.8.9 (nf_tables)` / `(legacy)`; before 1.8 (CentOS 7's 1.4.21) there was only legacy.
    out.backend = run("iptables", &["--version"]).ok().and_then(|v| {
        if v.contains("nf_tables") {
            Some("nf_tables".to_string())
        } else if v.starts_with("iptables v") {
            Some("legacy".to_string())
        } else {
            None
        }
    });
    let nft_ok = match &gate.nf_tables {
        Ok(ok) => *ok,
        Err(e) => {
            out.problems
                .push(format!("{e}: nft and iptables-nft not run (they would load it)"));
            false
        }
    };
    // iptables-nft tables also show up in `nft list ruleset`; they are read through iptables-nft-save instead.
    let mut nft_compat: Vec<(Family, String)> = Vec::new();
    for (i, (family, prefix)) in [(Family::Ip, "iptables"), (Family::Ip6, "ip6tables")]
        .into_iter()
        .enumerate()
    {
        // Legacy tables exist only when listed; none listed means no legacy rules of this family.
        let legacy_ok = gate.legacy[i].as_ref().is_some_and(|t| !t.is_empty());
        let mut ran_split = false;
        for (suffix, origin, allowed) in [
            ("-nft-save", Origin::IptablesNft, nft_ok),
            ("-legacy-save", Origin::IptablesLegacy, legacy_ok),
        ] {
            if !allowed {
                continue;
            }
            let prog = format!("{prefix}{suffix}");
            match run(&prog, &[]) {
                Err(CmdError::NotFound(_)) => {}
                r => {
                    ran_split = true;
                    add_iptables(&prog, r, origin, family, rs, out, &mut nft_compat);
                }
            }
        }
        if !ran_split {
            let prog = format!("{prefix}-save");
            let (origin, allowed) = match out.backend.as_deref() {
                Some("legacy") => (Origin::IptablesLegacy, legacy_ok),
                _ => (Origin::IptablesNft, nft_ok),
            };
            if allowed {
                match run(&prog, &[]) {
                    Err(CmdError::NotFound(_)) => {}
                    r => add_iptables(&prog, r, origin, family, rs, out, &mut nft_compat),
                }
            }
        }
    }
    if !nft_ok {
        if matches!(gate.nf_tables, Ok(false)) && !gate.legacy.iter().flatten().any(|t| !t.is_empty()) {
            out.sources.push(
                "the kernel holds no netfilter tables (nf_tables is not loaded, no legacy table is listed in /proc/net/ip*_tables_names)"
                    .into(),
            );
        }
        return;
    }
    match run("nft", &["-j", "list", "ruleset"]) {
        Err(CmdError::NotFound(_)) => {}
        Err(e) => out.problems.push(e.to_string()),
        Ok(text) => match nft::parse_json(&text) {
            Err(e) => out.problems.push(format!("nft -j list ruleset: {e}")),
            Ok(mut n) => {
                n.chains.retain(|c| {
                    !nft_compat
                        .iter()
                        .any(|(f, t)| *f == c.family && *t == c.table)
                });
                out.sources.push(format!(
                    "nft -j list ruleset: {} native rules",
                    n.rule_count()
                ));
                rs.extend(n);
            }
        },
    }
}

fn add_iptables(
    prog: &str,
    r: Result<String, CmdError>,
    origin: Origin,
    family: Family,
    rs: &mut Ruleset,
    out: &mut ReadRules,
    nft_compat: &mut Vec<(Family, String)>,
) {
    match r
        .map_err(|e| e.to_string())
        .and_then(|text| iptables::parse(&text, origin, family).map_err(|e| format!("{prog}: {e}")))
    {
        Err(e) => out.problems.push(e),
        Ok(p) => {
            if origin == Origin::IptablesNft {
                for c in &p.chains {
                    if !nft_compat.contains(&(family, c.table.clone())) {
                        nft_compat.push((family, c.table.clone()));
                    }
                }
            }
            out.sources
                .push(format!("{prog}: {} rules", p.rule_count()));
            rs.extend(p);
        }
    }
}

fn saved_rules(host: &Host, rs: &mut Ruleset, out: &mut ReadRules) {
    for (path, family) in SAVED_IPTABLES {
        match host.read_opt(path) {
            Ok(None) => {}
            Err(e) => out.problems.push(e.to_string()),
            Ok(Some(text)) => match iptables::parse(&text, Origin::IptablesSaved, *family) {
                Ok(p) => {
                    out.sources
                        .push(format!("{path}: {} rules", p.rule_count()));
                    rs.extend(p);
                }
                Err(e) => out.problems.push(format!("{path}: {e}")),
            },
        }
    }
    for path in SAVED_NFT {
        match expand_includes(host, path, 0) {
            Ok(None) => {}
            Err(e) => out.problems.push(e),
            Ok(Some(text)) => match nft_text::parse(&text) {
                Ok(p) => {
                    out.sources
                        .push(format!("{path}: {} rules", p.rule_count()));
                    rs.extend(p);
                }
                Err(e) => out.problems.push(format!("{path}: {e}")),
            },
        }
    }
}

/// The most text the includes of one nft file may expand to.
const MAX_EXPANDED: usize = 32 << 20;

/// The text of an nft file with its `include "..."` lines replaced by the files they name (globs in the
/// last path component; relative paths from /etc).
pub fn expand_includes(host: &Host, path: &str, depth: usize) -> Result<Option<String>, String> {
    if depth > 16 {
        return Err(format!("{path}: includes nest deeper than 16"));
    }
    let Some(text) = host.read_opt(path).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let t = line.trim();
        let Some(inc) = t
            .strip_prefix("include")
            .map(str::trim)
            .and_then(|r| r.strip_prefix('"'))
            .and_then(|r| r.split_once('"'))
        else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let inc = if inc.0.starts_with('/') {
            inc.0.to_string()
        } else {
            format!("/etc/{}", inc.0)
        };
        let files = if inc.contains('*') {
            let (dir, pat) = inc.rsplit_once('/').unwrap_or(("/", &inc));
            host.list_dir(dir)
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|n| glob(pat, n))
                .map(|n| format!("{dir}/{n}"))
                .collect()
        } else {
            vec![inc.clone()]
        };
        for f in files {
            match expand_includes(host, &f, depth + 1)? {
                Some(t) if out.len() + t.len() > MAX_EXPANDED => {
                    return Err(format!(
                        "{path}: includes expand to more than {} MiB (include loop?)",
                        MAX_EXPANDED >> 20
                    ));
                }
                Some(t) => out.push_str(&t),
                None if !inc.contains('*') => {
                    return Err(format!("{path}: included file {f} does not exist"));
                }
                None => {}
            }
            out.push('\n');
        }
    }
    Ok(Some(out))
}

/// `*` wildcard match of a file name, in O(pattern × name) at worst: the last `*` seen absorbs one more
/// character on a mismatch instead of trying every split again (which is exponential in the stars).
fn glob(pat: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pat.chars().collect(), name.chars().collect());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == n[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

fn cni(host: &Host, interfaces: &[String]) -> Option<Cni> {
    let files = host.list_dir(CNI_DIR).unwrap_or_default();
    // The kubelet uses the first config file in lexical order.
    let from_config = files
        .iter()
        .filter(|f| f.ends_with(".conf") || f.ends_with(".conflist") || f.ends_with(".json"))
        .find_map(|f| {
            let path = format!("{CNI_DIR}/{f}");
            let text = host.read_opt(&path).ok().flatten()?;
            let (name, subnets) = hostnet::parse_cni_config(&text)?;
            Some((name, subnets, path, hostnet::cni_bridge(&text)))
        });
    let (name, mut nets, source, bridge) = match from_config {
        Some(c) => c,
        None => {
            let name = hostnet::cni_from_ifaces(interfaces)?;
            let seen = hostnet::overlay_ifaces(&name, interfaces, None).join(", ");
            (
                name,
                vec![],
                format!("its interface ({seen}; no config in {CNI_DIR})"),
                None,
            )
        }
    };
    if nets.is_empty() && name == "flannel" {
        nets.extend(
            host.read_opt("/run/flannel/subnet.env")
                .ok()
                .flatten()
                .and_then(|t| hostnet::parse_flannel_env(&t)),
        );
    }
    if nets.is_empty() {
        nets.extend(hostnet::default_pod_net(&name));
    }
    let ifaces = hostnet::overlay_ifaces(&name, interfaces, bridge.as_deref());
    Some(Cni {
        bridge: hostnet::pod_side(&name, bridge.as_deref(), interfaces),
        tunnel: hostnet::tunnel(&name, interfaces),
        name,
        source,
        pod_nets: nets,
        ifaces,
    })
}

/// A firewalld process in `h`'s /proc (its pid), and how many processes were looked at.
fn firewalld_process(h: &Host) -> (Option<String>, usize) {
    let pids: Vec<String> = h
        .list_dir("/proc")
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    let found = pids.iter().find(|p| {
        h.read_opt(&format!("/proc/{p}/cmdline"))
            .ok()
            .flatten()
            .is_some_and(|c| hostnet::is_firewalld_cmdline(&c))
    });
    (found.cloned(), pids.len())
}

/// The firewall managers: a running firewalld (looked for in the process table under the root, and under
/// `--live-network` in this process's own /proc too: with hostPID both are the node's), firewalld enabled at
/// boot, ufw enabled or its chains loaded. Also says where processes were looked for, and how many were seen.
fn managers(host: &Host, rules: Option<&Ruleset>) -> (Vec<Manager>, Vec<(String, usize)>) {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    let shown = if host.is_live() {
        "/proc"
    } else {
        "/proc under the root"
    };
    let mut scans = vec![(shown, firewalld_process(host))];
    if !host.is_live() && host.network_is_live() {
        // This process's own /proc is outside the root: read through the host's tape as one probe, so a
        // bundle records (and a replay answers) it without confusing it with the root's /proc.
        let own = "this process's /proc";
        if let Ok(found) = host.probe("firewall-own-processes", || {
            firewalld_process(&Host::live())
        }) {
            scans.push((own, found));
        }
    }
    for (shown, (pid, count)) in scans {
        seen.push((shown.to_string(), count));
        if let Some(p) = pid {
            out.push(Manager {
                name: "firewalld".into(),
                evidence: format!("{shown}: process {p} is firewalld (its cmdline)"),
            });
            break;
        }
    }
    let unit = "/etc/systemd/system/multi-user.target.wants/firewalld.service";
    if out.is_empty() && host.exists(unit) {
        out.push(Manager {
            name: "firewalld".into(),
            evidence: format!("{unit}: firewalld is enabled at boot"),
        });
    }
    let ufw_conf = host.read_opt("/etc/ufw/ufw.conf").ok().flatten();
    let ufw_chains = rules.is_some_and(|r| {
        r.chains
            .iter()
            .any(|c| c.name == "ufw-before-input" && !c.rules.is_empty())
    });
    if ufw_conf.as_deref().is_some_and(hostnet::ufw_enabled) {
        out.push(Manager {
            name: "ufw".into(),
            evidence: "/etc/ufw/ufw.conf: ENABLED=yes".into(),
        });
    } else if ufw_chains && host.network_is_live() {
        out.push(Manager {
            name: "ufw".into(),
            evidence: "ufw-before-input chain holds rules".into(),
        });
    }
    (out, seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_are_expanded_with_globs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/nftables.d")).unwrap();
        std::fs::write(
            d.path().join("etc/nftables.conf"),
            "flush ruleset\ninclude \"/etc/nftables.d/*.nft\"\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/nftables.d/a.nft"), "table inet a {\n}\n").unwrap();
        std::fs::write(d.path().join("etc/nftables.d/b.txt"), "garbage\n").unwrap();
        let h = Host::new(d.path()).unwrap();
        let t = expand_includes(&h, "/etc/nftables.conf", 0)
            .unwrap()
            .unwrap();
        assert!(t.contains("table inet a") && !t.contains("garbage"), "{t}");
        std::fs::write(
            d.path().join("etc/nftables.conf"),
            "include \"missing.nft\"\n",
        )
        .unwrap();
        assert!(
            expand_includes(&h, "/etc/nftables.conf", 0)
                .unwrap_err()
                .contains("/etc/missing.nft")
        );
        std::fs::write(
            d.path().join("etc/nftables.conf"),
            "include \"/etc/nftables.conf\"\n",
        )
        .unwrap();
        assert!(
            expand_includes(&h, "/etc/nftables.conf", 0)
                .unwrap_err()
                .contains("deeper")
        );
        assert!(glob("*.nft", "x.nft") && !glob("*.nft", "x.nftx") && glob("a*b*c", "axxbyyc"));
    }
}

#[cfg(test)]
mod live_tests {
    use super::*;

    /// The gate decides before any tool runs: without CAP_NET_ADMIN nothing runs and the rules are
    /// unreadable with the reason; nf_tables not loaded means no nft tool runs; legacy tables only when listed.
    #[test]
    fn the_gate_keeps_tools_from_failing_or_loading_modules() {
        let ran = std::cell::RefCell::new(Vec::new());
        let run = |p: &str, _: &[&str]| -> Result<String, CmdError> {
            ran.borrow_mut().push(p.to_string());
            match p {
                "iptables-legacy-save" => {
                    Ok("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j REJECT\nCOMMIT\n".into())
                }
                _ => Err(CmdError::NotFound(p.into())),
            }
        };
        let mut gate = LiveGate::assume_all();
        gate.net_admin = Ok(false);
        let r = read_live_rules(&run, &gate);
        assert!(ran.borrow().is_empty(), "{:?}", ran.borrow());
        match r.rules {
            Err(FactError::Unreadable(why)) => {
                assert!(why.starts_with("the firewall could not be read: no CAP_NET_ADMIN"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        gate.net_admin = Ok(true);
        gate.nf_tables = Ok(false);
        gate.legacy = [Some(vec!["filter".into()]), Some(vec![])];
        let r = read_live_rules(&run, &gate);
        assert_eq!(*ran.borrow(), ["iptables", "iptables-legacy-save"]);
        assert_eq!(r.rules.unwrap().rule_count(), 1);
        ran.borrow_mut().clear();
        gate.legacy = [None, None];
        let r = read_live_rules(&run, &gate);
        assert_eq!(*ran.borrow(), ["iptables"]);
        assert_eq!(r.rules.unwrap().rule_count(), 0);
        assert!(r.sources[0].starts_with("the kernel holds no netfilter tables"));
        gate.nf_tables = Err("cannot tell".into());
        let r = read_live_rules(&run, &gate);
        assert!(matches!(r.rules, Err(FactError::Unreadable(_))), "{:?}", r.rules);
        assert_eq!(has_cap("CapEff:\t0000000000001000\n", 12), Ok(true));
        assert_eq!(has_cap("CapEff:\t0000000000000000\n", 12), Ok(false));
        assert!(has_cap("Name: x\n", 12).is_err());
        assert!(module_listed("nf_tables 1 2 - Live 0x0\n", "nf_tables"));
        assert!(!module_listed("nf_tables_set 1 2 - Live 0x0\n", "nf_tables"));
    }

    /// Under a root with --live-network, network state is this process's own and everything else the root's.
    #[test]
    fn live_network_reads_net_state_live_and_files_under_the_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("proc/net")).unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("proc/net/dev"), "fixture\n").unwrap();
        std::fs::write(d.path().join("etc/hostname"), "fixture\n").unwrap();
        let h = Host::new(d.path()).unwrap();
        assert_eq!(h.read("/proc/net/dev").unwrap(), "fixture\n");
        assert!(!h.network_is_live());
        let h = h.with_live_network();
        assert!(h.network_is_live() && !h.is_live());
        assert!(h.read("/proc/net/dev").unwrap().contains("Inter-|"));
        assert_eq!(h.read("/etc/hostname").unwrap(), "fixture\n");
        assert_eq!(
            h.read("/proc/sys/net/ipv4/ip_forward").unwrap(),
            Host::live().read("/proc/sys/net/ipv4/ip_forward").unwrap()
        );
    }

    /// A host whose iptables-nft tables also appear in `nft -j list ruleset`: they are read once, from iptables-nft-save.
    #[test]
    fn iptables_nft_tables_are_not_read_twice_and_missing_tools_are_skipped() {
        let nft_json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"table": {"family": "ip", "name": "filter", "handle": 1}},
            {"chain": {"family": "ip", "table": "filter", "name": "INPUT", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
            {"rule": {"family": "ip", "table": "filter", "chain": "INPUT", "handle": 2, "expr": [{"xt": {"type": "match", "name": "conntrack"}}, {"accept": null}]}},
            {"table": {"family": "inet", "name": "own", "handle": 2}},
            {"chain": {"family": "inet", "table": "own", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 10, "policy": "drop"}}]}"#;
        let run = |p: &str, _: &[&str]| -> Result<String, CmdError> {
            match p {
                "iptables" => Ok("iptables v1.8.9 (nf_tables)\n".into()),
                "iptables-nft-save" => Ok("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n".into()),
                "nft" => Ok(nft_json.into()),
                "ip6tables-nft-save" => Err(CmdError::Failed {
                    program: p.into(),
                    code: "1".into(),
                    stderr: "ip6tables v1.8.9 (nf_tables): Could not fetch rule set generation id".into(),
                }),
                _ => Err(CmdError::NotFound(p.into())),
            }
        };
        let r = read_live_rules(&run, &LiveGate::assume_all());
        assert_eq!(r.backend.as_deref(), Some("nf_tables"));
        let rs = r.rules.unwrap();
        let names: Vec<(Origin, &str)> = rs
            .chains
            .iter()
            .map(|c| (c.origin, c.table.as_str()))
            .collect();
        assert_eq!(
            names,
            [(Origin::IptablesNft, "filter"), (Origin::Nftables, "own")]
        );
        assert_eq!(
            r.sources,
            [
                "iptables-nft-save: 1 rules",
                "nft -j list ruleset: 0 native rules"
            ]
        );
        assert_eq!(
            r.problems.len(),
            1,
            "a failing tool is reported, the others still count"
        );
        // CentOS 7: iptables 1.4 prints no backend, and only iptables-save exists: legacy.
        let centos = |p: &str, _: &[&str]| -> Result<String, CmdError> {
            match p {
                "iptables" => Ok("iptables v1.4.21\n".into()),
                "iptables-save" => {
                    Ok("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j REJECT\nCOMMIT\n".into())
                }
                _ => Err(CmdError::NotFound(p.into())),
            }
        };
        let r = read_live_rules(&centos, &LiveGate::assume_all());
        assert_eq!(r.backend.as_deref(), Some("legacy"));
        assert_eq!(r.rules.unwrap().chains[0].origin, Origin::IptablesLegacy);
        // Nothing at all: missing, so the checks skip.
        let none = read_live_rules(
            &|p: &str, _: &[&str]| Err(CmdError::NotFound(p.into())),
            &LiveGate::assume_all(),
        );
        assert!(matches!(none.rules, Err(FactError::Missing(_))));
    }
}

#[cfg(test)]
mod glob_tests {
    use super::glob;

    #[test]
    fn include_globs_take_linear_time_on_long_names() {
        // Exponential with backtracking: this took minutes. Now it is immediate.
        let name = "a".repeat(5000);
        assert!(!glob("*a*a*a*a*a*a*a*a*a*a*b", &name));
        assert!(glob("*a*a*a*a*b", &format!("{name}b")));
        assert!(glob("*.nft", "x.nft") && !glob("*.nft", "x.nftx") && glob("a*b*c", "axxbyyc"));
        assert!(glob("*", "") && !glob("a", "") && glob("x*", "x"));
    }
}
