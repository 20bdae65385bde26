//! Server-side dry-run creates for the test API server (`manifests --convert` proves its output with
//! them): a [`Workloads`](super::apiserver::Workloads) handler that serves discovery for the kinds a
//! conversion writes and answers `POST …?dryRun=All` as kube-apiserver does — strict field decoding
//! into the typed object (`fieldValidation=Strict`: an unknown field is a 400), and the validation
//! rules a converted object can break (apps/v1 selector required and matching the template, Ingress v1
//! pathType and backend shape, CronJob restartPolicy, roleRef, names). Nothing is stored.
//!
//! ```ignore
//! let dry = Arc::new(DryRun::default());
//! let server = ApiServer::start(Scenario::healthy().workloads(dry.clone()));
//! // ... dry.accepted() lists "apps/v1 Deployment ns/name" for every accepted create
//! ```
#![allow(dead_code)]

use std::sync::Mutex;

use serde_json::{Value, json};

use super::apiserver::{Request, Workloads, status};

/// (group/version, plural, kind, namespaced) of every kind a conversion writes, plus the base
/// server's own (its discovery is answered here, whole, while this handler is installed).
pub const KINDS: &[(&str, &str, &str, bool)] = &[
    ("apps/v1", "deployments", "Deployment", true),
    ("apps/v1", "daemonsets", "DaemonSet", true),
    ("apps/v1", "statefulsets", "StatefulSet", true),
    ("apps/v1", "replicasets", "ReplicaSet", true),
    ("networking.k8s.io/v1", "ingresses", "Ingress", true),
    (
        "networking.k8s.io/v1",
        "ingressclasses",
        "IngressClass",
        false,
    ),
    (
        "networking.k8s.io/v1",
        "networkpolicies",
        "NetworkPolicy",
        true,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "clusterroles",
        "ClusterRole",
        false,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
    ),
    ("rbac.authorization.k8s.io/v1", "roles", "Role", true),
    (
        "rbac.authorization.k8s.io/v1",
        "rolebindings",
        "RoleBinding",
        true,
    ),
    ("batch/v1", "cronjobs", "CronJob", true),
    // Still served by the 1.24 clusters the tests emulate (discovery only: not created here).
    ("batch/v1beta1", "cronjobs", "CronJob", true),
    (
        "policy/v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
    ),
    (
        "autoscaling/v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true,
    ),
    (
        "scheduling.k8s.io/v1",
        "priorityclasses",
        "PriorityClass",
        false,
    ),
];

/// The dry-run handler; remembers what it accepted and rejected.
#[derive(Default)]
pub struct DryRun {
    log: Mutex<Vec<String>>,
}

impl DryRun {
    /// Every create answered: `201 apps/v1 Deployment ns/name` or `4xx … reason`.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn ok(code: u16, v: &Value) -> Option<(u16, Vec<u8>)> {
    Some((code, serde_json::to_vec(v).unwrap()))
}

fn invalid(kind: &str, name: &str, causes: &[(String, String)]) -> (u16, Vec<u8>) {
    let text: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
    let msg = format!("{kind} \"{name}\" is invalid: {}", text.join(", "));
    let details = json!({
        "name": name, "kind": kind,
        "causes": causes.iter().map(|(f, m)| json!({"reason": "FieldValueInvalid", "message": m, "field": f})).collect::<Vec<_>>(),
    });
    (422, status(422, "Invalid", &msg, Some(details)))
}

/// Decodes into the typed object and back: the first field of `v` the type does not know, as the
/// API server's strict decoding names it.
fn unknown_field<T: serde::de::DeserializeOwned + serde::Serialize>(
    v: &Value,
) -> Result<(), String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).unwrap();
    fn lost(a: &Value, b: &Value, path: &str) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => x.iter().find_map(|(k, v)| {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (v, y.get(k)) {
                    (Value::Null, _) => None,
                    (_, None) => Some(p),
                    (v, Some(w)) => lost(v, w, &p),
                }
            }),
            (Value::Array(x), Value::Array(y)) => x
                .iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (v, w))| lost(v, w, &format!("{path}[{i}]"))),
            _ => None,
        }
    }
    match lost(v, &back, "") {
        Some(f) => Err(format!("strict decoding error: unknown field \"{f}\"")),
        None => Ok(()),
    }
}

