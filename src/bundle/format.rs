//! The bundle format: a gzip'd tar whose `manifest.json` names every other member (`report.json`, and
//! per source `inputs/SOURCE/calls.json` plus the host files it read under `inputs/SOURCE/files/...`),
//! with the limits a reader holds every bundle to.

use serde::{Deserialize, Serialize};

use crate::core::{
    config::Config,
    tape::{Answer, Call, Recorded},
};

/// What `manifest.json`'s `format` says.
pub const FORMAT: &str = "k8sdoctor-bundle";
/// The layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
/// What `manifest.json`'s `command` says: the command that made the bundle, the only one that replays it.
pub const CHECK: &str = "check";
pub const JOIN_CHECK: &str = "join-check";
pub const REPORT: &str = "report.json";
/// The pseudo-source the report member feeds.
pub const REPORT_SOURCE: &str = "report";

/// The largest bundle file read.
pub const MAX_COMPRESSED: u64 = 64 << 20;
/// The most bytes the whole tar may unpack to.
pub const MAX_TOTAL: u64 = 256 << 20;
/// The largest member: a host file is read up to 16 MiB; its calls.json is smaller than that.
pub const MAX_MEMBER: u64 = 20 << 20;
/// The most members one bundle may hold.
pub const MAX_MEMBERS: usize = 100_000;
/// Past 1 MiB unpacked, more than this many bytes out per byte in is a decompression bomb.
pub const MAX_RATIO: u64 = 200;
/// The longest member name.
pub const MAX_NAME: usize = 1024;

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub tool: crate::report::Tool,
    /// The command that made it ([`CHECK`] or [`JOIN_CHECK`]; absent in the first bundles, all `check`'s).
    #[serde(default = "check")]
    pub command: String,
    /// RFC 3339; a replay judges time (token expiry) as of this instant.
    pub created_at: String,
    /// The command line that made it, secrets masked.
    pub command_line: String,
    /// The report's host block: hostname, kernel, OS, root, role.
    pub host: serde_json::Value,
    /// The report's cluster block (null when no cluster was reached).
    pub cluster: serde_json::Value,
    /// How the recorded host was read.
    pub recorded: Recorded,
    /// The settings that decided what the sources did.
    pub config: RecordedConfig,
    /// Every source the run gathered (a source not listed is `not in the bundle` on replay).
    pub sources: Vec<String>,
    /// Every other member, in archive order.
    pub members: Vec<Member>,
}

fn check() -> String {
    CHECK.into()
}

/// The settings of the recorded run that shape what its sources read; a replay uses them, not its own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordedConfig {
    pub offline: bool,
    pub timeout_ms: u64,
    pub proxy_port: u16,
    pub kubeconfig: Option<String>,
    pub context: Option<String>,
    /// `--only` and `--skip` as given: a replay without its own selects the same checks.
    #[serde(default)]
    pub only: Vec<String>,
    #[serde(default)]
    pub skip: Vec<String>,
}

impl RecordedConfig {
    pub fn of(cfg: &Config) -> RecordedConfig {
        RecordedConfig {
            offline: cfg.offline,
            timeout_ms: cfg.timeout.as_millis() as u64,
            proxy_port: cfg.proxy_port,
            kubeconfig: cfg
                .kubeconfig
                .as_ref()
                .map(|p| crate::mask::mask_secrets(&p.display().to_string())),
            context: cfg.context.clone(),
            only: cfg.selection.only.clone(),
            skip: cfg.selection.skip.clone(),
        }
    }

    /// `cfg` with these settings in place of its own (the selection only when it names none).
    pub fn apply(&self, cfg: &Config) -> Config {
        let own = !cfg.selection.only.is_empty() || !cfg.selection.skip.is_empty();
        Config {
            selection: if own {
                cfg.selection.clone()
            } else {
                crate::core::config::Selection {
                    only: self.only.clone(),
                    skip: self.skip.clone(),
                }
            },
            offline: self.offline,
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            proxy_port: self.proxy_port,
            kubeconfig: self.kubeconfig.as_ref().map(Into::into),
            context: self.context.clone(),
            ..cfg.clone()
        }
    }
}

/// One member: its name, the source it feeds, its size and digest, and for a host file where it was.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub source: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the member's bytes.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_file: Option<HostFile>,
}

/// Where a host file was and what it was.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostFile {
    /// Its path under the root.
    pub path: String,
    /// Permission bits, octal text (`0644`).
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
    /// `file`, or `null-device` for a file masked by /dev/null.
    pub kind: String,
}

/// One line of a source's `calls.json`: what was asked and what came back (a host file's bytes are
/// the member its answer names).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CallRecord {
    pub call: Call,
    pub answer: Answer,
}

/// The calls member of a source.
pub fn calls_member(source: &str) -> String {
    format!("inputs/{source}/calls.json")
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Lower-case hex (the `hex` crate would be one more dependency for this line).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a member name is a plain relative name: `/`-separated words, none empty, `.` or `..`, no
/// backslash or control character. Names are keys, never paths to open.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('/')
        && !name.chars().any(|c| c == '\\' || c.is_control())
        && name
            .split('/')
            .all(|w| !w.is_empty() && w != "." && w != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_names_not_paths() {
        for ok in ["manifest.json", "inputs/dns/files/etc/resolv.conf"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a/",
            "a\\b",
            "a\nb",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
