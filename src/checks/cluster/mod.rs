//! The cluster area: connects with the `kube` crate, gathers what the selected cluster checks read
//! over the Kubernetes API (versions, nodes, bootstrap tokens, DNS pods, CNI daemonsets,
//! cluster-admin bindings) with every list started together and each page folded in as it arrives,
//! probes kube-dns when its Service IP is reachable from here; and the local binaries' versions.

mod checks;
pub mod connect;
pub mod nodes;
pub mod version;

use std::{net::IpAddr, time::Duration};

use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{Node, Pod, Secret, Service},
    rbac::v1::ClusterRoleBinding,
};
use kube::{
    Client, Resource,
    api::{ListParams, ObjectList},
};
use serde::de::DeserializeOwned;

pub use connect::{ApiFailure, Layer, Target};
pub use nodes::NodeSummary;

use super::Area;
use crate::{
    core::{
        config::Config,
        facts::{Fact, FactError},
        host::Host,
        source::Source,
    },
    mask::mask_secrets,
};

pub const AREA: Area = Area {
    checks: checks::CHECKS,
    fixes: &[],
};

/// What the Kubernetes API answers (`Missing` without a kubeconfig or with `--offline`).
/// Only the lists the selected checks read are fetched (see [`checks::needs`]).
pub const CLUSTER: Source<ClusterFacts> = Source::network("cluster", |g| {
    gather(g.host, g.cfg, checks::selected(&g.cfg.selection))
})
.reaching(crate::core::source::Reach::Online);

/// The versions of the kubeadm, kubelet and kubectl installed on this node: no cluster needed.
/// `--offline` runs no commands here, as before (each binary costs tens of milliseconds to start).
pub const LOCAL_BINARIES: Source<LocalVersions> = Source::command("local-binaries", |g| {
    if g.cfg.offline {
        return Err(FactError::Missing(
            "--offline: the node's kubeadm, kubelet and kubectl are not run".into(),
        ));
    }
    // The same margin under the deadline as the cluster source leaves.
    Ok(crate::nodebin::gather(g.host, g.cfg.timeout.mul_f64(0.9)))
})
.reaching(crate::core::source::Reach::LiveOnline);

/// Everything the cluster checks read.
#[derive(Debug, Clone)]
pub struct ClusterFacts {
    /// The API server URL, from the kubeconfig (or in-cluster config).
    pub server: String,
    pub context: Option<String>,
    /// What the API answered, or the layer at which talking to it failed.
    pub api: Result<ApiFacts, ApiFailure>,
    /// Pod network configs in /etc/cni/net.d.
    pub cni_conf: Fact<Vec<String>>,
}

/// The API's answers. Each list carries its own error (e.g. RBAC denied it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ApiFacts {
    pub version: String,
    pub nodes: Fact<NodeSummary>,
    pub tokens: Fact<Vec<TokenInfo>>,
    pub dns_pods: Fact<Vec<PodInfo>>,
    pub dns_service_ip: Fact<Option<String>>,
    pub dns_probe: DnsProbe,
    pub daemonsets: Fact<Vec<DaemonSetInfo>>,
    pub admin_bindings: Fact<Vec<AdminBinding>>,
    /// Requests RBAC denied, as the server named them (`list secrets in kube-system`).
    pub denied: Vec<String>,
}

/// A bootstrap token without its secret: the secret is never read into facts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenInfo {
    pub id: String,
    /// Raw `expiration` value; None = never expires.
    pub expiration: Option<String>,
    pub usages: Vec<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodInfo {
    pub name: String,
    pub phase: String,
    pub ready: bool,
    pub containers: Vec<ContainerInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerInfo {
    pub name: String,
    pub ready: bool,
    pub restarts: i32,
    /// Waiting reason now (CrashLoopBackOff, ImagePullBackOff ...).
    pub waiting: Option<String>,
    /// Last termination: reason, exit code and message.
    pub last_terminated: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DaemonSetInfo {
    pub namespace: String,
    pub name: String,
    pub desired: i32,
    pub ready: i32,
    pub updated: i32,
    pub available: i32,
}

/// A ServiceAccount bound to cluster-admin by a ClusterRoleBinding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AdminBinding {
    pub binding: String,
    pub account: String,
}

/// The kube-dns resolution probe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

pub use crate::nodebin::LocalVersions;

/// Which of the API's lists (and /etc/cni/net.d) the selected checks read (see [`checks::needs`]);
/// the rest is never fetched. (The local binaries are a source of their own, [`LOCAL_BINARIES`].)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub nodes: bool,
    pub tokens: bool,
    /// kube-dns pods and Service, and the resolution probe.
    pub dns: bool,
    pub daemonsets: bool,
    pub admin_bindings: bool,
    /// /etc/cni/net.d.
    pub cni_conf: bool,
}

