//! The cluster area: connects with the `kube` crate, gathers what the cluster checks read over the
//! Kubernetes API (versions, nodes, bootstrap tokens, DNS pods, CNI daemonsets, cluster-admin
//! bindings), probes kube-dns when its Service IP is reachable from here, and reads local binaries.

mod checks;
pub mod connect;
pub mod version;

use std::{net::IpAddr, time::Duration};

use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{Node, Pod, Secret, Service},
    rbac::v1::ClusterRoleBinding,
};
use kube::{Api, Client, api::ListParams};
use serde::de::DeserializeOwned;

pub use checks::CHECKS;
pub use connect::{ApiFailure, Layer, Target};

use crate::{
    config::Config,
    facts::{Fact, FactError},
    host::{Host, run_command},
    mask::mask_secrets,
};

/// Everything the cluster checks read.
#[derive(Debug, Clone)]
pub struct ClusterFacts {
    /// The API server URL, from the kubeconfig (or in-cluster config).
    pub server: String,
    pub context: Option<String>,
    /// What the API answered, or the layer at which talking to it failed.
    pub api: Result<ApiFacts, ApiFailure>,
    /// `kubectl`, `kubeadm`, `kubelet` on this node.
    pub local: LocalVersions,
    /// Pod network configs in /etc/cni/net.d.
    pub cni_conf: Fact<Vec<String>>,
}

/// The API's answers. Each list carries its own error (e.g. RBAC denied it).
#[derive(Debug, Clone)]
pub struct ApiFacts {
    pub version: String,
    pub nodes: Fact<Vec<NodeInfo>>,
    pub tokens: Fact<Vec<TokenInfo>>,
    pub dns_pods: Fact<Vec<PodInfo>>,
    pub dns_service_ip: Fact<Option<String>>,
    pub dns_probe: DnsProbe,
    pub daemonsets: Fact<Vec<DaemonSetInfo>>,
    pub admin_bindings: Fact<Vec<AdminBinding>>,
    /// Requests RBAC denied, as the server named them (`list secrets in kube-system`).
    pub denied: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub kubelet: String,
    pub kube_proxy: String,
    /// (type, status, reason, message) for every condition.
    pub conditions: Vec<(String, String, String, String)>,
}

/// A bootstrap token without its secret: the secret is never read into facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    /// Raw `expiration` value; None = never expires.
    pub expiration: Option<String>,
    pub usages: Vec<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    pub phase: String,
    pub ready: bool,
    pub containers: Vec<ContainerInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub name: String,
    pub ready: bool,
    pub restarts: i32,
    /// Waiting reason now (CrashLoopBackOff, ImagePullBackOff ...).
    pub waiting: Option<String>,
    /// Last termination: reason, exit code and message.
    pub last_terminated: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSetInfo {
    pub namespace: String,
    pub name: String,
    pub desired: i32,
    pub ready: i32,
    pub updated: i32,
    pub available: i32,
}

/// A ServiceAccount bound to cluster-admin by a ClusterRoleBinding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminBinding {
    pub binding: String,
    pub account: String,
}

/// The kube-dns resolution probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsProbe {
    /// Not attempted, and why (not reachable from here, no Service, offline ...).
    NotRun(String),
    Resolved {
        server: String,
        addrs: Vec<String>,
    },
    Failed {
        server: String,
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalVersions {
    /// (binary, version or why there is none); `Err` = not installed.
    pub kubectl: Result<String, String>,
    pub kubeadm: Result<String, String>,
    pub kubelet: Result<String, String>,
}

/// The name every bootstrap-token Secret has, and its type.
const TOKEN_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Page size for lists: big enough for few round trips, small enough to keep memory flat.
const PAGE: u32 = 500;
/// The name kube-dns answers for the API server.
pub const PROBE_NAME: &str = "kubernetes.default.svc.cluster.local.";

/// Gathers the cluster facts: `Missing` when no kubeconfig is found (every cluster check skips).
pub fn gather(host: &Host, cfg: &Config) -> Fact<ClusterFacts> {
    if cfg.offline {
        return Err(FactError::Missing(
            "--offline: the cluster checks need the network".into(),
        ));
    }
    let started = std::time::Instant::now();
    // Leave the engine's deadline a margin so a timeout is reported by layer, not as an abandoned area.
    let budget = cfg.timeout.mul_f64(0.9);
    let target = connect::find(cfg)?;
    let local_cfg = budget;
    let local = std::thread::spawn(move || local_versions(local_cfg));
    let cni_conf = cni_configs(host);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FactError::Unreadable(format!("cannot start the async runtime: {e}")))?;
    let server = target.server.clone();
    let context = target.context.clone();
    let api = rt.block_on(async {
        let left = budget.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, gather_api(host, target, cfg, left)).await {
            Ok(r) => r,
            Err(_) => Err(ApiFailure::timeout(&server, cfg.timeout)),
        }
    });
    // A resolver thread stuck in getaddrinfo must not hold the run past its deadline.
    rt.shutdown_background();
    let local = local.join().unwrap_or_else(|_| {
        let e = || Err("reading the version panicked".to_string());
        LocalVersions {
            kubectl: e(),
            kubeadm: e(),
            kubelet: e(),
        }
    });
    Ok(ClusterFacts {
        server: mask_secrets(&server),
        context,
        api,
        local,
        cni_conf,
    })
}

