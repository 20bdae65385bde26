//! Nodes as the cluster checks read them: decoded straight from a list page's bytes (name, kubelet and
//! kube-proxy versions, conditions; every other field is skipped unread) and folded into counts per
//! version and per condition with a bounded sample of node names, so memory stays flat however many
//! nodes the cluster has.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    fmt,
    io::{BufReader, Read},
};

use serde::{
    Deserialize, Deserializer,
    de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor},
};

use super::version::Version;

/// Node names kept per group for evidence; the rest are only counted.
pub const SAMPLE: usize = 10;
/// Distinct groups kept per kind (versions of a component, NotReady reasons, pressure reasons); nodes
/// in further groups are counted in one overflow group.
pub const MAX_GROUPS: usize = 50;
/// Longest name, version, reason or message kept (bytes, cut at a character boundary).
const MAX_TEXT: usize = 512;

/// The conditions that mean trouble when True.
pub const PRESSURE: &[&str] = &[
    "MemoryPressure",
    "DiskPressure",
    "PIDPressure",
    "NetworkUnavailable",
];

/// How many nodes fell into a group, and the first [`SAMPLE`] of their names (in list order).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub count: usize,
    pub names: Vec<String>,
}

impl Sample {
    fn add(&mut self, name: &str) {
        self.count += 1;
        if self.names.len() < SAMPLE {
            self.names.push(clip(name).into_owned());
        }
    }

    /// Adds another group's nodes (for groups whose text reads the same).
    pub fn merge(&mut self, other: &Sample) {
        self.count += other.count;
        let room = SAMPLE.saturating_sub(self.names.len());
        self.names.extend(other.names.iter().take(room).cloned());
    }
}

/// Nodes grouped by a key: at most [`MAX_GROUPS`] groups, later keys counted in `overflow`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(bound(
    serialize = "K: serde::Serialize",
    deserialize = "K: serde::de::DeserializeOwned"
))]
pub struct Groups<K: Ord> {
    /// As a list of pairs in JSON (its keys are not all strings).
    #[serde(with = "pairs")]
    pub groups: BTreeMap<K, Sample>,
    pub overflow: Sample,
}

impl<K: Ord> Default for Groups<K> {
    fn default() -> Self {
        Groups {
            groups: BTreeMap::new(),
            overflow: Sample::default(),
        }
    }
}

impl<K: Ord> Groups<K> {
    /// Counts `name` under `key` (built only when the group is new); true when it went to a group
    /// of its own, false when into the overflow.
    fn add_with<Q>(&mut self, key: &Q, make: impl FnOnce() -> K, name: &str) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: Ord + ?Sized,
    {
        if let Some(s) = self.groups.get_mut(key) {
            s.add(name);
            return true;
        }
        if self.groups.len() >= MAX_GROUPS {
            self.overflow.add(name);
            return false;
        }
        self.groups.entry(make()).or_default().add(name);
        true
    }

    /// Nodes counted, overflow included.
    pub fn count(&self) -> usize {
        self.groups.values().map(|s| s.count).sum::<usize>() + self.overflow.count
    }
}

/// A map as a list of `[key, value]` pairs, for keys JSON cannot name (tuples, options).
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        m: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// One component's versions: a group per version text, and for versions past [`MAX_GROUPS`] the
/// lowest and highest seen (the skew policy is an interval, so those two decide the overflow).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Versions {
    pub by_version: Groups<String>,
    /// (lowest, highest) parseable version among the overflow nodes.
    pub overflow_span: Option<(Version, Version)>,
    /// Overflow nodes whose version does not parse.
    pub overflow_unparseable: usize,
}

impl Versions {
    fn add(&mut self, raw: &str, name: &str) {
        let raw = clip(raw);
        if self
            .by_version
            .add_with(raw.as_ref(), || raw.to_string(), name)
        {
            return;
        }
        match Version::parse(&raw) {
            Some(v) => {
                let (lo, hi) = self.overflow_span.get_or_insert((v, v));
                *lo = (*lo).min(v);
                *hi = (*hi).max(v);
            }
            None => self.overflow_unparseable += 1,
        }
    }
}

