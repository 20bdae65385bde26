//! `proxy.env`: HTTP(S)_PROXY where kubeadm, the kubelet or the runtime would pick it up (the doctor's
//! environment on the live host, /etc/environment, the services' systemd drop-ins and EnvironmentFiles),
//! and whether NO_PROXY keeps the API endpoint, the service CIDR and the pod CIDR off the proxy — matched
//! the way Go's `httpproxy` does (CIDR-aware), since every component is Go.

use super::{Area};
use crate::core::{check::CheckDef, source::Source};
use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;

use crate::{
    core::check::Finding,
    core::facts::Fact,
    core::host::Host,
};


pub const AREA: Area = Area {
    checks: &[
        CheckDef {
            id: "proxy.env",
            needs: &[&PROXY_ENV],
            run: |f, _| Ok(decide(f.get(&PROXY_ENV)?)),
        },
    ],
    fixes: &[],
};

/// Proxy variables where kubeadm, the kubelet and the runtimes read them, and what must bypass them.
pub const PROXY_ENV: Source<ProxyEnvFacts> = Source::files("proxy-env", |g| gather(g.host));

/// The units whose environment matters: the kubelet talks to the API, the runtimes pull images.
pub const UNITS: &[&str] = &["kubelet", "containerd", "crio", "docker"];
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];
/// kubeadm's default service CIDR.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
const APISERVER_MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";
const CM_MANIFEST: &str = "/etc/kubernetes/manifests/kube-controller-manager.yaml";

/// A variable as set in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    pub value: String,
    /// `file:line`.
    pub at: String,
}

/// One place proxy variables come from, and what it sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSource {
    /// Who reads it: "kubeadm (this shell)", "login sessions", "kubelet.service" ...
    pub reader: String,
    pub vars: BTreeMap<String, Var>,
}

fn is_proxy_var(k: &str) -> bool {
    matches!(
        k.to_ascii_uppercase().as_str(),
        "HTTP_PROXY" | "HTTPS_PROXY" | "NO_PROXY"
    )
}

/// Splits a systemd `Environment=` value into assignments: whitespace-separated, double or single quotes.
pub fn split_assignments(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut any = false;
    for c in v.chars() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (_, c) => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Proxy variables of an environment file (/etc/environment, EnvironmentFile=): `KEY=value`, quotes, `export`.
pub fn parse_env_file(file: &str, text: &str) -> BTreeMap<String, Var> {
    let mut m = BTreeMap::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        let l = l.strip_prefix("export ").unwrap_or(l);
        if l.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = l.split_once('=')
            && is_proxy_var(k.trim())
        {
            m.insert(
                k.trim().to_string(),
                Var {
                    value: v.trim().trim_matches('"').trim_matches('\'').to_string(),
                    at: format!("{file}:{}", i + 1),
                },
            );
        }
    }
    m
}

/// Proxy variables of a unit drop-in's `Environment=` lines, and its `EnvironmentFile=` paths.
pub fn parse_drop_in(file: &str, text: &str) -> (BTreeMap<String, Var>, Vec<String>) {
    let mut vars = BTreeMap::new();
    let mut files = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if let Some(v) = l.strip_prefix("Environment=") {
            if v.trim().is_empty() {
                vars.clear(); // an empty assignment resets the list
            }
            for a in split_assignments(v) {
                if let Some((k, val)) = a.split_once('=')
                    && is_proxy_var(k)
                {
                    vars.insert(
                        k.to_string(),
                        Var {
                            value: val.to_string(),
                            at: format!("{file}:{}", i + 1),
                        },
                    );
                }
            }
        } else if let Some(v) = l.strip_prefix("EnvironmentFile=") {
            files.push(v.trim().trim_start_matches('-').to_string());
        }
    }
    (vars, files)
}

/// `http://user:secret@proxy:3128` → `http://user:****@proxy:3128`: credentials never reach a report.
pub fn mask_credentials(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let auth_end = rest.find('/').unwrap_or(rest.len());
    match rest[..auth_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            let prefix = if scheme.is_empty() {
                String::new()
            } else {
                format!("{scheme}://")
            };
            format!("{prefix}{user}:****{}", &rest[at..])
        }
        None => url.to_string(),
    }
}