async fn gather_api(
    host: &Host,
    target: Target,
    cfg: &Config,
    budget: Duration,
) -> Result<ApiFacts, ApiFailure> {
    let server = target.server.clone();
    let client = connect::client(target, budget).await?;
    let info = client
        .apiserver_version()
        .await
        .map_err(|e| ApiFailure::classify(&server, &e, cfg.timeout))?;
    let mut denied = Vec::new();
    let svc_ip = |s: &Service| {
        let ip = s.spec.as_ref()?.cluster_ip.clone()?;
        Some((s.metadata.name.clone().unwrap_or_default(), ip))
    };
    let (node_api, ds_api, crb_api) = (
        Api::<Node>::all(client.clone()),
        Api::<DaemonSet>::all(client.clone()),
        Api::<ClusterRoleBinding>::all(client.clone()),
    );
    let (secret_api, pod_api, svc_api) = (
        kube_system::<Secret>(&client),
        kube_system::<Pod>(&client),
        kube_system::<Service>(&client),
    );
    let dns_label = Some(("k8s-app", "kube-dns"));
    let (nodes, tokens, dns_pods, dns_svc, daemonsets, crbs) = tokio::join!(
        pages(&node_api, None, |n| Some(node_info(n))),
        pages(&secret_api, Some(("type", TOKEN_TYPE)), token_info),
        pages(&pod_api, dns_label, |p| Some(pod_info(p))),
        pages(&svc_api, dns_label, svc_ip),
        pages(&ds_api, None, |d| Some(daemonset_info(d))),
        pages(&crb_api, None, |b| Some(admin_bindings(b))),
    );
    let nodes = fact(&mut denied, nodes);
    let tokens = fact(&mut denied, tokens);
    let dns_pods = fact(&mut denied, dns_pods);
    let dns_service_ip: Fact<Option<String>> = fact(&mut denied, dns_svc).map(|v| {
        v.iter()
            .find(|(name, _)| name == "kube-dns")
            .or(v.first())
            .map(|(_, ip)| ip.clone())
            .filter(|ip| ip != "None")
    });
    let daemonsets = fact(&mut denied, daemonsets);
    let admin_bindings = fact(&mut denied, crbs).map(|v| v.into_iter().flatten().collect());
    let dns_probe = match (&dns_service_ip, &nodes) {
        (Ok(Some(ip)), nodes) => {
            let names: Vec<&str> = nodes
                .as_ref()
                .map(|n| n.iter().map(|n| n.name.as_str()).collect())
                .unwrap_or_default();
            match ip.parse::<IpAddr>() {
                Ok(addr) => match reachable(host, addr, &names) {
                    Ok(()) => probe_dns(addr, cfg.timeout.mul_f64(0.3)).await,
                    Err(why) => DnsProbe::NotRun(why),
                },
                Err(_) => DnsProbe::NotRun(format!("kube-dns ClusterIP {ip:?} is not an IP")),
            }
        }
        (Ok(None), _) => DnsProbe::NotRun("no kube-dns Service in kube-system".into()),
        (Err(e), _) => DnsProbe::NotRun(e.to_string()),
    };
    Ok(ApiFacts {
        version: info.git_version,
        nodes,
        tokens,
        dns_pods,
        dns_service_ip,
        dns_probe,
        daemonsets,
        admin_bindings,
        denied,
    })
}

/// A list's result as a fact, remembering what RBAC denied.
fn fact<T>(denied: &mut Vec<String>, r: Result<Vec<T>, ListError>) -> Fact<Vec<T>> {
    r.map_err(|e| {
        if let ListError::Denied(d) = &e {
            denied.push(d.clone());
        }
        FactError::Unreadable(e.to_string())
    })
}

/// Why a list failed: RBAC denied it (named as the server names it) or anything else.
#[derive(Debug, thiserror::Error)]
enum ListError {
    #[error("RBAC denied it: {0}")]
    Denied(String),
    #[error("{0}")]
    Other(String),
}

fn kube_system<K>(client: &Client) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(client.clone(), "kube-system")
}