/// (status, reason, message) of a node's Ready condition.
pub type ReadyState = (String, String, String);

/// Everything the checks read about the nodes, aggregated.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeSummary {
    pub total: usize,
    pub kubelet: Versions,
    pub kube_proxy: Versions,
    /// Nodes whose Ready condition is not True, by its (status, reason, message); None = no Ready
    /// condition yet.
    pub not_ready: Groups<Option<ReadyState>>,
    /// Nodes with a [`PRESSURE`] condition True, by (type, reason, message).
    pub pressure: Groups<(String, String, String)>,
    /// Whether a node named like [`NodeSummary::watching`]'s name was listed.
    pub watched_seen: bool,
    watch: Option<String>,
}

/// One condition as a node reports it: (type, status, reason, message).
pub type Condition<'a> = (&'a str, &'a str, &'a str, &'a str);

impl NodeSummary {
    /// A summary that also notes whether a node called `name` is listed (this host's hostname).
    pub fn watching(name: Option<String>) -> NodeSummary {
        NodeSummary {
            watch: name,
            ..NodeSummary::default()
        }
    }

    /// Counts one node.
    pub fn add(&mut self, name: &str, kubelet: &str, kube_proxy: &str, conditions: &[Condition]) {
        self.total += 1;
        if self.watch.as_deref() == Some(name) {
            self.watched_seen = true;
        }
        if !kubelet.is_empty() {
            self.kubelet.add(kubelet, name);
        }
        if !kube_proxy.is_empty() {
            self.kube_proxy.add(kube_proxy, name);
        }
        match conditions.iter().find(|c| c.0 == "Ready") {
            Some((_, "True", _, _)) => {}
            Some(&(_, s, r, m)) => {
                let key = (clip(s).into(), clip(r).into(), clip(m).into());
                self.not_ready
                    .add_with(&Some(key.clone()), || Some(key), name);
            }
            None => {
                self.not_ready.add_with(&None, || None, name);
            }
        }
        for &(t, s, r, m) in conditions {
            if s == "True" && PRESSURE.contains(&t) {
                let key = (t.to_string(), clip(r).into(), clip(m).into());
                self.pressure.add_with(&key.clone(), || key, name);
            }
        }
    }

    /// Folds one page of a node list (JSON bytes) in; returns the page's `continue` token.
    pub fn add_page(&mut self, page: &[u8]) -> Result<Option<String>, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(page);
        let next = PageSeed(self).deserialize(&mut de)?;
        de.end()?;
        Ok(next)
    }

    /// Like [`NodeSummary::add_page`], reading the page as it arrives: each node is folded in as
    /// soon as its bytes are read, so no page is ever held whole.
    pub fn add_page_from(&mut self, page: impl Read) -> Result<Option<String>, serde_json::Error> {
        let mut de =
            serde_json::Deserializer::from_reader(BufReader::with_capacity(64 * 1024, page));
        let next = PageSeed(self).deserialize(&mut de)?;
        de.end()?;
        Ok(next)
    }

    fn add_item(&mut self, n: &Item) {
        let status = n.status.as_ref();
        let info = status.and_then(|s| s.node_info.as_ref());
        let conds: Vec<Condition> = status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default()
            .iter()
            .map(|c| {
                (
                    text(c.type_.as_ref()),
                    text(c.status.as_ref()),
                    text(c.reason.as_ref()),
                    text(c.message.as_ref()),
                )
            })
            .collect();
        self.add(
            text(n.metadata.as_ref().and_then(|m| m.name.as_ref())),
            text(info.and_then(|i| i.kubelet_version.as_ref())),
            text(info.and_then(|i| i.kube_proxy_version.as_ref())),
            &conds,
        );
    }
}

