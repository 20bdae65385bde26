//! A process kubelet for the fleet tests: the test API server's pods and namespaces (create with
//! dry run, field validation and Pod Security admission, get, list and deletecollection by label
//! and field selectors — an unsupported field is a 400 —, delete, log), ConfigMaps, service
//! accounts, roles and bindings (create, get, list, delete, deletecollection), and every pod bound to a node run as a real local process as strictly
//! as containerd and runc would run it:
//!
//! * the network attached before the process starts: the node's namespace (hostNetwork), or a
//!   pod namespace on the node's bridge (`pod_network`) with its address and default route;
//! * a root of its own, pivoted into: an overlay of the image (`image_root`, or nothing) with the
//!   binary under test at /usr/local/bin/k8sdoctor, fresh /proc (runc's read-only and masked paths),
//!   sysfs, a /dev of its own; no host /usr, /lib or /bin;
//! * containerd's default capabilities, or what the securityContext asks (add/drop, privileged),
//!   as bounding, permitted and effective sets; readOnlyRootFilesystem; no_new_privs;
//! * hostPath volumes (the node's fixture root) read-only as asked, recursively with
//!   `recursiveReadOnly` (mount_setattr); `fieldRef` env; exit code and output as status and log;
//!   a process that cannot start at all is `StartError`, exit 128.
//!
//! ```ignore
//! let kubelet = ProcessKubelet::new(bin(), vec![NodeSpec::new("n1", fixtures().join("hosts/x"))]);
//! let server = ApiServer::start(kubelet.scenario(Scenario::empty()));
//! ```
//!
//! Scripted faults per node ([`Fault`]): the pod stays Pending (a hung kubelet), the image cannot be
//! pulled, the image's entrypoint is another program, the node's pods cannot reach the API address
//! (dropped, refused, refused for the first seconds), the node's runtime withholds CAP_NET_ADMIN;
//! a node's live ruleset (`node_rules`: a REJECT
//! nobody saved, a policy DROP in FORWARD) or its pods' (`pod_rules`); and per cluster: the
//! namespace's Pod Security level, a policy that strips wildcard tolerations (so a node's NoExecute
//! taint is then enforced by the kubelet's admission, as a real kubelet does for pods bound with
//! `nodeName`).
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    ffi::{CStr, CString},
    fs,
    io::Read,
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{Node, Taint};
use rustix::thread::CapabilitySet;
use serde_json::{Value, json};

use super::{
    Netns, Switch,
    apiserver::{
        ApiServer, FieldSelector, Request, Scenario, Workloads, labels_match, node, status,
    },
};

/// The bearer token the kubelet mounts into pods that use a service account.
pub const SA_TOKEN: &str = "k8sdoctor-test-serviceaccount-token";

/// A node's scripted fault.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The kubelet never starts the pod (it stays Pending).
    StaysPending,
    /// Pulling the image fails (ErrImagePull).
    ImagePullFails,
    /// The image's `k8sdoctor` is this program instead. It runs in the container's root, so a
    /// dynamically linked program (/bin/false) fails to start there (StartError, exit 128), as it
    /// would in an image without its libraries; a static one (busybox) runs.
    Entrypoint(PathBuf),
    /// The node's pods cannot reach the API address: its packets are dropped on the node
    /// (blackholed: a connect times out), in the node's OUTPUT (hostNetwork pods) and FORWARD
    /// (pod-network pods) chains — a kube-proxy or node firewall gone wrong.
    ApiDropped,
    /// The same, refused: the node answers a connect to the API address with a TCP reset.
    ApiRefused,
    /// The API address is refused on this node for the first seconds after its first pod starts
    /// (a fresh node whose Service rules are not programmed yet), then reachable.
    ApiRefusedFor(Duration),
    /// The API server cannot reach this node's kubelet (tcp/10250 filtered on the node): a log
    /// read of its pods fails as the API server's kubelet proxy fails, after this long, with
    /// `500: Get "https://<ip>:10250/containerLogs/...": dial tcp <ip>:10250: i/o timeout`. Status
    /// updates still flow (the kubelet dials the API server, not the other way).
    KubeletUnreachable(Duration),
    /// The node's runtime withholds CAP_NET_ADMIN whatever a pod asks (a hardened runtime
    /// profile, or a sandboxed runtime class whose containers get no netfilter access): a
    /// container that adds it runs without it, as containerd runs one whose add the node's
    /// runtime config strips. Reading the node's live ruleset then fails with EPERM.
    NoNetAdmin,
}

/// One emulated node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    /// The node's `/` (a fixture root).
    pub root: PathBuf,
    pub ready: bool,
    pub fault: Option<Fault>,
    /// A NoExecute taint (key, value).
    pub no_execute: Option<(String, String)>,
    /// iptables-restore input loaded into every pod network namespace on this node (what a
    /// NetworkPolicy or a CNI's rules would do there).
    pub pod_rules: Option<String>,
    /// iptables-restore input loaded into the node's own network namespace when the kubelet starts:
    /// the node's *running* ruleset (a live REJECT nobody saved, a policy engine's DROP in FORWARD,
    /// which pod-network traffic crosses: pods hang off the node's bridge).
    pub node_rules: Option<String>,
    /// Network sysctls set in the node's own namespace when the kubelet starts (a node's live
    /// `net.ipv4.ip_forward`, which a fresh namespace has at 0).
    pub sysctls: Vec<(String, String)>,
    /// The node's own NIC (`eth0`, CIDR address), as every real node has: its node network, which
    /// the node checks judge the firewall for. (A veth whose peer stays in the namespace.)
    pub nic: Option<String>,
}

impl NodeSpec {
    pub fn new(name: &str, root: impl Into<PathBuf>) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            root: root.into(),
            ready: true,
            fault: None,
            no_execute: None,
            pod_rules: None,
            node_rules: None,
            sysctls: Vec::new(),
            nic: None,
        }
    }
    pub fn nic(mut self, cidr: &str) -> NodeSpec {
        self.nic = Some(cidr.into());
        self
    }
    pub fn sysctl(mut self, key: &str, value: &str) -> NodeSpec {
        self.sysctls.push((key.into(), value.into()));
        self
    }
    pub fn node_rules(mut self, rules: &str) -> NodeSpec {
        self.node_rules = Some(rules.into());
        self
    }
    pub fn pod_rules(mut self, rules: &str) -> NodeSpec {
        self.pod_rules = Some(rules.into());
        self
    }
    pub fn fault(mut self, f: Fault) -> NodeSpec {
        self.fault = Some(f);
        self
    }
    pub fn not_ready(mut self) -> NodeSpec {
        self.ready = false;
        self
    }
    pub fn no_execute(mut self, key: &str, value: &str) -> NodeSpec {
        self.no_execute = Some((key.into(), value.into()));
        self
    }
}

/// The API server's refusal of a request: status code and Status body.
type Refused = (u16, Vec<u8>);

/// A pod's log: its container's stdout and stderr, capped.
type PodLog = Arc<Mutex<Vec<u8>>>;

struct PodRec {
    json: Value,
    log: PodLog,
    child: Option<Arc<Mutex<Child>>>,
    /// The pod's own network namespace (pods not on the host network).
    netns: Option<Netns>,
}

#[derive(Default)]
struct Store {
    /// Namespaces created through the API (name → object).
    namespaces: BTreeMap<String, Value>,
    /// (namespace, name) → pod.
    pods: BTreeMap<(String, String), PodRec>,
    seq: u64,
    /// Every pod ever created (not dry runs): (namespace, name, node).
    created: Vec<(String, String, String)>,
    /// Other namespaced objects clients create (configmaps, serviceaccounts, roles, rolebindings):
    /// (plural, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Value>,
}

struct KNode {
    spec: NodeSpec,
    netns: Netns,
}

/// The pods side of the test API server, and the kubelet of every emulated node.
pub struct ProcessKubelet {
    binary: PathBuf,
    nodes: Vec<KNode>,
    store: Mutex<Store>,
    /// Namespaces that exist beforehand (name → labels), as in the scenario.
    preset: BTreeMap<String, BTreeMap<String, String>>,
    /// The Pod Security level of namespaces without an enforce label (the cluster default).
    psa_default: String,
    /// A mutating policy that removes `operator: Exists` tolerations without a key.
    strip_wildcard_tolerations: bool,
    /// The overlay: one L2 segment (10.244.0.0/16) that nodes and pods plug into.
    network: Option<Switch>,
    /// Where pods reach the API server (KUBERNETES_SERVICE_HOST/PORT) and its CA, once started.
    api: Mutex<Option<(std::net::SocketAddr, String)>>,
    /// A directory laid out like the image's filesystem (its binaries, libraries, /etc): the lower
    /// layer of every container's root. None: an image holding nothing but the binary under test.
    image_root: Option<PathBuf>,
    /// Nodes whose API-address fault rules are in place (installed when their first pod starts).
    api_fault_armed: Mutex<Vec<usize>>,
    dir: tempfile::TempDir,
}