/// A destination kubeadm's proxy checks care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Host(String),
    Cidr(IpNet),
}

impl std::fmt::Display for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dest::Host(h) => f.write_str(h),
            Dest::Cidr(c) => write!(f, "{c}"),
        }
    }
}

/// Whether NO_PROXY keeps `dest` off the proxy, as Go's httpproxy decides (`*`, IPs, CIDRs, domain
/// suffixes with or without a leading dot; loopback never goes through a proxy). A CIDR destination
/// counts as covered only when one NO_PROXY CIDR holds all of it.
pub fn no_proxy_covers(no_proxy: &str, dest: &Dest) -> bool {
    let entries: Vec<String> = no_proxy
        .split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .collect();
    if entries.iter().any(|e| e == "*") {
        return true;
    }
    match dest {
        Dest::Cidr(net) => entries.iter().any(|e| {
            e.parse::<IpNet>().is_ok_and(|n| n.contains(net))
                || e.parse::<IpAddr>()
                    .is_ok_and(|ip| net.prefix_len() == net.max_prefix_len() && net.addr() == ip)
        }),
        Dest::Host(h) => {
            let h = h.to_ascii_lowercase();
            if h == "localhost" {
                return true;
            }
            if let Ok(ip) = h.trim_matches(['[', ']']).parse::<IpAddr>() {
                if ip.is_loopback() {
                    return true;
                }
                return entries.iter().any(|e| {
                    e.parse::<IpNet>().is_ok_and(|n| n.contains(&ip))
                        || e.parse::<IpAddr>().is_ok_and(|x| x == ip)
                });
            }
            entries.iter().any(|e| {
                let e = e
                    .rsplit_once(':')
                    .filter(|(_, p)| p.parse::<u16>().is_ok())
                    .map_or(e.as_str(), |(h, _)| h);
                let e = e
                    .strip_prefix("*.")
                    .map(|s| format!(".{s}"))
                    .unwrap_or(e.to_string());
                match e.strip_prefix('.') {
                    Some(suffix) => h.ends_with(&format!(".{suffix}")),
                    None => h == e || h.ends_with(&format!(".{e}")),
                }
            })
        }
    }
}

/// The API server's host from a kubeconfig (`server: https://HOST:PORT`).
pub fn kubeconfig_server_host(text: &str) -> Option<String> {
    let url = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))?
        .trim();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next()?;
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next()?.to_string()
    } else {
        hostport
            .rsplit_once(':')
            .map_or(hostport, |(h, _)| h)
            .to_string()
    };
    (!host.is_empty()).then_some(host)
}

