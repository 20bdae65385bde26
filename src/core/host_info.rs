//! What the report says about the machine the doctor ran on, read through [`Host`].

use super::{host::Host, status::Role};
use crate::report::HostInfo;

/// The host block of a report: hostname, kernel, OS, root and role.
pub fn host_info(host: &Host, role: Role) -> HostInfo {
    let first_line = |p: &str| {
        host.read_opt(p)
            .ok()
            .flatten()
            .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
            .filter(|s| !s.is_empty())
    };
    let hostname = if host.is_live() {
        first_line("/proc/sys/kernel/hostname")
    } else {
        first_line("/etc/hostname")
    };
    let os = host
        .read_opt("/etc/os-release")
        .ok()
        .flatten()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim().trim_matches('"').to_string())
        });
    HostInfo {
        hostname: hostname.unwrap_or_else(|| "unknown".into()),
        kernel: first_line("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
        os: os.unwrap_or_else(|| "unknown".into()),
        root: host.root().display().to_string(),
        role: role.as_str().into(),
        stage: None,
    }
}