impl Needs {
    /// Everything the area can gather.
    pub const ALL: Needs = Needs {
        nodes: true,
        tokens: true,
        dns: true,
        daemonsets: true,
        admin_bindings: true,
        cni_conf: true,
    };

    pub fn union(self, o: Needs) -> Needs {
        Needs {
            nodes: self.nodes || o.nodes,
            tokens: self.tokens || o.tokens,
            dns: self.dns || o.dns,
            daemonsets: self.daemonsets || o.daemonsets,
            admin_bindings: self.admin_bindings || o.admin_bindings,
            cni_conf: self.cni_conf || o.cni_conf,
        }
    }
}

/// Why an input is absent: no selected check reads it.
const NOT_GATHERED: &str = "not gathered: no selected check reads it";
/// The name every bootstrap-token Secret has, and its type.
const TOKEN_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Page size for lists: big enough for few round trips, small enough to keep memory flat.
const PAGE: u32 = 500;
/// The name kube-dns answers for the API server.
pub const PROBE_NAME: &str = "kubernetes.default.svc.cluster.local.";

/// Gathers the cluster facts the selected checks read (`needs`): `Missing` when no kubeconfig is
/// found (every cluster check skips).
pub fn gather(host: &Host, cfg: &Config, needs: Needs) -> Fact<ClusterFacts> {
    if cfg.offline {
        return Err(FactError::Missing(
            "--offline: the cluster checks need the network".into(),
        ));
    }
    // The kubeconfig, the server's answers and the probe as one recorded input (slim-decoded: no
    // Secret's data is ever kept), so a bundle replays them with no kubeconfig and no network.
    let (server, context, api) = host.probe("kubernetes API", || talk(host, cfg, needs))??;
    let cni_conf = if needs.cni_conf {
        cni_configs(host)
    } else {
        Err(FactError::Missing(NOT_GATHERED.into()))
    };
    Ok(ClusterFacts {
        server: mask_secrets(&server),
        context,
        api,
        cni_conf,
    })
}

/// What the server and context are and what the API answered.
type Talked = (String, Option<String>, Result<ApiFacts, ApiFailure>);

/// Finds the kubeconfig and asks the API what the selected checks read.
fn talk(host: &Host, cfg: &Config, needs: Needs) -> Fact<Talked> {
    let started = std::time::Instant::now();
    // Leave the engine's deadline a margin so a timeout is reported by layer, not as an abandoned source.
    let budget = cfg.timeout.mul_f64(0.9);
    let target = connect::find(cfg)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FactError::Unreadable(format!("cannot start the async runtime: {e}")))?;
    let server = target.server.clone();
    let context = target.context.clone();
    let api = rt.block_on(async {
        let left = budget.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, gather_api(host, target, cfg, left, needs)).await {
            Ok(r) => r,
            Err(_) => Err(ApiFailure::timeout(&server, cfg.timeout)),
        }
    });
    // A resolver thread stuck in getaddrinfo must not hold the run past its deadline.
    rt.shutdown_background();
    Ok((server, context, api))
}

