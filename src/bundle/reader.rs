//! Reads a bundle, which is untrusted input (it comes from a ticket): in memory only, never extracted;
//! member names are keys, not paths (`..`, absolute names, links and directories refused); the file,
//! every member, the unpacked total and the compression ratio are capped; every member must be the one
//! the manifest names, with its size and digest. Anything else is a [`BundleError`] naming the problem.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, Read},
    path::Path,
};

use thiserror::Error;

use super::format::{
    CallRecord, FORMAT, FORMAT_VERSION, MANIFEST, MAX_COMPRESSED, MAX_MEMBER, MAX_MEMBERS,
    MAX_RATIO, MAX_TOTAL, Manifest, REPORT, calls_member, sha256_hex, valid_name,
};
use crate::core::tape::{Answer, Entry, Replay};

/// Why a bundle cannot be read.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("cannot read the bundle {0}: {1}")]
    Open(String, String),
    #[error("the bundle is larger than {0} MiB; not read")]
    TooBig(u64),
    #[error("not a bundle: it is not gzip-compressed")]
    NotGzip,
    #[error("the bundle is damaged or truncated: {0}")]
    Damaged(String),
    #[error(
        "the bundle unpacks to more than {0} MiB or {MAX_RATIO} times its size: refused (a decompression bomb?)"
    )]
    Bomb(u64),
    #[error(
        "the bundle's member {0:?} is not a plain name (absolute, `..` or odd characters): refused"
    )]
    BadName(String),
    #[error("the bundle's member {0:?} is a {1}, not a file: refused")]
    NotFile(String, String),
    #[error("the bundle's member {0} is larger than {1} MiB: refused")]
    MemberTooBig(String, u64),
    #[error("the bundle holds more than {MAX_MEMBERS} members: refused")]
    TooMany,
    #[error("the bundle holds {0} twice")]
    Duplicate(String),
    #[error("not a k8sdoctor bundle: {0}")]
    Foreign(String),
    #[error(
        "the bundle has format version {0}; this k8sdoctor reads version {FORMAT_VERSION} (a newer k8sdoctor made it)"
    )]
    Version(u32),
    #[error("the bundle's member {0} does not match its manifest: {1}")]
    Mismatch(String, String),
    #[error(
        "this bundle was made by `k8sdoctor {made_by} --bundle`, not by {wanted}: replay it with `k8sdoctor {made_by} --from-bundle FILE`"
    )]
    Command { made_by: String, wanted: String },
}

/// A bundle as read: its manifest, the recorded report, and the recorded inputs to replay.
pub struct Bundle {
    pub manifest: Manifest,
    pub report: serde_json::Value,
    pub replay: Replay,
}

/// Opens a bundle file without blocking (a FIFO or device named as one neither hangs nor is read):
/// a regular file of at most `max` bytes.
pub(crate) fn open_file(path: &Path, max: u64) -> Result<(std::fs::File, u64), BundleError> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display().to_string();
    let err = |e: std::io::Error| BundleError::Open(shown.clone(), e.to_string());
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(err)?;
    let meta = f.metadata().map_err(err)?;
    if !meta.is_file() {
        return Err(BundleError::Open(shown, "not a regular file".into()));
    }
    if meta.len() > max {
        return Err(BundleError::TooBig(max >> 20));
    }
    Ok((f, meta.len()))
}

/// Reads a bundle file (a regular file at most [`MAX_COMPRESSED`] bytes, opened without blocking).
pub fn open(path: &Path) -> Result<Bundle, BundleError> {
    let (f, len) = open_file(path, MAX_COMPRESSED)?;
    let mut bytes = Vec::with_capacity(len as usize);
    f.take(MAX_COMPRESSED + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| BundleError::Open(path.display().to_string(), e.to_string()))?;
    if bytes.len() as u64 > MAX_COMPRESSED {
        return Err(BundleError::TooBig(MAX_COMPRESSED >> 20));
    }
    read(&bytes)
}

/// A reader that counts what is taken from it (the compressed side of [`Capped`]).
struct CountIn<R> {
    inner: R,
    n: u64,
}

impl<R: BufRead> Read for CountIn<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