/// `--flag=value` in a static pod manifest's command.
pub fn manifest_flag(text: &str, flag: &str) -> Option<String> {
    let want = format!("--{flag}=");
    text.lines().find_map(|l| {
        let l = l.trim().trim_start_matches("- ").trim().trim_matches('"');
        l.strip_prefix(&want)
            .map(|v| v.trim_matches('"').to_string())
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyEnvFacts {
    pub sources: Vec<EnvSource>,
    /// What must stay off the proxy, each with where it came from.
    pub dests: Vec<(String, Dest, String)>,
    /// Destinations that could not be known, and why.
    pub unknown: Vec<String>,
}

fn cidrs(list: &str) -> Vec<IpNet> {
    list.split(',')
        .filter_map(|c| c.trim().parse::<IpNet>().ok())
        .map(|n| n.trunc())
        .collect()
}

pub fn gather(host: &Host) -> Fact<ProxyEnvFacts> {
    let mut sources = Vec::new();
    if host.is_live() {
        let env = host.probe("environment: proxy variables", || {
            std::env::vars()
                .filter(|(k, _)| is_proxy_var(k))
                .collect::<Vec<_>>()
        })?;
        let vars: BTreeMap<String, Var> = env
            .into_iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Var {
                        value: v,
                        at: format!("environment: {k}"),
                    },
                )
            })
            .collect();
        sources.push(EnvSource {
            reader: "kubeadm (the environment k8sdoctor runs in)".into(),
            vars,
        });
    }
    if let Some(t) = host.read_opt("/etc/environment")? {
        sources.push(EnvSource {
            reader: "login sessions (/etc/environment)".into(),
            vars: parse_env_file("/etc/environment", &t),
        });
    }
    for unit in UNITS {
        let mut vars = BTreeMap::new();
        let mut env_files = Vec::new();
        // systemd applies drop-ins in name order across the directories; /etc wins for equal names.
        let mut by_name: BTreeMap<String, String> = BTreeMap::new();
        for d in UNIT_DIRS {
            let dir = format!("{d}/{unit}.service.d");
            for n in host.list_dir(&dir)? {
                if n.ends_with(".conf") {
                    by_name.entry(n.clone()).or_insert(format!("{dir}/{n}"));
                }
            }
        }
        for path in by_name.values() {
            if let Some(t) = host.read_opt(path)? {
                let (v, f) = parse_drop_in(path, &t);
                vars.extend(v);
                env_files.extend(f);
            }
        }
        for f in env_files {
            if let Some(t) = host.read_opt(&f)? {
                vars.extend(parse_env_file(&f, &t));
            }
        }
        if !vars.is_empty() {
            sources.push(EnvSource {
                reader: format!("{unit}.service"),
                vars,
            });
        }
    }
    let mut dests = Vec::new();
    let mut unknown = Vec::new();
    let api = ["/etc/kubernetes/kubelet.conf", "/etc/kubernetes/admin.conf"]
        .iter()
        .find_map(|f| {
            let t = host.read_opt(f).ok()??;
            kubeconfig_server_host(&t).map(|h| (h, format!("{f}: server")))
        });
    let apiserver = host.read_opt(APISERVER_MANIFEST)?;
    let api = api.or_else(|| {
        manifest_flag(apiserver.as_deref()?, "advertise-address")
            .map(|h| (h, format!("{APISERVER_MANIFEST}: --advertise-address")))
    });
    match api {
        Some((h, at)) => dests.push(("the API endpoint".into(), Dest::Host(h), at)),
        None => unknown.push(
            "the API endpoint: no kubelet.conf, admin.conf or API server manifest yet".into(),
        ),
    }
    match apiserver
        .as_deref()
        .and_then(|t| manifest_flag(t, "service-cluster-ip-range"))
    {
        Some(v) => dests.extend(cidrs(&v).into_iter().map(|c| {
            (
                "the service CIDR".to_string(),
                Dest::Cidr(c),
                format!("{APISERVER_MANIFEST}: --service-cluster-ip-range"),
            )
        })),
        None => dests.push((
            "the service CIDR".into(),
            Dest::Cidr(DEFAULT_SERVICE_CIDR.parse().expect("valid")),
            "kubeadm's default serviceSubnet".into(),
        )),
    }
    match host
        .read_opt(CM_MANIFEST)?
        .as_deref()
        .and_then(|t| manifest_flag(t, "cluster-cidr"))
    {
        Some(v) => dests.extend(cidrs(&v).into_iter().map(|c| {
            ("the pod CIDR".to_string(), Dest::Cidr(c), format!("{CM_MANIFEST}: --cluster-cidr"))
        })),
        None => unknown.push("the pod CIDR: not known before `kubeadm init --pod-network-cidr` (check it is in NO_PROXY)".into()),
    }
    Ok(ProxyEnvFacts {
        sources,
        dests,
        unknown,
    })
}

fn var<'a>(vars: &'a BTreeMap<String, Var>, name: &str) -> Option<&'a Var> {
    vars.get(name)
        .or_else(|| vars.get(&name.to_ascii_lowercase()))
        .filter(|v| !v.value.is_empty())
}

