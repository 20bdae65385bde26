//! The policy's checks: flows judged by the firewall evaluator on the `firewall` facts, sysctls read now
//! and at boot, files matched line by line; and the two sources that read what the policy names.

use std::collections::BTreeMap;

use crate::{
    checks::{
        firewall::{
            Answer, FIREWALL, FirewallFacts, Net, Probe, Query, evaluate, exact_accept,
            insert_command, judge, node_addr, persist_note,
        },
        sysctl::{self, Assignment},
    },
    core::{
        check::{Finding, Input, Outcome, Status},
        facts::{Fact, FactError, get},
        source::{Facts, Gather, Source},
    },
};

use super::parse::{FileRule, Flow, Meta, SysctlRule};

/// The sysctls the selected policy entries name: live values and every persisted assignment of them.
pub const POLICY_SYSCTLS: Source<PolicySysctls> = Source::files("policy-sysctls", |g| {
    let keys = inputs(g, |i| match i {
        Input::Sysctl(k) => Some(k),
        _ => None,
    });
    let live = keys
        .iter()
        .map(|k| {
            (
                k.clone(),
                g.host.read(&sysctl::proc_path(k)).map(|t| norm(&t)),
            )
        })
        .collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    Ok(PolicySysctls {
        live,
        persisted: sysctl::persisted(g.host, &refs),
        proc_sys: g.host.exists("/proc/sys"),
    })
});

/// The files the selected policy entries name, read with the host's caps (`None`: absent).
pub const POLICY_FILES: Source<BTreeMap<String, Fact<Option<String>>>> =
    Source::files("policy-files", |g| {
        Ok(inputs(g, |i| match i {
            Input::File(p) => Some(p),
            _ => None,
        })
        .into_iter()
        .map(|p| {
            let text = g.host.read_opt(&p);
            (p, text)
        })
        .collect())
    });

