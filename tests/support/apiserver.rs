//! A test Kubernetes API server for every cluster test and bench: HTTPS on 127.0.0.1:<ephemeral>
//! with a CA made at test time (ECDSA or RSA), bearer-token auth, objects built from `k8s-openapi`
//! types, list pagination, server-side tables for `kubectl get`, and scenario modes.
//!
//! # Use
//!
//! ```ignore
//! let server = ApiServer::start(Scenario::broken());            // or healthy(), empty(), ...
//! let kubeconfig = server.kubeconfig(tmp.path());             // admin token, the test CA
//! // ... run k8sdoctor / kubectl with --kubeconfig, then look at server.requests()
//! ```
//!
//! * [`Scenario`] is a builder: `healthy()` (every cluster check passes), `broken()` (the guide's
//!   cluster: expired bootstrap token, kube-dns in CrashLoopBackOff, weave-net not ready, admin-user
//!   bound to cluster-admin, a kubelet 4 minors behind, a node NotReady), `empty()`; then
//!   `.with(obj)` adds any `k8s-openapi` object, `.bootstrap_token(..)`, `.nodes(n, version)`,
//!   `.version("v1.33.2")`, `.bearer(token, user)`, `.forbid(verb, resource)`, `.slow(d)`,
//!   `.blackhole()` (accepts TCP, never answers), `.ca_key(CaKey::Rsa)`, `.tls_fault(..)`,
//!   `.fault(method, path, skip, count, kind)` (429 with Retry-After, 503, or a reset mid-body on
//!   chosen requests: see [`ApiFault`]).
//! * The server answers `/version`, `/healthz`, discovery (`/api`, `/api/v1`, `/apis`, `/apis/G/V`),
//!   list (`limit`/`continue`, `labelSelector`/`fieldSelector` equality on any dotted field) and get
//!   of every resource it holds, `as=Table` for `kubectl get`, a `Date` header on every answer.
//! * Auth as a kubeadm cluster does it: a wrong bearer → 401 Status; no bearer → `system:anonymous`,
//!   allowed only `/version`, `/healthz` and GET of `kube-public/cluster-info` (join discovery);
//!   a forbidden (verb, resource) → 403 Status naming verb, resource, group and scope.
//! * `kube-public/cluster-info` is made at start: the kubeconfig (this server's URL and CA) and one
//!   `jws-kubeconfig-<id>` detached JWS per unexpired token with usage-bootstrap-signing.
//! * `ApiServer::start_in(scenario, &netns)` listens inside a test network namespace instead;
//!   `start_in_at(scenario, &netns, addr)` on a given address there (its certificate names that IP).
//! * The running server: `url()`, `addr()`, `ca` ([`TestCa`]: `pem`, `der`, `spki_der`, `pin()` =
//!   `sha256:<hex>` of the CA's SubjectPublicKeyInfo as `--discovery-token-ca-cert-hash` wants it),
//!   `kubeconfig(dir)` / `kubeconfig_with(dir, file, bearer, ca_pem)` (context `cl-test`),
//!   `get(path, bearer)` (a verified HTTPS GET for assertions), `requests()` (the request log),
//!   `connections()` (TCP connections accepted). Every connection sets `TCP_NODELAY`, as Go's
//!   servers do, and each answer is written at once.
//! * Builders for single objects: [`node`], [`bootstrap_token`], [`pod`], [`daemonset`],
//!   [`cluster_role_binding`], [`kube_dns_service`]; [`b64url`] for JWS checks.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

use k8s_openapi::{
    ByteString, Resource,
    api::{
        apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetStatus},
        core::v1::{
            ConfigMap, Container, ContainerState, ContainerStateTerminated, ContainerStateWaiting,
            ContainerStatus, Namespace, Node, NodeCondition, NodeStatus, NodeSystemInfo, Pod,
            PodCondition, PodSpec, PodStatus, Secret, Service, ServiceAccount, ServicePort,
            ServiceSpec,
        },
        rbac::v1::{ClusterRoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time},
};
use serde_json::{Value, json};

/// The bearer token of the cluster admin in every scenario (`kubernetes-admin`).
pub const ADMIN_TOKEN: &str = "k8sdoctor-test-admin-bearer";

/// The key type of the test CA (join discovery pins either kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaKey {
    Ecdsa,
    /// RSA 2048, generated with the `openssl` CLI (ring cannot generate RSA keys).
    Rsa,
}

/// A deliberately bad serving certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFault {
    /// Valid only in 2020.
    Expired,
    /// Names `apiserver.invalid` only, not 127.0.0.1.
    WrongName,
}

/// What the server holds and how it behaves. Build with the constructors and `.with*` methods.
#[derive(Clone)]
pub struct Scenario {
    version: String,
    objects: Vec<Stored>,
    bearers: BTreeMap<String, String>,
    forbidden: Vec<(String, String)>,
    delay: Duration,
    blackhole: bool,
    ca_key: CaKey,
    tls_fault: Option<TlsFault>,
    workloads: Option<Arc<dyn Workloads>>,
    faults: Vec<ApiFault>,
    request_faults: Vec<RequestFault>,
}

/// How a faulted request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiFaultKind {
    /// 429 TooManyRequests with `Retry-After` (API Priority and Fairness shedding load).
    TooManyRequests { retry_after_secs: u32 },
    /// 503 ServiceUnavailable (an apiserver restarting, an aggregated API down).
    Unavailable,
    /// The real answer's head and half its body, then a TCP reset (a load balancer dropping the
    /// connection mid-response).
    ResetMidBody,
}

/// A scripted failure of chosen requests: those whose method and path match (`*` for any method;
/// a path ending in `*` matches as a prefix, the query is not part of it), after letting `skip` of
/// them through, for `count` of them.
#[derive(Debug, Clone)]
pub struct ApiFault {
    method: String,
    path: String,
    skip: usize,
    count: usize,
    kind: ApiFaultKind,
    seen: Arc<AtomicUsize>,
}

impl ApiFault {
    /// Whether this request is one the fault answers (counting it when it matches).
    fn hits(&self, method: &str, path: &str) -> bool {
        let method_ok = self.method == "*" || self.method.eq_ignore_ascii_case(method);
        let path_ok = match self.path.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == self.path,
        };
        if !(method_ok && path_ok) {
            return false;
        }
        let n = self.seen.fetch_add(1, Ordering::SeqCst);
        n >= self.skip && n < self.skip + self.count
    }
}

/// Objects with a life of their own (pods the client creates, namespaces, pod logs): a handler the
/// server asks first, before its read-only objects ([`super::kubelet`] is the one the fleet tests use).
pub trait Workloads: Send + Sync {
    /// Answers a request (status and JSON body), or `None` to leave it to the read-only objects.
    fn handle(&self, req: &Request) -> Option<(u16, Vec<u8>)>;
}

/// One request as a [`Workloads`] handler sees it.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a BTreeMap<String, String>,
    pub body: &'a [u8],
    pub user: &'a str,
}

#[derive(Clone)]
struct Stored {
    group_version: String,
    plural: String,
    namespace: Option<String>,
    name: String,
    json: Value,
    /// The object as a list item (no apiVersion/kind), serialized once: a page is these joined.
    item: Vec<u8>,
}

impl Stored {
    fn new(
        group_version: &str,
        plural: &str,
        namespace: Option<String>,
        name: String,
        json: Value,
    ) -> Stored {
        let mut v = json.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("apiVersion");
            m.remove("kind");
        }
        Stored {
            group_version: group_version.into(),
            plural: plural.into(),
            namespace,
            name,
            json,
            item: serde_json::to_vec(&v).unwrap(),
        }
    }
}