/// A decoded text field, "" when absent.
fn text<'a>(f: Option<&'a Cow<'_, str>>) -> &'a str {
    f.map_or("", |c| c.as_ref())
}

/// At most [`MAX_TEXT`] bytes of `s`, cut at a character boundary.
fn clip(s: &str) -> Cow<'_, str> {
    if s.len() <= MAX_TEXT {
        return Cow::Borrowed(s);
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &s[..end]))
}

// The few fields of a Node the checks read, borrowed from the page where it is a slice and no JSON
// escape forces a copy; every other field is skipped by serde without being built.

/// A NodeList page: `metadata.continue` kept, each of `items` folded into the summary as it is
/// decoded, everything else skipped.
struct PageSeed<'s>(&'s mut NodeSummary);

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Field {
    Metadata,
    Items,
    #[serde(other)]
    Other,
}

impl<'de> DeserializeSeed<'de> for PageSeed<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PageSeed<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a NodeList")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut next = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Metadata => {
                    next = map
                        .next_value::<Option<ListMeta>>()?
                        .and_then(|m| m.continue_)
                        .map(Cow::into_owned)
                }
                Field::Items => map.next_value_seed(ItemsSeed(&mut *self.0))?,
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(next.filter(|c| !c.is_empty()))
    }
}

