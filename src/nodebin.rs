//! Versions of this node's own kubeadm, kubelet and kubectl: run on the live host; under another root read
//! from the node itself (its dpkg status, else the binaries under the root, scanned, never executed).

use std::{collections::BTreeMap, io::Read, time::Duration};

use crate::core::host::Host;

/// The three binaries' versions; `Err` says why there is none (not installed, unreadable ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalVersions {
    pub kubectl: Result<String, String>,
    pub kubeadm: Result<String, String>,
    pub kubelet: Result<String, String>,
}

/// Where a node keeps these binaries (distribution packages, the kubeadm guide's /usr/local/bin, CoreOS's /opt/bin).
const BIN_DIRS: &[&str] = &[
    "/usr/bin",
    "/usr/local/bin",
    "/bin",
    "/usr/sbin",
    "/opt/bin",
];
/// Larger than any Kubernetes binary; a bigger file is not scanned.
const MAX_BINARY: u64 = 1 << 30;

/// The versions of the node's binaries, each bounded by `timeout` when it has to run.
pub fn gather(host: &Host, timeout: Duration) -> LocalVersions {
    if host.is_live() {
        return run_here(host, timeout);
    }
    let dpkg = match host.read_opt("/var/lib/dpkg/status") {
        Ok(Some(text)) => Ok(dpkg_installed(&text)),
        Ok(None) => Ok(BTreeMap::new()),
        Err(e) => Err(e.to_string()),
    };
    let one = |name: &str| -> Result<String, String> {
        if let Ok(Some(v)) = dpkg.as_ref().map(|d| d.get(name)) {
            return package_version(v).ok_or_else(|| {
                format!("the dpkg package {name} has version {v}, not a Kubernetes version")
            });
        }
        for dir in BIN_DIRS {
            let path = format!("{dir}/{name}");
            match host.open_stream(&path) {
                Ok(Some((_, len))) if len > MAX_BINARY => {
                    return Err(format!("{path} is {len} bytes; not scanned"));
                }
                Ok(Some((f, _))) => {
                    return scan(f)
                        .map_err(|e| format!("cannot read {path}: {e}"))?
                        .ok_or_else(|| {
                            format!(
                                "{path} is installed but names no version it can be read from without running it"
                            )
                        });
                }
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(match &dpkg {
            Err(e) => format!("not found under the root ({e})"),
            Ok(_) => format!(
                "not installed under the root (no dpkg package, no binary in {})",
                BIN_DIRS.join(", ")
            ),
        })
    };
    // A binary is scanned, not read whole: what the scan found is what a bundle keeps.
    let taped = |name: &str| {
        host.probe(&format!("version of {name} under the root"), || one(name))
            .unwrap_or_else(|e| Err(e.to_string()))
    };
    LocalVersions {
        kubectl: taped("kubectl"),
        kubeadm: taped("kubeadm"),
        kubelet: taped("kubelet"),
    }
}

/// On the live host: ask each binary in PATH.
fn run_here(host: &Host, timeout: Duration) -> LocalVersions {
    let run = |prog: &str, args: &[&str]| host.run(prog, args, timeout).map_err(|e| e.to_string());
    let kubectl = run("kubectl", &["version", "--client", "-o", "json"])
        .and_then(|o| kubectl_client(&o).ok_or_else(|| "kubectl printed no clientVersion".into()));
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

/// `clientVersion.gitVersion` from `kubectl version --client -o json`.
pub fn kubectl_client(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["clientVersion"]["gitVersion"].as_str().map(String::from)
}

/// Installed packages and their versions from `/var/lib/dpkg/status` text (stanzas whose Status ends `installed`).
pub fn dpkg_installed(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(str::trim)
            })
        };
        let installed =
            field("Status").is_some_and(|s| s.split_whitespace().last() == Some("installed"));
        if let (true, Some(p), Some(v)) = (installed, field("Package"), field("Version")) {
            out.insert(p.to_string(), v.to_string());
        }
    }
    out
}

/// A Debian package version of a Kubernetes package (`1.33.2-1.1`, `1.28.2-00`, `1:1.30.0-1.1`) as `v1.33.2`.
pub fn package_version(v: &str) -> Option<String> {
    let no_epoch = v.split_once(':').map_or(v, |(_, r)| r);
    let upstream = no_epoch.rsplit_once('-').map_or(no_epoch, |(u, _)| u);
    let v = format!("v{upstream}");
    is_release(&v).then_some(v)
}

