//! `host.binaries`: the tools kubeadm's `FileExisting-*` checks want on PATH, looked up on the node's own
//! PATH under the root (never the doctor's), as executable files.

use super::{Area};
use crate::core::{check::CheckDef, source::Source};
use crate::{
    core::check::Finding,
    core::facts::Fact,
    core::host::Host,
};


pub const AREA: Area = Area {
    checks: &[
        CheckDef {
            id: "host.binaries",
            needs: &[&BINARIES],
            run: |f, _| Ok(decide(f.get(&BINARIES)?)),
        },
    ],
    fixes: &[],
};

/// kubeadm's required tools on the node's own PATH.
pub const BINARIES: Source<BinariesFacts> = Source::files("node-path-tools", |g| gather(g.host));

/// kubeadm's mandatory `InPathCheck`s today: mount (kubelet volumes), cp (etcd data), losetup (block volumes).
/// ip, iptables, ethtool and tc were dropped in 1.32 (kubernetes#129131), conntrack for 1.32+ clusters.
pub const REQUIRED: &[&str] = &["losetup", "mount", "cp"];
/// PATH when neither /etc/environment nor /etc/login.defs sets one (Debian's and RHEL's root PATH).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `PATH=...` of /etc/environment (pam_env syntax: optional quotes, optional `export`).
pub fn environment_path(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let l = l.trim();
        let l = l.strip_prefix("export ").unwrap_or(l);
        let v = l.strip_prefix("PATH=")?;
        Some(v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

/// `ENV_SUPATH PATH=...` of /etc/login.defs: root's PATH after `su`/login.
pub fn login_defs_supath(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next()? == "ENV_SUPATH").then_some(())?;
        f.next()?.strip_prefix("PATH=").map(String::from)
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinariesFacts {
    /// The PATH used and where it came from.
    pub path: String,
    pub path_source: String,
    /// PATH directories that exist under the root.
    pub dirs: Vec<String>,
    /// Each required tool and where it was found.
    pub found: Vec<(String, Option<String>)>,
}

pub fn gather(host: &Host) -> Fact<BinariesFacts> {
    let (path, path_source) = if let Some(p) = host
        .read_opt("/etc/environment")?
        .as_deref()
        .and_then(environment_path)
    {
        (p, "/etc/environment".to_string())
    } else if let Some(p) = host
        .read_opt("/etc/login.defs")?
        .as_deref()
        .and_then(login_defs_supath)
    {
        (p, "/etc/login.defs: ENV_SUPATH".to_string())
    } else {
        (
            DEFAULT_PATH.to_string(),
            "the default root PATH".to_string(),
        )
    };
    let mut dirs = Vec::new();
    for d in path.split(':').filter(|d| d.starts_with('/')) {
        if host.stat(d)?.is_some_and(|s| s.is_dir) && !dirs.iter().any(|x| x == d) {
            dirs.push(d.to_string());
        }
    }
    let mut found = Vec::new();
    for tool in REQUIRED {
        let mut at = None;
        for d in &dirs {
            let p = format!("{d}/{tool}");
            if host
                .stat(&p)?
                .is_some_and(|s| s.is_file && s.mode & 0o111 != 0)
            {
                at = Some(p);
                break;
            }
        }
        found.push((tool.to_string(), at));
    }
    Ok(BinariesFacts {
        path,
        path_source,
        dirs,
        found,
    })
}

pub fn decide(b: &BinariesFacts) -> Finding {
    if !b.dirs.iter().any(|d| d == "/usr/bin" || d == "/bin") {
        return Finding::skip(format!(
            "neither /usr/bin nor /bin is on PATH under this root ({}, from {}): not a full root file system",
            b.path, b.path_source
        ));
    }
    let mut ev = vec![format!("PATH={} (from {})", b.path, b.path_source)];
    let mut missing = Vec::new();
    for (tool, at) in &b.found {
        match at {
            Some(p) => ev.push(format!("{tool}: {p}")),
            None => {
                ev.push(format!("{tool}: not in any PATH directory"));
                missing.push(tool.as_str());
            }
        }
    }
    if missing.is_empty() {
        return Finding::pass(format!("{} are on PATH", REQUIRED.join(", "))).evidence_all(ev);
    }
    let kubeadm: Vec<String> = missing
        .iter()
        .map(|t| format!("[ERROR FileExisting-{t}]"))
        .collect();
    Finding::fail(format!(
        "{} not found on PATH; kubeadm's preflight fails with {}",
        missing.join(", "),
        kubeadm.join(" ")
    ))
    .evidence_all(ev)
    .remediation("install util-linux (losetup, mount) and coreutils (cp): `apt-get install util-linux mount coreutils` or `dnf install util-linux coreutils`")
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::check::Status;

    #[test]
    fn path_sources() {
        assert_eq!(
            environment_path("LANG=C\nPATH=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games\"\n")
                .as_deref(),
            Some("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games")
        );
        assert_eq!(environment_path("LANG=C\n"), None);
        assert_eq!(
            login_defs_supath("# su\nENV_SUPATH\tPATH=/usr/local/sbin:/usr/sbin:/usr/bin\nENV_PATH PATH=/usr/bin\n")
                .as_deref(),
            Some("/usr/local/sbin:/usr/sbin:/usr/bin")
        );
    }

    #[test]
    fn verdicts() {
        let mut b = BinariesFacts {
            path: DEFAULT_PATH.into(),
            path_source: "x".into(),
            dirs: vec!["/usr/bin".into()],
            found: vec![
                ("losetup".into(), Some("/usr/sbin/losetup".into())),
                ("mount".into(), Some("/usr/bin/mount".into())),
                ("cp".into(), Some("/usr/bin/cp".into())),
            ],
        };
        assert_eq!(decide(&b).status, Status::Pass);
        b.found[0].1 = None;
        let f = decide(&b);
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.message.contains("[ERROR FileExisting-losetup]"),
            "{}",
            f.message
        );
        b.dirs = vec!["/sbin".into()];
        assert_eq!(
            decide(&b).status,
            Status::Skip,
            "a root without /usr/bin or /bin is not judged"
        );
    }
}