impl<R: BufRead> BufRead for CountIn<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.n += amt as u64;
        self.inner.consume(amt);
    }
}

/// A gzip stream unpacked as it is read, held to a total and to [`MAX_RATIO`]; its errors carry
/// the [`BundleError`] (see [`from_io`]).
pub(crate) struct Capped<R: BufRead> {
    d: flate2::bufread::GzDecoder<CountIn<R>>,
    out: u64,
    total: u64,
}

impl<R: BufRead> Capped<R> {
    /// Refuses anything that does not start as gzip.
    pub(crate) fn new(mut inner: R, total: u64) -> Result<Capped<R>, BundleError> {
        let head = inner
            .fill_buf()
            .map_err(|e| BundleError::Damaged(format!("gzip: {e}")))?;
        if !head.starts_with(&[0x1f, 0x8b]) {
            return Err(BundleError::NotGzip);
        }
        Ok(Capped {
            d: flate2::bufread::GzDecoder::new(CountIn { inner, n: 0 }),
            out: 0,
            total,
        })
    }

    /// After the end of the gzip stream: nothing may follow it.
    pub(crate) fn finish(mut self) -> Result<(), BundleError> {
        let rest = self
            .d
            .get_mut()
            .inner
            .fill_buf()
            .map_err(|e| BundleError::Damaged(format!("gzip: {e}")))?;
        if !rest.is_empty() {
            return Err(BundleError::Damaged(
                "bytes after the end of the gzip stream".into(),
            ));
        }
        Ok(())
    }
}

impl<R: BufRead> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self
            .d
            .read(buf)
            .map_err(|e| std::io::Error::other(BundleError::Damaged(format!("gzip: {e}"))))?;
        self.out += n as u64;
        let read_in = self.d.get_ref().n.max(1);
        if self.out > self.total || (self.out > 1 << 20 && self.out / read_in > MAX_RATIO) {
            return Err(std::io::Error::other(BundleError::Bomb(self.total >> 20)));
        }
        Ok(n)
    }
}

/// The bundle error an I/O error carries, or damage in `what`.
pub(crate) fn from_io(e: std::io::Error, what: &str) -> BundleError {
    match e.get_ref().and_then(|i| i.downcast_ref::<BundleError>()) {
        Some(b) => b.clone(),
        None => BundleError::Damaged(format!("{what}: {e}")),
    }
}

/// Unpacks the gzip stream in memory, holding it to [`MAX_TOTAL`] and [`MAX_RATIO`].
fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, BundleError> {
    let mut c = Capped::new(bytes, MAX_TOTAL)?;
    let mut out = Vec::new();
    c.read_to_end(&mut out).map_err(|e| from_io(e, "gzip"))?;
    c.finish()?;
    Ok(out)
}

/// Walks the members of a tar stream, each checked for its name, kind, size (at most
/// `cap(name)`) and uniqueness, handing each to `f` whole; at most [`MAX_MEMBERS`].
pub(crate) fn each_member(
    tar_stream: impl Read,
    cap: impl Fn(&str) -> u64,
    mut f: impl FnMut(String, Vec<u8>) -> Result<(), BundleError>,
) -> Result<(), BundleError> {
    let damaged = |e: std::io::Error| from_io(e, "tar");
    let mut archive = tar::Archive::new(tar_stream);
    let mut seen = BTreeSet::new();
    for entry in archive.entries().map_err(damaged)? {
        let entry = entry.map_err(damaged)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if !valid_name(&name) {
            return Err(BundleError::BadName(name));
        }
        let kind = entry.header().entry_type();
        if !kind.is_file() {
            let what = match kind {
                tar::EntryType::Symlink => "symbolic link",
                tar::EntryType::Link => "hard link",
                tar::EntryType::Directory => "directory",
                tar::EntryType::Char | tar::EntryType::Block => "device",
                tar::EntryType::Fifo => "FIFO",
                _ => "special entry",
            };
            return Err(BundleError::NotFile(name, what.into()));
        }
        let size = entry.header().size().map_err(damaged)?;
        let max = cap(&name);
        if size > max {
            return Err(BundleError::MemberTooBig(name, max >> 20));
        }
        if seen.len() >= MAX_MEMBERS {
            return Err(BundleError::TooMany);
        }
        let mut bytes = Vec::with_capacity(size as usize);
        entry
            .take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(damaged)?;
        if bytes.len() as u64 != size {
            return Err(BundleError::Damaged(format!(
                "{name} ends after {} of its {size} bytes",
                bytes.len()
            )));
        }
        if !seen.insert(name.clone()) {
            return Err(BundleError::Duplicate(name));
        }
        f(name, bytes)?;
    }
    Ok(())
}