impl ProcessKubelet {
    /// Nodes each get a network namespace of their own, removed when the kubelet is dropped.
    pub fn new(binary: PathBuf, nodes: Vec<NodeSpec>) -> ProcessKubelet {
        let nodes = nodes
            .into_iter()
            .map(|spec| {
                let netns = Netns::new("node");
                if let Some(rules) = &spec.node_rules {
                    super::feed(&netns, &["iptables-restore"], rules);
                }
                if let Some(cidr) = &spec.nic {
                    for cmd in [
                        &[
                            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
                        ][..],
                        &["ip", "addr", "add", cidr, "dev", "eth0"],
                        &["ip", "link", "set", "eth0p", "up"],
                        &["ip", "link", "set", "eth0", "up"],
                    ] {
                        let out = netns.exec(cmd);
                        assert!(out.status.success(), "{cmd:?}: {out:?}");
                    }
                }
                for (k, v) in &spec.sysctls {
                    let out = netns.exec(&["sysctl", "-qw", &format!("{k}={v}")]);
                    assert!(out.status.success(), "sysctl {k}={v}: {out:?}");
                }
                KNode { netns, spec }
            })
            .collect();
        ProcessKubelet {
            binary,
            nodes,
            store: Mutex::new(Store::default()),
            preset: ["default", "kube-system", "kube-public", "kube-node-lease"]
                .into_iter()
                .map(|n| (n.to_string(), BTreeMap::new()))
                .collect(),
            psa_default: "privileged".into(),
            strip_wildcard_tolerations: false,
            network: None,
            api: Mutex::new(None),
            image_root: None,
            api_fault_armed: Mutex::new(Vec::new()),
            dir: tempfile::tempdir().expect("kubelet dir"),
        }
    }

    /// Containers see this directory (laid out like the image: usr/sbin/iptables, lib/...) as the
    /// lower layer of their root, with the binary under test at /usr/local/bin/k8sdoctor on top.
    pub fn image_root(mut self, dir: impl Into<PathBuf>) -> ProcessKubelet {
        self.image_root = Some(dir.into());
        self
    }