/// The inputs of one kind that the run's policy checks read, each once.
fn inputs(g: &Gather, pick: impl Fn(&Input) -> Option<&String>) -> Vec<String> {
    let mut v: Vec<String> = g
        .cfg
        .extra_inputs
        .iter()
        .filter_map(|i| pick(i).cloned())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[derive(Debug, Clone)]
pub struct PolicySysctls {
    /// Live values by key (trimmed, blanks collapsed).
    pub live: BTreeMap<String, Fact<String>>,
    /// Every assignment of the keys in the order they apply at boot: the last one per key wins.
    pub persisted: Fact<Vec<Assignment>>,
    /// Whether the root shows live kernel state at all.
    pub proc_sys: bool,
}

/// A value as compared: trimmed, and runs of blanks (the kernel prints tabs) as one space.
pub fn norm(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Adds where the policy asks for it, and lowers a failure to the entry's severity.
fn finish(meta: &Meta, f: Finding) -> Finding {
    let mut f = f.evidence(format!("required by the site policy at {}", meta.at));
    if f.status == Status::Fail && meta.severity == Status::Warn {
        f.status = Status::Warn;
    }
    f
}

/// The evaluator's queries for a flow: one per source network.
pub fn flow_queries(flow: &Flow, fw: &FirewallFacts) -> Vec<Query> {
    flow.from
        .iter()
        .map(|src| {
            // icmp from an IPv6 network is ICMPv6 (protocol 58).
            let proto = if flow.proto == 1 && src.is_v6() {
                58
            } else {
                flow.proto
            };
            let mut q = match flow.to {
                Some(dest) => Query::forward(proto, *src, dest),
                None => {
                    let mut q = Query::proto(proto, *src);
                    q.dest = node_addr(fw, src.is_v6()).map(Net::host);
                    q
                }
            };
            match flow.ports {
                Some((lo, hi)) if lo == hi => q.dport = Some(lo),
                Some((lo, hi)) => q = q.ports(lo, hi),
                None => {}
            }
            if let Some(i) = &flow.iface {
                q = q.on(i.clone());
            }
            // An interface not named is any interface: the flow must be accepted whichever one it
            // arrives on (and, routed, leaves on).
            q.any_iface = true;
            q
        })
        .collect()
}

pub fn flow(flow: &Flow, facts: &Facts) -> Outcome {
    let fw = facts.get(&FIREWALL)?;
    let rules = get(&fw.rules)?;
    let probes: Vec<Probe> = flow_queries(flow, fw)
        .into_iter()
        .map(|query| Probe { query, soft: false })
        .collect();
    let what = format!("policy flow {}", flow.meta.name);
    let mut f = judge(fw, rules, &probes, &what);
    if f.status == Status::Fail {
        // One rule for the flow's whole source network, before the first rule that blocks any part of it.
        let mut cmds: Vec<String> = Vec::new();
        for p in &probes {
            if let Some(c) = whole_flow_fix(fw, &evaluate(rules, &p.query))
                && !cmds.contains(&c)
            {
                cmds.push(c);
            }
        }
        if !cmds.is_empty() {
            f.remediation = Some(persist_note(fw, cmds.join("; ")));
        }
    }
    Ok(finish(&flow.meta, f))
}

/// The ACCEPT for all of a blocked query's source network, at the earliest place any blocked part needs
/// it in the chain of the deciding rule; `None` when nothing is blocked or there is no place.
fn whole_flow_fix(fw: &FirewallFacts, a: &Answer) -> Option<String> {
    if !a.verdict().blocks() {
        return None;
    }
    let first = a.decisive().insert_point()?;
    let at = a
        .parts
        .iter()
        .filter(|d| d.verdict.blocks())
        .filter_map(|d| d.insert_point())
        .filter(|ip| {
            (ip.origin, ip.family, &ip.table, &ip.chain)
                == (first.origin, first.family, &first.table, &first.chain)
        })
        .min_by_key(|ip| ip.position)?;
    Some(insert_command(&exact_accept(
        fw,
        &a.query,
        a.query.source,
        &at,
    )))
}

pub fn sysctl(rule: &SysctlRule, facts: &Facts) -> Outcome {
    let s = facts.get(&POLICY_SYSCTLS)?;
    let key = &rule.meta.name;
    let want = norm(&rule.value);
    let path = sysctl::proc_path(key);
    let set_now = format!("sysctl -w {key}='{want}'");
    let persist = format!(
        "printf '%s\\n' '{key} = {want}' >> {} (applied at boot by systemd-sysctl or the init scripts)",
        sysctl::PERSIST_FILE
    );
    let live = match s.live.get(key) {
        Some(Ok(v)) => v,
        Some(Err(FactError::Missing(_))) if !s.proc_sys => {
            return Ok(Finding::skip(format!(
                "/proc/sys does not exist under this root: {key} is known only on the live node"
            )));
        }
        Some(Err(FactError::Missing(_))) => {
            return Ok(finish(
                &rule.meta,
                Finding::fail(format!(
                    "{key} does not exist on this node (the policy wants {want}): its module is not loaded or the kernel lacks it"
                ))
                .evidence(format!("{path}: does not exist")),
            ));
        }
        Some(Err(e)) => return Err(e.clone()),
        None => return Err(FactError::Missing(format!("{key} was not gathered"))),
    };
    let mut ev = vec![format!("{path} = {live}")];
    let persisted = s.persisted.as_deref().unwrap_or_default();
    let last = persisted.iter().rfind(|a| a.key == *key);
    if *live != want {
        return Ok(finish(
            &rule.meta,
            Finding::fail(format!("{key} = {live}, the policy wants {want}"))
                .evidence_all(ev)
                .evidence_all(last.map(|a| format!("{} (applied at boot)", a.cite())))
                .remediation(format!("{set_now} && {persist}")),
        ));
    }
    // Matching now is not enough when the boot state cannot be read.
    get(&s.persisted)?;
    match last {
        Some(a) if norm(&a.value) == want => {
            ev.push(a.cite());
            Ok(finish(
                &rule.meta,
                Finding::pass(format!("{key} = {want} now and at boot")).evidence_all(ev),
            ))
        }
        Some(a) => {
            ev.push(format!("{} (overrides every earlier file)", a.cite()));
            Ok(finish(
                &rule.meta,
                Finding::fail(format!(
                    "{key} = {want} now, but {} sets it to {} at boot: a reboot undoes it",
                    a.file, a.value
                ))
                .evidence_all(ev)
                .remediation(format!("change {}:{} to {key} = {want}", a.file, a.line)),
            ))
        }
        None if sysctl::kernel_default(key) == Some(want.as_str()) => {
            ev.push(format!(
                "{key}: no sysctl.d file sets it; the kernel default is {want}"
            ));
            Ok(finish(
                &rule.meta,
                Finding::pass(format!(
                    "{key} = {want} now and at boot (the kernel default)"
                ))
                .evidence_all(ev),
            ))
        }
        None => {
            ev.push(format!(
                "{key}: no file in sysctl.d or {} sets it",
                sysctl::SYSCTL_CONF
            ));
            Ok(finish(
                &rule.meta,
                Finding::warn(format!(
                    "{key} = {want} now, but nothing sets it at boot: after a reboot it is the kernel's default"
                ))
                .evidence_all(ev)
                .remediation(persist),
            ))
        }
    }
}

/// At most this many matching lines are cited.
const MAX_CITED: usize = 5;

/// `PATH:LINE: text` for each match of `re` (at most [`MAX_CITED`]), and how many there are.
fn matching_lines(path: &str, text: &str, re: &regex::Regex) -> (Vec<String>, usize) {
    let mut cited = Vec::new();
    let mut n = 0;
    let mut last_line = 0;
    for m in re.find_iter(text) {
        let start = text[..m.start()].rfind('\n').map_or(0, |i| i + 1);
        let line = 1 + text[..m.start()].matches('\n').count();
        if line == last_line {
            continue;
        }
        last_line = line;
        n += 1;
        if cited.len() < MAX_CITED {
            let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
            // Masked as a line of its own: behind the `PATH:LINE:` prefix a YAML credential
            // (`client-key-data: ...`) would no longer look like one to the output's masking.
            let shown = crate::mask::mask_secrets(&text[start..end]);
            cited.push(format!("{path}:{line}: {shown}"));
        }
    }
    (cited, n)
}

pub fn file(rule: &FileRule, facts: &Facts) -> Outcome {
    let files = facts.get(&POLICY_FILES)?;
    let path = &rule.path;
    let text = match files.get(path) {
        Some(Ok(Some(t))) => t,
        Some(Ok(None)) if rule.must_match.is_some() => {
            return Ok(finish(
                &rule.meta,
                Finding::fail(format!(
                    "{path} does not exist, so nothing in it matches {}",
                    rule.must_match
                        .as_ref()
                        .map(|r| r.as_str())
                        .unwrap_or_default()
                ))
                .evidence(format!("{path}: does not exist")),
            ));
        }
        Some(Ok(None)) => {
            return Ok(finish(
                &rule.meta,
                Finding::pass(format!("{path} does not exist, so nothing in it matches"))
                    .evidence(format!("{path}: does not exist")),
            ));
        }
        Some(Err(e)) => return Err(e.clone()),
        None => return Err(FactError::Missing(format!("{path} was not gathered"))),
    };
    let mut ev = Vec::new();
    let mut bad = Vec::new();
    if let Some(re) = &rule.must_not_match {
        let (cited, n) = matching_lines(path, text, re);
        if n > 0 {
            bad.push(format!(
                "{n} line{} of {path} match{} {}, which the policy forbids",
                if n == 1 { "" } else { "s" },
                if n == 1 { "es" } else { "" },
                re.as_str()
            ));
            ev.extend(cited);
            if n > MAX_CITED {
                ev.push(format!("... and {} more", n - MAX_CITED));
            }
        } else {
            ev.push(format!("{path}: no line matches {}", re.as_str()));
        }
    }
    if let Some(re) = &rule.must_match {
        let (cited, n) = matching_lines(path, text, re);
        if n == 0 {
            bad.push(format!("no line of {path} matches {}", re.as_str()));
            ev.push(format!("{path}: no line matches {}", re.as_str()));
        } else {
            ev.extend(cited.into_iter().take(1));
        }
    }
    let f = if bad.is_empty() {
        Finding::pass(format!("{path} says what the policy requires"))
    } else {
        Finding::fail(bad.join("; ")).remediation(format!("edit {path} so that {}", rule.wants()))
    };
    Ok(finish(&rule.meta, f.evidence_all(ev)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        checks::firewall::{
            iptables,
            model::{Family, Origin},
        },
        policy::{Policy, parse_into},
    };

    fn fw(rules: &str, family: Family) -> FirewallFacts {
        FirewallFacts {
            rules: Ok(iptables::parse(rules, Origin::IptablesSaved, family).unwrap()),
            sources: vec!["test rules".into()],
            problems: vec![],
            live: false,
            saved: None,
            iptables_backend: None,
            node_nets: Ok(vec![]),
            interfaces: vec![],
            cni: None,
            managers: vec![],
            processes: vec![],
        }
    }

    fn policy(text: &str) -> Policy {
        let mut p = Policy::default();
        parse_into("p.yaml", text, &mut p).unwrap();
        p
    }

    const CENTOS7: &str = include_str!("../../fixtures/firewall/centos7-default.rules");

    #[test]
    fn a_routed_flow_fails_at_forwards_reject_with_an_exact_rule() {
        let p = policy(
            "flows:\n  - name: dns\n    proto: udp\n    port: 53\n    from: 10.244.0.0/16\n    to: 10.96.0.0/12\n    interface: cni0\n",
        );
        let facts = Facts::default().with(&FIREWALL, Ok(fw(CENTOS7, Family::Ip)));
        let f = flow(&p.flows[0], &facts).unwrap();
        assert_eq!(f.status, Status::Fail, "{f:?}");
        assert!(
            f.message
                .contains("udp/53 from 10.244.0.0/16 in on cni0 to 10.96.0.0/12")
                && f.message.contains("filter/FORWARD #1"),
            "{}",
            f.message
        );
        assert!(
            f.remediation.as_deref().unwrap().starts_with(
                "iptables -I FORWARD 1 -s 10.244.0.0/16 -d 10.96.0.0/12 -i cni0 -p udp -m udp --dport 53 -j ACCEPT"
            ),
            "{f:?}"
        );
    }

    #[test]
    fn icmp_from_an_ipv6_network_is_icmpv6() {
        let p = policy("flows:\n  - name: ping6\n    proto: icmp\n    from: fd00::/8\n");
        let rules = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p ipv6-icmp -s fd00::/16 -j ACCEPT\n-A INPUT -j REJECT\nCOMMIT\n";
        let facts = Facts::default().with(&FIREWALL, Ok(fw(rules, Family::Ip6)));
        let q = flow_queries(&p.flows[0], facts.get(&FIREWALL).unwrap());
        assert_eq!(q[0].proto, 58);
        let f = flow(&p.flows[0], &facts).unwrap();
        assert_eq!(f.status, Status::Fail, "{f:?}");
        assert!(
            f.remediation
                .as_deref()
                .unwrap()
                .starts_with("ip6tables -I INPUT 2 -s fd00::/8 -p ipv6-icmp -j ACCEPT ("),
            "{f:?}"
        );
    }

    #[test]
    fn matching_lines_are_cited_with_numbers_and_counted() {
        let text = "a\nnameserver 127.0.0.1\nb\n".repeat(7);
        let re = regex::RegexBuilder::new("^nameserver 127")
            .multi_line(true)
            .build()
            .unwrap();
        let (cited, n) = matching_lines("/etc/resolv.conf", &text, &re);
        assert_eq!(n, 7);
        assert_eq!(cited.len(), MAX_CITED);
        assert_eq!(cited[1], "/etc/resolv.conf:5: nameserver 127.0.0.1");
        // A credential on a cited line is masked.
        let text =
            "users:\n- user:\n    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQo=\n";
        let re = regex::RegexBuilder::new("^\\s+client-key-data:")
            .multi_line(true)
            .build()
            .unwrap();
        let (cited, _) = matching_lines("/etc/kubernetes/admin.conf", text, &re);
        assert_eq!(
            cited,
            ["/etc/kubernetes/admin.conf:3:     client-key-data: ****"]
        );
    }
}
