//! The verdict on one manifest object: is its apiVersion served by the target release (the table of
//! API lifecycles) and by the cluster (its discovery)? Pure: a document and what is known → a result.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{
    input::Doc,
    lifecycle::{self, Minor},
};
use crate::{
    core::check::Status,
    report::{
        ApiReplacement, CheckResult, MAX_EVIDENCE, MAX_LINE, Subject, bounded_evidence,
        bounded_line,
    },
};

/// The id of every `manifests` result.
pub const ID: &str = "manifests.api-version";
/// Its title.
pub const TITLE: &str = "API version served by the target release";

/// What the cluster serves, from its discovery.
pub trait Served {
    /// Whether the cluster serves `kind` in `api_version`: Ok(false) when it does not; Err when
    /// discovery could not tell (the reason).
    fn serves(&mut self, api_version: &str, kind: &str) -> Result<bool, String>;
}

/// What a verdict is judged against.
pub struct Judge<'a> {
    pub target: Minor,
    /// Where the target came from, for messages (`--target-version`, `the cluster`, `the table`).
    pub target_from: &'a str,
    pub cluster: Option<&'a mut dyn Served>,
}

/// The identity of an object, from its body.
fn subject(file: &str, doc: &Doc, body: Option<&Value>) -> Subject {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(String::from);
    let meta = body.and_then(|b| b.get("metadata"));
    Subject {
        file: file.to_string(),
        line: doc.line,
        document: doc.document.clone(),
        kind: s(body.and_then(|b| b.get("kind"))),
        name: s(meta.and_then(|m| m.get("name")))
            .or_else(|| s(meta.and_then(|m| m.get("generateName")))),
        namespace: s(meta.and_then(|m| m.get("namespace"))),
        api_version: s(body.and_then(|b| b.get("apiVersion"))),
    }
}

/// A message cut to [`MAX_LINE`] only when it is longer: [`bounded_line`] masks first, which the
/// report does anyway for every line ([`crate::report::Report::new`]), and 10,000 objects would pay
/// for it twice.
pub(super) fn line(s: String) -> String {
    if s.len() <= MAX_LINE {
        s
    } else {
        bounded_line(&s)
    }
}

/// Evidence bounded as [`bounded_evidence`] does, only when it needs to be (see [`line`]).
pub(super) fn evidence(ev: Vec<String>) -> Vec<String> {
    if ev.len() <= MAX_EVIDENCE && ev.iter().all(|e| e.len() <= MAX_LINE) {
        ev
    } else {
        bounded_evidence(ev)
    }
}

fn result(
    status: Status,
    message: String,
    subject: Subject,
    evidence: Vec<String>,
    remediation: Option<String>,
) -> CheckResult {
    CheckResult {
        id: ID.into(),
        title: TITLE.into(),
        status,
        message: line(message),
        evidence,
        remediation,
        fix_available: false,
        duration_ms: 0,
        subject: Some(subject),
        replacement: None,
    }
}

/// `Deployment web` / `Deployment` when it has no name.
fn what(s: &Subject) -> String {
    let kind = s.kind.as_deref().unwrap_or("object");
    match &s.name {
        Some(n) => format!("{kind} {n}"),
        None => kind.to_string(),
    }
}