/// `items` (or null): each node folded in, none kept.
struct ItemsSeed<'s>(&'s mut NodeSummary);

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of Nodes")
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<Item>()? {
            self.0.add_item(&item);
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct ListMeta<'a> {
    #[serde(borrow, rename = "continue")]
    continue_: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    metadata: Option<Meta<'a>>,
    #[serde(borrow)]
    status: Option<Status<'a>>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status<'a> {
    #[serde(borrow)]
    node_info: Option<Info<'a>>,
    #[serde(borrow)]
    conditions: Option<Vec<Cond<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Info<'a> {
    #[serde(borrow)]
    kubelet_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kube_proxy_version: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Cond<'a> {
    #[serde(borrow, rename = "type")]
    type_: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"{"kind":"NodeList","apiVersion":"v1","metadata":{"resourceVersion":"9","continue":"tok-2","remainingItemCount":1},
      "items":[
        {"metadata":{"name":"cp1","labels":{"kubernetes.io/hostname":"cp1"},"annotations":{"x":"y"}},
         "spec":{"podCIDR":"10.244.0.0/24","taints":[{"key":"node-role.kubernetes.io/control-plane","effect":"NoSchedule"}]},
         "status":{"capacity":{"cpu":"4"},"images":[{"names":["a"],"sizeBytes":1}],
           "nodeInfo":{"kubeletVersion":"v1.33.2","kubeProxyVersion":"v1.33.2","osImage":"Ubuntu"},
           "conditions":[{"type":"MemoryPressure","status":"False","reason":"KubeletHasSufficientMemory","message":"ok","lastHeartbeatTime":"2025-01-01T00:00:00Z"},
                         {"type":"DiskPressure","status":"True","reason":"KubeletHasDiskPressure","message":"disk \"full\""},
                         {"type":"Ready","status":"True","reason":"KubeletReady","message":"ready"}]}},
        {"metadata":{"name":"w1"},"status":{"nodeInfo":{"kubeletVersion":"v1.29.0","kubeProxyVersion":""},
           "conditions":[{"type":"Ready","status":"Unknown","reason":"NodeStatusUnknown","message":"Kubelet stopped posting node status."}]}},
        {"metadata":{"name":"w2"},"status":{"conditions":null}},
        {"metadata":{"name":"w3"}}
      ]}"#;

    #[test]
    fn a_page_folds_into_counts_with_only_the_fields_read() {
        let mut s = NodeSummary::watching(Some("w1".into()));
        let next = s.add_page(PAGE.as_bytes()).unwrap();
        assert_eq!(next.as_deref(), Some("tok-2"));
        assert_eq!(s.total, 4);
        assert!(s.watched_seen);
        assert_eq!(s.kubelet.by_version.groups.len(), 2);
        assert_eq!(s.kubelet.by_version.groups["v1.29.0"].names, ["w1"]);
        // An empty version is not a version.
        assert_eq!(s.kube_proxy.by_version.count(), 1);
        let unknown = Some((
            "Unknown".to_string(),
            "NodeStatusUnknown".to_string(),
            "Kubelet stopped posting node status.".to_string(),
        ));
        assert_eq!(s.not_ready.groups[&unknown].names, ["w1"]);
        assert_eq!(s.not_ready.groups[&None].names, ["w2", "w3"]);
        let disk = (
            "DiskPressure".to_string(),
            "KubeletHasDiskPressure".to_string(),
            "disk \"full\"".to_string(),
        );
        assert_eq!(s.pressure.groups[&disk].count, 1);
        // The last page has no (or an empty) continue token.
        let mut s = NodeSummary::default();
        let last = r#"{"metadata":{"continue":""},"items":[]}"#;
        assert_eq!(s.add_page(last.as_bytes()).unwrap(), None);
        assert!(s.add_page(b"{\"items\": [").is_err());
        // Read as a stream, a page folds in the same way.
        let mut r = NodeSummary::watching(Some("w1".into()));
        let next = r.add_page_from(PAGE.as_bytes()).unwrap();
        let mut b = NodeSummary::watching(Some("w1".into()));
        assert_eq!((next, r), (b.add_page(PAGE.as_bytes()).unwrap(), b));
        assert_eq!(
            s.add_page(br#"{"items": null, "metadata": null}"#).unwrap(),
            None
        );
        assert!(s.add_page_from(&b"{\"items\": [{}, "[..]).is_err());
        assert!(s.add_page(b"<html>").is_err());
    }

    #[test]
    fn memory_is_bounded_by_groups_and_samples_not_by_nodes() {
        let mut s = NodeSummary::default();
        for i in 0..10_000 {
            let name = format!("node-{i:05}");
            // Every node NotReady with its own message (PLEG timestamps do this) and its own version.
            let msg = format!("PLEG was last seen active {i}s ago");
            let v = format!("v1.{}.0", 20 + i % 200);
            s.add(
                &name,
                &v,
                "v1.33.0",
                &[("Ready", "False", "KubeletNotReady", &msg)],
            );
        }
        assert_eq!(s.total, 10_000);
        assert_eq!(s.not_ready.groups.len(), MAX_GROUPS);
        assert_eq!(s.not_ready.count(), 10_000);
        assert_eq!(s.not_ready.overflow.count, 10_000 - MAX_GROUPS);
        assert_eq!(s.not_ready.overflow.names.len(), SAMPLE);
        assert!(s.not_ready.groups.values().all(|g| g.names.len() <= SAMPLE));
        assert_eq!(s.kubelet.by_version.groups.len(), MAX_GROUPS);
        let (lo, hi) = s.kubelet.overflow_span.unwrap();
        // v1.20 .. v1.69 have groups of their own; the span covers the rest.
        assert_eq!((lo.minor, hi.minor), (70, 219));
        assert_eq!(
            s.kubelet.by_version.overflow.count,
            10_000 - MAX_GROUPS * 50
        );
        assert_eq!(s.kube_proxy.by_version.groups["v1.33.0"].count, 10_000);
        assert_eq!(
            s.kube_proxy.by_version.groups["v1.33.0"].names.len(),
            SAMPLE
        );
        let mut s = NodeSummary::default();
        let long = "é".repeat(5000);
        s.add(&long, &long, "", &[("Ready", "False", &long, &long)]);
        let (status, reason, msg) = s.not_ready.groups.keys().next().cloned().flatten().unwrap();
        assert_eq!(status, "False");
        for text in [
            &reason,
            &msg,
            &s.not_ready.groups.values().next().unwrap().names[0],
        ] {
            assert!(
                text.len() <= MAX_TEXT + '…'.len_utf8() && text.ends_with('…'),
                "{text}"
            );
        }
    }
}
