//! The fleet bundle (`fleet check --bundle FILE`): one gzip'd tar holding each node's own bundle
//! as `nodes/<node>.bundle.tar.gz`, written as the nodes report, and a `manifest.json`, written
//! last, naming every node with its state and its member's size and SHA-256, or why it has none.
//! The reader is [`super::reader`]'s, streamed: the archive is never extracted and never held
//! whole (members are capped, so memory stays flat however many nodes it holds).

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufReader, BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{
    format::{FORMAT_VERSION, MANIFEST, sha256_hex},
    frame::MAX_NODE_BUNDLE,
    reader::{self, Bundle, BundleError, Capped, each_member, open_file},
};

/// What the fleet manifest's `format` says.
pub const FORMAT: &str = "k8sdoctor-fleet-bundle";
/// The fleet layout version this build writes and reads.
pub const FLEET_FORMAT_VERSION: u32 = 1;
/// The largest fleet bundle file read.
pub const MAX_FILE: u64 = 16 << 30;
/// The most its tar may unpack to (its members are compressed already, so barely more).
pub const MAX_TOTAL: u64 = 24 << 30;
/// The largest manifest (a few hundred bytes a node).
pub const MAX_MANIFEST: u64 = 64 << 20;

/// The run a fleet bundle records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    /// The CLI's command line, secrets masked.
    pub command_line: String,
    /// The cluster block of the fleet report (server, version, context).
    pub cluster: serde_json::Value,
    pub namespace: String,
    pub run_id: String,
    /// When the run started (RFC 3339).
    pub started_at: String,
}

/// One node in the fleet manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeEntry {
    pub name: String,
    /// `reported`, `absent` or `error`, as in the fleet report.
    pub state: String,
    /// Why the node is absent or in error (the fleet report's reason).
    pub reason: Option<String>,
    /// Its bundle's member, with its size and digest; None when it has none.
    pub member: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    /// Why it has no bundle.
    pub no_bundle: Option<String>,
}

/// `manifest.json` of a fleet bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetManifest {
    pub format: String,
    pub format_version: u32,
    pub tool: crate::report::Tool,
    /// The format version of the node bundles inside.
    pub bundle_format_version: u32,
    /// When the archive was closed (RFC 3339).
    pub created_at: String,
    #[serde(flatten)]
    pub run: RunInfo,
    /// Every node, in the order it finished.
    pub nodes: Vec<NodeEntry>,
}

/// Whether a node name can be a member name: a DNS subdomain (RFC 1123, as Kubernetes requires of
/// node names), so never `..`, `/` or anything a path could make of it.
pub fn dns_name(name: &str) -> bool {
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label)
}

/// The member a node's bundle is stored as.
pub fn member_of(node: &str) -> String {
    format!("nodes/{node}.bundle.tar.gz")
}

/// Writes a fleet bundle as nodes arrive: to `FILE.partial`, renamed to `FILE` once whole.
pub struct Writer {
    tar: tar::Builder<flate2::write::GzEncoder<BufWriter<File>>>,
    path: PathBuf,
    partial: PathBuf,
    run: RunInfo,
    nodes: Vec<NodeEntry>,
}

impl Writer {
    pub fn create(path: &Path, run: RunInfo) -> Result<Writer> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let f = File::create(&partial)
            .with_context(|| format!("cannot write --bundle {}", partial.display()))?;
        let gz = flate2::GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            // The members are gzip'd already: the outer stream only frames them.
            .write(BufWriter::new(f), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(Writer {
            tar,
            path: path.to_path_buf(),
            partial,
            run,
            nodes: Vec::new(),
        })
    }

    fn put(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        super::writer::append(&mut self.tar, name, bytes)
            .with_context(|| format!("cannot write --bundle {}", self.partial.display()))
    }