/// The verdict on one document of `file`.
pub fn judge(file: &str, doc: &Doc, j: &mut Judge<'_>) -> CheckResult {
    let body = match &doc.body {
        Err(e) => {
            return result(
                Status::Error,
                format!("not valid YAML/JSON: {e}"),
                subject(file, doc, None),
                vec![],
                None,
            );
        }
        Ok(b) => b,
    };
    let sub = subject(file, doc, Some(body));
    if !body.is_object() {
        return result(
            Status::Error,
            format!(
                "line {}: the document is not an object (a mapping)",
                doc.line
            ),
            sub,
            vec![],
            None,
        );
    }
    let (Some(api_version), Some(kind)) = (sub.api_version.clone(), sub.kind.clone()) else {
        let missing: Vec<&str> = [
            ("apiVersion", sub.api_version.is_none()),
            ("kind", sub.kind.is_none()),
        ]
        .iter()
        .filter(|(_, m)| *m)
        .map(|(f, _)| *f)
        .collect();
        return result(
            Status::Error,
            format!(
                "line {}: the document has no {} (a string), so it is no Kubernetes object",
                doc.line,
                missing.join(" and ")
            ),
            sub,
            vec![],
            None,
        );
    };
    // Where the object is (file, line, apiVersion, kind) is the result's subject, which every format
    // shows; evidence holds only what the subject does not: the table's source.
    let target = j.target;
    if let Some(e) = lifecycle::find(&api_version, &kind) {
        let repl = e.replacement_for(&kind, target);
        let replacement = ApiReplacement {
            api_version: repl.map(|r| r.api_version.clone()),
            deprecated_in: e.deprecated_in.to_string(),
            removed_in: e.removed_in.to_string(),
            changes: e.changes_for(&kind),
        };
        let use_ = match repl {
            Some(r) => format!("use {} (served since {})", r.api_version, r.since),
            None => "nothing replaces it".into(),
        };
        let remediation = match (repl, e.refusal.as_deref()) {
            (Some(r), None) => Some(format!(
                "change apiVersion to {}{}; `k8sdoctor manifests --convert DIR` writes it converted",
                r.api_version,
                if replacement.changes.is_empty() {
                    String::new()
                } else {
                    format!(" and: {}", replacement.changes.join("; "))
                }
            )),
            (_, Some(refusal)) => Some(refusal.to_string()),
            (None, None) => None,
        };
        let evidence = vec![format!("source: {}", e.source)];
        let (status, message) = if target >= e.removed_in {
            (
                Status::Fail,
                format!(
                    "{}: {api_version} {kind} is not served since Kubernetes {} (target {target}, {}): {use_}",
                    what(&sub),
                    e.removed_in,
                    j.target_from
                ),
            )
        } else if target >= e.deprecated_in {
            (
                Status::Warn,
                format!(
                    "{}: {api_version} {kind} is deprecated since {} and no longer served from {} (target {target}): {use_}",
                    what(&sub),
                    e.deprecated_in,
                    e.removed_in
                ),
            )
        } else {
            (
                Status::Pass,
                format!(
                    "{}: {api_version} {kind} is served in {target} (deprecated from {}, removed in {})",
                    what(&sub),
                    e.deprecated_in,
                    e.removed_in
                ),
            )
        };
        let remediation = remediation.filter(|_| status != Status::Pass);
        let mut r = result(status, message, sub, evidence, remediation);
        r.replacement = Some(replacement);
        if status == Status::Fail {
            return r;
        }
        return served_by_cluster(r, &api_version, &kind, j);
    }
    let r = result(
        Status::Pass,
        format!(
            "{}: {api_version} {kind} is not deprecated or removed as of {target}",
            what(&sub)
        ),
        sub,
        vec![],
        None,
    );
    served_by_cluster(r, &api_version, &kind, j)
}

/// Turns a verdict into `fail` when the cluster's discovery does not list the kind.
fn served_by_cluster(
    mut r: CheckResult,
    api_version: &str,
    kind: &str,
    j: &mut Judge<'_>,
) -> CheckResult {
    let Some(cluster) = j.cluster.as_deref_mut() else {
        return r;
    };
    match cluster.serves(api_version, kind) {
        Ok(true) => r,
        Ok(false) => {
            r.status = Status::Fail;
            r.message = line(format!(
                "{}: {api_version} {kind} is not served by this cluster (its discovery does not list it{})",
                r.subject.as_ref().map(what).unwrap_or_default(),
                if api_version.contains('/') && !is_builtin(api_version) {
                    ": a CustomResourceDefinition not installed?"
                } else {
                    ""
                }
            ));
            r.remediation.get_or_insert_with(|| {
                format!("install what serves {api_version} {kind} (its CRD or API service) before this object, or use an apiVersion the cluster serves (kubectl api-versions)")
            });
            r
        }
        Err(why) => {
            r.evidence.push(format!("cluster discovery: {why}"));
            r
        }
    }
}

/// API groups Kubernetes itself serves (a missing one is not a CRD).
fn is_builtin(api_version: &str) -> bool {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    !group.contains('.') || group.ends_with(".k8s.io")
}

