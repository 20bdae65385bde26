//! DNS on the node: `resolv.conf` parsing and the `dns.loopback-nameserver` check (the guide's 127.0.0.1 loop).

use std::net::IpAddr;

use super::{Area, kubelet};
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
    fixes: &[Fix {
        check: "dns.loopback-nameserver",
        edits: |_| vec![kubelet::CONFIG_PATH.into()],
        plan: dns_loopback,
    }],
};

/// The resolv.conf files pods may inherit: the node's, the kubelet's `resolvConf`, systemd-resolved's upstream.
pub const DNS: Source<DnsFacts> = Source::files("dns", gather);

const CHECKS: &[CheckDef] = &[CheckDef {
    id: "dns.loopback-nameserver",
    needs: &[&DNS],
    run: loopback_nameserver,
}];

pub const ETC_RESOLV: &str = "/etc/resolv.conf";
pub const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";
/// Only this many nameservers reach pods (glibc's MAXNS; the kubelet trims the rest).
pub const MAX_NAMESERVERS: usize = 3;

/// One `nameserver` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nameserver {
    pub line: usize,
    /// The address as written (with any `%scope`).
    pub text: String,
    pub addr: Option<IpAddr>,
}

impl Nameserver {
    /// 127.0.0.0/8, ::1, and the unspecified addresses (which mean "this host" to a resolver).
    pub fn is_local(&self) -> bool {
        match self.addr {
            Some(IpAddr::V4(a)) => a.is_loopback() || a.is_unspecified(),
            Some(IpAddr::V6(a)) => {
                a.is_loopback()
                    || a.is_unspecified()
                    || a.to_ipv4_mapped().is_some_and(|v| v.is_loopback())
            }
            None => false,
        }
    }

    /// systemd-resolved's stub listeners.
    pub fn is_resolved_stub(&self) -> bool {
        matches!(self.text.as_str(), "127.0.0.53" | "127.0.0.54")
    }
}

/// A parsed resolv.conf and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    pub path: String,
    pub nameservers: Vec<Nameserver>,
}

impl ResolvConf {
    fn local(&self) -> Vec<&Nameserver> {
        self.nameservers.iter().filter(|n| n.is_local()).collect()
    }
    fn cite(&self, n: &Nameserver) -> String {
        format!("{}:{}: nameserver {}", self.path, n.line, n.text)
    }
}

/// Parses resolv.conf text: `#`/`;` comments and blank lines ignored, spaces or tabs between fields.
pub fn parse_resolv_conf(path: &str, text: &str) -> ResolvConf {
    let nameservers = text
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with(';') {
                return None;
            }
            let mut f = line.split_whitespace();
            (f.next()? == "nameserver").then_some(())?;
            let text = f.next()?.to_string();
            let addr = text.split('%').next().and_then(|a| a.parse().ok());
            Some(Nameserver {
                line: i + 1,
                text,
                addr,
            })
        })
        .collect();
    ResolvConf {
        path: path.to_string(),
        nameservers,
    }
}

/// What the kubelet's configuration says about DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletDns {
    /// `resolvConf` and the line that sets it, when set.
    pub resolv_conf: Option<(String, Option<usize>)>,
    /// The file it names, read.
    pub file: Option<Fact<ResolvConf>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsFacts {
    pub etc: Fact<ResolvConf>,
    /// `None` when the kubelet is not configured yet (before `kubeadm init`/`join`).
    pub kubelet: Option<Fact<KubeletDns>>,
    /// systemd-resolved's upstream file, when it exists.
    pub resolved_upstream: Option<ResolvConf>,
}

fn read_resolv(host: &Host, path: &str) -> Fact<ResolvConf> {
    host.read(path).map(|t| parse_resolv_conf(path, &t))
}