pub fn decide(p: &ProxyEnvFacts) -> Finding {
    let mut ev = Vec::new();
    let mut leaks = Vec::new();
    let mut any_proxy = false;
    for s in &p.sources {
        let https = var(&s.vars, "HTTPS_PROXY");
        let http = var(&s.vars, "HTTP_PROXY");
        if https.is_none() && http.is_none() {
            continue;
        }
        any_proxy = true;
        for (n, v) in [("HTTPS_PROXY", https), ("HTTP_PROXY", http)] {
            if let Some(v) = v {
                ev.push(format!(
                    "{}: {n}={} ({})",
                    v.at,
                    mask_credentials(&v.value),
                    s.reader
                ));
            }
        }
        let no_proxy = var(&s.vars, "NO_PROXY");
        match no_proxy {
            Some(v) => ev.push(format!("{}: NO_PROXY={}", v.at, v.value)),
            None => ev.push(format!("{}: no NO_PROXY", s.reader)),
        }
        let np = no_proxy.map_or("", |v| v.value.as_str());
        for (what, d, _) in &p.dests {
            // Go sends https through HTTPS_PROXY only: the API (https) is at risk only when it is set.
            let at_risk = https.is_some() || matches!(d, Dest::Cidr(_));
            if at_risk && !no_proxy_covers(np, d) {
                leaks.push(format!("{} sends {what} {d} to the proxy", s.reader));
            }
        }
    }
    for (what, d, at) in &p.dests {
        ev.push(format!("{what}: {d} ({at})"));
    }
    ev.extend(p.unknown.iter().map(|u| format!("not checked: {u}")));
    if !any_proxy {
        return Finding::pass("no HTTP(S)_PROXY is set for kubeadm, the kubelet or the runtime")
            .evidence_all(ev);
    }
    if leaks.is_empty() {
        return Finding::pass("a proxy is set, and NO_PROXY keeps cluster traffic off it")
            .evidence_all(ev);
    }
    let missing: Vec<String> = p.dests.iter().map(|(_, d, _)| d.to_string()).collect();
    Finding::warn(format!(
        "{}; kubeadm warns [WARNING HTTPProxy]/[WARNING HTTPProxyCIDR] and the traffic fails or leaks",
        leaks.join("; ")
    ))
    .evidence_all(ev)
    .remediation(format!(
        "add them to NO_PROXY (and no_proxy) wherever the proxy is set, e.g. NO_PROXY=localhost,127.0.0.1,{},.svc,.cluster.local; for a unit: `systemctl edit <unit>` with Environment=\"NO_PROXY=...\", then `systemctl daemon-reload` and restart it",
        missing.join(",")
    ))
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::check::Status;

    fn cidr(s: &str) -> Dest {
        Dest::Cidr(s.parse().unwrap())
    }

    #[test]
    fn no_proxy_matching_follows_go() {
        assert!(no_proxy_covers("*", &Dest::Host("x".into())));
        assert!(no_proxy_covers("10.0.0.0/8", &cidr("10.96.0.0/12")));
        assert!(
            !no_proxy_covers("10.96.0.0/16", &cidr("10.96.0.0/12")),
            "only part of it"
        );
        assert!(!no_proxy_covers("10.96.0.1", &cidr("10.96.0.0/12")));
        assert!(no_proxy_covers(
            " 192.168.1.0/24 ",
            &Dest::Host("192.168.1.10".into())
        ));
        assert!(no_proxy_covers(
            "192.168.1.10",
            &Dest::Host("192.168.1.10".into())
        ));
        assert!(!no_proxy_covers(
            "192.168.1.1",
            &Dest::Host("192.168.1.10".into())
        ));
        assert!(no_proxy_covers(
            "example.com",
            &Dest::Host("k8s.example.com".into())
        ));
        assert!(no_proxy_covers(
            ".example.com",
            &Dest::Host("k8s.example.com".into())
        ));
        assert!(!no_proxy_covers(
            ".example.com",
            &Dest::Host("example.com".into())
        ));
        assert!(no_proxy_covers(
            "*.example.com",
            &Dest::Host("api.example.com".into())
        ));
        assert!(no_proxy_covers(
            "k8s.example.com:6443",
            &Dest::Host("k8s.example.com".into())
        ));
        assert!(!no_proxy_covers(
            "notexample.com",
            &Dest::Host("example.com.evil".into())
        ));
        assert!(
            no_proxy_covers("", &Dest::Host("127.0.0.1".into())),
            "loopback is never proxied"
        );
        assert!(no_proxy_covers("fd00::/8", &cidr("fd00:10:96::/112")));
    }

    #[test]
    fn parsers() {
        assert_eq!(
            split_assignments(r#""HTTP_PROXY=http://p:3128" NO_PROXY=a,b 'X=y z'"#),
            ["HTTP_PROXY=http://p:3128", "NO_PROXY=a,b", "X=y z"]
        );
        let (v, f) = parse_drop_in(
            "/etc/systemd/system/containerd.service.d/http-proxy.conf",
            "[Service]\nEnvironment=\"HTTPS_PROXY=http://proxy.corp:3128\"\nEnvironment=\"NO_PROXY=localhost\"\nEnvironmentFile=-/etc/default/containerd\n",
        );
        assert_eq!(v["HTTPS_PROXY"].value, "http://proxy.corp:3128");
        assert_eq!(
            v["NO_PROXY"].at,
            "/etc/systemd/system/containerd.service.d/http-proxy.conf:3"
        );
        assert_eq!(f, ["/etc/default/containerd"]);
        let e = parse_env_file(
            "/etc/environment",
            "PATH=\"/usr/bin\"\nhttps_proxy=\"http://u:pw@p:8080/\"\n# NO_PROXY=x\n",
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e["https_proxy"].value, "http://u:pw@p:8080/");
        assert_eq!(
            mask_credentials("http://u:pw@p:8080/"),
            "http://u:****@p:8080/"
        );
        assert_eq!(mask_credentials("http://p:8080"), "http://p:8080");
        assert_eq!(
            kubeconfig_server_host(
                "clusters:\n- cluster:\n    server: https://192.168.1.10:6443\n"
            )
            .as_deref(),
            Some("192.168.1.10")
        );
        assert_eq!(
            kubeconfig_server_host("    server: https://[fd00::1]:6443\n").as_deref(),
            Some("fd00::1")
        );
        assert_eq!(
            manifest_flag("    - kube-apiserver\n    - --service-cluster-ip-range=10.96.0.0/12,fd00:10:96::/112\n", "service-cluster-ip-range").as_deref(),
            Some("10.96.0.0/12,fd00:10:96::/112")
        );
    }

    #[test]
    fn verdicts() {
        let src = |np: Option<&str>| {
            let mut vars = BTreeMap::new();
            vars.insert(
                "HTTPS_PROXY".into(),
                Var {
                    value: "http://user:secret@proxy:3128".into(),
                    at: "f:1".into(),
                },
            );
            if let Some(n) = np {
                vars.insert(
                    "NO_PROXY".into(),
                    Var {
                        value: n.into(),
                        at: "f:2".into(),
                    },
                );
            }
            EnvSource {
                reader: "kubelet.service".into(),
                vars,
            }
        };
        let dests = vec![
            (
                "the API endpoint".to_string(),
                Dest::Host("192.168.1.10".into()),
                "a".to_string(),
            ),
            (
                "the service CIDR".to_string(),
                cidr("10.96.0.0/12"),
                "b".to_string(),
            ),
            (
                "the pod CIDR".to_string(),
                cidr("10.244.0.0/16"),
                "c".to_string(),
            ),
        ];
        let mut p = ProxyEnvFacts {
            sources: vec![src(Some("localhost,192.168.1.0/24,10.96.0.0/12"))],
            dests,
            unknown: vec![],
        };
        let f = decide(&p);
        assert_eq!(f.status, Status::Warn);
        assert!(
            f.message.contains("the pod CIDR 10.244.0.0/16"),
            "{}",
            f.message
        );
        assert!(!f.message.contains("service CIDR"), "{}", f.message);
        assert!(
            f.evidence.iter().all(|e| !e.contains("secret")),
            "{:?}",
            f.evidence
        );
        p.sources = vec![src(Some("localhost,192.168.1.10,10.0.0.0/8"))];
        assert_eq!(decide(&p).status, Status::Pass);
        p.sources = vec![src(None)];
        assert!(decide(&p).message.contains("the API endpoint 192.168.1.10"));
        p.sources.clear();
        assert_eq!(decide(&p).status, Status::Pass);
    }
}