/// Lists every object of a kind, page by page (`limit`/`continue`), keeping only what `keep`
/// extracts from each object so memory stays one page deep.
async fn pages<K, O>(
    api: &Api<K>,
    selector: Option<(&str, &str)>,
    keep: impl Fn(&K) -> Option<O>,
) -> Result<Vec<O>, ListError>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut lp = ListParams::default().limit(PAGE);
    if let Some((k, v)) = selector {
        lp = if k == "type" {
            lp.fields(&format!("type={v}"))
        } else {
            lp.labels(&format!("{k}={v}"))
        };
    }
    let mut out = Vec::new();
    // Bounded: at most 1,000 pages (500,000 objects).
    for _ in 0..1000 {
        let list = api.list(&lp).await.map_err(|e| match &e {
            kube::Error::Api(s) if s.code == 403 => ListError::Denied(connect::denied_text(s)),
            _ => ListError::Other(connect::describe(&e)),
        })?;
        out.extend(list.items.iter().filter_map(&keep));
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => return Ok(out),
        }
    }
    Err(ListError::Other("more than 1,000 pages: stopped".into()))
}

fn node_info(n: &Node) -> NodeInfo {
    let status = n.status.as_ref();
    let info = status.and_then(|s| s.node_info.as_ref());
    NodeInfo {
        name: n.metadata.name.clone().unwrap_or_default(),
        kubelet: info.map(|i| i.kubelet_version.clone()).unwrap_or_default(),
        kube_proxy: info
            .map(|i| i.kube_proxy_version.clone())
            .unwrap_or_default(),
        conditions: status
            .and_then(|s| s.conditions.as_ref())
            .map(|c| {
                c.iter()
                    .map(|c| {
                        (
                            c.type_.clone(),
                            c.status.clone(),
                            c.reason.clone().unwrap_or_default(),
                            c.message.clone().unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The public half and metadata of a bootstrap token; the secret is not copied.
fn token_info(s: &Secret) -> Option<TokenInfo> {
    if s.type_.as_deref() != Some(TOKEN_TYPE) {
        return None;
    }
    let data = s.data.as_ref()?;
    let get = |k: &str| {
        data.get(k)
            .map(|v| String::from_utf8_lossy(&v.0).trim().to_string())
    };
    let id = get("token-id").or_else(|| {
        s.metadata
            .name
            .as_deref()?
            .strip_prefix("bootstrap-token-")
            .map(String::from)
    })?;
    let mut usages: Vec<String> = data
        .iter()
        .filter_map(|(k, v)| {
            let u = k.strip_prefix("usage-bootstrap-")?;
            (v.0 == b"true").then(|| u.to_string())
        })
        .collect();
    usages.sort();
    Some(TokenInfo {
        id,
        expiration: get("expiration"),
        usages,
        description: get("description"),
    })
}

fn pod_info(p: &Pod) -> PodInfo {
    let status = p.status.as_ref();
    let containers = status
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| {
            cs.iter()
                .map(|c| ContainerInfo {
                    name: c.name.clone(),
                    ready: c.ready,
                    restarts: c.restart_count,
                    waiting: c
                        .state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref()?.reason.clone()),
                    last_terminated: c
                        .last_state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .map(|t| {
                            let mut s = format!(
                                "{} (exit code {})",
                                t.reason.as_deref().unwrap_or("terminated"),
                                t.exit_code
                            );
                            if let Some(m) = t.message.as_deref().filter(|m| !m.is_empty()) {
                                s.push_str(": ");
                                s.push_str(m.lines().next().unwrap_or(m));
                            }
                            s
                        }),
                })
                .collect()
        })
        .unwrap_or_default();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    PodInfo {
        name: p.metadata.name.clone().unwrap_or_default(),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
        ready,
        containers,
    }
}

fn daemonset_info(d: &DaemonSet) -> DaemonSetInfo {
    let s = d.status.clone().unwrap_or_default();
    DaemonSetInfo {
        namespace: d.metadata.namespace.clone().unwrap_or_default(),
        name: d.metadata.name.clone().unwrap_or_default(),
        desired: s.desired_number_scheduled,
        ready: s.number_ready,
        updated: s.updated_number_scheduled.unwrap_or(0),
        available: s.number_available.unwrap_or(0),
    }
}

fn admin_bindings(b: &ClusterRoleBinding) -> Vec<AdminBinding> {
    if b.role_ref.kind != "ClusterRole" || b.role_ref.name != "cluster-admin" {
        return Vec::new();
    }
    b.subjects
        .iter()
        .flatten()
        .filter(|s| s.kind == "ServiceAccount")
        .map(|s| AdminBinding {
            binding: b.metadata.name.clone().unwrap_or_default(),
            account: format!("{}/{}", s.namespace.as_deref().unwrap_or("default"), s.name),
        })
        .collect()
}

/// Whether a Service IP may be dialled from here: only on the live host, and only when a specific
/// (non-default) route covers it or this host is one of the cluster's nodes (kube-proxy DNATs it).
/// A default route alone would send cluster-internal addresses out to the network: never.
pub fn reachable(host: &Host, ip: IpAddr, node_names: &[&str]) -> Result<(), String> {
    let IpAddr::V4(v4) = ip else {
        return Err(format!("{ip} is IPv6; the probe reads IPv4 routes only"));
    };
    if !host.is_live() {
        return Err(format!(
            "{ip} is not probed: --root {} is not the live host",
            host.root().display()
        ));
    }
    let hostname = host
        .read("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if !hostname.is_empty() && node_names.contains(&hostname.as_str()) {
        return Ok(());
    }
    let routes = host.read("/proc/net/route").unwrap_or_default();
    match route_covering(&routes, v4) {
        Some(_) => Ok(()),
        None => Err(format!(
            "{ip} is not reachable from here: no route covers it but the default, and this host ({hostname}) is not a node of the cluster"
        )),
    }
}

/// The interface of a non-default IPv4 route in `/proc/net/route` text that covers `ip`.
pub fn route_covering(text: &str, ip: std::net::Ipv4Addr) -> Option<String> {
    crate::procnet::parse_routes(text)
        .into_iter()
        .find(|r| !r.mask.is_unspecified() && r.covers(ip))
        .map(|r| r.iface)
}

/// Resolves the API server's name against kube-dns with hickory, bounded by `timeout`.
async fn probe_dns(ip: IpAddr, timeout: Duration) -> DnsProbe {
    use hickory_resolver::{
        Resolver,
        config::{NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts},
        name_server::TokioConnectionProvider,
    };
    let server = format!("{ip}:53");
    let group = NameServerConfigGroup::from_ips_clear(&[ip], 53, true);
    let mut opts = ResolverOpts::default();
    opts.timeout = timeout;
    opts.attempts = 1;
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    let resolver = Resolver::builder_with_config(
        ResolverConfig::from_parts(None, vec![], group),
        TokioConnectionProvider::default(),
    )
    .with_options(opts)
    .build();
    match tokio::time::timeout(timeout, resolver.lookup_ip(PROBE_NAME)).await {
        Ok(Ok(r)) => DnsProbe::Resolved {
            server,
            addrs: r.iter().map(|a| a.to_string()).collect(),
        },
        Ok(Err(e)) => DnsProbe::Failed {
            server,
            error: e.to_string(),
        },
        Err(_) => DnsProbe::Failed {
            server,
            error: format!("no answer within {:.1}s", timeout.as_secs_f64()),
        },
    }
}

/// Versions of the Kubernetes binaries installed on this node (each bounded by `timeout`).
fn local_versions(timeout: Duration) -> LocalVersions {
    let run =
        |prog: &str, args: &[&str]| run_command(prog, args, timeout).map_err(|e| e.to_string());
    let kubectl = run("kubectl", &["version", "--client", "-o", "json"]).and_then(|o| {
        version::kubectl_client(&o).ok_or_else(|| "kubectl printed no clientVersion".into())
    });
    let kubeadm = run("kubeadm", &["version", "-o", "short"]).map(|o| o.trim().to_string());
    let kubelet = run("kubelet", &["--version"]).and_then(|o| {
        o.split_whitespace()
            .last()
            .map(String::from)
            .ok_or_else(|| "kubelet printed no version".into())
    });
    LocalVersions {
        kubectl,
        kubeadm,
        kubelet,
    }
}

/// The pod-network configs kubelet would load, from /etc/cni/net.d.
fn cni_configs(host: &Host) -> Fact<Vec<String>> {
    Ok(host
        .list_dir("/etc/cni/net.d")?
        .into_iter()
        .filter(|n| n.ends_with(".conf") || n.ends_with(".conflist") || n.ends_with(".json"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_specific_route_makes_a_service_ip_reachable() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     kube-ipvs0\t0000600A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(
            route_covering(table, "10.96.0.10".parse().unwrap()).as_deref(),
            Some("kube-ipvs0")
        );
        assert_eq!(
            route_covering(table, "192.0.2.9".parse().unwrap()).as_deref(),
            Some("eth0")
        );
        // Only the default route covers it: never dialled.
        assert_eq!(route_covering(table, "10.97.0.10".parse().unwrap()), None);
        assert_eq!(
            route_covering("garbage", "10.96.0.10".parse().unwrap()),
            None
        );
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path()).unwrap();
        let e = reachable(&host, "10.96.0.10".parse().unwrap(), &[]).unwrap_err();
        assert!(e.contains("not the live host"), "{e}");
    }
}