/// The members of the tar by name, each checked for its name, kind and size.
fn members(tar_bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, BundleError> {
    let mut out = BTreeMap::new();
    each_member(
        tar_bytes,
        |_| MAX_MEMBER,
        |name, bytes| {
            out.insert(name, bytes);
            Ok(())
        },
    )?;
    Ok(out)
}

/// A manifest of `format` at `version`: the format and version are read first, so a newer layout
/// is named as such rather than as damage.
pub(crate) fn manifest_of<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    format: &str,
    version: u32,
) -> Result<T, BundleError> {
    let head: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| BundleError::Foreign(format!("{MANIFEST} is not JSON: {e}")))?;
    if head["format"] != format {
        return Err(BundleError::Foreign(format!(
            "{MANIFEST} does not say format {format:?}"
        )));
    }
    match head["format_version"].as_u64() {
        Some(v) if v == u64::from(version) => {}
        Some(v) => return Err(BundleError::Version(v.min(u32::MAX as u64) as u32)),
        None => {
            return Err(BundleError::Foreign(format!(
                "{MANIFEST} has no format_version"
            )));
        }
    }
    serde_json::from_value(head).map_err(|e| BundleError::Damaged(format!("{MANIFEST}: {e}")))
}

/// Reads a bundle from its bytes.
pub fn read(bytes: &[u8]) -> Result<Bundle, BundleError> {
    read_tar(&gunzip(bytes)?)
}