fn gather(g: &Gather) -> Fact<DnsFacts> {
    let host = g.host;
    let kubelet = match g.get(&kubelet::CONFIG) {
        Err(e) => Some(Err(e)),
        Ok(file) => file.as_ref().as_ref().map(|file| {
            file.config.clone().map(|cfg| {
                let resolv_conf = cfg
                    .resolv_conf
                    .map(|p| (p, kubelet::line_of(&file.text, "resolvConf")));
                let file = resolv_conf
                    .as_ref()
                    .filter(|(p, _)| !p.is_empty() && p != ETC_RESOLV)
                    .map(|(p, _)| read_resolv(host, p));
                KubeletDns { resolv_conf, file }
            })
        }),
    };
    Ok(DnsFacts {
        etc: read_resolv(host, ETC_RESOLV),
        kubelet,
        resolved_upstream: host
            .read_opt(RESOLVED_UPSTREAM)
            .ok()
            .flatten()
            .map(|t| parse_resolv_conf(RESOLVED_UPSTREAM, &t)),
    })
}

/// The resolv.conf whose nameservers reach pods, and evidence for why it is that one.
fn effective(facts: &DnsFacts) -> Result<(Option<&ResolvConf>, Vec<String>), FactError> {
    let Some(kubelet) = &facts.kubelet else {
        return Ok((Some(get(&facts.etc)?), vec![]));
    };
    let k = get(kubelet)?;
    match &k.resolv_conf {
        None => Ok((
            Some(get(&facts.etc)?),
            vec![format!(
                "{}: resolvConf not set; the kubelet uses {ETC_RESOLV}",
                kubelet::CONFIG_PATH
            )],
        )),
        Some((p, line)) => {
            let at = format!(
                "{}{}: resolvConf: {p:?}",
                kubelet::CONFIG_PATH,
                line.map(|l| format!(":{l}")).unwrap_or_default()
            );
            if p.is_empty() {
                Ok((None, vec![at]))
            } else if p == ETC_RESOLV {
                Ok((Some(get(&facts.etc)?), vec![at]))
            } else {
                let file = k
                    .file
                    .as_ref()
                    .expect("read when resolvConf names another file");
                match file {
                    Err(FactError::Missing(_)) => Err(FactError::Unreadable(format!(
                        "{at} names a file that does not exist; the kubelet cannot create pods"
                    ))),
                    other => Ok((Some(get(other)?), vec![at])),
                }
            }
        }
    }
}

/// systemd-resolved's upstream file when it lists real (non-loopback) nameservers.
pub fn upstreams(facts: &DnsFacts) -> Option<&ResolvConf> {
    facts
        .resolved_upstream
        .as_ref()
        .filter(|r| !r.nameservers.is_empty() && r.local().is_empty())
}