    /// Puts every node (at 10.244.0.N) and every pod (10.244.M.N) on one overlay segment, the way
    /// a bridge CNI with an L2 overlay (weave) does: each node has a bridge `cni0` holding its
    /// address, with an uplink into the overlay; its pods' veths hang off that bridge, so their
    /// traffic crosses the node's netfilter FORWARD path (br_netfilter), and their default route
    /// is the node. Every bridge has a fixed MAC: a bridge otherwise takes the lowest MAC of its
    /// ports, and the gateway's MAC would change under running pods as pods come and go.
    pub fn pod_network(mut self) -> ProcessKubelet {
        let sw = Switch::new("ovl");
        for (i, n) in self.nodes.iter().enumerate() {
            let ns = &n.netns;
            super::bridge(ns, "cni0", &format!("02:00:0a:f4:00:{:02x}", i + 1));
            sw.uplink(ns, "cni0");
            ns.exec(&[
                "ip",
                "addr",
                "add",
                &format!("{}/16", node_ip(i)),
                "dev",
                "cni0",
            ]);
            // Bridged pod traffic goes through this node's iptables (what weave-npc, Calico and
            // kube-router rely on); the sysctl is per network namespace.
            ns.exec(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]);
        }
        self.network = Some(sw);
        self
    }

    /// A namespace on the overlay for the API server and the CLI (10.244.255.N).
    pub fn overlay_host(&self, n: u8) -> (Netns, String) {
        let sw = self.network.as_ref().expect("pod_network() first");
        let ns = Netns::new("cp");
        let ip = format!("10.244.255.{n}");
        sw.plug(&ns, &format!("{ip}/16"));
        (ns, ip)
    }

    /// Tells the kubelet where pods find the API server (in-cluster config) and its CA.
    pub fn set_api(&self, addr: std::net::SocketAddr, ca_pem: &str) {
        *self.api.lock().unwrap() = Some((addr, ca_pem.to_string()));
    }

    /// A namespace that exists before the run, with these labels.
    pub fn namespace(mut self, name: &str, labels: &[(&str, &str)]) -> ProcessKubelet {
        self.preset.insert(
            name.into(),
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self
    }

    /// The cluster-wide Pod Security level for namespaces without a label (`baseline`, `restricted`).
    pub fn psa_default(mut self, level: &str) -> ProcessKubelet {
        self.psa_default = level.into();
        self
    }

    /// A policy engine that strips wildcard tolerations from every pod (they exist in real clusters).
    pub fn strip_wildcard_tolerations(mut self) -> ProcessKubelet {
        self.strip_wildcard_tolerations = true;
        self
    }

    /// The scenario with this kubelet's nodes and the kubelet answering for pods and namespaces.
    pub fn scenario(self: &Arc<Self>, mut s: Scenario) -> Scenario {
        for (i, n) in self.nodes.iter().enumerate() {
            let mut obj: Node = node(&n.spec.name, "v1.33.2", n.spec.ready, i == 0);
            if let Some((k, v)) = &n.spec.no_execute {
                obj.spec.get_or_insert_default().taints = Some(vec![Taint {
                    key: k.clone(),
                    value: Some(v.clone()),
                    effect: "NoExecute".into(),
                    ..Default::default()
                }]);
            }
            s = s.with(obj);
        }
        s.bearer(SA_TOKEN, "system:serviceaccount:k8sdoctor:k8sdoctor-probe")
            .workloads(Arc::new(Api(self.clone())))
    }

    /// Creates `pod` (JSON, as a client would POST it) in namespace `default` and waits for its
    /// container to end (at most `timeout`): its final status and log, or the API's refusal
    /// (code, Status body) at create. The kubelet's own tests use it.
    pub fn run_pod(
        self: &Arc<Self>,
        pod: Value,
        timeout: Duration,
    ) -> Result<(Value, String), (u16, String)> {
        let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
        let body = serde_json::to_vec(&pod).unwrap();
        let (code, answer) = self.create_pod("default", &body, false, "test");
        if code != 201 {
            return Err((code, String::from_utf8_lossy(&answer).into_owned()));
        }
        let key = ("default".to_string(), name);
        let t = Instant::now();
        loop {
            let (status, log) = {
                let st = self.store.lock().unwrap();
                let p = st.pods.get(&key).expect("the pod exists");
                (p.json["status"].clone(), p.log.clone())
            };
            let ended = !status["containerStatuses"][0]["state"]["terminated"].is_null()
                || matches!(status["phase"].as_str(), Some("Failed" | "Succeeded"));
            if ended || t.elapsed() > timeout {
                // The output threads may still be draining the pipes.
                thread::sleep(Duration::from_millis(100));
                let log = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
                self.delete(&key);
                return Ok((status, log));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The MAC address of node `i`'s pod bridge.
    pub fn node_bridge_mac(&self, i: usize) -> String {
        let o = self.nodes[i]
            .netns
            .exec(&["cat", "/sys/class/net/cni0/address"]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Every pod still stored (namespace, name).
    pub fn pods(&self) -> Vec<(String, String)> {
        self.store.lock().unwrap().pods.keys().cloned().collect()
    }

    /// Whether node `name`'s API-address fault was put in place (its first pod started under it).
    pub fn api_fault_armed(&self, name: &str) -> bool {
        let i = self.nodes.iter().position(|n| n.spec.name == name);
        i.is_some_and(|i| self.api_fault_armed.lock().unwrap().contains(&i))
    }

    /// Every pod ever created (namespace, name, node).
    pub fn created(&self) -> Vec<(String, String, String)> {
        self.store.lock().unwrap().created.clone()
    }

    /// Processes of pods still running.
    pub fn running(&self) -> usize {
        let st = self.store.lock().unwrap();
        st.pods
            .values()
            .filter_map(|p| p.child.as_ref())
            .filter(|c| c.lock().unwrap().try_wait().ok().flatten().is_none())
            .count()
    }

    fn namespace_labels(&self, st: &Store, ns: &str) -> Option<BTreeMap<String, String>> {
        if let Some(o) = st.namespaces.get(ns) {
            return Some(
                serde_json::from_value(o["metadata"]["labels"].clone()).unwrap_or_default(),
            );
        }
        self.preset.get(ns).cloned()
    }

    fn create_pod(
        self: &Arc<Self>,
        ns: &str,
        body: &[u8],
        dry_run: bool,
        user: &str,
    ) -> (u16, Vec<u8>) {
        let mut pod: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return (400, status(400, "BadRequest", &format!("{e}"), None)),
        };
        let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
        let mut st = self.store.lock().unwrap();
        let Some(labels) = self.namespace_labels(&st, ns) else {
            let msg = format!("namespaces \"{ns}\" not found");
            return (404, status(404, "NotFound", &msg, None));
        };
        if name.is_empty() {
            return (
                422,
                status(
                    422,
                    "Invalid",
                    "Pod \"\" is invalid: metadata.name: Required value",
                    None,
                ),
            );
        }
        // Pod Security admission (enforce), as the API server's built-in plugin words it.
        let level = labels
            .get("pod-security.kubernetes.io/enforce")
            .cloned()
            .unwrap_or_else(|| self.psa_default.clone());
        if level != "privileged" {
            let spec = &pod["spec"];
            let mut bad = Vec::new();
            if spec["hostNetwork"] == true || spec["hostPID"] == true {
                bad.push(format!(
                    "host namespaces (hostNetwork={}, hostPID={})",
                    spec["hostNetwork"] == true,
                    spec["hostPID"] == true
                ));
            }
            if let Some(vols) = spec["volumes"].as_array() {
                let hp: Vec<String> = vols
                    .iter()
                    .filter(|v| v.get("hostPath").is_some())
                    .map(|v| format!("\"{}\"", v["name"].as_str().unwrap_or("")))
                    .collect();
                if !hp.is_empty() {
                    bad.push(format!("hostPath volumes (volume {})", hp.join(", ")));
                }
            }
            if !bad.is_empty() {
                let msg = format!(
                    "pods \"{name}\" is forbidden: violates PodSecurity \"{level}:latest\": {}",
                    bad.join(", ")
                );
                return (403, status(403, "Forbidden", &msg, None));
            }
        }
        // Field validation the API server does for volume mounts.
        for (ci, c) in pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            for (mi, vm) in c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let rro = vm["recursiveReadOnly"].as_str();
                let field = format!("spec.containers[{ci}].volumeMounts[{mi}].recursiveReadOnly");
                let bad = match rro {
                    None | Some("Disabled") => None,
                    Some("Enabled" | "IfPossible") if vm["readOnly"] != true => {
                        Some("Forbidden: may only be specified when readOnly is true")
                    }
                    Some("Enabled" | "IfPossible") => None,
                    Some(_) => Some("Unsupported value"),
                };
                if let Some(why) = bad {
                    let msg = format!("Pod \"{name}\" is invalid: {field}: {why}");
                    return (422, status(422, "Invalid", &msg, None));
                }
            }
        }
        if st.pods.contains_key(&(ns.to_string(), name.clone())) {
            let msg = format!("pods \"{name}\" already exists");
            return (409, status(409, "AlreadyExists", &msg, None));
        }
        if self.strip_wildcard_tolerations
            && let Some(t) = pod["spec"]["tolerations"].as_array_mut()
        {
            t.retain(|t| !(t["operator"] == "Exists" && t.get("key").is_none()));
        }
        st.seq += 1;
        let uid = format!("pod-uid-{}", st.seq);
        let now = jiff::Timestamp::now().to_string();
        pod["apiVersion"] = json!("v1");
        pod["kind"] = json!("Pod");
        pod["metadata"]["namespace"] = json!(ns);
        pod["metadata"]["uid"] = json!(uid);
        pod["metadata"]["resourceVersion"] = json!(st.seq.to_string());
        pod["metadata"]["creationTimestamp"] = json!(now);
        pod["metadata"]["managedFields"] = json!([{"manager": user, "operation": "Update"}]);
        pod["status"] = json!({"phase": "Pending", "qosClass": "Burstable"});
        if dry_run {
            return (201, serde_json::to_vec(&pod).unwrap());
        }
        let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
        let key = (ns.to_string(), name.clone());
        st.created.push((ns.into(), name, node.clone()));
        st.pods.insert(
            key.clone(),
            PodRec {
                json: pod.clone(),
                log: Arc::new(Mutex::new(Vec::new())),
                child: None,
                netns: None,
            },
        );
        drop(st);
        if let Some(i) = self.nodes.iter().position(|n| n.spec.name == node) {
            let me = self.clone();
            thread::spawn(move || me.kubelet(i, key));
        }
        (201, serde_json::to_vec(&pod).unwrap())
    }

    fn set_status(&self, key: &(String, String), f: impl FnOnce(&mut Value)) {
        if let Some(p) = self.store.lock().unwrap().pods.get_mut(key) {
            f(&mut p.json["status"]);
        }
    }

    /// What node `i`'s kubelet does with a pod bound to it.
    fn kubelet(self: Arc<Self>, i: usize, key: (String, String)) {
        let node = &self.nodes[i];
        if !node.spec.ready || matches!(node.spec.fault, Some(Fault::StaysPending)) {
            return;
        }
        let Some(pod) = self
            .store
            .lock()
            .unwrap()
            .pods
            .get(&key)
            .map(|p| p.json.clone())
        else {
            return;
        };
        // Admission: a pod bound with nodeName skips the scheduler; the kubelet still refuses
        // pods that do not tolerate the node's NoExecute taints.
        if let Some((k, v)) = &node.spec.no_execute {
            let tolerated = pod["spec"]["tolerations"].as_array().is_some_and(|ts| {
                ts.iter().any(|t| {
                    let effect_ok = t["effect"].is_null() || t["effect"] == "NoExecute";
                    let key_ok = t["key"].is_null() || t["key"] == k.as_str();
                    let value_ok = t["operator"] == "Exists" || t["value"] == v.as_str();
                    effect_ok && key_ok && value_ok
                })
            });
            if !tolerated {
                self.set_status(&key, |s| {
                    *s = json!({"phase": "Failed", "reason": "TaintToleration",
                        "message": format!("Predicate TaintToleration failed: node(s) had untolerated taint {{{k}: {v}}}")});
                });
                return;
            }
        }
        let container = pod["spec"]["containers"][0].clone();
        let cname = container["name"].as_str().unwrap_or("c").to_string();
        let image = container["image"].as_str().unwrap_or("").to_string();
        if matches!(node.spec.fault, Some(Fault::ImagePullFails)) {
            self.set_status(&key, |s| {
                s["containerStatuses"] = json!([{"name": cname, "ready": false, "restartCount": 0,
                    "image": image, "imageID": "", "started": false,
                    "state": {"waiting": {"reason": "ErrImagePull",
                        "message": format!("failed to pull and unpack image \"{image}\": not found")}}}]);
            });
            return;
        }
        let host_ip = node_ip(i);
        let pod_net = match self.pod_netns(i, &pod) {
            Ok(n) => n,
            Err(e) => {
                self.set_status(&key, |s| {
                    *s = json!({"phase": "Pending", "conditions": [{"type": "PodReadyToStartContainers",
                        "status": "False", "message": format!("network setup failed: {e}")}]});
                });
                return;
            }
        };
        let pod_ip = pod_net
            .as_ref()
            .map_or(host_ip.clone(), |(_, ip)| ip.clone());
        let netns_name = pod_net
            .as_ref()
            .map_or(node.netns.name.clone(), |(n, _)| n.name.clone());
        if let (Some((ns, _)), Some(p)) = (pod_net, self.store.lock().unwrap().pods.get_mut(&key)) {
            p.netns = Some(ns);
        }
        if let Err(e) = self.arm_api_fault(i) {
            self.set_status(&key, |s| {
                *s = json!({"phase": "Pending", "conditions": [{"type": "PodReadyToStartContainers",
                    "status": "False", "message": format!("network setup failed: {e}")}]});
            });
            return;
        }
        match self.start(i, &pod, &host_ip, &pod_ip, &netns_name) {
            Ok((child, log, mounts)) => {
                let started = jiff::Timestamp::now().to_string();
                let child = Arc::new(Mutex::new(child));
                if let Some(p) = self.store.lock().unwrap().pods.get_mut(&key) {
                    p.child = Some(child.clone());
                    p.log = log;
                    p.json["status"] = json!({"phase": "Running", "hostIP": host_ip,
                        "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "startTime": started,
                        "containerStatuses": [{"name": cname, "ready": true, "restartCount": 0,
                            "image": image, "imageID": "", "started": true,
                            "volumeMounts": mounts,
                            "state": {"running": {"startedAt": started}}}]});
                }
                let deadline = pod["spec"]["activeDeadlineSeconds"]
                    .as_u64()
                    .map(|s| Instant::now() + Duration::from_secs(s));
                loop {
                    let done = child.lock().unwrap().try_wait().ok().flatten();
                    if let Some(st) = done {
                        let code = st.code().unwrap_or(128 + 9);
                        let message = self.termination_message(&pod, &key, code);
                        self.set_status(&key, |s| {
                            s["phase"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
                            s["containerStatuses"][0]["ready"] = json!(false);
                            let mut t = json!({"exitCode": code,
                                "reason": if code == 0 { "Completed" } else { "Error" },
                                "startedAt": started, "finishedAt": jiff::Timestamp::now().to_string()});
                            if !message.is_empty() {
                                t["message"] = json!(message);
                            }
                            s["containerStatuses"][0]["state"] = json!({"terminated": t});
                        });
                        return;
                    }
                    if deadline.is_some_and(|d| Instant::now() > d) {
                        let _ = child.lock().unwrap().kill();
                        let _ = child.lock().unwrap().wait();
                        self.set_status(&key, |s| {
                            s["phase"] = json!("Failed");
                            s["reason"] = json!("DeadlineExceeded");
                            s["message"] = json!(
                                "Pod was active on the node longer than the specified deadline"
                            );
                        });
                        return;
                    }
                    if !self.store.lock().unwrap().pods.contains_key(&key) {
                        return; // deleted: the delete handler killed it
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            }
            // runc could not start the process (an entrypoint that cannot run in the image, a
            // mount or capability the runtime refuses): with restartPolicy Never the container
            // is terminated with StartError and exit code 128, as containerd reports it.
            Err(e) => {
                let now = jiff::Timestamp::now().to_string();
                self.set_status(&key, |s| {
                    s["phase"] = json!("Failed");
                    s["hostIP"] = json!(host_ip);
                    s["podIP"] = json!(pod_ip);
                    s["containerStatuses"] = json!([{"name": cname, "ready": false,
                        "restartCount": 0, "image": image, "imageID": "", "started": false,
                        "state": {"terminated": {"exitCode": 128, "reason": "StartError",
                            "message": e, "startedAt": "1970-01-01T00:00:00Z", "finishedAt": now}}}]);
                });
            }
        }
    }

    /// Starts the pod's container as containerd and runc would: in the node's network namespace
    /// (or the pod's, already wired), in a mount namespace of its own whose root is an overlay of
    /// the image (`image_root`, or nothing) with the binary under test at
    /// /usr/local/bin/k8sdoctor, pivoted into (no host path stays reachable), with the
    /// securityContext's capabilities, read-only root and no_new_privs, and the hostPath volumes
    /// mounted read-only, recursively when asked. Returns the child, its log, and the
    /// `volumeMounts` of its container status.
    fn start(
        &self,
        i: usize,
        pod: &Value,
        host_ip: &str,
        pod_ip: &str,
        netns_name: &str,
    ) -> Result<(Child, PodLog, Vec<Value>), String> {
        let node = &self.nodes[i];
        let spec = &pod["spec"];
        let c = &spec["containers"][0];
        let sc = &c["securityContext"];
        let privileged = sc["privileged"] == true;
        let mut caps = container_caps(sc)?;
        if matches!(node.spec.fault, Some(Fault::NoNetAdmin)) {
            caps &= !cap_bit("NET_ADMIN")?;
        }
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("pod");
        let dir = self.dir.path().join(uid);
        let (rootfs, upper, work) = (dir.join("rootfs"), dir.join("upper"), dir.join("work"));
        let lower = match &self.image_root {
            Some(r) => r.clone(),
            None => self.dir.path().join("empty-image"),
        };
        let io = |e: std::io::Error| e.to_string();
        for d in [&rootfs, &upper, &work, &lower] {
            fs::create_dir_all(d).map_err(io)?;
        }
        // Mount points are made in the container's writable layer, as runc makes them.
        let mountpoint_dir = |p: &str| -> Result<PathBuf, String> {
            let d = upper.join(p.trim_start_matches('/'));
            fs::create_dir_all(&d).map_err(io)?;
            Ok(rootfs.join(p.trim_start_matches('/')))
        };
        let mountpoint_file = |p: &str| -> Result<PathBuf, String> {
            let f = upper.join(p.trim_start_matches('/'));
            fs::create_dir_all(f.parent().unwrap()).map_err(io)?;
            fs::write(&f, b"").map_err(io)?;
            Ok(rootfs.join(p.trim_start_matches('/')))
        };
        let entry = match &node.spec.fault {
            Some(Fault::Entrypoint(p)) => p.clone(),
            _ => self.binary.clone(),
        };
        let mut binds = vec![Bind::new(&entry, &mountpoint_file(IMAGE_BINARY)?, Ro::Top)];
        // The service account's token, CA and namespace, as the kubelet projects them (read-only).
        let mut env_extra: Vec<(String, String)> = Vec::new();
        let sa = spec["serviceAccountName"].as_str().unwrap_or("default");
        if spec["automountServiceAccountToken"] != false && sa != "default" {
            let projected = dir.join("serviceaccount");
            fs::create_dir_all(&projected).map_err(io)?;
            let api = self.api.lock().unwrap().clone();
            let Some((addr, ca)) = api else {
                return Err("the kubelet does not know the API server".into());
            };
            fs::write(projected.join("token"), SA_TOKEN).map_err(io)?;
            fs::write(projected.join("ca.crt"), ca).map_err(io)?;
            let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
            fs::write(projected.join("namespace"), ns).map_err(io)?;
            let dst = mountpoint_dir("/var/run/secrets/kubernetes.io/serviceaccount")?;
            binds.push(Bind::new(&projected, &dst, Ro::Top));
            env_extra.push(("KUBERNETES_SERVICE_HOST".into(), addr.ip().to_string()));
            env_extra.push(("KUBERNETES_SERVICE_PORT".into(), addr.port().to_string()));
        }
        // Volumes: hostPath volumes of the pod are the node's fixture root (the node's `/`).
        let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
        let mut mount_status = Vec::new();
        for vm in c["volumeMounts"].as_array().cloned().unwrap_or_default() {
            let vol = volumes.iter().find(|v| v["name"] == vm["name"]);
            let Some(hp) = vol.and_then(|v| v["hostPath"]["path"].as_str()) else {
                return Err(format!("volume {} is not a hostPath", vm["name"]));
            };
            let src = node.spec.root.join(hp.trim_start_matches('/'));
            let path = vm["mountPath"].as_str().unwrap_or("/mnt");
            let dst = mountpoint_dir(path)?;
            let rro = vm["recursiveReadOnly"].as_str().unwrap_or("Disabled");
            let ro = match (vm["readOnly"] == true, rro) {
                (false, _) => Ro::No,
                (true, "Enabled") => Ro::Recursive { required: true },
                (true, "IfPossible") if rro_supported() => Ro::Recursive { required: false },
                (true, _) => Ro::Top,
            };
            mount_status.push(json!({"name": vm["name"], "mountPath": path,
                "readOnly": ro != Ro::No,
                "recursiveReadOnly": if matches!(ro, Ro::Recursive { .. }) { "Enabled" } else { "Disabled" }}));
            binds.push(Bind::new(&src, &dst, ro));
        }
        // A node's `/` has mounts of its own under it (/proc, /sys, /run, ...): a plain read-only
        // bind leaves them writable, `recursiveReadOnly` does not. The node's fixture root gets
        // them too, in the container's mount namespace only.
        let node_submounts: Vec<CString> = ["proc", "sys", "run", "dev"]
            .iter()
            .map(|d| node.spec.root.join(d))
            .filter(|d| d.is_dir())
            .map(|d| cs(&d))
            .collect();
        for d in ["proc", "sys", "dev", "tmp"] {
            mountpoint_dir(d)?;
        }
        // The termination-message file: one per container, written by the container, read back
        // by the kubelet when it ends.
        let term_src = dir.join("termination-log");
        fs::write(&term_src, b"").map_err(io)?;
        let term_path = c["terminationMessagePath"]
            .as_str()
            .unwrap_or("/dev/termination-log");
        let term_in_dev = term_path.starts_with("/dev/");
        let term_dst = if term_in_dev {
            rootfs.join(term_path.trim_start_matches('/'))
        } else {
            mountpoint_file(term_path)?
        };
        let overlay = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        let in_root = |p: &str| cs(&rootfs.join(p));
        let plan = Plan {
            netns: fs::File::open(format!("/run/netns/{netns_name}")).map_err(io)?,
            node_submounts,
            root: cs(&rootfs),
            overlay: CString::new(overlay).map_err(|e| e.to_string())?,
            binds,
            proc_: in_root("proc"),
            proc_ro: ["bus", "fs", "irq", "sys", "sysrq-trigger"]
                .iter()
                .map(|p| in_root(&format!("proc/{p}")))
                .collect(),
            masked: [
                "kcore",
                "keys",
                "timer_list",
                "sched_debug",
                "latency_stats",
            ]
            .iter()
            .map(|p| in_root(&format!("proc/{p}")))
            .collect(),
            sys: in_root("sys"),
            dev: in_root("dev"),
            devices: [
                ("null", 1, 3),
                ("zero", 1, 5),
                ("full", 1, 7),
                ("random", 1, 8),
                ("urandom", 1, 9),
                ("tty", 5, 0),
            ]
            .iter()
            .map(|(n, maj, min)| (in_root(&format!("dev/{n}")), libc::makedev(*maj, *min)))
            .collect(),
            dev_shm: in_root("dev/shm"),
            dev_links: [
                ("fd", "/proc/self/fd"),
                ("stdin", "/proc/self/fd/0"),
                ("stdout", "/proc/self/fd/1"),
                ("stderr", "/proc/self/fd/2"),
            ]
            .iter()
            .map(|(l, t)| (CString::new(*t).unwrap(), in_root(&format!("dev/{l}"))))
            .collect(),
            dev_null: in_root("dev/null"),
            term_log: (cs(&term_src), cs(&term_dst), term_in_dev),
            privileged,
            read_only_root: sc["readOnlyRootFilesystem"] == true,
            // runc's noNewPrivileges is the inverse of allowPrivilegeEscalation (unset: allowed).
            no_new_privs: sc["allowPrivilegeEscalation"] == false && !privileged,
            caps,
            last_cap: last_cap(),
        };
        // Env first: `$(VAR)` in command and args expands from it, as the kubelet does.
        let mut env: Vec<(String, String)> = env_extra;
        for e in c["env"].as_array().cloned().unwrap_or_default() {
            let name = e["name"].as_str().unwrap_or("").to_string();
            let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("spec.nodeName") => node.spec.name.clone(),
                Some("status.podIP") => pod_ip.to_string(),
                Some("status.hostIP") => host_ip.to_string(),
                Some("metadata.name") => pod["metadata"]["name"].as_str().unwrap_or("").into(),
                Some("metadata.namespace") => {
                    pod["metadata"]["namespace"].as_str().unwrap_or("").into()
                }
                Some(_) => continue,
                None => e["value"].as_str().unwrap_or("").to_string(),
            };
            env.push((name, value));
        }
        let expand = |a: &str| {
            let mut out = a.to_string();
            for (k, v) in &env {
                out = out.replace(&format!("$({k})"), v);
            }
            out
        };
        let cmd: Vec<String> = c["command"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(c["args"].as_array().into_iter().flatten())
            .filter_map(|v| v.as_str().map(expand))
            .collect();
        // The command resolves in the container's PATH (the image's ENTRYPOINT when none).
        let program = match cmd.first().map(String::as_str) {
            None => IMAGE_BINARY.to_string(),
            Some(p) if p.contains('/') => p.to_string(),
            Some(p) => IMAGE_PATH
                .split(':')
                .map(|d| format!("{d}/{p}"))
                .find(|f| f == IMAGE_BINARY || lower.join(f.trim_start_matches('/')).exists())
                .unwrap_or_else(|| p.to_string()),
        };
        let mut command = Command::new(&program);
        command
            .args(cmd.iter().skip(1))
            .env_clear()
            .env("PATH", IMAGE_PATH)
            .env("HOME", "/")
            .envs(env);
        // SAFETY: between fork and exec the child only makes syscalls on the plan, which was
        // prepared before the fork; nothing allocates or takes a lock.
        unsafe {
            command.pre_exec(move || plan.enter());
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"{program}\": {e}: unknown"
                )
            })?;
        let log = Arc::new(Mutex::new(Vec::new()));
        for out in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            thread::spawn(move || {
                let mut out = out;
                let mut buf = [0u8; 8192];
                while let Ok(n) = out.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut l = log.lock().unwrap();
                    if l.len() < 16 << 20 {
                        l.extend_from_slice(&buf[..n]);
                    }
                }
            });
        }
        Ok((child, log, mount_status))
    }

    /// The pod's own network namespace on the overlay (None for hostNetwork pods), with its
    /// node's pod rules loaded.
    fn pod_netns(&self, i: usize, pod: &Value) -> Result<Option<(Netns, String)>, String> {
        if pod["spec"]["hostNetwork"] == true {
            return Ok(None);
        }
        let Some(sw) = &self.network else {
            return Err("no pod network (ProcessKubelet::pod_network)".into());
        };
        let n = {
            let mut st = self.store.lock().unwrap();
            st.seq += 1;
            st.seq
        };
        let _ = sw;
        let ns = Netns::new("pod");
        let node = &self.nodes[i].netns;
        let ip = format!("10.244.{}.{}", i + 1, n % 250 + 2);
        // The CNI's work, all of it before the container starts: a veth whose node end joins the
        // node's bridge, the pod's address, its default route through the node, the link up.
        let outer = format!("pd{i}x{n}");
        super::sh(&[
            "ip", "link", "add", "eth0", "netns", &ns.name, "type", "veth", "peer", "name", &outer,
            "netns", &node.name,
        ]);
        node.exec(&["ip", "link", "set", &outer, "master", "cni0"]);
        node.exec(&["ip", "link", "set", &outer, "up"]);
        ns.exec(&["ip", "addr", "add", &format!("{ip}/16"), "dev", "eth0"]);
        ns.exec(&["ip", "link", "set", "eth0", "up"]);
        ns.exec(&["ip", "route", "add", "default", "via", &node_ip(i)]);
        let t = Instant::now();
        loop {
            let o = ns.exec(&["cat", "/sys/class/net/eth0/operstate"]);
            if String::from_utf8_lossy(&o.stdout).trim() == "up" {
                break;
            }
            if t.elapsed() > Duration::from_secs(5) {
                return Err("the pod's eth0 never came up".into());
            }
            thread::sleep(Duration::from_millis(10));
        }
        if let Some(rules) = &self.nodes[i].spec.pod_rules {
            super::feed(&ns, &["iptables-restore"], rules);
        }
        Ok(Some((ns, ip)))
    }

    /// What a kubelet puts in `state.terminated.message`: the last 4096 bytes of the container's
    /// termination-message file; with `FallbackToLogsOnError`, when that is empty and the
    /// container failed, the last 80 lines of its log, at most 2048 bytes.
    fn termination_message(&self, pod: &Value, key: &(String, String), code: i32) -> String {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("pod");
        let path = self.dir.path().join(uid).join("termination-log");
        let file = fs::read(&path).unwrap_or_default();
        let tail = |b: &[u8], n: usize| b[b.len().saturating_sub(n)..].to_vec();
        let mut msg = tail(&file, 4096);
        let policy = &pod["spec"]["containers"][0]["terminationMessagePolicy"];
        if msg.is_empty() && code != 0 && policy == "FallbackToLogsOnError" {
            // The output threads may still be draining the pipes.
            thread::sleep(Duration::from_millis(100));
            let log = self
                .store
                .lock()
                .unwrap()
                .pods
                .get(key)
                .map(|p| p.log.lock().unwrap().clone())
                .unwrap_or_default();
            let start = log
                .iter()
                .enumerate()
                .rev()
                .filter(|(_, b)| **b == b'\n')
                .nth(80)
                .map_or(0, |(i, _)| i + 1);
            msg = tail(&log[start..], 2048);
        }
        String::from_utf8_lossy(&msg).into_owned()
    }

    /// Puts node `i`'s API-address fault in place (once per node, before its first container
    /// starts): rules in the node's OUTPUT chain (hostNetwork pods) and FORWARD chain (pods on its
    /// bridge) that drop or reject TCP to the API address; a refusal for the first seconds is
    /// lifted by a timer.
    fn arm_api_fault(&self, i: usize) -> Result<(), String> {
        let target = match &self.nodes[i].spec.fault {
            Some(Fault::ApiDropped) => vec!["DROP"],
            Some(Fault::ApiRefused | Fault::ApiRefusedFor(_)) => {
                vec!["REJECT", "--reject-with", "tcp-reset"]
            }
            _ => return Ok(()),
        };
        {
            let mut armed = self.api_fault_armed.lock().unwrap();
            if armed.contains(&i) {
                return Ok(());
            }
            armed.push(i);
        }
        let Some((addr, _)) = self.api.lock().unwrap().clone() else {
            return Err("an API-address fault needs set_api() first".into());
        };
        let (ip, port) = (addr.ip().to_string(), addr.port().to_string());
        let ns = self.nodes[i].netns.name.clone();
        let rule = |op: &str, chain: &str| -> Vec<String> {
            let mut r: Vec<String> = [
                "ip", "netns", "exec", &ns, "iptables", op, chain, "-d", &ip, "-p", "tcp",
                "--dport", &port, "-j",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            r.extend(target.iter().map(|s| s.to_string()));
            r
        };
        for chain in ["OUTPUT", "FORWARD"] {
            let args = rule("-I", chain);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            super::sh(&args);
        }
        if let Some(Fault::ApiRefusedFor(d)) = self.nodes[i].spec.fault {
            let lift: Vec<Vec<String>> = ["OUTPUT", "FORWARD"]
                .iter()
                .map(|c| rule("-D", c))
                .collect();
            thread::spawn(move || {
                thread::sleep(d);
                for args in lift {
                    // The node may be gone by then (the test ended): nothing to lift.
                    let _ = Command::new(&args[0]).args(&args[1..]).output();
                }
            });
        }
        Ok(())
    }

    /// The namespace's pods the label and field selectors pick, or the server's 400 for a field
    /// selector it does not support.
    fn pod_list(
        &self,
        ns: &str,
        q: &BTreeMap<String, String>,
    ) -> Result<Vec<(String, String)>, Refused> {
        let fields = FieldSelector::parse("pods", q.get("fieldSelector"))?;
        let st = self.store.lock().unwrap();
        Ok(st
            .pods
            .iter()
            .filter(|((pns, _), _)| pns == ns)
            .filter(|(_, p)| {
                labels_match(&p.json, q.get("labelSelector")) && fields.matches(&p.json)
            })
            .map(|(k, _)| k.clone())
            .collect())
    }

    /// The stored objects of a kind in a namespace that the selectors pick (a 400 as above).
    fn object_list(
        &self,
        plural: &str,
        ns: &str,
        q: &BTreeMap<String, String>,
    ) -> Result<Vec<(String, String, String)>, Refused> {
        let fields = FieldSelector::parse(plural, q.get("fieldSelector"))?;
        let st = self.store.lock().unwrap();
        Ok(st
            .objects
            .iter()
            .filter(|((p, n, _), _)| p == plural && n == ns)
            .filter(|(_, o)| labels_match(o, q.get("labelSelector")) && fields.matches(o))
            .map(|(k, _)| k.clone())
            .collect())
    }

    /// Every stored object of a kind (namespace, name): the run's ConfigMaps left behind, say.
    pub fn objects(&self, plural: &str) -> Vec<(String, String)> {
        let st = self.store.lock().unwrap();
        st.objects
            .keys()
            .filter(|(p, _, _)| p == plural)
            .map(|(_, ns, name)| (ns.clone(), name.clone()))
            .collect()
    }

    fn delete(&self, key: &(String, String)) -> Option<Value> {
        let rec = self.store.lock().unwrap().pods.remove(key)?;
        if let Some(c) = &rec.child {
            let mut c = c.lock().unwrap();
            let _ = c.kill();
            let _ = c.wait();
        }
        let mut v = rec.json;
        v["metadata"]["deletionTimestamp"] = json!(jiff::Timestamp::now().to_string());
        Some(v)
    }
}

/// Where the image keeps the doctor (the Containerfile's COPY target and ENTRYPOINT).
pub const IMAGE_BINARY: &str = "/usr/local/bin/k8sdoctor";
/// The PATH of a container whose image sets none (containerd's default).
const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// containerd's default capabilities for a container (its CRI plugin's default spec). runc makes
/// them the bounding, permitted and effective sets; inheritable and ambient stay empty.
pub const DEFAULT_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

fn cs(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).expect("no NUL in a test path")
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Every capability the runtime holds (this process's bounding set), as a bit set: what a
/// privileged container or `add: [ALL]` gets (a runtime cannot grant more than it has).
pub fn all_caps() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or((1u64 << (last_cap() + 1)) - 1)
}

/// The bit of a capability named as in a securityContext (`NET_ADMIN`, or `CAP_NET_ADMIN`).
pub fn cap_bit(name: &str) -> Result<u64, String> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CapabilitySet::from_name(bare)
        .filter(|_| bare != "_")
        .map(|c| c.bits())
        .ok_or_else(|| format!("unknown capability \"CAP_{bare}\""))
}

/// A container's capabilities: containerd's defaults (all when `privileged`), then the
/// securityContext's add and drop the way containerd's CRI plugin applies them: `ALL` in add, then
/// `ALL` in drop, then each added name, then each dropped name.
pub fn container_caps(sc: &Value) -> Result<u64, String> {
    if sc["privileged"] == true {
        return Ok(all_caps());
    }
    let mut set = 0;
    for c in DEFAULT_CAPS {
        set |= cap_bit(c)?;
    }
    let names = |k: &str| -> Vec<String> {
        sc["capabilities"][k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(|s| s.to_ascii_uppercase()))
            .collect()
    };
    let (add, drop) = (names("add"), names("drop"));
    if add.iter().any(|c| c == "ALL") {
        set = all_caps();
    }
    if drop.iter().any(|c| c == "ALL") {
        set = 0;
    }
    for c in add.iter().filter(|c| *c != "ALL") {
        set |= cap_bit(c)?;
    }
    for c in drop.iter().filter(|c| *c != "ALL") {
        set &= !cap_bit(c)?;
    }
    Ok(set)
}

/// Whether this kernel has mount_setattr(2) (5.12+), which recursive read-only mounts need.
pub fn rro_supported() -> bool {
    // SAFETY: an invalid descriptor and null attributes: the kernel only validates and fails.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            0,
            std::ptr::null::<u8>(),
            0,
        )
    };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
}