/// Strict decoding of `v` as kube-apiserver's `fieldValidation=Strict` does it.
pub fn strict(gv: &str, kind: &str, v: &Value) -> Result<(), String> {
    use k8s_openapi::api as a;
    match (gv, kind) {
        ("apps/v1", "Deployment") => unknown_field::<a::apps::v1::Deployment>(v),
        ("apps/v1", "DaemonSet") => unknown_field::<a::apps::v1::DaemonSet>(v),
        ("apps/v1", "StatefulSet") => unknown_field::<a::apps::v1::StatefulSet>(v),
        ("apps/v1", "ReplicaSet") => unknown_field::<a::apps::v1::ReplicaSet>(v),
        ("networking.k8s.io/v1", "Ingress") => unknown_field::<a::networking::v1::Ingress>(v),
        ("networking.k8s.io/v1", "IngressClass") => {
            unknown_field::<a::networking::v1::IngressClass>(v)
        }
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            unknown_field::<a::networking::v1::NetworkPolicy>(v)
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
            unknown_field::<a::rbac::v1::ClusterRole>(v)
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            unknown_field::<a::rbac::v1::ClusterRoleBinding>(v)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => unknown_field::<a::rbac::v1::Role>(v),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            unknown_field::<a::rbac::v1::RoleBinding>(v)
        }
        ("batch/v1", "CronJob") => unknown_field::<a::batch::v1::CronJob>(v),
        ("policy/v1", "PodDisruptionBudget") => {
            unknown_field::<a::policy::v1::PodDisruptionBudget>(v)
        }
        ("autoscaling/v2", "HorizontalPodAutoscaler") => {
            unknown_field::<a::autoscaling::v2::HorizontalPodAutoscaler>(v)
        }
        ("scheduling.k8s.io/v1", "PriorityClass") => {
            unknown_field::<a::scheduling::v1::PriorityClass>(v)
        }
        _ => Err(format!("no kind {kind} in {gv}")),
    }
}

/// The validation rules kube-apiserver applies that a converted object could break.
fn validate(gv: &str, kind: &str, v: &Value) -> Vec<(String, String)> {
    let mut causes = Vec::new();
    let mut bad = |f: &str, m: &str| causes.push((f.to_string(), m.to_string()));
    let spec = &v["spec"];
    if gv == "apps/v1" {
        match spec.get("selector") {
            None | Some(Value::Null) => bad("spec.selector", "Required value"),
            Some(sel) => {
                let ml = sel["matchLabels"].as_object();
                let me = sel["matchExpressions"].as_array();
                if ml.is_none_or(|m| m.is_empty()) && me.is_none_or(|e| e.is_empty()) {
                    bad(
                        "spec.selector",
                        "Invalid value: empty selector is invalid for deployment",
                    );
                }
                let labels = spec["template"]["metadata"]["labels"].as_object();
                if let Some(ml) = ml
                    && ml
                        .iter()
                        .any(|(k, want)| labels.and_then(|l| l.get(k)) != Some(want))
                {
                    bad(
                        "spec.template.metadata.labels",
                        "Invalid value: `selector` does not match template `labels`",
                    );
                }
            }
        }
        let containers = spec["template"]["spec"]["containers"].as_array();
        if containers.is_none_or(|c| c.is_empty()) {
            bad("spec.template.spec.containers", "Required value");
        }
        for (i, c) in containers.into_iter().flatten().enumerate() {
            if c["image"].as_str().is_none_or(str::is_empty) {
                bad(
                    &format!("spec.template.spec.containers[{i}].image"),
                    "Required value",
                );
            }
        }
        if kind == "Deployment"
            && let (Some(p), Some(m)) = (
                spec["progressDeadlineSeconds"].as_i64(),
                spec["minReadySeconds"].as_i64(),
            )
            && p <= m
        {
            bad(
                "spec.progressDeadlineSeconds",
                "Invalid value: must be greater than minReadySeconds",
            );
        }
    }
    if gv == "networking.k8s.io/v1" && kind == "Ingress" {
        let backend_ok = |b: &Value, at: &str, bad: &mut dyn FnMut(&str, &str)| {
            if b.get("resource").is_some() {
                return;
            }
            let svc = &b["service"];
            if svc["name"].as_str().is_none_or(str::is_empty) {
                bad(&format!("{at}.service.name"), "Required value");
            }
            let port = &svc["port"];
            if port.get("number").is_some() == port.get("name").is_some() {
                bad(
                    &format!("{at}.service.port"),
                    "Invalid value: must specify one of number or name",
                );
            }
        };
        if let Some(d) = spec.get("defaultBackend") {
            backend_ok(d, "spec.defaultBackend", &mut bad);
        }
        for (i, r) in spec["rules"].as_array().into_iter().flatten().enumerate() {
            for (k, p) in r["http"]["paths"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let at = format!("spec.rules[{i}].http.paths[{k}]");
                match p["pathType"].as_str() {
                    Some("Exact" | "Prefix" | "ImplementationSpecific") => {}
                    Some(_) => bad(&format!("{at}.pathType"), "Unsupported value"),
                    None => bad(
                        &format!("{at}.pathType"),
                        "Required value: pathType must be specified",
                    ),
                }
                backend_ok(&p["backend"], &format!("{at}.backend"), &mut bad);
            }
        }
    }
    if gv == "batch/v1" && kind == "CronJob" {
        if spec["schedule"].as_str().is_none_or(str::is_empty) {
            bad("spec.schedule", "Required value");
        }
        let rp = spec["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"].as_str();
        if !matches!(rp, Some("OnFailure" | "Never")) {
            bad(
                "spec.jobTemplate.spec.template.spec.restartPolicy",
                "Required value: valid values: \"OnFailure\", \"Never\"",
            );
        }
    }
    if kind.ends_with("RoleBinding") && v["roleRef"]["name"].as_str().is_none_or(str::is_empty) {
        bad("roleRef.name", "Required value");
    }
    if gv == "autoscaling/v2" {
        if spec["scaleTargetRef"]["name"].as_str().is_none() {
            bad("spec.scaleTargetRef.name", "Required value");
        }
        if spec["maxReplicas"].as_i64().is_none_or(|m| m < 1) {
            bad(
                "spec.maxReplicas",
                "Invalid value: must be greater than or equal to 1",
            );
        }
    }
    causes
}

