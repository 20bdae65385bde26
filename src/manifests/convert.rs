//! `--convert`: rewrites an object of a removed or deprecated API version into the version the target
//! serves (apps/v1 workloads with a selector and the old defaults made explicit, Ingress v1's backend
//! shape and pathType, renames), or refuses with the reason; and proves each result decodes into its
//! typed `k8s-openapi` object without an unknown field.

use serde_json::{Map, Value, json};

use super::lifecycle::{self, Conversion, Minor};

/// What converting one object gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nothing to convert at the target.
    Unchanged,
    /// The converted object, and what changed besides apiVersion.
    Converted { value: Value, notes: Vec<String> },
    /// No mechanical conversion: why, and what to do.
    Refused(String),
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, p| v.get(p))
}

/// The object at `path`, made (as an empty object) where missing; None when something on the way is
/// not an object.
fn obj_at<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut cur = v;
    for p in path {
        let o = cur.as_object_mut()?;
        cur = o.entry(p.to_string()).or_insert_with(|| json!({}));
    }
    cur.as_object_mut()
}

/// Converts one object for `target`.
pub fn convert(body: &Value, target: Minor) -> Outcome {
    let (Some(gv), Some(kind)) = (
        body.get("apiVersion").and_then(Value::as_str),
        body.get("kind").and_then(Value::as_str),
    ) else {
        return Outcome::Unchanged;
    };
    let Some(entry) = lifecycle::find(gv, kind) else {
        return Outcome::Unchanged;
    };
    if target < entry.deprecated_in {
        return Outcome::Unchanged;
    }
    if let Some(refusal) = &entry.refusal {
        return Outcome::Refused(refusal.clone());
    }
    let Some(repl) = entry.replacement_at(kind, target) else {
        // The only replacement is itself gone at the target (extensions PSP → policy/v1beta1 PSP).
        let next = entry
            .replacements
            .first()
            .and_then(|r| lifecycle::find(&r.api_version, kind));
        return Outcome::Refused(match next.and_then(|n| n.refusal.clone()) {
            Some(r) => r,
            None => format!(
                "no replacement of {gv} {kind} is served by {target} (the table lists {})",
                entry
                    .replacements
                    .iter()
                    .map(|r| format!("{} from {}", r.api_version, r.since))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    };
    let mut v = body.clone();
    v["apiVersion"] = json!(repl.api_version);
    let mut notes = vec![format!("apiVersion {gv} → {}", repl.api_version)];
    let done = match entry.conversion {
        Conversion::Rename => Ok(()),
        Conversion::Workload => workload(&mut v, gv, kind, &mut notes),
        Conversion::Ingress => ingress(&mut v, &mut notes),
        Conversion::Pdb => pdb(&v),
        Conversion::HpaV2beta1 => hpa_v2beta1(&mut v, &mut notes),
        Conversion::Flowcontrol => flowcontrol(&mut v, kind, &mut notes),
        Conversion::None => Err("the table names no conversion".into()),
    };
    match done {
        Ok(()) => Outcome::Converted { value: v, notes },
        Err(why) => Outcome::Refused(why),
    }
}

/// apps/v1 Deployment, DaemonSet, StatefulSet, ReplicaSet from extensions/v1beta1, apps/v1beta1 and
/// apps/v1beta2: the selector the old versions defaulted from the template's labels, written out;
/// fields apps/v1 dropped, dropped; and the old defaults that apps/v1 changed, made explicit.
fn workload(v: &mut Value, gv: &str, kind: &str, notes: &mut Vec<String>) -> Result<(), String> {
    let labels = get(v, &["spec", "template", "metadata", "labels"])
        .and_then(Value::as_object)
        .filter(|l| !l.is_empty())
        .cloned();
    let spec = obj_at(v, &["spec"]).ok_or("spec is not an object")?;
    match spec.get("selector") {
        None | Some(Value::Null) => {
            let Some(labels) = labels else {
                return Err("neither spec.selector nor spec.template.metadata.labels is set: apps/v1 requires a selector that matches the template's labels; add labels to the template".into());
            };
            notes.push(format!(
                "spec.selector.matchLabels set from the template's labels ({}), as {gv} defaulted it",
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("?")))
                    .collect::<Vec<_>>()
                    .join(",")
            ));
            spec.insert("selector".into(), json!({ "matchLabels": labels }));
        }
        Some(sel) => {
            // apps/v1 rejects a selector that does not select the template (the old versions did too).
            if let (Some(ml), Some(labels)) =
                (sel.get("matchLabels").and_then(Value::as_object), &labels)
                && ml.iter().any(|(k, want)| labels.get(k) != Some(want))
            {
                return Err("spec.selector.matchLabels does not match spec.template.metadata.labels: apps/v1 rejects it; make them agree".into());
            }
        }
    }
    for dropped in ["rollbackTo", "templateGeneration"] {
        if spec.remove(dropped).is_some() {
            notes.push(format!(
                "spec.{dropped} removed: apps/v1 has no such field{}",
                if dropped == "rollbackTo" {
                    " (roll back with `kubectl rollout undo`)"
                } else {
                    ""
                }
            ));
        }
    }
    let mut explicit = |spec: &mut Map<String, Value>, field: &str, value: Value, why: &str| {
        if !spec.contains_key(field) {
            notes.push(format!("spec.{field}: {value} made explicit ({why})"));
            spec.insert(field.into(), value);
        }
    };
    match (gv, kind) {
        ("extensions/v1beta1", "Deployment") => {
            // extensions/v1beta1 defaulted both to MaxInt32 (keep every ReplicaSet, no deadline).
            explicit(
                spec,
                "revisionHistoryLimit",
                json!(i32::MAX),
                "extensions/v1beta1 kept every old ReplicaSet; apps/v1 keeps 10",
            );
            explicit(
                spec,
                "progressDeadlineSeconds",
                json!(i32::MAX),
                "extensions/v1beta1 had no progress deadline; apps/v1 fails a rollout after 600s",
            );
            rolling_update_1_1(spec, notes)?;
        }
        ("apps/v1beta1", "Deployment") => {
            explicit(
                spec,
                "revisionHistoryLimit",
                json!(2),
                "apps/v1beta1 kept 2 old ReplicaSets; apps/v1 keeps 10",
            );
        }
        ("extensions/v1beta1", "DaemonSet") | ("apps/v1beta1", "StatefulSet")
            if !spec.contains_key("updateStrategy") =>
        {
            notes.push(format!("spec.updateStrategy.type: OnDelete made explicit ({gv}'s default; apps/v1 rolls pods on every template change)"));
            spec.insert("updateStrategy".into(), json!({"type": "OnDelete"}));
        }
        _ => {}
    }
    Ok(())
}

/// extensions/v1beta1 Deployments roll with maxUnavailable 1 and maxSurge 1; apps/v1's defaults are
/// 25% each.
fn rolling_update_1_1(
    spec: &mut Map<String, Value>,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let strategy = spec
        .entry("strategy")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("spec.strategy is not an object")?;
    let kind = strategy
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("RollingUpdate");
    if kind != "RollingUpdate" {
        return Ok(());
    }
    strategy.insert("type".into(), json!("RollingUpdate"));
    let ru = strategy
        .entry("rollingUpdate")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("spec.strategy.rollingUpdate is not an object")?;
    for f in ["maxUnavailable", "maxSurge"] {
        if !ru.contains_key(f) {
            ru.insert(f.into(), json!(1));
            notes.push(format!(
                "spec.strategy.rollingUpdate.{f}: 1 made explicit (extensions/v1beta1's default; apps/v1's is 25%)"
            ));
        }
    }
    Ok(())
}

/// An old backend {serviceName, servicePort} or {resource} in the networking.k8s.io/v1 shape.
fn backend(old: &Value, at: &str) -> Result<Value, String> {
    if let Some(res) = old.get("resource") {
        return Ok(json!({ "resource": res }));
    }
    let name = old
        .get("serviceName")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{at} has no serviceName"))?;
    let port = match old.get("servicePort") {
        Some(Value::Number(n)) => json!({ "number": n }),
        Some(Value::String(s)) => match s.parse::<u16>() {
            Ok(n) => json!({ "number": n }),
            Err(_) => json!({ "name": s }),
        },
        _ => return Err(format!("{at} has no servicePort")),
    };
    Ok(json!({ "service": { "name": name, "port": port } }))
}

/// networking.k8s.io/v1 Ingress from extensions/v1beta1 or networking.k8s.io/v1beta1.
fn ingress(v: &mut Value, notes: &mut Vec<String>) -> Result<(), String> {
    let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if let Some(b) = spec.remove("backend") {
        spec.insert("defaultBackend".into(), backend(&b, "spec.backend")?);
        notes.push("spec.backend → spec.defaultBackend in the service {name, port} shape".into());
    }
    let mut paths_typed = 0;
    if let Some(rules) = spec.get_mut("rules").and_then(Value::as_array_mut) {
        for (i, rule) in rules.iter_mut().enumerate() {
            let Some(paths) = rule
                .get_mut("http")
                .and_then(|h| h.get_mut("paths"))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for (k, p) in paths.iter_mut().enumerate() {
                let at = format!("spec.rules[{i}].http.paths[{k}].backend");
                let p = p
                    .as_object_mut()
                    .ok_or_else(|| format!("{at}: not an object"))?;
                let b = p.get("backend").ok_or_else(|| format!("{at} is missing"))?;
                let nb = backend(b, &at)?;
                p.insert("backend".into(), nb);
                if !p.contains_key("pathType") {
                    p.insert("pathType".into(), json!("ImplementationSpecific"));
                    paths_typed += 1;
                }
            }
        }
        notes.push("rules[*].http.paths[*].backend in the service {name, port} shape".into());
    }
    if paths_typed > 0 {
        notes.push(format!(
            "pathType: ImplementationSpecific on {paths_typed} path(s), the old behaviour (the controller decides how to match)"
        ));
    }
    Ok(())
}

/// policy/v1 PodDisruptionBudget: a rename, except that an empty selector changes meaning.
fn pdb(v: &Value) -> Result<(), String> {
    if let Some(sel) = get(v, &["spec", "selector"]).and_then(Value::as_object) {
        let empty = |k: &str| {
            sel.get(k).is_none_or(|x| {
                x.is_null()
                    || x.as_object().is_some_and(|o| o.is_empty())
                    || x.as_array().is_some_and(|a| a.is_empty())
            })
        };
        if empty("matchLabels") && empty("matchExpressions") {
            return Err("spec.selector is empty: in policy/v1beta1 it selects no pods, in policy/v1 every pod of the namespace; write the selector you mean (or delete the budget if it protected nothing)".into());
        }
    }
    Ok(())
}

/// One v2beta1 metric target in the v2 shape: (value field, target type).
fn target_of(m: &Map<String, Value>) -> Option<Value> {
    for (old, ty, new) in [
        (
            "targetAverageUtilization",
            "Utilization",
            "averageUtilization",
        ),
        ("targetAverageValue", "AverageValue", "averageValue"),
        ("targetValue", "Value", "value"),
    ] {
        if let Some(x) = m.get(old) {
            return Some(json!({ "type": ty, new: x }));
        }
    }
    None
}

/// autoscaling/v2 HorizontalPodAutoscaler from autoscaling/v2beta1: each metric's target reshaped.
fn hpa_v2beta1(v: &mut Value, notes: &mut Vec<String>) -> Result<(), String> {
    let Some(metrics) = v
        .get_mut("spec")
        .and_then(|s| s.get_mut("metrics"))
        .and_then(Value::as_array_mut)
    else {
        return Ok(());
    };
    for (i, m) in metrics.iter_mut().enumerate() {
        let at = format!("spec.metrics[{i}]");
        let ty = m
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let key = match ty.as_str() {
            "Resource" => "resource",
            "Pods" => "pods",
            "Object" => "object",
            "External" => "external",
            "ContainerResource" => "containerResource",
            other => {
                return Err(format!(
                    "{at}: metric type {other:?} is not one autoscaling/v2 knows"
                ));
            }
        };
        let old = m
            .get(key)
            .and_then(Value::as_object)
            .ok_or_else(|| format!("{at}.{key} is missing"))?
            .clone();
        let target = target_of(&old).ok_or_else(|| format!("{at}.{key} has no target"))?;
        let new = match key {
            "resource" | "containerResource" => {
                let mut n = json!({ "name": old.get("name"), "target": target });
                if let Some(c) = old.get("container") {
                    n["container"] = c.clone();
                }
                n
            }
            "pods" => json!({
                "metric": metric_id(&old, "selector"),
                "target": target,
            }),
            "object" => {
                // v2beta1 Object: targetValue, or averageValue for a per-pod average.
                let target = match old.get("averageValue") {
                    Some(a) => json!({ "type": "AverageValue", "averageValue": a }),
                    None => target,
                };
                json!({
                    "describedObject": old.get("target"),
                    "metric": metric_id(&old, "selector"),
                    "target": target,
                })
            }
            _ => json!({
                "metric": metric_id(&old, "metricSelector"),
                "target": target,
            }),
        };
        m[key] = new;
    }
    notes.push("spec.metrics[*] targets moved into target {type, value|averageValue|averageUtilization}, metricName into metric.name".into());
    Ok(())
}

/// v2's MetricIdentifier from a v2beta1 metric: {name: metricName, selector}.
fn metric_id(old: &Map<String, Value>, selector: &str) -> Value {
    let mut id = json!({ "name": old.get("metricName") });
    if let Some(s) = old.get(selector) {
        id["selector"] = s.clone();
    }
    id
}

/// flowcontrol v1beta3/v1: assuredConcurrencyShares is nominalConcurrencyShares; v1 keeps an
/// explicit 0 where v1beta3 turned it into 30.
fn flowcontrol(v: &mut Value, kind: &str, notes: &mut Vec<String>) -> Result<(), String> {
    if kind != "PriorityLevelConfiguration" {
        return Ok(());
    }
    let to_v1 = v["apiVersion"] == "flowcontrol.apiserver.k8s.io/v1";
    let Some(limited) = v
        .get_mut("spec")
        .and_then(|s| s.get_mut("limited"))
        .and_then(Value::as_object_mut)
    else {
        return Ok(());
    };
    if let Some(a) = limited.remove("assuredConcurrencyShares") {
        notes.push("spec.limited.assuredConcurrencyShares → nominalConcurrencyShares".into());
        limited.insert("nominalConcurrencyShares".into(), a);
    }
    if to_v1
        && limited
            .get("nominalConcurrencyShares")
            .and_then(Value::as_i64)
            == Some(0)
    {
        limited.insert("nominalConcurrencyShares".into(), json!(30));
        notes.push("spec.limited.nominalConcurrencyShares 0 → 30, the value the old version used (v1 would keep 0)".into());
    }
    Ok(())
}

/// Decodes `v` into `T` and back; every field of `v` must survive (k8s-openapi drops unknown fields).
fn roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    match first_lost(v, &back, String::new()) {
        None => Ok(()),
        Some(path) => Err(format!("unknown field {path}")),
    }
}