/// How a bind mount is made read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ro {
    No,
    /// Only the mount itself (`readOnly: true`): mounts under it stay writable.
    Top,
    /// It and every mount under it (`recursiveReadOnly`); `required` for `Enabled`.
    Recursive {
        required: bool,
    },
}

struct Bind {
    src: CString,
    dst: CString,
    ro: Ro,
}

impl Bind {
    fn new(src: &Path, dst: &Path, ro: Ro) -> Bind {
        Bind {
            src: cs(src),
            dst: cs(dst),
            ro,
        }
    }
}

/// `struct mount_attr` of mount_setattr(2) (neither rustix nor nix wraps the call yet).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_int = 0x8000;

/// Everything a container's process does between fork and exec, prepared before the fork: the
/// child only makes syscalls on it (nothing allocates or takes a lock there). Mounts use libc
/// directly (each is one plain syscall); capabilities and no_new_privs go through rustix.
struct Plan {
    netns: fs::File,
    /// Directories of the node's root that are mounts of their own on a real node.
    node_submounts: Vec<CString>,
    root: CString,
    /// The overlay's options: the image below, the container's writable layer above.
    overlay: CString,
    binds: Vec<Bind>,
    proc_: CString,
    /// runc's readonlyPaths and maskedPaths under /proc (not for privileged containers).
    proc_ro: Vec<CString>,
    masked: Vec<CString>,
    sys: CString,
    dev: CString,
    devices: Vec<(CString, libc::dev_t)>,
    dev_shm: CString,
    /// (target, link) symlinks in /dev.
    dev_links: Vec<(CString, CString)>,
    dev_null: CString,
    /// The container's termination-message file and where it appears (bind-mounted writable,
    /// even over a read-only root), and whether that place is in the container's own /dev.
    term_log: (CString, CString, bool),
    privileged: bool,
    read_only_root: bool,
    no_new_privs: bool,
    caps: u64,
    last_cap: u32,
}