fn meta(name: &str, ns: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(Into::into),
        uid: Some(format!("uid-{name}")),
        resource_version: Some("1".into()),
        creation_timestamp: Some(Time(
            jiff::Timestamp::now() - jiff::SignedDuration::from_hours(120),
        )),
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// A node with its kubelet/kube-proxy version and Ready condition (`reason`/`message` when not ready).
pub fn node(name: &str, version: &str, ready: bool, control_plane: bool) -> Node {
    let mut m = meta(name, None);
    // The kubelet labels every node with its OS and architecture.
    let mut l = vec![
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
    ];
    if control_plane {
        l.push(("node-role.kubernetes.io/control-plane", ""));
    }
    m.labels = labels(&l);
    let cond = |t: &str, s: bool, reason: &str, msg: &str| NodeCondition {
        type_: t.into(),
        status: if s { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(msg.into()),
        ..Default::default()
    };
    let mut conditions = vec![
        cond(
            "MemoryPressure",
            false,
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        cond(
            "DiskPressure",
            false,
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        cond(
            "PIDPressure",
            false,
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
    ];
    conditions.push(if ready {
        cond(
            "Ready",
            true,
            "KubeletReady",
            "kubelet is posting ready status",
        )
    } else {
        NodeCondition {
            status: "Unknown".into(),
            ..cond(
                "Ready",
                false,
                "NodeStatusUnknown",
                "Kubelet stopped posting node status.",
            )
        }
    });
    Node {
        metadata: m,
        status: Some(NodeStatus {
            conditions: Some(conditions),
            node_info: Some(NodeSystemInfo {
                kubelet_version: version.into(),
                kube_proxy_version: version.into(),
                container_runtime_version: "containerd://1.7.24".into(),
                os_image: "Ubuntu 22.04.5 LTS".into(),
                kernel_version: "5.15.0-126-generic".into(),
                operating_system: "linux".into(),
                architecture: "amd64".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A bootstrap-token Secret as kubeadm writes it; `expires` None = never expires.
pub fn bootstrap_token(
    id: &str,
    secret: &str,
    expires: Option<jiff::Timestamp>,
    usages: &[&str],
) -> Secret {
    let mut data: BTreeMap<String, ByteString> = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        data.insert(k.into(), ByteString(v.as_bytes().to_vec()));
    };
    put("token-id", id);
    put("token-secret", secret);
    put(
        "description",
        "The default bootstrap token generated by 'kubeadm init'.",
    );
    if let Some(t) = expires {
        put(
            "expiration",
            &t.round(jiff::Unit::Second).unwrap().to_string(),
        );
    }
    for u in usages {
        put(&format!("usage-bootstrap-{u}"), "true");
    }
    put(
        "auth-extra-groups",
        "system:bootstrappers:kubeadm:default-node-token",
    );
    Secret {
        metadata: meta(&format!("bootstrap-token-{id}"), Some("kube-system")),
        type_: Some("bootstrap.kubernetes.io/token".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// A pod with one container; `crash` = CrashLoopBackOff with that many restarts and an Error exit.
pub fn pod(name: &str, ns: &str, app: &str, container: &str, crash: Option<i32>) -> Pod {
    let mut m = meta(name, Some(ns));
    m.labels = labels(&[("k8s-app", app)]);
    let ready = crash.is_none();
    let status = ContainerStatus {
        name: container.into(),
        ready,
        restart_count: crash.unwrap_or(0),
        image: format!("registry.k8s.io/{container}:v1.11.3"),
        image_id: String::new(),
        state: Some(match crash {
            None => ContainerState {
                running: Some(Default::default()),
                ..Default::default()
            },
            Some(_) => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("CrashLoopBackOff".into()),
                    message: Some(format!(
                        "back-off 5m0s restarting failed container={container} pod={name}"
                    )),
                }),
                ..Default::default()
            },
        }),
        last_state: crash.map(|_| ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 1,
                reason: Some("Error".into()),
                message: Some(
                    "plugin/loop: Loop (127.0.0.1:55953 -> :53) detected for zone \".\"".into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    Pod {
        metadata: m,
        spec: Some(PodSpec {
            containers: vec![Container {
                name: container.into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            container_statuses: Some(vec![status]),
            ..Default::default()
        }),
    }
}

/// A DaemonSet in kube-system with `desired` pods of which `ready` are ready.
pub fn daemonset(name: &str, desired: i32, ready: i32) -> DaemonSet {
    let mut m = meta(name, Some("kube-system"));
    m.labels = labels(&[("name", name)]);
    DaemonSet {
        metadata: m,
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: labels(&[("name", name)]),
                ..Default::default()
            },
            ..Default::default()
        }),
        status: Some(DaemonSetStatus {
            desired_number_scheduled: desired,
            current_number_scheduled: desired,
            number_ready: ready,
            number_available: Some(ready),
            updated_number_scheduled: Some(desired),
            number_unavailable: (ready < desired).then_some(desired - ready),
            number_misscheduled: 0,
            observed_generation: Some(1),
            ..Default::default()
        }),
    }
}

/// A ClusterRoleBinding of `role` to one subject (`kind` = ServiceAccount, Group or User).
pub fn cluster_role_binding(
    name: &str,
    role: &str,
    kind: &str,
    subject: &str,
    ns: Option<&str>,
) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(vec![Subject {
            kind: kind.into(),
            name: subject.into(),
            namespace: ns.map(Into::into),
            api_group: (kind != "ServiceAccount").then(|| "rbac.authorization.k8s.io".into()),
        }]),
    }
}

impl Scenario {
    /// No objects but the namespaces; server v1.33.2; the admin bearer.
    pub fn empty() -> Scenario {
        let mut s = Scenario {
            version: "v1.33.2".into(),
            objects: Vec::new(),
            bearers: BTreeMap::from([(ADMIN_TOKEN.into(), "kubernetes-admin".into())]),
            forbidden: Vec::new(),
            delay: Duration::ZERO,
            blackhole: false,
            ca_key: CaKey::Ecdsa,
            tls_fault: None,
            workloads: None,
            faults: Vec::new(),
            request_faults: Vec::new(),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            s = s.with(Namespace {
                metadata: meta(ns, None),
                ..Default::default()
            });
        }
        s
    }

    /// A kubeadm cluster of `nodes` (name, kubelet version, ready; the first is the control plane)
    /// with two CoreDNS pods (crash-looping with that many restarts when `dns_crash`), the kube-dns
    /// Service, weave-net with `weave_ready` of its pods ready, kube-proxy, and system:masters.
    pub fn kubeadm(
        nodes: &[(&str, &str, bool)],
        dns_crash: Option<i32>,
        weave_ready: i32,
    ) -> Scenario {
        let mut s = Scenario::empty();
        for (i, (name, version, ready)) in nodes.iter().enumerate() {
            s = s.with(node(name, version, *ready, i == 0));
        }
        let n = nodes.len() as i32;
        for p in ["coredns-668d6bf9bc-4xkqz", "coredns-668d6bf9bc-tw7mj"] {
            s = s.with(pod(p, "kube-system", "kube-dns", "coredns", dns_crash));
        }
        s.with(kube_dns_service())
            .with(daemonset("weave-net", n, weave_ready))
            .with(daemonset("kube-proxy", n, n))
            .with(cluster_role_binding(
                "cluster-admin",
                "cluster-admin",
                "Group",
                "system:masters",
                None,
            ))
    }

    /// A healthy kubeadm cluster: 3 Ready nodes (v1.33.2, v1.33.2, v1.32.5), CoreDNS ready, weave-net
    /// rolled out, token abcdef valid for 20 h, no ServiceAccount bound to cluster-admin.
    pub fn healthy() -> Scenario {
        let nodes = [
            ("cl-test-cp1", "v1.33.2", true),
            ("cl-test-w1", "v1.33.2", true),
            ("cl-test-w2", "v1.32.5", true),
        ];
        let in_20h = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(20);
        Scenario::kubeadm(&nodes, None, 3).bootstrap_token(
            "abcdef",
            "0123456789abcdef",
            Some(in_20h),
            &["signing", "authentication"],
        )
    }

    /// The guide's broken cluster: token a24a11 expired 26 h ago, kube-dns in CrashLoopBackOff,
    /// weave-net 1 of 3 ready, admin-user bound to cluster-admin, a kubelet at v1.29.0 (4 minors
    /// behind v1.33.2), node cl-test-w2 NotReady.
    pub fn broken() -> Scenario {
        let nodes = [
            ("cl-test-cp1", "v1.33.2", true),
            ("cl-test-w1", "v1.29.0", true),
            ("cl-test-w2", "v1.33.2", false),
        ];
        let ago_26h = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(26);
        Scenario::kubeadm(&nodes, Some(7), 1)
            .with(ServiceAccount {
                metadata: meta("admin-user", Some("kubernetes-dashboard")),
                ..Default::default()
            })
            .with(cluster_role_binding(
                "admin-user",
                "cluster-admin",
                "ServiceAccount",
                "admin-user",
                Some("kubernetes-dashboard"),
            ))
            .bootstrap_token(
                "a24a11",
                "0e6b932b0907deff",
                Some(ago_26h),
                &["signing", "authentication"],
            )
    }

    /// Adds any object built from a `k8s-openapi` type (namespaced when its metadata has a namespace).
    pub fn with<K: Resource + serde::Serialize>(mut self, obj: K) -> Scenario {
        let json = serde_json::to_value(&obj).expect("k8s-openapi object serializes");
        let name = json["metadata"]["name"]
            .as_str()
            .expect("object has a name")
            .to_string();
        let namespace = json["metadata"]["namespace"].as_str().map(String::from);
        self.objects.retain(|o| {
            !(o.plural == K::URL_PATH_SEGMENT && o.namespace == namespace && o.name == name)
        });
        self.objects.push(Stored::new(
            K::API_VERSION,
            K::URL_PATH_SEGMENT,
            namespace,
            name,
            json,
        ));
        self
    }

    /// Adds `n` Ready worker nodes `node-00000`.. at `version` (replacing nodes of those names).
    pub fn nodes(mut self, n: usize, version: &str) -> Scenario {
        let names: Vec<String> = (0..n).map(|i| format!("node-{i:05}")).collect();
        let new: std::collections::BTreeSet<&str> = names.iter().map(String::as_str).collect();
        self.objects
            .retain(|o| !(o.plural == "nodes" && new.contains(o.name.as_str())));
        // Pushed directly: `with` would compare each against every object stored (quadratic at 50,000).
        for name in &names {
            let json = serde_json::to_value(node(name, version, true, false)).unwrap();
            self.objects
                .push(Stored::new("v1", "nodes", None, name.clone(), json));
        }
        self
    }

    /// Adds a bootstrap-token Secret (see [`bootstrap_token`]).
    pub fn bootstrap_token(
        self,
        id: &str,
        secret: &str,
        expires: Option<jiff::Timestamp>,
        usages: &[&str],
    ) -> Scenario {
        self.with(bootstrap_token(id, secret, expires, usages))
    }

    /// The server's gitVersion, e.g. `v1.33.2`.
    pub fn version(mut self, v: &str) -> Scenario {
        self.version = v.into();
        self
    }

    /// Accepts another bearer token as `user`.
    pub fn bearer(mut self, token: &str, user: &str) -> Scenario {
        self.bearers.insert(token.into(), user.into());
        self
    }

    /// Denies `verb` (get, list) on `resource` (plural, e.g. "secrets") to every user: 403.
    pub fn forbid(mut self, verb: &str, resource: &str) -> Scenario {
        self.forbidden.push((verb.into(), resource.into()));
        self
    }

    /// Waits `d` before every answer.
    pub fn slow(mut self, d: Duration) -> Scenario {
        self.delay = d;
        self
    }

    /// Accepts TCP connections and never answers (no TLS handshake, no HTTP).
    pub fn blackhole(mut self) -> Scenario {
        self.blackhole = true;
        self
    }

    pub fn ca_key(mut self, k: CaKey) -> Scenario {
        self.ca_key = k;
        self
    }

    pub fn tls_fault(mut self, f: TlsFault) -> Scenario {
        self.tls_fault = Some(f);
        self
    }

    /// Answers matching requests with a fault (see [`ApiFault`]); faults are tried in order.
    pub fn fault(
        mut self,
        method: &str,
        path: &str,
        skip: usize,
        count: usize,
        kind: ApiFaultKind,
    ) -> Scenario {
        self.faults.push(ApiFault {
            method: method.into(),
            path: path.into(),
            skip,
            count,
            kind,
            seen: Arc::new(AtomicUsize::new(0)),
        });
        self
    }

    /// Lets `w` answer first: pods that are created, run, logged and deleted (see [`Workloads`]).
    pub fn workloads(mut self, w: Arc<dyn Workloads>) -> Scenario {
        self.workloads = Some(w);
        self
    }
}

/// The kube-dns Service at 10.96.0.10 as kubeadm creates it.
pub fn kube_dns_service() -> Service {
    let mut m = meta("kube-dns", Some("kube-system"));
    m.labels = labels(&[("k8s-app", "kube-dns")]);
    let port = |name: &str, proto: &str| ServicePort {
        name: Some(name.into()),
        port: 53,
        protocol: Some(proto.into()),
        ..Default::default()
    };
    Service {
        metadata: m,
        spec: Some(ServiceSpec {
            cluster_ip: Some("10.96.0.10".into()),
            cluster_ips: Some(vec!["10.96.0.10".into()]),
            ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
            selector: labels(&[("k8s-app", "kube-dns")]),
            type_: Some("ClusterIP".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The test CA: certificate PEM/DER and the issuer that signs serving certificates.
pub struct TestCa {
    pub pem: String,
    pub der: Vec<u8>,
    /// DER SubjectPublicKeyInfo of the CA key (what `--discovery-token-ca-cert-hash` hashes).
    pub spki_der: Vec<u8>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A fresh CA named `kubernetes`, as kubeadm makes it.
    pub fn new(kind: CaKey) -> TestCa {
        let key = match kind {
            CaKey::Ecdsa => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
            CaKey::Rsa => {
                let out = std::process::Command::new("openssl")
                    .args([
                        "genpkey",
                        "-algorithm",
                        "RSA",
                        "-pkeyopt",
                        "rsa_keygen_bits:2048",
                    ])
                    .output()
                    .expect("the openssl CLI makes the RSA test CA key");
                assert!(out.status.success(), "openssl genpkey failed");
                rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(
                    std::str::from_utf8(&out.stdout).unwrap(),
                    &rcgen::PKCS_RSA_SHA256,
                )
                .unwrap()
            }
        };
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kubernetes");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        let spki_der = rcgen::PublicKeyData::subject_public_key_info(&key);
        TestCa {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            spki_der,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// `sha256:<hex>` of the CA's SubjectPublicKeyInfo, as `kubeadm join` pins it.
    pub fn pin(&self) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.spki_der);
        format!("sha256:{}", hex(d.as_ref()))
    }

    /// A serving certificate chain and PKCS#8 key for `names`, valid now unless `expired`.
    pub fn serving_cert(&self, names: &[&str], expired: bool) -> (Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.der().to_vec(), key.serialize_der())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Unpadded base64url, as JWS uses it.
pub fn b64url(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &x)| acc | (x as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn b64(b: &[u8]) -> String {
    let s = b64url(b).replace('-', "+").replace('_', "/");
    let pad = (4 - s.len() % 4) % 4;
    s + &"=".repeat(pad)
}

/// A running test API server; stops (and closes every connection) on drop.
pub struct ApiServer {
    addr: SocketAddr,
    pub ca: Arc<TestCa>,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
    conns: Arc<AtomicUsize>,
    /// The listening socket (a clone), shut down on drop to wake the accept loop.
    listener: TcpListener,
    accept: Option<thread::JoinHandle<()>>,
    /// The scenario's scripted faults (their counters shared with the serving threads).
    faults: Vec<ApiFault>,
}

struct State {
    scenario: Scenario,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
    conns: Arc<AtomicUsize>,
    held: Mutex<Vec<TcpStream>>,
    /// How often each of the scenario's request faults has fired.
    fault_hits: Mutex<Vec<u32>>,
    /// The pods of the workloads as a watch sees them (see [`WatchCache`]).
    watch: Mutex<WatchCache>,
    /// (group/version, plural) → indices into the objects, sorted by (namespace, name): a list
    /// walks only its own kind, in order (50,000 nodes would otherwise be filtered and sorted per page).
    index: BTreeMap<(String, String), Vec<usize>>,
}

impl ApiServer {
    /// Starts on 127.0.0.1:<ephemeral> in this network namespace.
    pub fn start(scenario: Scenario) -> ApiServer {
        Self::start_on(scenario, TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// Starts on 127.0.0.1:<ephemeral> inside a test network namespace.
    pub fn start_in(scenario: Scenario, ns: &super::Netns) -> ApiServer {
        Self::start_on(
            scenario,
            ns.run(|| TcpListener::bind("127.0.0.1:0").unwrap()),
        )
    }

    /// Starts on `addr` (e.g. the guide's 192.168.1.2:6443) inside a test network namespace whose
    /// interface has that address; the serving certificate names that IP too.
    pub fn start_in_at(scenario: Scenario, ns: &super::Netns, addr: SocketAddr) -> ApiServer {
        Self::start_on(
            scenario,
            ns.run(move || {
                TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr} in netns: {e}"))
            }),
        )
    }

    fn start_on(mut scenario: Scenario, listener: TcpListener) -> ApiServer {
        let addr = listener.local_addr().unwrap();
        let ca = Arc::new(TestCa::new(scenario.ca_key));
        let ip = addr.ip().to_string();
        let names: Vec<&str> = match scenario.tls_fault {
            Some(TlsFault::WrongName) => vec!["apiserver.invalid"],
            _ if ip == "127.0.0.1" => {
                vec!["127.0.0.1", "localhost", "kubernetes", "kubernetes.default"]
            }
            _ => vec![
                &ip,
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
            ],
        };
        let (cert, key) = ca.serving_cert(&names, scenario.tls_fault == Some(TlsFault::Expired));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.into(), ca.der.clone().into()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
            )
            .unwrap();
        let url = format!("https://{addr}");
        let info = cluster_info(&scenario, &url, &ca.pem);
        scenario = scenario.with(info);
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let conns = Arc::new(AtomicUsize::new(0));
        let mut index: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
        for (i, o) in scenario.objects.iter().enumerate() {
            let key = (o.group_version.clone(), o.plural.clone());
            index.entry(key).or_default().push(i);
        }
        for ids in index.values_mut() {
            let o = &scenario.objects;
            ids.sort_by(|&a, &b| (&o[a].namespace, &o[a].name).cmp(&(&o[b].namespace, &o[b].name)));
        }
        let faults = scenario.faults.clone();
        let state = Arc::new(State {
            fault_hits: Mutex::new(vec![0; scenario.request_faults.len()]),
            watch: Mutex::new(WatchCache::default()),
            index,
            tls: (!scenario.blackhole).then(|| Arc::new(tls)),
            scenario,
            stop: stop.clone(),
            log: log.clone(),
            conns: conns.clone(),
            held: Mutex::new(Vec::new()),
        });
        let wake = listener.try_clone().expect("clone the listening socket");
        let accept = thread::spawn(move || {
            for conn in listener.incoming() {
                if state.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                state.conns.fetch_add(1, Ordering::SeqCst);
                match &state.tls {
                    None => state.held.lock().unwrap().push(conn),
                    Some(_) => {
                        let state = state.clone();
                        thread::spawn(move || serve_conn(&state, conn));
                    }
                }
            }
        });
        ApiServer {
            addr,
            ca,
            stop,
            log,
            conns,
            listener: wake,
            accept: Some(accept),
            faults,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Every request line answered (or refused) so far, as `USER METHOD /path?query STATUS`.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// TCP connections accepted so far (each a TLS handshake unless blackholed).
    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    /// A plain HTTPS GET verified by the test CA, with or without a bearer: (status code, body).
    pub fn get(&self, path: &str, bearer: Option<&str>) -> (u16, String) {
        let (raw, _) = self.get_raw(path, bearer);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let code = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (code, body)
    }

    /// The same GET, raw: every byte of the answer (head and body) read until the connection
    /// ended, and the error that ended it (None: a clean close).
    pub fn get_raw(&self, path: &str, bearer: Option<&str>) -> (Vec<u8>, Option<std::io::Error>) {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der.clone().into()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
        let tcp = TcpStream::connect(self.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let auth = bearer.map_or(String::new(), |b| format!("Authorization: Bearer {b}\r\n"));
        write!(
            tls,
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut raw = Vec::new();
        let err = tls.read_to_end(&mut raw).err();
        (raw, err)
    }

    /// Writes a kubeconfig for the admin bearer and the test CA; returns its path.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        self.kubeconfig_with(dir, "kubeconfig", ADMIN_TOKEN, &self.ca.pem)
    }

    /// Writes a kubeconfig (context `cl-test`) with any bearer and CA bundle, e.g. a foreign CA.
    pub fn kubeconfig_with(&self, dir: &Path, file: &str, token: &str, ca_pem: &str) -> PathBuf {
        let path = dir.join(file);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: cl-test\n  cluster:\n    server: {}\n    certificate-authority-data: {}\ncontexts:\n- name: cl-test\n  context:\n    cluster: cl-test\n    user: cl-admin\ncurrent-context: cl-test\nusers:\n- name: cl-admin\n  user:\n    token: {token}\n",
            self.url(),
            b64(ca_pem.as_bytes())
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        self.stop.store(true, Ordering::SeqCst);
        // Shutting the listening socket down makes the blocked accept() return at once, in any
        // network namespace, without sending a packet (connecting to it from here would dial the
        // address in the test's own namespace, not the server's).
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// kube-public/cluster-info as kubeadm and the bootstrap signer maintain it.
fn cluster_info(s: &Scenario, url: &str, ca_pem: &str) -> ConfigMap {
    let kubeconfig = format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {url}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n",
        b64(ca_pem.as_bytes())
    );
    let mut data = BTreeMap::from([("kubeconfig".to_string(), kubeconfig.clone())]);
    let now = jiff::Timestamp::now();
    for o in s.objects.iter().filter(|o| o.plural == "secrets") {
        let d = &o.json["data"];
        let get = |k: &str| {
            d[k].as_str()
                .and_then(decode_b64)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        if o.json["type"] != "bootstrap.kubernetes.io/token"
            || get("usage-bootstrap-signing").as_deref() != Some("true")
        {
            continue;
        }
        let expired = get("expiration")
            .is_some_and(|e| e.parse::<jiff::Timestamp>().map_or(true, |t| t <= now));
        let (Some(id), Some(secret)) = (get("token-id"), get("token-secret")) else {
            continue;
        };
        if expired {
            continue;
        }
        let header = b64url(format!("{{\"alg\":\"HS256\",\"kid\":\"{id}\"}}").as_bytes());
        let payload = b64url(kubeconfig.as_bytes());
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let sig = ring::hmac::sign(&key, format!("{header}.{payload}").as_bytes());
        data.insert(
            format!("jws-kubeconfig-{id}"),
            format!("{header}..{}", b64url(sig.as_ref())),
        );
    }
    ConfigMap {
        metadata: meta("cluster-info", Some("kube-public")),
        data: Some(data),
        ..Default::default()
    }
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::new();
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

fn serve_conn(state: &State, tcp: TcpStream) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    // As Go's servers do: without it the tail of every response waits ~40 ms for a delayed ACK.
    let _ = tcp.set_nodelay(true);
    let conn = rustls::ServerConnection::new(state.tls.clone().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16384];
    while !state.stop.load(Ordering::SeqCst) {
        // Read until a whole request head (and its body) is buffered.
        let (head_len, method, target, headers) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut hs);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let headers: Vec<(String, String)> = req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    break (
                        n,
                        req.method.unwrap_or("").to_string(),
                        req.path.unwrap_or("/").to_string(),
                        headers,
                    );
                }
                Ok(httparse::Status::Partial) => match tls.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                },
                Err(_) => return,
            }
        };
        let header = |k: &str| {
            headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        let body_len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_len + body_len {
            match tls.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..head_len + body_len).skip(head_len).collect();
        if !state.scenario.delay.is_zero() {
            thread::sleep(state.scenario.delay);
        }
        let path_only = target.split('?').next().unwrap_or("");
        let fault = state
            .scenario
            .faults
            .iter()
            .find(|f| f.hits(&method, path_only))
            .map(|f| f.kind);
        let mut extra = String::new();
        let (code, body, user) = match fault {
            Some(ApiFaultKind::TooManyRequests { retry_after_secs }) => {
                extra = format!("Retry-After: {retry_after_secs}\r\n");
                let details = json!({"retryAfterSeconds": retry_after_secs});
                let msg = "Too many requests, please try again later.";
                let body = status(429, "TooManyRequests", msg, Some(details));
                (429, body, "fault".to_string())
            }
            Some(ApiFaultKind::Unavailable) => {
                let msg = "the server is currently unable to handle the request";
                (
                    503,
                    status(503, "ServiceUnavailable", msg, None),
                    "fault".into(),
                )
            }
            _ => respond(
                state,
                &method,
                &target,
                header("authorization"),
                header("accept").unwrap_or(""),
                &body,
            ),
        };
        if code == STREAM_WATCH {
            state
                .log
                .lock()
                .unwrap()
                .push(format!("{user} {method} {target} 200"));
            stream_watch(state, &mut tls, &target);
            return;
        }
        state
            .log
            .lock()
            .unwrap()
            .push(format!("{user} {method} {target} {code}"));
        let date = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&jiff::Timestamp::now())
            .unwrap();
        let reason = match code {
            200 => "OK",
            201 => "Created",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            409 => "Conflict",
            422 => "Unprocessable Entity",
            405 => "Method Not Allowed",
            429 => "Too Many Requests",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let retry_after = if code == 429 && extra.is_empty() {
            "Retry-After: 1\r\n"
        } else {
            ""
        };
        let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let head = format!(
            "HTTP/1.1 {code} {reason}\r\nAudit-Id: {}\r\nCache-Control: no-cache, private\r\nContent-Type: application/json\r\nDate: {date}\r\n{retry_after}Content-Length: {}\r\n{extra}{}\r\n",
            state.log.lock().unwrap().len(),
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        let mut answer = head.into_bytes();
        if fault == Some(ApiFaultKind::ResetMidBody) {
            // Half the body, then RST (SO_LINGER 0 makes the close a reset, not a FIN).
            answer.extend_from_slice(&body[..body.len() / 2]);
            let _ = tls.write_all(&answer).and_then(|_| tls.flush());
            let _ = socket2::SockRef::from(tls.get_ref()).set_linger(Some(Duration::ZERO));
            return;
        }
        answer.extend_from_slice(&body);
        if tls.write_all(&answer).and_then(|_| tls.flush()).is_err() || close {
            return;
        }
    }
}

pub fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Vec<u8> {
    let mut v = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    if let Some(d) = details {
        v["details"] = d;
    }
    serde_json::to_vec(&v).unwrap()
}

fn query_params(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                if let Ok(x) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    out.push(x);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The resources the server knows: (group/version, plural, kind, namespaced).
const RESOURCES: &[(&str, &str, &str, bool)] = &[
    ("v1", "namespaces", "Namespace", false),
    ("v1", "nodes", "Node", false),
    ("v1", "pods", "Pod", true),
    ("v1", "services", "Service", true),
    ("v1", "secrets", "Secret", true),
    ("v1", "configmaps", "ConfigMap", true),
    ("v1", "serviceaccounts", "ServiceAccount", true),
    ("apps/v1", "daemonsets", "DaemonSet", true),
    ("apps/v1", "deployments", "Deployment", true),
    (
        "rbac.authorization.k8s.io/v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "clusterroles",
        "ClusterRole",
        false,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "rolebindings",
        "RoleBinding",
        true,
    ),
    ("rbac.authorization.k8s.io/v1", "roles", "Role", true),
];

fn not_found(user: String) -> (u16, Vec<u8>, String) {
    let body = status(
        404,
        "NotFound",
        "the server could not find the requested resource",
        None,
    );
    (404, body, user)
}

fn ok(v: Value) -> (u16, Vec<u8>) {
    (200, serde_json::to_vec(&v).unwrap())
}

/// Answers one request: (status code, body, user name for the log).
fn respond(
    state: &State,
    method: &str,
    target: &str,
    auth: Option<&str>,
    accept: &str,
    body: &[u8],
) -> (u16, Vec<u8>, String) {
    let s = &state.scenario;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let q = query_params(query);
    let user = match auth.and_then(|a| a.strip_prefix("Bearer ")) {
        Some(tok) => match s.bearers.get(tok.trim()) {
            Some(u) => u.clone(),
            None => {
                return (
                    401,
                    status(401, "Unauthorized", "Unauthorized", None),
                    "-".into(),
                );
            }
        },
        None if auth.is_some() => {
            return (
                401,
                status(401, "Unauthorized", "Unauthorized", None),
                "-".into(),
            );
        }
        None => "system:anonymous".to_string(),
    };
    if let Some(fault) = take_fault(state, method, path) {
        return (fault.0, fault.1, user);
    }
    if let Some(w) = &s.workloads
        && user != "system:anonymous"
    {
        if let Some(ns) = pods_collection(path)
            && method == "GET"
        {
            if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
                if let Err((code, body)) = FieldSelector::parse("pods", q.get("fieldSelector")) {
                    return (code, body, user);
                }
                return (STREAM_WATCH, Vec::new(), user);
            }
            if let Some((code, body)) = list_pods(state, w.as_ref(), ns, &q, &user) {
                return (code, body, user);
            }
        }
        let req = Request {
            method,
            path,
            query: &q,
            body,
            user: &user,
        };
        if let Some((code, body)) = w.handle(&req) {
            return (code, body, user);
        }
    }
    if method != "GET" {
        return (
            405,
            status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                None,
            ),
            user,
        );
    }
    let anonymous = user == "system:anonymous";
    if path == "/version" || path == "/healthz" || path == "/livez" || path == "/readyz" {
        if path != "/version" {
            return (200, b"ok".to_vec(), user);
        }
        let v = s.version.trim_start_matches('v');
        let mut parts = v.split(['.', '-', '+']);
        let (major, minor) = (parts.next().unwrap_or("1"), parts.next().unwrap_or("0"));
        let (c, b) = ok(json!({
            "major": major, "minor": minor, "emulationMajor": major, "emulationMinor": minor,
            "minCompatibilityMajor": major, "minCompatibilityMinor": minor,
            "gitVersion": s.version, "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean", "buildDate": "2025-06-17T18:00:00Z", "goVersion": "go1.24.4",
            "compiler": "gc", "platform": "linux/amd64",
        }));
        return (c, b, user);
    }
    let cluster_info = path == "/api/v1/namespaces/kube-public/configmaps/cluster-info";
    if anonymous && !cluster_info {
        let msg = format!("forbidden: User \"system:anonymous\" cannot get path \"{path}\"");
        return (403, status(403, "Forbidden", &msg, Some(json!({}))), user);
    }
    // Discovery.
    let groups: Vec<&str> = {
        let mut g: Vec<&str> = RESOURCES
            .iter()
            .map(|r| r.0)
            .filter(|g| *g != "v1")
            .collect();
        g.dedup();
        g
    };
    match path {
        "/api" => {
            let (c, b) = ok(
                json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]}),
            );
            return (c, b, user);
        }
        "/apis" => {
            let list: Vec<Value> = groups
                .iter()
                .map(|gv| {
                    let (g, v) = gv.split_once('/').unwrap();
                    json!({"name": g, "versions": [{"groupVersion": gv, "version": v}], "preferredVersion": {"groupVersion": gv, "version": v}})
                })
                .collect();
            let (c, b) = ok(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list}));
            return (c, b, user);
        }
        _ => {}
    }
    let (gv, rest) = if let Some(r) = path.strip_prefix("/api/v1") {
        ("v1".to_string(), r)
    } else if let Some(r) = path.strip_prefix("/apis/") {
        let mut it = r.splitn(3, '/');
        let (g, v) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
        (
            format!("{g}/{v}"),
            &r[(g.len() + 1 + v.len()).min(r.len())..],
        )
    } else {
        return not_found(user);
    };
    if !RESOURCES.iter().any(|r| r.0 == gv) {
        return not_found(user);
    }
    let segs: Vec<&str> = rest.split('/').filter(|x| !x.is_empty()).collect();
    if segs.is_empty() {
        let resources: Vec<Value> = RESOURCES
            .iter()
            .filter(|r| r.0 == gv)
            .map(|r| json!({"name": r.1, "singularName": r.2.to_lowercase(), "namespaced": r.3, "kind": r.2, "verbs": ["get", "list"]}))
            .collect();
        let (c, b) = ok(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
        );
        return (c, b, user);
    }
    let (ns, plural, name) = match segs.as_slice() {
        ["namespaces", ns, plural] => (Some(*ns), *plural, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name)),
        [plural] => (None, *plural, None),
        [plural, name] => (None, *plural, Some(*name)),
        _ => {
            return not_found(user);
        }
    };
    let Some(&(_, _, kind, namespaced)) = RESOURCES.iter().find(|r| r.0 == gv && r.1 == plural)
    else {
        return not_found(user);
    };
    let verb = if name.is_some() {
        "get"
    } else if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        "watch"
    } else {
        "list"
    };
    let group = gv.rsplit_once('/').map_or("", |(g, _)| g);
    if !cluster_info && s.forbidden.iter().any(|(v, r)| v == verb && r == plural) {
        let scope = match ns {
            Some(n) if namespaced => format!("in the namespace \"{n}\""),
            _ => "at the cluster scope".into(),
        };
        let what = match name {
            Some(n) => format!("{plural} \"{n}\" is forbidden"),
            None => format!("{plural} is forbidden"),
        };
        let msg = format!(
            "{what}: User \"{user}\" cannot {verb} resource \"{plural}\" in API group \"{group}\" {scope}"
        );
        let mut details = json!({"group": group, "kind": plural});
        if let Some(n) = name {
            details["name"] = json!(n);
        }
        return (403, status(403, "Forbidden", &msg, Some(details)), user);
    }
    if verb == "watch" {
        return (
            405,
            status(
                405,
                "MethodNotAllowed",
                "watch is not supported by the test server",
                None,
            ),
            user,
        );
    }
    // This kind's objects in order; only the namespace is left to match.
    let of_kind = state
        .index
        .get(&(gv.clone(), plural.to_string()))
        .into_iter()
        .flatten()
        .map(|&i| &s.objects[i])
        .filter(|o| ns.is_none() || !namespaced || o.namespace.as_deref() == ns);
    if let Some(name) = name {
        return match of_kind.clone().find(|o| o.name == name) {
            Some(o) => (200, serde_json::to_vec(&o.json).unwrap(), user),
            None => {
                let msg = format!("{plural} \"{name}\" not found");
                (
                    404,
                    status(
                        404,
                        "NotFound",
                        &msg,
                        Some(json!({"name": name, "group": group, "kind": plural})),
                    ),
                    user,
                )
            }
        };
    }
    // List: filter, sort, page.
    let selector_ok = |o: &Stored, sel: Option<&String>, labels: bool| -> bool {
        let Some(sel) = sel else { return true };
        sel.split(',').filter(|t| !t.trim().is_empty()).all(|term| {
            let (key, want, eq) = if let Some((k, v)) = term.split_once("!=") {
                (k, Some(v), false)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, Some(v), true)
            } else {
                (term, None, true)
            };
            let key = key.trim();
            let have: Option<String> = if labels {
                o.json["metadata"]["labels"][key].as_str().map(String::from)
            } else {
                key.split('.')
                    .try_fold(&o.json, |v, p| v.get(p))
                    .and_then(|v| v.as_str())
                    .map(String::from)
            };
            match want {
                None => have.is_some(),
                Some(w) => (have.as_deref() == Some(w.trim())) == eq,
            }
        })
    };
    let items: Vec<&Stored> = of_kind
        .filter(|o| {
            selector_ok(o, q.get("labelSelector"), true)
                && selector_ok(o, q.get("fieldSelector"), false)
        })
        .collect();
    let start: usize = match q.get("continue").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => match c.strip_prefix("cl-continue-").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => {
                return (
                    400,
                    status(
                        400,
                        "BadRequest",
                        "continue key is not valid: illegal base64 data",
                        None,
                    ),
                    user,
                );
            }
        },
    };
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|&l| l > 0)
        .unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(items.len());
    let page = &items[start.min(end)..end];
    let mut list_meta = json!({"resourceVersion": "1"});
    if end < items.len() {
        list_meta["continue"] = json!(format!("cl-continue-{end}"));
        list_meta["remainingItemCount"] = json!(items.len() - end);
    }
    if accept.contains("as=Table") {
        let body = table(plural, page, list_meta);
        return (200, serde_json::to_vec(&body).unwrap(), user);
    }
    // Metadata first, as kube-apiserver writes it; the items as serialized once at start.
    let mut body = format!(
        "{{\"kind\":\"{kind}List\",\"apiVersion\":\"{gv}\",\"metadata\":{list_meta},\"items\":["
    )
    .into_bytes();
    for (i, o) in page.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&o.item);
    }
    body.extend_from_slice(b"]}");
    (200, body, user)
}

fn age(o: &Value) -> String {
    let Some(t) = o["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now() - t).get_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A meta.k8s.io/v1 Table, as the API server answers `kubectl get` (server-side printing).
type Cells = Box<dyn Fn(&Value) -> Vec<Value>>;

fn table(plural: &str, page: &[&Stored], list_meta: Value) -> Value {
    let col = |name: &str, format: &str| json!({"name": name, "type": "string", "format": format, "description": name, "priority": 0});
    let (columns, cells): (Vec<Value>, Cells) = if plural == "nodes" {
        (
            vec![
                col("Name", "name"),
                col("Status", ""),
                col("Roles", ""),
                col("Age", ""),
                col("Version", ""),
            ],
            Box::new(|o: &Value| {
                let ready = o["status"]["conditions"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                    .map_or("Unknown", |c| {
                        if c["status"] == "True" {
                            "Ready"
                        } else {
                            "NotReady"
                        }
                    });
                let roles: Vec<&str> = o["metadata"]["labels"]
                    .as_object()
                    .map(|l| {
                        l.keys()
                            .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                            .collect()
                    })
                    .unwrap_or_default();
                let roles = if roles.is_empty() {
                    "<none>".to_string()
                } else {
                    roles.join(",")
                };
                vec![
                    o["metadata"]["name"].clone(),
                    json!(ready),
                    json!(roles),
                    json!(age(o)),
                    o["status"]["nodeInfo"]["kubeletVersion"].clone(),
                ]
            }),
        )
    } else {
        (
            vec![col("Name", "name"), col("Age", "")],
            Box::new(|o: &Value| vec![o["metadata"]["name"].clone(), json!(age(o))]),
        )
    };
    let rows: Vec<Value> = page
        .iter()
        .map(|o| {
            json!({"cells": cells(&o.json), "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.json["metadata"]}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": columns, "rows": rows})
}

// ---- Faults on chosen requests, and a watch of the workloads' pods (fleet control loop) ----

/// A scripted failure: the first `times` requests whose method is `method` and whose path contains
/// `path` are answered with `code` (429 carries `Retry-After: 1`, as the API server's max-in-flight
/// filter sends it) instead of being served.
#[derive(Clone)]
struct RequestFault {
    method: String,
    path: String,
    code: u16,
    times: u32,
}

impl Scenario {
    /// Answers the first `times` `method` requests whose path contains `path` with `code` (429 or
    /// 503, say) and a Status body; later ones are served normally.
    pub fn fail(mut self, method: &str, path: &str, code: u16, times: u32) -> Scenario {
        self.request_faults.push(RequestFault {
            method: method.into(),
            path: path.into(),
            code,
            times,
        });
        self
    }
}

fn take_fault(state: &State, method: &str, path: &str) -> Option<(u16, Vec<u8>)> {
    let mut hits = state.fault_hits.lock().unwrap();
    let (i, f) = state
        .scenario
        .request_faults
        .iter()
        .enumerate()
        .find(|(i, f)| f.method == method && path.contains(&f.path) && hits[*i] < f.times)?;
    hits[i] += 1;
    let (reason, msg) = match f.code {
        429 => (
            "TooManyRequests",
            "Too many requests, please try again later.",
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
        _ => (
            "InternalError",
            "an error on the server has prevented the request",
        ),
    };
    let details = (f.code == 429).then(|| json!({"retryAfterSeconds": 1}));
    Some((f.code, status(f.code, reason, msg, details)))
}

/// Set as the status of [`respond`]'s answer when the request is a watch to stream.
const STREAM_WATCH: u16 = 0;
/// Events a watch can resume from; older resourceVersions get 410 Gone, as after etcd compaction.
const WATCH_HISTORY: usize = 20_000;

/// `/api/v1/namespaces/NS/pods` → NS.
fn pods_collection(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let (ns, tail) = rest.split_once('/')?;
    (tail == "pods").then_some(ns)
}

/// The workloads' pods with resourceVersions the server gives them: every change it sees (by
/// polling the workloads, which keep no history) is one event with the next resourceVersion.
#[derive(Default)]
struct WatchCache {
    rv: u64,
    /// (namespace, name) → (resourceVersion, object).
    pods: BTreeMap<(String, String), (u64, Value)>,
    /// (resourceVersion, type, namespace, object), oldest first.
    events: std::collections::VecDeque<(u64, &'static str, String, Value)>,
    /// Events at or below this resourceVersion are gone (compacted).
    compacted: u64,
    /// Paged lists being read: id → (resourceVersion, the filtered items).
    snapshots: BTreeMap<u64, (u64, Vec<Value>)>,
    lists: u64,
}

impl WatchCache {
    /// Folds the namespace's current pods in, recording what changed.
    fn sync(&mut self, ns: &str, now: Vec<Value>) {
        let mut seen = std::collections::BTreeSet::new();
        for mut p in now {
            let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
            let key = (ns.to_string(), name);
            seen.insert(key.clone());
            p["metadata"]["resourceVersion"] = Value::Null;
            let kind = match self.pods.get(&key) {
                Some((_, old)) if *old == p => continue,
                Some(_) => "MODIFIED",
                None => "ADDED",
            };
            self.rv += 1;
            self.pods.insert(key, (self.rv, p.clone()));
            self.push(self.rv, kind, ns, p);
        }
        let gone: Vec<(String, String)> = self
            .pods
            .keys()
            .filter(|k| k.0 == ns && !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some((_, p)) = self.pods.remove(&key) {
                self.rv += 1;
                self.push(self.rv, "DELETED", ns, p);
            }
        }
    }

    fn push(&mut self, rv: u64, kind: &'static str, ns: &str, obj: Value) {
        self.events.push_back((rv, kind, ns.to_string(), obj));
        while self.events.len() > WATCH_HISTORY {
            if let Some((old, ..)) = self.events.pop_front() {
                self.compacted = old;
            }
        }
    }
}

fn with_rv(mut obj: Value, rv: u64) -> Value {
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    obj
}

/// Asks the workloads for every pod of the namespace and folds them into the watch cache.
fn sync_pods(state: &State, w: &dyn Workloads, ns: &str, user: &str) -> Option<()> {
    let path = format!("/api/v1/namespaces/{ns}/pods");
    let q = BTreeMap::new();
    // Held across the read, so two syncs never fold in snapshots out of order.
    let mut cache = state.watch.lock().unwrap();
    let (code, body) = w.handle(&Request {
        method: "GET",
        path: &path,
        query: &q,
        body: &[],
        user,
    })?;
    if code != 200 {
        return None;
    }
    let v: Value = serde_json::from_slice(&body).ok()?;
    let items = v["items"].as_array().cloned().unwrap_or_default();
    cache.sync(ns, items);
    Some(())
}

/// The fields kube-apiserver lets a fieldSelector name, per resource (its `GetAttrs`/field label
/// conversion functions); every resource has `metadata.name` and `metadata.namespace`.
fn selectable_fields(plural: &str) -> &'static [&'static str] {
    match plural {
        "pods" => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        _ => &["metadata.name", "metadata.namespace"],
    }
}

/// A fieldSelector as kube-apiserver takes it: comma-joined terms `field=value`, `field==value`
/// or `field!=value` (no set-based forms), on the fields the resource supports; anything else is
/// the server's 400 (`field label not supported: ...`, `invalid selector: ...`).
pub struct FieldSelector(Vec<(String, String, bool)>);

impl FieldSelector {
    pub fn parse(plural: &str, sel: Option<&String>) -> Result<FieldSelector, (u16, Vec<u8>)> {
        let mut terms = Vec::new();
        let bad = |msg: String| (400, status(400, "BadRequest", &msg, None));
        for term in sel
            .map(String::as_str)
            .unwrap_or("")
            .split(',')
            .filter(|t| !t.trim().is_empty())
        {
            let (field, value, eq) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, v, true)
            } else {
                return Err(bad(format!(
                    "invalid selector: '{}'; can't understand '{term}'",
                    sel.map(String::as_str).unwrap_or("")
                )));
            };
            let field = field.trim();
            if !selectable_fields(plural).contains(&field) {
                return Err(bad(format!("field label not supported: {field}")));
            }
            terms.push((field.to_string(), value.trim().to_string(), eq));
        }
        Ok(FieldSelector(terms))
    }

    /// Whether `obj` matches every term (an absent field reads as the API server's zero value:
    /// "" for strings, "false" for booleans).
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, want, eq)| {
            let v = field.split('.').try_fold(obj, |v, p| v.get(p));
            let have = match v {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                _ if field == "spec.hostNetwork" => "false".into(),
                _ => String::new(),
            };
            (have == *want) == *eq
        })
    }
}

/// Whether `obj`'s labels match a labelSelector of equality terms (`k=v`, `k==v`, `k!=v`, `k`).
pub fn labels_match(obj: &Value, sel: Option<&String>) -> bool {
    let Some(sel) = sel else { return true };
    sel.split(',').filter(|t| !t.trim().is_empty()).all(|t| {
        let l = &obj["metadata"]["labels"];
        match t.split_once("!=") {
            Some((k, v)) => l[k.trim()].as_str() != Some(v.trim()),
            None => match t.split_once('=') {
                Some((k, v)) => l[k.trim()].as_str() == Some(v.trim_start_matches('=').trim()),
                None => l.get(t.trim()).is_some(),
            },
        }
    })
}

/// A list of the workloads' pods as kube-apiserver answers it: the label selector applied, paged
/// by `limit`/`continue`, the list's resourceVersion the one a watch resumes from.
fn list_pods(
    state: &State,
    w: &dyn Workloads,
    ns: &str,
    q: &BTreeMap<String, String>,
    user: &str,
) -> Option<(u16, Vec<u8>)> {
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|&l| l > 0)
        .unwrap_or(usize::MAX);
    let fields = match FieldSelector::parse("pods", q.get("fieldSelector")) {
        Ok(f) => f,
        Err(e) => return Some(e),
    };
    // A paged list is one snapshot: later pages come from the first page's state and carry its
    // resourceVersion, as etcd serves them.
    let (id, start) = match q.get("continue").filter(|c| !c.is_empty()) {
        None => {
            sync_pods(state, w, ns, user)?;
            let mut cache = state.watch.lock().unwrap();
            let items: Vec<Value> = cache
                .pods
                .iter()
                .filter(|(k, (_, p))| {
                    k.0 == ns && labels_match(p, q.get("labelSelector")) && fields.matches(p)
                })
                .map(|(_, (rv, p))| with_rv(p.clone(), *rv))
                .collect();
            cache.lists += 1;
            let (id, rv) = (cache.lists, cache.rv);
            cache.snapshots.insert(id, (rv, items));
            (id, 0)
        }
        Some(c) => match c
            .strip_prefix("pods-continue-")
            .and_then(|r| r.split_once('-'))
            .and_then(|(i, o)| Some((i.parse::<u64>().ok()?, o.parse::<usize>().ok()?)))
        {
            Some(io) => io,
            None => {
                let msg = "continue key is not valid: illegal base64 data";
                return Some((400, status(400, "BadRequest", msg, None)));
            }
        },
    };
    let mut cache = state.watch.lock().unwrap();
    let Some((rv, items)) = cache.snapshots.get(&id) else {
        let msg = "The provided continue parameter is too old to display a consistent list result.";
        return Some((410, status(410, "Expired", msg, None)));
    };
    let rv = *rv;
    let end = start.saturating_add(limit).min(items.len());
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if end < items.len() {
        meta["continue"] = json!(format!("pods-continue-{id}-{end}"));
        meta["remainingItemCount"] = json!(items.len() - end);
    }
    let page = &items[start.min(end)..end];
    let body = json!({"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": page});
    if end >= items.len() {
        cache.snapshots.remove(&id);
    }
    Some((200, serde_json::to_vec(&body).unwrap()))
}

fn write_chunk(tls: &mut impl Write, data: &[u8]) -> bool {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    tls.write_all(&out).and_then(|_| tls.flush()).is_ok()
}

/// A watch of the workloads' pods as kube-apiserver streams it: HTTP/1.1 chunked, one JSON event
/// per line (`ADDED`/`MODIFIED`/`DELETED`, `BOOKMARK` each idle second when asked for, an `ERROR`
/// with a 410 Status when the resourceVersion is compacted away), ending after `timeoutSeconds`.
fn stream_watch(state: &State, tls: &mut impl Write, target: &str) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let q = query_params(query);
    let (Some(ns), Some(w)) = (pods_collection(path), state.scenario.workloads.as_ref()) else {
        return;
    };
    let head = "HTTP/1.1 200 OK\r\nCache-Control: no-cache, private\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if tls.write_all(head.as_bytes()).is_err() {
        return;
    }
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800)
        .min(1800);
    let until = std::time::Instant::now() + Duration::from_secs(timeout);
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let sel = q.get("labelSelector");
    let Ok(fields) = FieldSelector::parse("pods", q.get("fieldSelector")) else {
        return;
    };
    // Pods that matched the selectors as last sent: one that stops matching is DELETED for
    // this watch, one that starts is ADDED, as kube-apiserver's watch cache filters them.
    let mut inside: std::collections::BTreeSet<(String, String)> = Default::default();
    let matches = |p: &Value| labels_match(p, sel) && fields.matches(p);
    let key_of = |p: &Value| {
        (
            p["metadata"]["namespace"]
                .as_str()
                .unwrap_or(ns)
                .to_string(),
            p["metadata"]["name"].as_str().unwrap_or("").to_string(),
        )
    };
    let _ = sync_pods(state, w.as_ref(), ns, "system:apiserver");
    // Where to start: after the given resourceVersion, or (none or "0") with the current pods as ADDED.
    let mut sent = match q.get("resourceVersion").and_then(|r| r.parse::<u64>().ok()) {
        Some(rv) if rv > 0 => {
            let c = state.watch.lock().unwrap();
            if rv < c.compacted {
                let msg = format!(
                    "too old resource version: {rv} ({})",
                    c.compacted.saturating_add(1)
                );
                let ev = json!({"type": "ERROR", "object": serde_json::from_slice::<Value>(&status(410, "Expired", &msg, None)).unwrap()});
                drop(c);
                let mut line = serde_json::to_vec(&ev).unwrap();
                line.push(b'\n');
                let _ = write_chunk(tls, &line) && write_chunk(tls, b"");
                return;
            }
            // What the client holds as of `rv`: each pod's last event at or before it (or the
            // pod as it is, unchanged since), where it matched.
            let mut last: BTreeMap<(String, String), (&str, &Value)> = BTreeMap::new();
            for (_, kind, _, obj) in c.events.iter().filter(|e| e.0 <= rv && e.2 == ns) {
                last.insert(key_of(obj), (kind, obj));
            }
            for ((pns, name), (prv, p)) in &c.pods {
                if pns == ns && *prv <= rv {
                    last.entry((pns.clone(), name.clone()))
                        .or_insert(("ADDED", p));
                }
            }
            for (key, (kind, obj)) in last {
                if kind != "DELETED" && matches(obj) {
                    inside.insert(key);
                }
            }
            rv
        }
        _ => {
            let c = state.watch.lock().unwrap();
            let mut out = Vec::new();
            for ((pns, name), (rv, p)) in &c.pods {
                if pns == ns && matches(p) {
                    inside.insert((pns.clone(), name.clone()));
                    let ev = json!({"type": "ADDED", "object": with_rv(p.clone(), *rv)});
                    out.extend(serde_json::to_vec(&ev).unwrap());
                    out.push(b'\n');
                }
            }
            let rv = c.rv;
            drop(c);
            if !out.is_empty() && !write_chunk(tls, &out) {
                return;
            }
            rv
        }
    };
    let mut idle = std::time::Instant::now();
    while std::time::Instant::now() < until && !state.stop.load(Ordering::SeqCst) {
        let mut out = Vec::new();
        {
            let c = state.watch.lock().unwrap();
            for (rv, kind, pns, obj) in c.events.iter().filter(|e| e.0 > sent) {
                if pns != ns {
                    continue;
                }
                let key = key_of(obj);
                let was = inside.contains(&key);
                let is = *kind != "DELETED" && matches(obj);
                let kind = match (was, is) {
                    (false, true) => "ADDED",
                    (true, true) => "MODIFIED",
                    (true, false) => "DELETED",
                    (false, false) if *kind == "DELETED" && matches(obj) => "DELETED",
                    (false, false) => continue,
                };
                if is {
                    inside.insert(key);
                } else {
                    inside.remove(&key);
                }
                {
                    let ev = json!({"type": kind, "object": with_rv(obj.clone(), *rv)});
                    out.extend(serde_json::to_vec(&ev).unwrap());
                    out.push(b'\n');
                }
            }
            sent = c.rv;
        }
        if bookmarks && out.is_empty() && idle.elapsed() >= Duration::from_secs(1) {
            let ev = json!({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                "metadata": {"resourceVersion": sent.to_string()}}});
            out = serde_json::to_vec(&ev).unwrap();
            out.push(b'\n');
        }
        if !out.is_empty() {
            idle = std::time::Instant::now();
            if !write_chunk(tls, &out) {
                return;
            }
        }
        thread::sleep(Duration::from_millis(50));
        let _ = sync_pods(state, w.as_ref(), ns, "system:apiserver");
    }
    let _ = write_chunk(tls, b"");
}

impl ApiServer {
    /// How many requests the scripted [`ApiFault`]s answered (429, 503, or reset mid-body).
    pub fn faults_served(&self) -> usize {
        self.faults
            .iter()
            .map(|f| {
                f.seen
                    .load(Ordering::SeqCst)
                    .saturating_sub(f.skip)
                    .min(f.count)
            })
            .sum()
    }

    /// Every request whose path contains `part`, as logged (`USER METHOD /path?query STATUS`).
    pub fn requests_to(&self, part: &str) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.contains(part))
            .collect()
    }
}