fn loopback_nameserver(facts: &Facts, _ctx: &Ctx) -> Outcome {
    let dns = facts.get(&DNS)?;
    let (eff, mut evidence) = effective(dns)?;
    let Some(eff) = eff else {
        return Ok(Finding::pass(
            "the kubelet's resolvConf is empty: pods do not inherit the node's nameservers",
        )
        .evidence_all(evidence));
    };
    let local = eff.local();
    let etc_local: Vec<&Nameserver> = match &dns.etc {
        Ok(etc) if etc.path != eff.path => etc.local(),
        _ => vec![],
    };
    if !local.is_empty() {
        evidence.extend(local.iter().map(|n| eff.cite(n)));
        let all_stub = local.iter().all(|n| n.is_resolved_stub());
        if all_stub && let Some(up) = upstreams(dns) {
            evidence.push(format!(
                "{}: upstreams {}",
                up.path,
                up.nameservers
                    .iter()
                    .map(|n| n.text.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let fix = format!(
                "set `resolvConf: {RESOLVED_UPSTREAM}` in {} (or KubeletConfiguration in kubeadm's config) and restart the kubelet",
                kubelet::CONFIG_PATH
            );
            let f = if dns.kubelet.is_none() {
                Finding::warn(format!(
                    "{} points at systemd-resolved's stub {}: pods would forward DNS to themselves; kubeadm points the kubelet at {RESOLVED_UPSTREAM} when systemd-resolved runs, verify it after install",
                    eff.path, local[0].text
                ))
            } else {
                Finding::fail(format!(
                    "the kubelet hands pods {} which points at systemd-resolved's stub {}: CoreDNS forwards to itself and loops",
                    eff.path, local[0].text
                ))
            };
            return Ok(f.evidence_all(evidence).remediation(fix));
        }
        return Ok(Finding::fail(format!(
            "{} lists a loopback nameserver ({}): inside a pod that address is the pod itself, so cluster DNS loops or fails",
            eff.path,
            local.iter().map(|n| n.text.as_str()).collect::<Vec<_>>().join(", ")
        ))
        .evidence_all(evidence));
    }
    if eff.nameservers.is_empty() {
        return Ok(Finding::warn(format!(
            "{} lists no nameserver: resolvers then fall back to 127.0.0.1, the same loop",
            eff.path
        ))
        .evidence_all(evidence)
        .remediation(format!(
            "add a `nameserver <upstream IP>` line to {}",
            eff.path
        )));
    }
    if eff.nameservers.len() > MAX_NAMESERVERS {
        evidence.extend(eff.nameservers.iter().map(|n| eff.cite(n)));
        return Ok(Finding::warn(format!(
            "{} lists {} nameservers; only the first {MAX_NAMESERVERS} reach pods and the kubelet logs \"Nameserver limits exceeded\"",
            eff.path,
            eff.nameservers.len()
        ))
        .evidence_all(evidence)
        .remediation(format!(
            "keep at most {MAX_NAMESERVERS} nameserver lines in {} (or point the kubelet's resolvConf at a file that has)",
            eff.path
        )));
    }
    evidence.extend(eff.nameservers.iter().map(|n| eff.cite(n)));
    if !etc_local.is_empty() {
        evidence.push(format!(
            "{ETC_RESOLV} has {} but the kubelet does not hand it to pods",
            etc_local
                .iter()
                .map(|n| n.text.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Finding::pass(format!(
        "{} lists {} non-loopback nameserver(s)",
        eff.path,
        eff.nameservers.len()
    ))
    .evidence_all(evidence))
}

fn dns_loopback(facts: &Facts, files: &Files, fix: &mut CheckFix) -> Result<(), String> {
    let d = facts.get(&DNS).map_err(|e| e.to_string())?;
    let Some(up) = upstreams(d) else {
        fix.note(format!(
            "no file with real upstream nameservers exists here ({} is absent or lists only loopback): put your upstream nameservers in {} yourself",
            RESOLVED_UPSTREAM,
            ETC_RESOLV
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::check::{Role, Status};

    fn ctx() -> Ctx {
        Ctx {
            role: Role::Worker,
            now: std::time::SystemTime::now(),
        }
    }

    fn facts(etc: &str, kubelet: Option<Fact<KubeletDns>>, upstream: Option<&str>) -> Facts {
        Facts::default().with(
            &DNS,
            Ok(DnsFacts {
                etc: Ok(parse_resolv_conf(ETC_RESOLV, etc)),
                kubelet,
                resolved_upstream: upstream.map(|t| parse_resolv_conf(RESOLVED_UPSTREAM, t)),
            }),
        )
    }

    fn run(f: &Facts) -> Finding {
        loopback_nameserver(f, &ctx()).unwrap_or_else(Finding::from)
    }

    #[test]
    fn parses_comments_tabs_scopes_and_odd_lines() {
        let r = parse_resolv_conf(
            ETC_RESOLV,
            "# nameserver 127.0.0.1\n; nameserver ::1\n\nsearch example.org\nnameserver\t10.0.0.2  \n  nameserver fe80::1%eth0\nnameserver bogus\nnameserver\n",
        );
        let texts: Vec<_> = r
            .nameservers
            .iter()
            .map(|n| (n.line, n.text.as_str()))
            .collect();
        assert_eq!(texts, [(5, "10.0.0.2"), (6, "fe80::1%eth0"), (7, "bogus")]);
        assert!(r.nameservers[1].addr.is_some());
        assert!(r.nameservers[2].addr.is_none() && !r.nameservers[2].is_local());
    }

    #[test]
    fn the_guides_loopback_fails_with_the_line() {
        let f = run(&facts(
            "search univ.edu\nnameserver 127.0.0.1\nnameserver 10.1.1.1\n",
            None,
            None,
        ));
        assert_eq!(f.status, Status::Fail);
        assert_eq!(f.evidence, ["/etc/resolv.conf:2: nameserver 127.0.0.1"]);
    }

    #[test]
    fn every_loopback_form_fails() {
        for ns in [
            "127.0.1.1",
            "::1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
            "127.8.9.10",
        ] {
            let f = run(&facts(&format!("nameserver {ns}\n"), None, None));
            assert_eq!(f.status, Status::Fail, "{ns}");
        }
        assert_eq!(
            run(&facts("nameserver 128.0.0.1\n", None, None)).status,
            Status::Pass
        );
    }

    #[test]
    fn systemd_stub_before_install_warns_and_names_the_upstream_file() {
        let f = run(&facts(
            "nameserver 127.0.0.53\noptions edns0 trust-ad\n",
            None,
            Some("nameserver 192.0.2.53\n"),
        ));
        assert_eq!(f.status, Status::Warn);
        assert!(f.remediation.unwrap().contains(RESOLVED_UPSTREAM));
        // Without real upstreams the stub is just a loopback nameserver.
        let f = run(&facts(
            "nameserver 127.0.0.53\n",
            None,
            Some("nameserver 127.0.0.1\n"),
        ));
        assert_eq!(f.status, Status::Fail);
    }

    #[test]
    fn kubelet_pointing_at_upstreams_passes_despite_the_stub() {
        let k = KubeletDns {
            resolv_conf: Some((RESOLVED_UPSTREAM.into(), Some(12))),
            file: Some(Ok(parse_resolv_conf(
                RESOLVED_UPSTREAM,
                "nameserver 192.0.2.53\n",
            ))),
        };
        let f = run(&facts("nameserver 127.0.0.53\n", Some(Ok(k)), None));
        assert_eq!(f.status, Status::Pass, "{f:?}");
        assert!(f.evidence[0].contains("config.yaml:12"));
    }

    #[test]
    fn kubelet_handing_pods_the_stub_fails() {
        let k = KubeletDns {
            resolv_conf: None,
            file: None,
        };
        let f = run(&facts(
            "nameserver 127.0.0.53\n",
            Some(Ok(k)),
            Some("nameserver 192.0.2.53\n"),
        ));
        assert_eq!(f.status, Status::Fail);
        assert!(f.remediation.unwrap().contains("resolvConf"));
    }

    #[test]
    fn kubelet_file_missing_is_an_error_and_empty_resolvconf_passes() {
        let k = KubeletDns {
            resolv_conf: Some(("/etc/k8s-resolv.conf".into(), Some(3))),
            file: Some(Err(FactError::Missing("gone".into()))),
        };
        assert_eq!(
            run(&facts("nameserver 10.0.0.1\n", Some(Ok(k)), None)).status,
            Status::Error
        );
        let k = KubeletDns {
            resolv_conf: Some((String::new(), Some(3))),
            file: None,
        };
        assert_eq!(
            run(&facts("nameserver 127.0.0.1\n", Some(Ok(k)), None)).status,
            Status::Pass
        );
    }

    #[test]
    fn too_many_or_no_nameservers_warn() {
        let f = run(&facts(
            "nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n",
            None,
            None,
        ));
        assert_eq!((f.status, f.evidence.len()), (Status::Warn, 4));
        assert_eq!(run(&facts("search x\n", None, None)).status, Status::Warn);
    }
}