fn check(r: libc::c_int) -> std::io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// mount(2) with optional source, type and data.
fn mnt(
    src: Option<&CStr>,
    dst: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> std::io::Result<()> {
    let p = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is a NUL-terminated string that outlives the call, or null.
    check(unsafe { libc::mount(p(src), dst.as_ptr(), p(fstype), flags, p(data).cast()) })
}

fn remount_ro(dst: &CStr) -> std::io::Result<()> {
    mnt(
        None,
        dst,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
        None,
    )
}

impl Plan {
    /// Runs in the child after fork: network, mounts, root, capabilities.
    fn enter(&self) -> std::io::Result<()> {
        use rustix::thread::{
            CapabilitySet, CapabilitySets, remove_capability_from_bounding_set, set_capabilities,
            set_no_new_privs,
        };
        // SAFETY: setns/unshare/mknod/symlink/chdir/umount2/pivot_root on prepared strings.
        unsafe {
            check(libc::setns(self.netns.as_raw_fd(), libc::CLONE_NEWNET))?;
            check(libc::unshare(libc::CLONE_NEWNS))?;
        }
        mnt(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
        for d in &self.node_submounts {
            mnt(Some(d), d, None, libc::MS_BIND, None)?;
        }
        mnt(
            Some(c"overlay"),
            &self.root,
            Some(c"overlay"),
            0,
            Some(&self.overlay),
        )?;
        for b in &self.binds {
            mnt(
                Some(&b.src),
                &b.dst,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )?;
            match b.ro {
                Ro::No => {}
                Ro::Top => remount_ro(&b.dst)?,
                Ro::Recursive { required } => {
                    let attr = MountAttr {
                        attr_set: MOUNT_ATTR_RDONLY,
                        attr_clr: 0,
                        propagation: 0,
                        userns_fd: 0,
                    };
                    // SAFETY: a valid path and a mount_attr of the size passed.
                    let r = unsafe {
                        libc::syscall(
                            libc::SYS_mount_setattr,
                            libc::AT_FDCWD,
                            b.dst.as_ptr(),
                            AT_RECURSIVE,
                            &attr as *const MountAttr,
                            std::mem::size_of::<MountAttr>(),
                        )
                    };
                    if r != 0 {
                        if required {
                            return Err(std::io::Error::last_os_error());
                        }
                        remount_ro(&b.dst)?;
                    }
                }
            }
        }
        let (nosuid, nodev, noexec) = (libc::MS_NOSUID, libc::MS_NODEV, libc::MS_NOEXEC);
        mnt(
            Some(c"proc"),
            &self.proc_,
            Some(c"proc"),
            nosuid | nodev | noexec,
            None,
        )?;
        let ro = if self.privileged { 0 } else { libc::MS_RDONLY };
        mnt(
            Some(c"sysfs"),
            &self.sys,
            Some(c"sysfs"),
            nosuid | nodev | noexec | ro,
            None,
        )?;
        // A /dev of its own, privileged or not (runc makes one either way; a privileged
        // container's host devices are left out here, which no test needs).
        mnt(
            Some(c"tmpfs"),
            &self.dev,
            Some(c"tmpfs"),
            nosuid | libc::MS_STRICTATIME,
            Some(c"mode=755,size=65536k"),
        )?;
        let (log_src, log_dst, in_dev) = &self.term_log;
        if *in_dev {
            // SAFETY: a prepared path; the descriptor is closed at once.
            unsafe {
                let fd = libc::open(
                    log_dst.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                );
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
            }
        }
        mnt(Some(log_src), log_dst, None, libc::MS_BIND, None)?;
        {
            for (path, dev) in &self.devices {
                // SAFETY: a prepared path; mknod only creates the node.
                check(unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, *dev) })?;
            }
            // SAFETY: as above.
            check(unsafe { libc::mkdir(self.dev_shm.as_ptr(), 0o1777) })?;
            mnt(
                Some(c"shm"),
                &self.dev_shm,
                Some(c"tmpfs"),
                nosuid | nodev | noexec,
                Some(c"mode=1777,size=65536k"),
            )?;
            for (target, link) in &self.dev_links {
                // SAFETY: as above.
                check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) })?;
            }
            // What runc hides or freezes in /proc of an unprivileged container (those that
            // exist on this kernel).
            for p in self.masked.iter().filter(|_| !self.privileged) {
                let _ = mnt(Some(&self.dev_null), p, None, libc::MS_BIND, None);
            }
            if !self.privileged {
                for p in &self.proc_ro {
                    if mnt(Some(p), p, None, libc::MS_BIND | libc::MS_REC, None).is_ok() {
                        remount_ro(p)?;
                    }
                }
            }
        }
        if self.read_only_root {
            remount_ro(&self.root)?;
        }
        // SAFETY: chdir/pivot_root/umount2 on static or prepared strings.
        unsafe {
            check(libc::chdir(self.root.as_ptr()))?;
            if libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
            check(libc::chdir(c"/".as_ptr()))?;
        }
        if self.no_new_privs {
            set_no_new_privs(true)?;
        }
        for n in 0..=self.last_cap.min(63) {
            if self.caps & (1 << n) == 0 {
                remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << n))?;
            }
        }
        let set = CapabilitySet::from_bits_retain(self.caps);
        set_capabilities(
            None,
            CapabilitySets {
                effective: set,
                permitted: set,
                inheritable: CapabilitySet::empty(),
            },
        )?;
        Ok(())
    }
}