/// The distinct group/versions of a set of documents (for the discovery to ask about).
pub fn api_versions<'a>(docs: impl Iterator<Item = &'a Doc>) -> BTreeSet<String> {
    docs.filter_map(|d| d.body.as_ref().ok()?.get("apiVersion")?.as_str())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::input::documents;

    fn one(text: &str, target: &str, cluster: Option<&mut dyn Served>) -> CheckResult {
        let docs = documents(text);
        let mut j = Judge {
            target: Minor::parse(target).unwrap(),
            target_from: "--target-version",
            cluster,
        };
        judge("m.yaml", &docs[0], &mut j)
    }

    const DEPLOY: &str =
        "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata:\n  name: stack\n";

    #[test]
    fn removed_deprecated_and_current_by_target() {
        let r = one(DEPLOY, "1.16", None);
        assert_eq!(r.status, Status::Fail, "{r:?}");
        assert!(
            r.message.contains("not served since Kubernetes 1.16"),
            "{}",
            r.message
        );
        assert!(r.message.contains("apps/v1"));
        let rep = r.replacement.unwrap();
        assert_eq!(rep.api_version.as_deref(), Some("apps/v1"));
        assert_eq!(
            (rep.deprecated_in.as_str(), rep.removed_in.as_str()),
            ("1.9", "1.16")
        );
        assert!(rep.changes.iter().any(|c| c.contains("spec.selector")));
        // Only this kind's changes: nothing about DaemonSets for a Deployment.
        assert!(
            rep.changes.iter().all(|c| !c.contains("DaemonSet")),
            "{:?}",
            rep.changes
        );
        let s = r.subject.unwrap();
        assert_eq!(s.name.as_deref(), Some("stack"));
        assert_eq!((s.line, s.document.as_str()), (1, "0"));

        let r = one(DEPLOY, "1.15", None);
        assert_eq!(r.status, Status::Warn);
        assert!(
            r.message.contains("no longer served from 1.16"),
            "{}",
            r.message
        );
        assert_eq!(one(DEPLOY, "1.8", None).status, Status::Pass);
        let cur = "apiVersion: apps/v1\nkind: Deployment\n";
        assert_eq!(one(cur, "1.32", None).status, Status::Pass);
    }

    #[test]
    fn psp_names_no_replacement_and_points_to_pod_security_admission() {
        let r = one(
            "apiVersion: policy/v1beta1\nkind: PodSecurityPolicy\n",
            "1.25",
            None,
        );
        assert_eq!(r.status, Status::Fail);
        assert!(r.message.contains("nothing replaces it"), "{}", r.message);
        assert!(r.remediation.unwrap().contains("Pod Security Admission"));
        assert_eq!(r.replacement.unwrap().api_version, None);
    }

    #[test]
    fn missing_fields_and_parse_errors_are_errors_with_the_line() {
        let r = one("# x\nmetadata:\n  name: a\n", "1.30", None);
        assert_eq!(r.status, Status::Error);
        assert!(
            r.message.contains("line 2") && r.message.contains("apiVersion and kind"),
            "{}",
            r.message
        );
        let r = one("kind: A\nx: [\n", "1.30", None);
        assert_eq!(r.status, Status::Error);
        assert!(r.message.contains("line"), "{}", r.message);
    }

    struct Fake(Vec<(&'static str, &'static str)>, usize);
    impl Served for Fake {
        fn serves(&mut self, gv: &str, kind: &str) -> Result<bool, String> {
            self.1 += 1;
            Ok(self.0.iter().any(|(g, k)| *g == gv && *k == kind))
        }
    }

    #[test]
    fn the_cluster_decides_too() {
        let mut c = Fake(vec![("apps/v1", "Deployment")], 0);
        let crd =
            "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: m\n";
        let r = one(crd, "1.30", Some(&mut c));
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.message.contains("not served by this cluster"),
            "{}",
            r.message
        );
        assert!(
            r.message.contains("CustomResourceDefinition"),
            "{}",
            r.message
        );
        let r = one(
            "apiVersion: apps/v1\nkind: Deployment\n",
            "1.30",
            Some(&mut c),
        );
        assert_eq!(r.status, Status::Pass);
        // A removal the table knows is not asked about.
        let before = c.1;
        assert_eq!(one(DEPLOY, "1.30", Some(&mut c)).status, Status::Fail);
        assert_eq!(c.1, before);
    }
}