impl DryRun {
    fn create(&self, gv: &str, ns: Option<&str>, plural: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let Some(&(_, _, kind, namespaced)) = KINDS.iter().find(|k| k.0 == gv && k.1 == plural)
        else {
            return (
                404,
                status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                    None,
                ),
            );
        };
        let bad_request = |m: String| (400, status(400, "BadRequest", &m, None));
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return bad_request(format!("couldn't get version/kind; json parse error: {e}"));
            }
        };
        if v["apiVersion"] != gv || v["kind"] != kind {
            return bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({gv})",
                v["apiVersion"].as_str().unwrap_or("")
            ));
        }
        if namespaced != ns.is_some() {
            return (
                404,
                status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                    None,
                ),
            );
        }
        if let (Some(url_ns), Some(obj_ns)) = (ns, v["metadata"]["namespace"].as_str())
            && url_ns != obj_ns
        {
            return bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
                    .to_string(),
            );
        }
        if let Err(e) = strict(gv, kind, &v) {
            return bad_request(e);
        }
        let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
        let mut causes = validate(gv, kind, &v);
        if name.is_empty() {
            causes.push((
                "metadata.name".into(),
                "Required value: name or generateName is required".into(),
            ));
        }
        if !causes.is_empty() {
            return invalid(kind, &name, &causes);
        }
        let mut out = v.clone();
        out["metadata"]["uid"] = json!(format!("dry-run-{name}"));
        if let Some(ns) = ns {
            out["metadata"]["namespace"] = json!(ns);
        }
        (201, serde_json::to_vec(&out).unwrap())
    }
}

impl Workloads for DryRun {
    fn handle(&self, req: &Request) -> Option<(u16, Vec<u8>)> {
        if req.method == "GET" && req.path == "/apis" {
            // One entry per group, its versions in order (the first preferred).
            let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
            for k in KINDS {
                let (g, v) = k.0.split_once('/').unwrap();
                match groups.iter_mut().find(|(n, _)| *n == g) {
                    Some((_, vs)) if !vs.contains(&v) => vs.push(v),
                    Some(_) => {}
                    None => groups.push((g, vec![v])),
                }
            }
            let list: Vec<Value> = groups
                .iter()
                .map(|(g, vs)| {
                    let versions: Vec<Value> = vs
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                        .collect();
                    json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
                })
                .collect();
            return ok(
                200,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list}),
            );
        }
        let rest = req.path.strip_prefix("/apis/")?;
        let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        if segs.len() < 2 {
            return None;
        }
        let gv = format!("{}/{}", segs[0], segs[1]);
        if !KINDS.iter().any(|k| k.0 == gv) {
            return None;
        }
        match (req.method, &segs[2..]) {
            ("GET", []) => {
                let resources: Vec<Value> = KINDS
                    .iter()
                    .filter(|k| k.0 == gv)
                    .map(|k| json!({"name": k.1, "singularName": k.2.to_lowercase(), "namespaced": k.3, "kind": k.2, "verbs": ["create", "get", "list"]}))
                    .collect();
                ok(
                    200,
                    &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
                )
            }
            ("POST", rest) => {
                if req.query.get("dryRun").is_none_or(|d| d != "All") {
                    return Some((
                        405,
                        status(
                            405,
                            "MethodNotAllowed",
                            "the test server only dry-runs creates",
                            None,
                        ),
                    ));
                }
                let (ns, plural) = match rest {
                    ["namespaces", ns, plural] => (Some(*ns), *plural),
                    [plural] => (None, *plural),
                    _ => return None,
                };
                let (code, body) = self.create(&gv, ns, plural, req.body);
                let what: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
                let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                self.log.lock().unwrap().push(format!(
                    "{code} {gv} {} {}/{}{}",
                    what["kind"].as_str().unwrap_or("?"),
                    ns.unwrap_or("-"),
                    what["metadata"]["name"].as_str().unwrap_or("?"),
                    msg["message"]
                        .as_str()
                        .map(|m| format!(" {m}"))
                        .unwrap_or_default()
                ));
                Some((code, body))
            }
            _ => None,
        }
    }
}