/// Namespaced resources the kubelet's API side simply stores (create, get, delete).
const GENERIC: &[&str] = &["configmaps", "serviceaccounts", "roles", "rolebindings"];

/// The API side of the kubelet (pod creation needs the `Arc` to start the pod's kubelet thread).
struct Api(Arc<ProcessKubelet>);

fn json_ok(code: u16, v: &Value) -> Option<(u16, Vec<u8>)> {
    Some((code, serde_json::to_vec(v).unwrap()))
}

impl Workloads for Api {
    fn handle(&self, req: &Request) -> Option<(u16, Vec<u8>)> {
        let k = &self.0;
        let segs: Vec<&str> = req
            .path
            .strip_prefix("/api/v1/")
            .or_else(|| req.path.strip_prefix("/apis/rbac.authorization.k8s.io/v1/"))?
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let dry_run = req.query.get("dryRun").is_some_and(|d| d == "All");
        match (req.method, segs.as_slice()) {
            ("POST", ["namespaces"]) => {
                let mut ns: Value = serde_json::from_slice(req.body).ok()?;
                let name = ns["metadata"]["name"].as_str()?.to_string();
                let mut st = k.store.lock().unwrap();
                if st.namespaces.contains_key(&name) || k.preset.contains_key(&name) {
                    let msg = format!("namespaces \"{name}\" already exists");
                    return Some((409, status(409, "AlreadyExists", &msg, None)));
                }
                ns["apiVersion"] = json!("v1");
                ns["kind"] = json!("Namespace");
                ns["metadata"]["uid"] = json!(format!("ns-uid-{name}"));
                ns["metadata"]["creationTimestamp"] = json!(jiff::Timestamp::now().to_string());
                ns["status"] = json!({"phase": "Active"});
                if !dry_run {
                    st.namespaces.insert(name, ns.clone());
                }
                json_ok(201, &ns)
            }
            ("GET", ["namespaces", name]) => {
                let st = k.store.lock().unwrap();
                if let Some(ns) = st.namespaces.get(*name) {
                    return json_ok(200, ns);
                }
                let labels = k.preset.get(*name)?;
                json_ok(
                    200,
                    &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name,
                        "uid": format!("ns-uid-{name}"), "labels": labels}, "status": {"phase": "Active"}}),
                )
            }
            ("POST", ["namespaces", ns, "pods"]) => {
                Some(k.create_pod(ns, req.body, dry_run, req.user))
            }
            ("GET", ["namespaces", ns, "pods"]) if k.owns(ns) => {
                let keys = match k.pod_list(ns, req.query) {
                    Ok(keys) => keys,
                    Err(e) => return Some(e),
                };
                let items: Vec<Value> = keys
                    .iter()
                    .filter_map(|key| {
                        k.store
                            .lock()
                            .unwrap()
                            .pods
                            .get(key)
                            .map(|p| p.json.clone())
                    })
                    .collect();
                json_ok(
                    200,
                    &json!({"apiVersion": "v1", "kind": "PodList",
                        "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            ("DELETE", ["namespaces", ns, "pods"]) => {
                let keys = match k.pod_list(ns, req.query) {
                    Ok(keys) => keys,
                    Err(e) => return Some(e),
                };
                let items: Vec<Value> = keys.iter().filter_map(|key| k.delete(key)).collect();
                json_ok(
                    200,
                    &json!({"apiVersion": "v1", "kind": "PodList",
                        "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            ("GET", ["namespaces", ns, "pods", name]) if k.owns(ns) => {
                let st = k.store.lock().unwrap();
                match st.pods.get(&(ns.to_string(), name.to_string())) {
                    Some(p) => json_ok(200, &p.json),
                    None => Some(not_found(name)),
                }
            }
            ("DELETE", ["namespaces", ns, "pods", name]) => {
                match k.delete(&(ns.to_string(), name.to_string())) {
                    Some(v) => json_ok(200, &v),
                    None => Some(not_found(name)),
                }
            }
            ("POST", ["namespaces", ns, plural]) if GENERIC.contains(plural) => {
                let mut o: Value = serde_json::from_slice(req.body).ok()?;
                let name = o["metadata"]["name"].as_str()?.to_string();
                let key = (plural.to_string(), ns.to_string(), name.clone());
                let mut st = k.store.lock().unwrap();
                if st.objects.contains_key(&key) {
                    let msg = format!("{plural} \"{name}\" already exists");
                    return Some((409, status(409, "AlreadyExists", &msg, None)));
                }
                o["metadata"]["namespace"] = json!(ns);
                o["metadata"]["uid"] = json!(format!("{plural}-uid-{name}"));
                o["metadata"]["creationTimestamp"] = json!(jiff::Timestamp::now().to_string());
                if !dry_run {
                    st.objects.insert(key, o.clone());
                }
                json_ok(201, &o)
            }
            // List and deletecollection, by label and field selectors; deletecollection answers
            // with the list of what it deleted, as kube-apiserver does.
            (method @ ("GET" | "DELETE"), ["namespaces", ns, plural])
                if GENERIC.contains(plural) && k.owns(ns) =>
            {
                let keys = match k.object_list(plural, ns, req.query) {
                    Ok(keys) => keys,
                    Err(e) => return Some(e),
                };
                let mut st = k.store.lock().unwrap();
                let items: Vec<Value> = keys
                    .iter()
                    .filter_map(|key| {
                        if method == "DELETE" && !dry_run {
                            st.objects.remove(key)
                        } else {
                            st.objects.get(key).cloned()
                        }
                    })
                    .collect();
                let kind = match *plural {
                    "configmaps" => "ConfigMapList",
                    "serviceaccounts" => "ServiceAccountList",
                    "roles" => "RoleList",
                    _ => "RoleBindingList",
                };
                let api_version = if ["roles", "rolebindings"].contains(plural) {
                    "rbac.authorization.k8s.io/v1"
                } else {
                    "v1"
                };
                json_ok(
                    200,
                    &json!({"apiVersion": api_version, "kind": kind,
                        "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            ("GET", ["namespaces", ns, plural, name]) if GENERIC.contains(plural) && k.owns(ns) => {
                let st = k.store.lock().unwrap();
                match st
                    .objects
                    .get(&(plural.to_string(), ns.to_string(), name.to_string()))
                {
                    Some(o) => json_ok(200, o),
                    None => {
                        let msg = format!("{plural} \"{name}\" not found");
                        Some((
                            404,
                            status(
                                404,
                                "NotFound",
                                &msg,
                                Some(json!({"name": name, "kind": plural})),
                            ),
                        ))
                    }
                }
            }
            ("DELETE", ["namespaces", ns, plural, name]) if GENERIC.contains(plural) => {
                let mut st = k.store.lock().unwrap();
                match st
                    .objects
                    .remove(&(plural.to_string(), ns.to_string(), name.to_string()))
                {
                    Some(o) => json_ok(200, &o),
                    None => Some(not_found(name)),
                }
            }
            ("GET", ["namespaces", ns, "pods", name, "log"]) if k.owns(ns) => {
                if let Some((ip, delay)) = k.unreachable_kubelet(ns, name) {
                    // The API server's kubelet proxy, dialling a node whose tcp/10250 is filtered.
                    thread::sleep(delay);
                    let container = req.query.get("container").map_or("doctor", String::as_str);
                    let q = req
                        .query
                        .get("limitBytes")
                        .map_or(String::new(), |l| format!("?limitBytes={l}"));
                    let msg = format!(
                        "Get \"https://{ip}:10250/containerLogs/{ns}/{name}/{container}{q}\": dial tcp {ip}:10250: i/o timeout"
                    );
                    return Some((500, status(500, "InternalError", &msg, None)));
                }
                let st = k.store.lock().unwrap();
                let Some(p) = st.pods.get(&(ns.to_string(), name.to_string())) else {
                    return Some(not_found(name));
                };
                let terminated =
                    !p.json["status"]["containerStatuses"][0]["state"]["terminated"].is_null();
                if p.child.is_none() && !terminated {
                    let msg = format!(
                        "container \"doctor\" in pod \"{name}\" is waiting to start: ContainerCreating"
                    );
                    return Some((400, status(400, "BadRequest", &msg, None)));
                }
                let mut log = p.log.lock().unwrap().clone();
                if let Some(limit) = req.query.get("limitBytes").and_then(|l| l.parse().ok()) {
                    log.truncate(limit);
                }
                Some((200, log))
            }
            _ => None,
        }
    }
}

/// Node `i`'s address on the overlay (and its hostIP).
fn node_ip(i: usize) -> String {
    format!("10.244.0.{}", i + 1)
}

fn not_found(name: &str) -> (u16, Vec<u8>) {
    let msg = format!("pods \"{name}\" not found");
    (
        404,
        status(
            404,
            "NotFound",
            &msg,
            Some(json!({"name": name, "kind": "pods"})),
        ),
    )
}

impl ProcessKubelet {
    /// For a pod on a node whose kubelet the API server cannot reach: the node's IP and how long
    /// the proxy's dial takes to fail.
    fn unreachable_kubelet(&self, ns: &str, name: &str) -> Option<(String, Duration)> {
        let st = self.store.lock().unwrap();
        let pod = st.pods.get(&(ns.to_string(), name.to_string()))?;
        let node = pod.json["spec"]["nodeName"].as_str()?;
        let i = self.nodes.iter().position(|n| n.spec.name == node)?;
        match self.nodes[i].spec.fault {
            Some(Fault::KubeletUnreachable(d)) => Some((node_ip(i), d)),
            _ => None,
        }
    }

    /// Pods of this namespace are this kubelet's (the doctor's namespace); others stay the scenario's.
    fn owns(&self, ns: &str) -> bool {
        let st = self.store.lock().unwrap();
        st.namespaces.contains_key(ns)
            || (self.preset.contains_key(ns) && !["kube-system", "kube-public"].contains(&ns))
            || st.pods.keys().any(|(n, _)| n == ns)
    }
}

impl Drop for ProcessKubelet {
    fn drop(&mut self) {
        let keys: Vec<_> = self.store.lock().unwrap().pods.keys().cloned().collect();
        for k in keys {
            self.delete(&k);
        }
    }
}

/// An image root assembled from this machine's installed userland: each tool as found on PATH
/// (its symlink chain kept, so a multi-call binary such as xtables-nft-multi still sees the name it
/// was called by), every shared library it loads (from `ldd`), the xtables extensions iptables
/// loads at run time, and /etc/protocols and /etc/services. The same layout as the image's own
/// rootfs made from Debian packages, so a test can run a pod that needs `iptables-save` or `nft`.
pub fn userland_image(tools: &[&str]) -> tempfile::TempDir {
    let img = tempfile::tempdir().expect("image dir");
    let put = |p: &Path| {
        let dst = img.path().join(p.strip_prefix("/").unwrap_or(p));
        if dst.symlink_metadata().is_ok() {
            return;
        }
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        match fs::read_link(p) {
            Ok(to) => std::os::unix::fs::symlink(to, &dst).unwrap(),
            Err(_) => {
                fs::copy(p, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", p.display()));
            }
        }
    };
    // Every path from `p` to the file it finally names, each link resolved from its directory.
    let chain = |p: &Path| -> Vec<PathBuf> {
        let mut out = vec![p.to_path_buf()];
        let mut cur = p.to_path_buf();
        while let Ok(to) = fs::read_link(&cur) {
            cur = cur.parent().unwrap().join(to);
            out.push(cur.clone());
            assert!(out.len() < 16, "symlink loop at {}", p.display());
        }
        out
    };
    let mut binaries = Vec::new();
    for t in tools {
        let o = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .unwrap();
        let path = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        assert!(path.is_absolute(), "{t} is not installed");
        for p in chain(&path) {
            put(&p);
        }
        binaries.push(fs::canonicalize(&path).unwrap());
    }
    let xtables = Path::new("/usr/lib/x86_64-linux-gnu/xtables");
    let iptables = binaries.iter().any(|b| {
        b.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("xtables"))
    });
    if iptables && xtables.is_dir() {
        for e in fs::read_dir(xtables).unwrap().flatten() {
            put(&e.path());
            binaries.push(e.path());
        }
    }
    let o = Command::new("ldd").args(&binaries).output().unwrap();
    // With several files, ldd heads each one's list with "path:".
    for line in String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.ends_with(':'))
    {
        let lib = match line.split_once("=>") {
            Some((_, r)) => r.trim().split(' ').next().unwrap_or(""),
            None => line.trim().split(' ').next().unwrap_or(""),
        };
        if lib.starts_with('/') {
            for p in chain(Path::new(lib)) {
                put(&p);
            }
        }
    }
    for f in ["/etc/protocols", "/etc/services"] {
        if Path::new(f).exists() {
            put(Path::new(f));
        }
    }
    img
}

/// iptables-restore input for a pod namespace that drops UDP to `port` (a multicast group's).
pub fn drop_udp_port(port: u16) -> String {
    format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p udp -m udp --dport {port} -j DROP\nCOMMIT\n"
    )
}

/// A cluster on the pod network: the API server (an empty scenario plus these nodes) and the CLI
/// sit on the overlay too, in the namespace returned, so pods reach the API as in a cluster.
pub fn overlay_cluster(k: ProcessKubelet) -> (Arc<ProcessKubelet>, Netns, ApiServer) {
    let k = Arc::new(k);
    let (cp, ip) = k.overlay_host(1);
    let server = ApiServer::start_in_at(
        k.scenario(Scenario::empty()),
        &cp,
        format!("{ip}:6443").parse().unwrap(),
    );
    k.set_api(server.addr(), &server.ca.pem);
    (k, cp, server)
}