async fn gather_api(
    host: &Host,
    target: Target,
    cfg: &Config,
    budget: Duration,
    needs: Needs,
) -> Result<ApiFacts, ApiFailure> {
    let server = target.server.clone();
    let client = connect::client(target, budget).await?;
    // This host's name, to learn while the nodes stream by whether it is one of them (cluster.dns).
    let hostname = host
        .is_live()
        .then(|| host.read("/proc/sys/kernel/hostname").ok())
        .flatten()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    let version = async {
        client
            .apiserver_version()
            .await
            .map_err(|e| ApiFailure::classify(&server, &e, cfg.timeout))
    };
    let c = &client;
    const KS: Option<&str> = Some("kube-system");
    let dns_label = Some(("k8s-app", "kube-dns"));
    let nodes = when(needs.nodes, node_list(c, hostname.clone()));
    let tokens = when(
        needs.tokens,
        kept::<Secret, _>(c, KS, Some(("type", TOKEN_TYPE)), token_info),
    );
    let dns_pods = when(
        needs.dns,
        kept::<Pod, _>(c, KS, dns_label, |p| Some(pod_info(p))),
    );
    let dns_svc = when(
        needs.dns,
        kept::<Service, _>(c, KS, dns_label, |s| {
            let ip = s.spec.as_ref()?.cluster_ip.clone()?;
            Some((s.metadata.name.clone().unwrap_or_default(), ip))
        }),
    );
    let daemonsets = when(
        needs.daemonsets,
        kept::<DaemonSet, _>(c, None, None, |d| Some(daemonset_info(d))),
    );
    let crbs = when(
        needs.admin_bindings,
        kept::<ClusterRoleBinding, _>(c, None, None, |b| Some(admin_bindings(b))),
    );
    // /version and every list start together; a failing /version ends the rest at once.
    let lists = async {
        Ok(tokio::join!(
            nodes, tokens, dns_pods, dns_svc, daemonsets, crbs
        ))
    };
    let (info, (nodes, tokens, dns_pods, dns_svc, daemonsets, crbs)) =
        tokio::try_join!(version, lists)?;
    let mut denied = Vec::new();
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
    let dns_probe = match &dns_service_ip {
        _ if !needs.dns => DnsProbe::NotRun(NOT_GATHERED.into()),
        Ok(Some(ip)) => {
            let seen: Vec<&str> = match (&nodes, &hostname) {
                (Ok(n), Some(h)) if n.watched_seen => vec![h.as_str()],
                _ => vec![],
            };
            match ip.parse::<IpAddr>() {
                Ok(addr) => match reachable(host, addr, &seen) {
                    Ok(()) => probe_dns(addr, cfg.timeout.mul_f64(0.3)).await,
                    Err(why) => DnsProbe::NotRun(why),
                },
                Err(_) => DnsProbe::NotRun(format!("kube-dns ClusterIP {ip:?} is not an IP")),
            }
        }
        Ok(None) => DnsProbe::NotRun("no kube-dns Service in kube-system".into()),
        Err(e) => DnsProbe::NotRun(e.to_string()),
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

/// Runs `fetch` only when its input is needed; None otherwise.
async fn when<T>(needed: bool, fetch: impl Future<Output = T>) -> Option<T> {
    if needed { Some(fetch.await) } else { None }
}

/// A list's result as a fact, remembering what RBAC denied; None = not gathered.
fn fact<T>(denied: &mut Vec<String>, r: Option<Result<T, ListError>>) -> Fact<T> {
    match r {
        None => Err(FactError::Missing(NOT_GATHERED.into())),
        Some(r) => r.map_err(|e| {
            if let ListError::Denied(d) = &e {
                denied.push(d.clone());
            }
            FactError::Unreadable(e.to_string())
        }),
    }
}

/// Why a list failed: RBAC denied it (named as the server names it) or anything else.
#[derive(Debug, thiserror::Error)]
enum ListError {
    #[error("RBAC denied it: {0}")]
    Denied(String),
    #[error("{0}")]
    Other(String),
}

/// Lists every object at `path`, page by page (`limit`/`continue`), handing each page's bytes to
/// `page`, which folds it in and returns the next `continue` token: memory stays one page deep.
async fn list(
    client: &Client,
    path: &str,
    selector: Option<(&str, &str)>,
    mut page: impl FnMut(&[u8]) -> Result<Option<String>, serde_json::Error>,
) -> Result<(), ListError> {
    let mut lp = ListParams::default().limit(PAGE);
    if let Some((k, v)) = selector {
        lp = if k == "type" {
            lp.fields(&format!("type={v}"))
        } else {
            lp.labels(&format!("{k}={v}"))
        };
    }
    // Bounded: at most 1,000 pages (500,000 objects).
    for _ in 0..1000 {
        let req = kube::core::Request::new(path)
            .list(&lp)
            .map_err(|e| ListError::Other(e.to_string()))?;
        let body = client.request_text(req).await.map_err(|e| list_error(&e))?;
        let next = page(body.as_bytes()).map_err(|e| {
            ListError::Other(format!("the answer to GET {path} is not a list: {e}"))
        })?;
        match next {
            Some(c) => lp = lp.continue_token(&c),
            None => return Ok(()),
        }
    }
    Err(ListError::Other("more than 1,000 pages: stopped".into()))
}

/// Lists every node, each page streamed into a decoding thread as its bytes arrive (decoding runs
/// alongside the transfer, and no page is held whole), folding all into one [`NodeSummary`].
async fn node_list(client: &Client, hostname: Option<String>) -> Result<NodeSummary, ListError> {
    use http_body_util::BodyExt;
    let path = Node::url_path(&(), None);
    let mut lp = ListParams::default().limit(PAGE);
    let mut summary = NodeSummary::watching(hostname);
    // Bounded: at most 1,000 pages (500,000 nodes).
    for _ in 0..1000 {
        let req = kube::core::Request::new(&path)
            .list(&lp)
            .map_err(|e| ListError::Other(e.to_string()))?;
        let res = client
            .send(req.map(kube::client::Body::from))
            .await
            .map_err(|e| list_error(&e))?;
        if !res.status().is_success() {
            return Err(list_error(&status_error(res).await));
        }
        // A few chunks in flight at most: memory stays flat however fast the server sends.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let decoder = tokio::task::spawn_blocking(move || {
            let next = summary.add_page_from(Chunks {
                rx,
                cur: bytes::Bytes::new(),
            });
            (summary, next)
        });
        let mut body = res.into_body();
        let mut received = Ok(());
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    let Ok(data) = f.into_data() else { continue };
                    // The decoder stopped (bad JSON): its error says why.
                    if tx.send(data).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    received = Err(ListError::Other(mask_secrets(&format!(
                        "reading GET {path}: {e}"
                    ))));
                    break;
                }
            }
        }
        drop(tx);
        let (s, next) = decoder
            .await
            .map_err(|e| ListError::Other(format!("decoding the node list failed: {e}")))?;
        summary = s;
        received?;
        let next = next.map_err(|e| {
            ListError::Other(format!("the answer to GET {path} is not a list: {e}"))
        })?;
        match next {
            Some(c) => lp = lp.continue_token(&c),
            None => return Ok(summary),
        }
    }
    Err(ListError::Other("more than 1,000 pages: stopped".into()))
}