    /// One node: its bundle as a member of its own (the bytes the pod framed, verified by their
    /// digest on the way), or why it has none. `reason` is masked by the caller.
    pub fn add(
        &mut self,
        node: &str,
        state: &str,
        reason: Option<&str>,
        bundle: Result<Vec<u8>, String>,
    ) -> Result<()> {
        let mut e = NodeEntry {
            name: node.to_string(),
            state: state.to_string(),
            reason: reason.map(String::from),
            member: None,
            size: None,
            sha256: None,
            no_bundle: None,
        };
        match bundle {
            Ok(_) if !dns_name(node) => {
                e.no_bundle = Some("the node's name is not a DNS name: not stored".into());
            }
            Ok(bytes) => {
                let member = member_of(node);
                self.put(&member, &bytes)?;
                e.size = Some(bytes.len() as u64);
                e.sha256 = Some(sha256_hex(&bytes));
                e.member = Some(member);
            }
            Err(why) => e.no_bundle = Some(crate::mask::mask_secrets(&why)),
        }
        self.nodes.push(e);
        Ok(())
    }

    /// Writes the manifest, closes the archive and puts it in place.
    pub fn finish(mut self) -> Result<()> {
        let manifest = FleetManifest {
            format: FORMAT.into(),
            format_version: FLEET_FORMAT_VERSION,
            tool: crate::report::Tool::default(),
            bundle_format_version: FORMAT_VERSION,
            created_at: jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            run: self.run.clone(),
            nodes: std::mem::take(&mut self.nodes),
        };
        let mut bytes = serde_json::to_vec_pretty(&manifest)?;
        bytes.push(b'\n');
        self.put(MANIFEST, &bytes)?;
        let gz = self
            .tar
            .into_inner()
            .context("cannot finish the fleet bundle's tar")?;
        let mut w = gz
            .finish()
            .context("cannot finish the fleet bundle's gzip stream")?;
        w.flush()?;
        drop(w);
        std::fs::rename(&self.partial, &self.path)
            .with_context(|| format!("cannot write --bundle {}", self.path.display()))?;
        crate::core::stderr::note(&format!(
            "fleet bundle of {} node bundle(s) → {}",
            manifest.nodes.iter().filter(|n| n.member.is_some()).count(),
            self.path.display()
        ));
        Ok(())
    }
}

/// One pass over the archive's members, each checked by the bundle reader's rules and capped
/// (a node's bundle at [`MAX_NODE_BUNDLE`], the manifest at [`MAX_MANIFEST`]).
fn walk(
    path: &Path,
    f: impl FnMut(String, Vec<u8>) -> Result<(), BundleError>,
) -> Result<(), BundleError> {
    let (file, _) = open_file(path, MAX_FILE)?;
    walk_from(BufReader::with_capacity(64 << 10, file), f)
}

fn walk_from(
    r: impl std::io::BufRead,
    mut f: impl FnMut(String, Vec<u8>) -> Result<(), BundleError>,
) -> Result<(), BundleError> {
    let mut gz = Capped::new(r, MAX_TOTAL)?;
    let cap = |name: &str| {
        if name == MANIFEST {
            MAX_MANIFEST
        } else {
            MAX_NODE_BUNDLE as u64
        }
    };
    each_member(&mut gz, cap, |name, bytes| {
        if name != MANIFEST
            && !name
                .strip_prefix("nodes/")
                .and_then(|n| n.strip_suffix(".bundle.tar.gz"))
                .is_some_and(dns_name)
        {
            if name == super::format::REPORT || name.starts_with("inputs/") {
                return Err(BundleError::Foreign(
                    "this is a single node's bundle, not a fleet bundle: replay it with `check --from-bundle`".into(),
                ));
            }
            return Err(BundleError::Mismatch(
                name,
                "a fleet bundle holds only manifest.json and nodes/<node>.bundle.tar.gz".into(),
            ));
        }
        f(name, bytes)
    })?;
    // The tar's end blocks may be followed by padding; the gzip stream must end there.
    std::io::copy(&mut gz, &mut std::io::sink()).map_err(|e| reader::from_io(e, "gzip"))?;
    gz.finish()
}

/// Checks a fleet bundle whole before anything is judged from it: every member read (each node's
/// bundle through the bundle reader), the manifest present, of this format, and naming exactly
/// the members there are, each with its size and digest. Returns the manifest.
pub fn verify(path: &Path) -> Result<FleetManifest, BundleError> {
    let (file, _) = open_file(path, MAX_FILE)?;
    verify_from(BufReader::with_capacity(64 << 10, file))
}