/// Reads a bundle from its unpacked tar.
pub fn read_tar(tar_bytes: &[u8]) -> Result<Bundle, BundleError> {
    let mut members = members(tar_bytes)?;
    let manifest_bytes = members
        .remove(MANIFEST)
        .ok_or_else(|| BundleError::Foreign(format!("it has no {MANIFEST}")))?;
    let manifest: Manifest = manifest_of(&manifest_bytes, FORMAT, FORMAT_VERSION)?;
    // Every member is the manifest's, byte for byte, and nothing else is there.
    let mut listed = BTreeSet::new();
    for m in &manifest.members {
        let bytes = members.get(&m.name).ok_or_else(|| {
            BundleError::Damaged(format!(
                "{} is in the manifest but not in the archive",
                m.name
            ))
        })?;
        if bytes.len() as u64 != m.size || sha256_hex(bytes) != m.sha256 {
            return Err(BundleError::Mismatch(
                m.name.clone(),
                "its size or SHA-256 differs".into(),
            ));
        }
        listed.insert(m.name.as_str());
    }
    if let Some(extra) = members.keys().find(|k| !listed.contains(k.as_str())) {
        return Err(BundleError::Mismatch(
            extra.clone(),
            "the manifest does not list it".into(),
        ));
    }
    let report = members
        .get(REPORT)
        .ok_or_else(|| BundleError::Damaged(format!("it has no {REPORT}")))
        .and_then(|b| {
            serde_json::from_slice(b).map_err(|e| BundleError::Damaged(format!("{REPORT}: {e}")))
        })?;
    let mut entries = Vec::new();
    let sources: BTreeSet<String> = manifest.sources.iter().cloned().collect();
    for source in manifest.members.iter().map(|m| &m.source) {
        let name = calls_member(source);
        let Some(bytes) = members.remove(&name) else {
            continue; // its calls were taken already, or it is the report
        };
        let calls: Vec<CallRecord> = serde_json::from_slice(&bytes)
            .map_err(|e| BundleError::Damaged(format!("{name}: {e}")))?;
        for mut c in calls {
            if let Answer::File(Ok(Some(body))) = &mut c.answer {
                let owner = manifest.members.iter().find(|m| m.name == body.member);
                if owner.is_none_or(|m| &m.source != source) {
                    return Err(BundleError::Damaged(format!(
                        "{name} names the member {:?}, which is not this source's",
                        body.member
                    )));
                }
                body.bytes = members.get(&body.member).cloned().unwrap_or_default();
            }
            entries.push(Entry {
                source: source.clone(),
                call: c.call,
                answer: c.answer,
            });
        }
    }
    Ok(Bundle {
        manifest,
        report,
        replay: Replay::new(entries, sources),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::{
        bundle::{format::RecordedConfig, writer},
        core::{
            config::Config,
            tape::{Call, FileBody, Recorded, in_source},
        },
    };

    fn report() -> crate::report::Report {
        crate::report::Report::new(
            std::time::SystemTime::UNIX_EPOCH,
            0,
            crate::report::HostInfo {
                hostname: "h".into(),
                kernel: "k".into(),
                os: "o".into(),
                root: "/r".into(),
                role: "worker".into(),
                stage: None,
            },
            None,
            vec![],
        )
    }

    fn bundle() -> Vec<u8> {
        bundle_of(b"Filename Type\n".to_vec()).unwrap()
    }

    /// A bundle whose /proc/swaps is `swaps`.
    fn bundle_of(swaps: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        let rec = crate::core::tape::Recorder::default();
        in_source("swap", || {
            rec.record(
                Call::Read {
                    path: "/proc/swaps".into(),
                },
                Answer::File(Ok(Some(FileBody {
                    bytes: swaps,
                    member: String::new(),
                    mode: 0o444,
                    uid: 0,
                    gid: 0,
                    kind: "file".into(),
                }))),
            );
            rec.record(
                Call::Exists {
                    path: "/etc/fstab".into(),
                },
                Answer::Bool(false),
            );
        });
        let header = writer::Header {
            command: crate::bundle::format::CHECK.into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            command_line: "k8sdoctor --bundle b".into(),
            recorded: Recorded {
                root: "/r".into(),
                live: false,
                live_network: false,
            },
            config: RecordedConfig::of(&Config::default()),
            sources: ["swap".to_string()].into(),
        };
        writer::write(header, &report(), rec.entries())
    }

    /// Recorded inputs come from the host or a server: what the reader would refuse is never written.
    #[test]
    fn a_recording_the_reader_would_refuse_is_not_written() {
        let e = bundle_of(vec![b'a'; 12 << 20]).unwrap_err().to_string();
        assert!(
            e.contains("cannot make a bundle a replay would accept"),
            "{e}"
        );
        assert!(bundle_of(b"Filename Type\n".repeat(1000)).is_ok());
    }

    #[test]
    fn what_is_written_reads_back_as_the_same_answers() {
        let b = read(&bundle()).unwrap();
        assert_eq!(b.manifest.sources, ["swap"]);
        let call = Call::Read {
            path: "/proc/swaps".into(),
        };
        let got = in_source("swap", || b.replay.answer(&call).cloned());
        let Some(Answer::File(Ok(Some(body)))) = got else {
            panic!("{got:?}")
        };
        assert_eq!(body.bytes, b"Filename Type\n");
        assert_eq!(body.member, "inputs/swap/files/proc/swaps");
        assert_eq!(b.report["host"]["hostname"], "h");
    }

    #[test]
    fn every_flipped_byte_and_every_cut_is_an_error_not_a_panic() {
        let good = bundle();
        for i in (0..good.len()).step_by(7) {
            let mut bad = good.clone();
            bad[i] ^= 0x5a;
            let _ = read(&bad);
            assert!(read(&good[..i]).is_err(), "cut at {i} read fine");
        }
        let mut tail = good.clone();
        tail.extend_from_slice(b"junk");
        assert!(matches!(read(&tail), Err(BundleError::Damaged(_))));
    }

    #[test]
    fn a_bomb_stops_at_the_ratio_before_the_total() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..8 {
            e.write_all(&zeros).unwrap();
        }
        assert_eq!(
            read(&e.finish().unwrap()).err(),
            Some(BundleError::Bomb(MAX_TOTAL >> 20))
        );
    }
}