/// A response body arriving in chunks, read from the decoding thread.
struct Chunks {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    cur: bytes::Bytes,
}

impl std::io::Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use bytes::Buf;
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

/// A non-2xx answer as kube's own requests word it: the server's Status when it sent one.
async fn status_error(res: http::Response<kube::client::Body>) -> kube::Error {
    use http_body_util::BodyExt;
    let code = res.status();
    // An error Status is small; read at most 64 KiB of it.
    let body = http_body_util::Limited::new(res.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    match serde_json::from_slice::<kube::core::Status>(&body) {
        Ok(s) => kube::Error::Api(s.boxed()),
        Err(_) => kube::Error::Api(
            kube::core::Status::failure(
                String::from_utf8_lossy(&body).trim(),
                "Failed to parse error data",
            )
            .with_code(code.as_u16())
            .boxed(),
        ),
    }
}

/// A list request's error: RBAC denial named as the server names it, anything else masked.
fn list_error(e: &kube::Error) -> ListError {
    match e {
        kube::Error::Api(s) if s.code == 403 => ListError::Denied(connect::denied_text(s)),
        _ => ListError::Other(connect::describe(e)),
    }
}

/// Lists every object of a kind (cluster-wide, or in namespace `ns`), keeping only
/// what `keep` extracts from each.
async fn kept<K, O>(
    client: &Client,
    ns: Option<&str>,
    selector: Option<(&str, &str)>,
    keep: impl Fn(&K) -> Option<O>,
) -> Result<Vec<O>, ListError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned,
{
    let mut out = Vec::new();
    list(client, &K::url_path(&(), ns), selector, |page| {
        let l: ObjectList<K> = serde_json::from_slice(page)?;
        out.extend(l.items.iter().filter_map(&keep));
        Ok(l.metadata.continue_.filter(|c| !c.is_empty()))
    })
    .await?;
    Ok(out)
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