/// The first path of `orig` that `back` does not hold with the same value (nulls are absent; a
/// number and its decimal string are the same quantity).
fn first_lost(orig: &Value, back: &Value, path: String) -> Option<String> {
    match (orig, back) {
        (Value::Object(a), Value::Object(b)) => a.iter().find_map(|(k, x)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match (x, b.get(k)) {
                (Value::Null, _) => None,
                (_, None) => Some(p),
                (x, Some(y)) => first_lost(x, y, p),
            }
        }),
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some(path);
            }
            a.iter()
                .zip(b)
                .enumerate()
                .find_map(|(i, (x, y))| first_lost(x, y, format!("{path}[{i}]")))
        }
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n))
            if n.to_string() == *s =>
        {
            None
        }
        (a, b) if a == b => None,
        _ => Some(path),
    }
}

/// Proves a converted object: it decodes into its typed k8s-openapi object and back with every field
/// kept. Err names the kind without a typed model, the decode error, or the first unknown field.
pub fn prove(v: &Value) -> Result<(), String> {
    use k8s_openapi::api as a;
    let gv = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    match (gv, kind) {
        ("apps/v1", "Deployment") => roundtrip::<a::apps::v1::Deployment>(v),
        ("apps/v1", "DaemonSet") => roundtrip::<a::apps::v1::DaemonSet>(v),
        ("apps/v1", "StatefulSet") => roundtrip::<a::apps::v1::StatefulSet>(v),
        ("apps/v1", "ReplicaSet") => roundtrip::<a::apps::v1::ReplicaSet>(v),
        ("networking.k8s.io/v1", "Ingress") => roundtrip::<a::networking::v1::Ingress>(v),
        ("networking.k8s.io/v1", "IngressClass") => roundtrip::<a::networking::v1::IngressClass>(v),
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            roundtrip::<a::networking::v1::NetworkPolicy>(v)
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => roundtrip::<a::rbac::v1::ClusterRole>(v),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            roundtrip::<a::rbac::v1::ClusterRoleBinding>(v)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => roundtrip::<a::rbac::v1::Role>(v),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => roundtrip::<a::rbac::v1::RoleBinding>(v),
        ("batch/v1", "CronJob") => roundtrip::<a::batch::v1::CronJob>(v),
        ("policy/v1", "PodDisruptionBudget") => roundtrip::<a::policy::v1::PodDisruptionBudget>(v),
        ("autoscaling/v2", "HorizontalPodAutoscaler") => {
            roundtrip::<a::autoscaling::v2::HorizontalPodAutoscaler>(v)
        }
        ("scheduling.k8s.io/v1", "PriorityClass") => {
            roundtrip::<a::scheduling::v1::PriorityClass>(v)
        }
        ("coordination.k8s.io/v1", "Lease") => roundtrip::<a::coordination::v1::Lease>(v),
        ("storage.k8s.io/v1", "CSIDriver") => roundtrip::<a::storage::v1::CSIDriver>(v),
        ("storage.k8s.io/v1", "CSINode") => roundtrip::<a::storage::v1::CSINode>(v),
        ("storage.k8s.io/v1", "StorageClass") => roundtrip::<a::storage::v1::StorageClass>(v),
        ("storage.k8s.io/v1", "VolumeAttachment") => {
            roundtrip::<a::storage::v1::VolumeAttachment>(v)
        }
        ("storage.k8s.io/v1", "CSIStorageCapacity") => {
            roundtrip::<a::storage::v1::CSIStorageCapacity>(v)
        }
        ("node.k8s.io/v1", "RuntimeClass") => roundtrip::<a::node::v1::RuntimeClass>(v),
        ("flowcontrol.apiserver.k8s.io/v1", "FlowSchema") => {
            roundtrip::<a::flowcontrol::v1::FlowSchema>(v)
        }
        ("flowcontrol.apiserver.k8s.io/v1", "PriorityLevelConfiguration") => {
            roundtrip::<a::flowcontrol::v1::PriorityLevelConfiguration>(v)
        }
        ("authentication.k8s.io/v1", "TokenReview") => {
            roundtrip::<a::authentication::v1::TokenReview>(v)
        }
        ("apiregistration.k8s.io/v1", "APIService") => {
            roundtrip::<k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService>(v)
        }
        _ => Err(format!(
            "{gv} {kind} has no typed model here to prove the conversion against"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::input::documents;

    fn conv(yaml: &str, target: &str) -> Outcome {
        let d = documents(yaml);
        convert(d[0].body.as_ref().unwrap(), Minor::parse(target).unwrap())
    }

    fn converted(yaml: &str, target: &str) -> (Value, Vec<String>) {
        match conv(yaml, target) {
            Outcome::Converted { value, notes } => {
                prove(&value).unwrap_or_else(|e| panic!("{e}: {value:#}"));
                (value, notes)
            }
            o => panic!("{o:?}"),
        }
    }

    const GUIDE_DEPLOY: &str = "apiVersion: extensions/v1beta1
kind: Deployment
metadata:
    name: stack
spec:
    replicas: 6
    template:
        metadata:
            labels:
                app: nodes
        spec:
            containers:
            - name: stack
              image: srp3/stack:v5
              ports:
                  - containerPort: 9618
";

    #[test]
    fn the_guides_deployment_gets_its_selector_and_old_defaults() {
        let (v, notes) = converted(GUIDE_DEPLOY, "1.30");
        assert_eq!(v["apiVersion"], "apps/v1");
        assert_eq!(
            v["spec"]["selector"],
            json!({"matchLabels": {"app": "nodes"}})
        );
        assert_eq!(v["spec"]["revisionHistoryLimit"], i32::MAX);
        assert_eq!(v["spec"]["progressDeadlineSeconds"], i32::MAX);
        assert_eq!(
            v["spec"]["strategy"]["rollingUpdate"],
            json!({"maxUnavailable": 1, "maxSurge": 1})
        );
        assert!(notes.iter().any(|n| n.contains("matchLabels")), "{notes:?}");
    }

    #[test]
    fn workloads_without_labels_or_with_a_mismatched_selector_are_refused() {
        let no_labels = "apiVersion: apps/v1beta2\nkind: ReplicaSet\nspec:\n  template:\n    spec: {containers: []}\n";
        assert!(matches!(conv(no_labels, "1.20"), Outcome::Refused(r) if r.contains("labels")));
        let bad = "apiVersion: apps/v1beta2\nkind: Deployment\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: c}}\n";
        assert!(matches!(conv(bad, "1.20"), Outcome::Refused(_)));
    }

    #[test]
    fn daemonset_and_statefulset_keep_on_delete() {
        let ds = "apiVersion: extensions/v1beta1\nkind: DaemonSet\nmetadata: {name: weave-net}\nspec:\n  templateGeneration: 3\n  template:\n    metadata: {labels: {name: weave-net}}\n    spec: {containers: [{name: weave, image: weaveworks/weave-kube:2.5.0}]}\n";
        let (v, _) = converted(ds, "1.16");
        assert_eq!(v["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
        assert!(v["spec"].get("templateGeneration").is_none());
        let sts = "apiVersion: apps/v1beta1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  serviceName: db\n  template:\n    metadata: {labels: {app: db}}\n    spec: {containers: [{name: db, image: postgres}]}\n";
        let (v, _) = converted(sts, "1.16");
        assert_eq!(v["spec"]["updateStrategy"]["type"], "OnDelete");
        // apps/v1beta2 already rolled: nothing is added.
        let (v, _) = converted(&sts.replace("v1beta1", "v1beta2"), "1.16");
        assert!(v["spec"].get("updateStrategy").is_none());
    }

    #[test]
    fn ingress_gets_the_v1_backend_shape_and_path_type() {
        let ing = "apiVersion: extensions/v1beta1
kind: Ingress
metadata: {name: web}
spec:
  backend: {serviceName: default-http-backend, servicePort: 80}
  rules:
  - host: example.com
    http:
      paths:
      - path: /
        backend: {serviceName: web, servicePort: http}
      - path: /api
        pathType: Prefix
        backend: {serviceName: api, servicePort: '8080'}
";
        let (v, _) = converted(ing, "1.22");
        assert_eq!(v["apiVersion"], "networking.k8s.io/v1");
        assert_eq!(
            v["spec"]["defaultBackend"],
            json!({"service": {"name": "default-http-backend", "port": {"number": 80}}})
        );
        let paths = &v["spec"]["rules"][0]["http"]["paths"];
        assert_eq!(
            paths[0]["backend"],
            json!({"service": {"name": "web", "port": {"name": "http"}}})
        );
        assert_eq!(paths[0]["pathType"], "ImplementationSpecific");
        assert_eq!(paths[1]["pathType"], "Prefix");
        assert_eq!(
            paths[1]["backend"]["service"]["port"],
            json!({"number": 8080})
        );
    }

    #[test]
    fn renames_pdb_hpa_and_refusals() {
        let (v, _) = converted(
            "apiVersion: rbac.authorization.k8s.io/v1beta1\nkind: ClusterRoleBinding\nmetadata: {name: admin-user}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects:\n- {kind: ServiceAccount, name: admin-user, namespace: kube-system}\n",
            "1.22",
        );
        assert_eq!(v["apiVersion"], "rbac.authorization.k8s.io/v1");
        converted(
            "apiVersion: batch/v1beta1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  schedule: '*/5 * * * *'\n  jobTemplate:\n    spec:\n      template:\n        spec: {restartPolicy: OnFailure, containers: [{name: c, image: busybox}]}\n",
            "1.25",
        );
        let pdb = "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: p}\nspec:\n  minAvailable: 1\n  selector: {}\n";
        assert!(matches!(conv(pdb, "1.25"), Outcome::Refused(r) if r.contains("every pod")));
        converted(
            &pdb.replace("selector: {}", "selector: {matchLabels: {app: x}}"),
            "1.25",
        );
        let hpa = "apiVersion: autoscaling/v2beta1
kind: HorizontalPodAutoscaler
metadata: {name: h}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: cpu, targetAverageUtilization: 70}
  - type: Pods
    pods: {metricName: rps, targetAverageValue: 10}
  - type: External
    external: {metricName: queue, metricSelector: {matchLabels: {q: a}}, targetValue: 30}
";
        let (v, _) = converted(hpa, "1.25");
        assert_eq!(
            v["spec"]["metrics"][0]["resource"],
            json!({"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}})
        );
        assert_eq!(v["spec"]["metrics"][1]["pods"]["metric"]["name"], "rps");
        assert_eq!(
            v["spec"]["metrics"][2]["external"]["metric"]["selector"]["matchLabels"]["q"],
            "a"
        );
        let psp = "apiVersion: policy/v1beta1\nkind: PodSecurityPolicy\nmetadata: {name: p}\n";
        assert!(
            matches!(conv(psp, "1.25"), Outcome::Refused(r) if r.contains("Pod Security Admission"))
        );
        let old_psp = psp.replace("policy/v1beta1", "extensions/v1beta1");
        assert!(
            matches!(conv(&old_psp, "1.30"), Outcome::Refused(r) if r.contains("Pod Security Admission"))
        );
        assert_eq!(
            conv("apiVersion: apps/v1\nkind: Deployment\n", "1.30"),
            Outcome::Unchanged
        );
    }

    #[test]
    fn flowcontrol_renames_shares_and_keeps_zero_meaning_thirty() {
        let plc = "apiVersion: flowcontrol.apiserver.k8s.io/v1beta2\nkind: PriorityLevelConfiguration\nmetadata: {name: p}\nspec:\n  type: Limited\n  limited:\n    assuredConcurrencyShares: 0\n    limitResponse: {type: Reject}\n";
        let (v, _) = converted(plc, "1.29");
        assert_eq!(v["apiVersion"], "flowcontrol.apiserver.k8s.io/v1");
        assert_eq!(
            v["spec"]["limited"],
            json!({"nominalConcurrencyShares": 30, "limitResponse": {"type": "Reject"}})
        );
        // Before 1.29 only v1beta3 is served: it has no typed model here to prove it against.
        match conv(plc, "1.27") {
            Outcome::Converted { value, .. } => {
                assert_eq!(value["apiVersion"], "flowcontrol.apiserver.k8s.io/v1beta3");
                assert!(prove(&value).unwrap_err().contains("no typed model"));
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn an_unknown_field_fails_the_proof() {
        let v = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a", "creationTimestamp": null},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "rollbackTo": {"revision": 1},
                     "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": 1}}}]}}}});
        assert_eq!(prove(&v).unwrap_err(), "unknown field spec.rollbackTo");
        let mut ok = v.clone();
        ok["spec"].as_object_mut().unwrap().remove("rollbackTo");
        prove(&ok).unwrap();
    }
}