/// `vMAJOR.MINOR.PATCH[-suffix]`, as Kubernetes stamps its releases.
fn is_release(s: &str) -> bool {
    let Some(core) = s.split(['-', '+']).next() else {
        return false;
    };
    let parts: Vec<&str> = core.strip_prefix('v').unwrap_or("").split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|c| c.is_ascii_digit()))
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".-+_".contains(&c))
}

/// Finds the version a Kubernetes Go binary was stamped with, reading it as data (never running it): the
/// stamped `gitVersion` is kept as a NUL-padded `vMAJOR.MINOR.PATCH[-suffix]`, and it is the one such string
/// the binary holds most often. `None` when there is none, or two are equally common.
pub fn scan(mut r: impl Read) -> std::io::Result<Option<String>> {
    const CHUNK: usize = 1 << 20;
    const KEEP: usize = 64;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut buf = vec![0u8; CHUNK + KEEP];
    let mut have = 0;
    let finder = memchr::memmem::Finder::new(b"\0v1.");
    loop {
        let n = r.read(&mut buf[have..])?;
        let end = have + n;
        let last = n == 0;
        // Candidates starting before `limit` are whole in this window (or the stream ended).
        let limit = if last { end } else { end.saturating_sub(KEEP) };
        for at in finder.find_iter(&buf[..end]) {
            if at >= limit {
                break;
            }
            if let Some(v) = stamped_at(&buf[at + 1..end]) {
                *counts.entry(v).or_default() += 1;
            }
        }
        if last {
            break;
        }
        buf.copy_within(limit..end, 0);
        have = end - limit;
    }
    let mut ranked: Vec<(usize, String)> = counts.into_iter().map(|(v, c)| (c, v)).collect();
    ranked.sort_by(|a, b| b.cmp(a));
    Ok(match ranked.as_slice() {
        [(c, v), rest @ ..] if rest.first().is_none_or(|(c2, _)| c2 < c) => Some(v.clone()),
        _ => None,
    })
}

/// `v1.N.N[-suffix]` then NUL at the start of `b`.
fn stamped_at(b: &[u8]) -> Option<String> {
    let end = b.iter().take(40).position(|&c| c == 0)?;
    let s = std::str::from_utf8(&b[..end]).ok()?;
    let core = s.split(['-', '+']).next()?;
    let parts: Vec<&str> = core.strip_prefix('v')?.split('.').collect();
    let ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|c| c.is_ascii_digit()))
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".-+_".contains(&c));
    ok.then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_gives_installed_packages_only() {
        let text = "Package: kubelet\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.33.2-1.1\n\n\
                    Package: kubeadm\nStatus: deinstall ok config-files\nVersion: 1.32.0-1.1\n\n\
                    Package: kubectl\nStatus: install ok installed\nVersion: 1:1.28.2-00\nDescription: x\n y\n";
        let d = dpkg_installed(text);
        assert_eq!(d.get("kubelet").map(String::as_str), Some("1.33.2-1.1"));
        assert_eq!(d.get("kubeadm"), None);
        assert_eq!(package_version(&d["kubectl"]).as_deref(), Some("v1.28.2"));
        assert_eq!(package_version("1.33.2-1.1").as_deref(), Some("v1.33.2"));
        assert_eq!(package_version("garbage"), None);
        assert!(dpkg_installed("garbage\n\n\n").is_empty());
    }

    #[test]
    fn reads_kubectl_client_json() {
        let json = r#"{"clientVersion":{"major":"1","minor":"32+","gitVersion":"v1.32.4-dispatcher"},"kustomizeVersion":"v5.5.0"}"#;
        assert_eq!(kubectl_client(json).as_deref(), Some("v1.32.4-dispatcher"));
        assert_eq!(kubectl_client("not json"), None);
    }

    #[test]
    fn the_most_common_stamped_version_wins_across_chunk_edges() {
        let mut bin = vec![0u8; (1 << 20) - 3];
        bin.extend_from_slice(b"\0v1.33.1\0pad\0v1.33.1\0\0v1.32.0-rc.1\0xv1.31.0\0\0v1.2\0");
        bin.extend(std::iter::repeat_n(7u8, 5000));
        assert_eq!(scan(&bin[..]).unwrap().as_deref(), Some("v1.33.1"));
        // A tie is no answer, and so is none.
        assert_eq!(scan(&b"\0v1.30.0\0\0v1.31.0\0"[..]).unwrap(), None);
        assert_eq!(scan(&b"nothing here"[..]).unwrap(), None);
    }
}