/// [`verify`] of an archive's bytes as they are read (the fuzz target's way in).
pub fn verify_from(r: impl std::io::BufRead) -> Result<FleetManifest, BundleError> {
    let mut seen: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut manifest = None;
    walk_from(r, |name, bytes| {
        if name == MANIFEST {
            manifest = Some(bytes);
            return Ok(());
        }
        reader::read(&bytes).map_err(|e| inner(&name, e))?;
        seen.insert(name, (bytes.len() as u64, sha256_hex(&bytes)));
        Ok(())
    })?;
    let bytes = manifest.ok_or_else(|| BundleError::Foreign(format!("it has no {MANIFEST}")))?;
    let m: FleetManifest = reader::manifest_of(&bytes, FORMAT, FLEET_FORMAT_VERSION)?;
    let mut names = std::collections::BTreeSet::new();
    for n in &m.nodes {
        if !names.insert(n.name.as_str()) {
            return Err(BundleError::Duplicate(format!("node {}", n.name)));
        }
        let Some(member) = &n.member else { continue };
        if *member != member_of(&n.name) {
            return Err(BundleError::Mismatch(
                member.clone(),
                format!("it is not node {}'s member", n.name),
            ));
        }
        match seen.remove(member) {
            Some((size, sha)) if Some(size) == n.size && Some(&sha) == n.sha256.as_ref() => {}
            Some(_) => {
                return Err(BundleError::Mismatch(
                    member.clone(),
                    "its size or SHA-256 differs".into(),
                ));
            }
            None => {
                return Err(BundleError::Damaged(format!(
                    "{member} is in the manifest but not in the archive"
                )));
            }
        }
    }
    if let Some(extra) = seen.keys().next() {
        return Err(BundleError::Mismatch(
            extra.clone(),
            "the manifest does not list it".into(),
        ));
    }
    Ok(m)
}

fn inner(member: &str, e: BundleError) -> BundleError {
    BundleError::Damaged(format!("{member}: {e}"))
}

/// Reads every node's bundle of a verified fleet bundle, in archive order, handing each node's
/// manifest entry and bundle to `f`; then the nodes without a bundle (entry only). Each member is
/// checked against the manifest again (the file may have changed since [`verify`]).
pub fn each_node(
    path: &Path,
    m: &FleetManifest,
    mut f: impl FnMut(&NodeEntry, Option<Bundle>) -> Result<()>,
) -> Result<()> {
    let by_member: BTreeMap<&str, &NodeEntry> = m
        .nodes
        .iter()
        .filter_map(|n| Some((n.member.as_deref()?, n)))
        .collect();
    let mut failed: Option<anyhow::Error> = None;
    walk(path, |name, bytes| {
        if name == MANIFEST || failed.is_some() {
            return Ok(());
        }
        let n = by_member
            .get(name.as_str())
            .ok_or_else(|| BundleError::Mismatch(name.clone(), "not in the manifest".into()))?;
        if n.sha256.as_deref() != Some(&sha256_hex(&bytes)) {
            return Err(BundleError::Mismatch(
                name,
                "its SHA-256 differs (the file changed while read?)".into(),
            ));
        }
        let b = reader::read(&bytes).map_err(|e| inner(&name, e))?;
        drop(bytes);
        if let Err(e) = f(n, Some(b)) {
            failed = Some(e);
        }
        Ok(())
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    for n in m.nodes.iter().filter(|n| n.member.is_none()) {
        f(n, None)?;
    }
    Ok(())
}

/// The bundle of one node of a fleet bundle (verified whole first), for `check --from-bundle FILE
/// --node NAME`.
pub fn node_bundle(path: &Path, node: &str) -> Result<Bundle> {
    let m = verify(path)?;
    let Some(entry) = m.nodes.iter().find(|n| n.name == node) else {
        let names: Vec<&str> = m.nodes.iter().map(|n| n.name.as_str()).take(20).collect();
        anyhow::bail!(
            "the fleet bundle has no node {node:?} (it has: {})",
            names.join(", ")
        );
    };
    if entry.member.is_none() {
        anyhow::bail!(
            "the fleet bundle holds no bundle of node {node}: {}",
            entry.no_bundle.as_deref().unwrap_or("none was recorded")
        );
    }
    let mut found = None;
    each_node(path, &m, |n, b| {
        if n.name == node {
            found = b;
        }
        Ok(())
    })?;
    found.ok_or_else(|| anyhow::anyhow!("the fleet bundle lost node {node}'s member"))
}
