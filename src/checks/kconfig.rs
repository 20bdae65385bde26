//! `kernel.config`: the running kernel's build config (`/proc/config.gz`, `/boot/config-<release>` and the
//! other places system-validators looks), checked against what it requires. Never `modprobe configs`:
//! with no config file the check skips.

use super::{Area};
use crate::core::{check::CheckDef, source::Source};
use std::{collections::BTreeMap, io::Read};

use crate::{
    core::check::Finding,
    core::facts::{Fact, FactError},
    core::host::Host,
};


pub const AREA: Area = Area {
    checks: &[
        CheckDef {
            id: "kernel.config",
            needs: &[&KERNEL_CONFIG],
            run: |f, _| Ok(decide(f.get(&KERNEL_CONFIG)?)),
        },
    ],
    fixes: &[],
};

/// The running kernel's build config (also read by kernel.br-netfilter).
pub const KERNEL_CONFIG: Source<KernelConfig> = Source::files("kernel-config", |g| gather(g.host));

/// A decompressed config larger than this is not a kernel config.
const MAX_CONFIG: u64 = 4 << 20;

/// What system-validators' DefaultSysSpec requires (name, aliases).
pub const REQUIRED: &[(&str, &[&str])] = &[
    ("NAMESPACES", &[]),
    ("NET_NS", &[]),
    ("PID_NS", &[]),
    ("IPC_NS", &[]),
    ("UTS_NS", &[]),
    ("CGROUPS", &[]),
    ("CGROUP_CPUACCT", &[]),
    ("CGROUP_DEVICE", &[]),
    ("CGROUP_FREEZER", &[]),
    ("CGROUP_SCHED", &[]),
    ("CPUSETS", &[]),
    ("MEMCG", &[]),
    ("INET", &[]),
    ("EXT4_FS", &[]),
    ("PROC_FS", &[]),
    ("NETFILTER_XT_TARGET_REDIRECT", &["IP_NF_TARGET_REDIRECT"]),
    ("NETFILTER_XT_MATCH_COMMENT", &[]),
    ("FAIR_GROUP_SCHED", &[]),
];
/// Optional entries that still matter to a kubeadm node today (aufs and devicemapper do not).
pub const OPTIONAL: &[(&str, &[&str], &str)] = &[
    (
        "OVERLAY_FS",
        &["OVERLAYFS_FS"],
        "containerd's and CRI-O's default overlayfs snapshotter",
    ),
    ("CFS_BANDWIDTH", &[], "CPU limits of pods"),
];

/// Where a kernel config may be, in system-validators' order, for a release.
pub fn config_paths(release: &str) -> Vec<String> {
    vec![
        "/proc/config.gz".into(),
        format!("/boot/config-{release}"),
        format!("/usr/src/linux-{release}/.config"),
        "/usr/src/linux/.config".into(),
        format!("/usr/lib/modules/{release}/config"),
        format!("/usr/lib/ostree-boot/config-{release}"),
        format!("/usr/lib/kernel/config-{release}"),
        format!("/usr/src/linux-headers-{release}/.config"),
        format!("/lib/modules/{release}/build/.config"),
    ]
}

/// A config option's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opt {
    BuiltIn,
    Module,
    /// `=n` or `# CONFIG_X is not set`.
    Off,
}

/// Parses a kernel config: `CONFIG_X=y|m|n` and `# CONFIG_X is not set`; string/number options are ignored.
pub fn parse(text: &str) -> BTreeMap<String, Opt> {
    let mut m = BTreeMap::new();
    for l in text.lines() {
        let l = l.trim();
        if let Some(name) = l
            .strip_prefix("# CONFIG_")
            .and_then(|r| r.strip_suffix(" is not set"))
        {
            m.insert(name.to_string(), Opt::Off);
        } else if let Some((k, v)) = l.strip_prefix("CONFIG_").and_then(|r| r.split_once('=')) {
            let opt = match v {
                "y" => Opt::BuiltIn,
                "m" => Opt::Module,
                "n" => Opt::Off,
                _ => continue,
            };
            m.insert(k.to_string(), opt);
        }
    }
    m
}

/// Decompresses /proc/config.gz, capped.
pub fn gunzip(bytes: &[u8]) -> Result<String, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_CONFIG + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not a gzip file: {e}"))?;
    if out.len() as u64 > MAX_CONFIG {
        return Err(format!("larger than {} MiB decompressed", MAX_CONFIG >> 20));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelConfig {
    pub file: String,
    pub options: BTreeMap<String, Opt>,
}

impl KernelConfig {
    /// The value of `CONFIG_<name>` (or an alias), with the name that had it.
    pub fn get(&self, name: &str, aliases: &[&str]) -> Option<(String, Opt)> {
        std::iter::once(&name)
            .chain(aliases)
            .find_map(|n| self.options.get(*n).map(|o| (n.to_string(), *o)))
    }
}

/// Finds and reads the running kernel's config; `Missing` when no file exists (no modprobe, ever).
pub fn gather(host: &Host) -> Fact<KernelConfig> {
    let release = host
        .read("/proc/sys/kernel/osrelease")
        .map(|t| t.trim().to_string())
        .map_err(|_| {
            FactError::Missing(
                "the kernel release is unknown (/proc/sys/kernel/osrelease absent)".into(),
            )
        })?;
    let paths = config_paths(&release);
    for p in &paths {
        let Some(bytes) = host.read_bytes(p)? else {
            continue;
        };
        let text = if p.ends_with(".gz") {
            gunzip(&bytes).map_err(|e| FactError::Unreadable(format!("{p}: {e}")))?
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        return Ok(KernelConfig {
            file: p.clone(),
            options: parse(&text),
        });
    }
    Err(FactError::Missing(format!(
        "no kernel config for {release} (looked in /proc/config.gz, /boot/config-{release} and {} more); k8sdoctor never runs `modprobe configs`",
        paths.len() - 2
    )))
}

fn describe(o: Opt) -> &'static str {
    match o {
        Opt::BuiltIn => "y",
        Opt::Module => "m",
        Opt::Off => "not set",
    }
}

pub fn decide(k: &KernelConfig) -> Finding {
    let mut ev = vec![format!("{}: {} options", k.file, k.options.len())];
    let mut missing = Vec::new();
    for (name, aliases) in REQUIRED {
        match k.get(name, aliases) {
            Some((n, o)) if o != Opt::Off => ev.push(format!("CONFIG_{n}={}", describe(o))),
            Some((n, _)) => missing.push(format!("CONFIG_{n} (not set)")),
            None => missing.push(format!("CONFIG_{name} (absent)")),
        }
    }
    let mut weak = Vec::new();
    for (name, aliases, what) in OPTIONAL {
        match k.get(name, aliases) {
            Some((n, o)) if o != Opt::Off => ev.push(format!("CONFIG_{n}={}", describe(o))),
            _ => weak.push(format!("CONFIG_{name} ({what})")),
        }
    }
    if !missing.is_empty() {
        return Finding::fail(format!(
            "the kernel lacks what the kubelet needs: {}; kubeadm's SystemVerification fails with \"unexpected kernel config\"",
            missing.join(", ")
        ))
        .evidence_all(ev)
        .remediation("boot a distribution kernel (they have all of these), or rebuild this one with the options above =y or =m");
    }
    if !weak.is_empty() {
        return Finding::warn(format!("the kernel lacks {}", weak.join(", ")))
            .evidence_all(ev)
            .remediation("boot a kernel with these options (=y or =m), or configure the runtime for another snapshotter");
    }
    Finding::pass(format!(
        "the kernel config has all {} options system-validators requires",
        REQUIRED.len()
    ))
    .evidence_all(ev)
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::check::Status;

    /// The required options of a Debian 12 config (6.1.0-18-amd64), with the lines around them.
    pub(crate) const DEBIAN12: &str = "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.1.76 Kernel Configuration\n#\nCONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian 12.2.0-14) 12.2.0\"\nCONFIG_NAMESPACES=y\nCONFIG_UTS_NS=y\nCONFIG_IPC_NS=y\nCONFIG_PID_NS=y\nCONFIG_NET_NS=y\nCONFIG_CGROUPS=y\nCONFIG_CGROUP_CPUACCT=y\nCONFIG_CGROUP_DEVICE=y\nCONFIG_CGROUP_FREEZER=y\nCONFIG_CGROUP_SCHED=y\nCONFIG_FAIR_GROUP_SCHED=y\nCONFIG_CFS_BANDWIDTH=y\nCONFIG_CPUSETS=y\nCONFIG_MEMCG=y\nCONFIG_INET=y\nCONFIG_EXT4_FS=y\nCONFIG_PROC_FS=y\nCONFIG_NETFILTER_XT_TARGET_REDIRECT=m\nCONFIG_NETFILTER_XT_MATCH_COMMENT=m\nCONFIG_OVERLAY_FS=m\nCONFIG_MODULES=y\nCONFIG_BRIDGE_NETFILTER=m\n# CONFIG_AUFS_FS is not set\nCONFIG_HZ=250\n";

    #[test]
    fn parses_values_and_not_set_lines() {
        let m = parse(DEBIAN12);
        assert_eq!(m.get("NAMESPACES"), Some(&Opt::BuiltIn));
        assert_eq!(m.get("OVERLAY_FS"), Some(&Opt::Module));
        assert_eq!(m.get("AUFS_FS"), Some(&Opt::Off));
        assert_eq!(m.get("HZ"), None, "numbers are not tristates");
        assert_eq!(m.get("CC_VERSION_TEXT"), None);
        assert_eq!(
            config_paths("6.1.0-18-amd64")[1],
            "/boot/config-6.1.0-18-amd64"
        );
    }

    #[test]
    fn gzip_round_trip_and_garbage() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(DEBIAN12.as_bytes()).unwrap();
        let gz = e.finish().unwrap();
        assert_eq!(gunzip(&gz).unwrap(), DEBIAN12);
        assert!(gunzip(b"not gzip").is_err());
    }

    #[test]
    fn verdicts() {
        let k = KernelConfig {
            file: "/boot/config-6.1.0-18-amd64".into(),
            options: parse(DEBIAN12),
        };
        let f = decide(&k);
        assert_eq!(f.status, Status::Pass, "{f:?}");
        assert!(
            f.evidence
                .contains(&"CONFIG_NETFILTER_XT_TARGET_REDIRECT=m".to_string())
        );
        // An old kernel names REDIRECT differently: the alias counts.
        let text = DEBIAN12.replace(
            "CONFIG_NETFILTER_XT_TARGET_REDIRECT=m",
            "CONFIG_IP_NF_TARGET_REDIRECT=y",
        );
        let f = decide(&KernelConfig {
            file: "f".into(),
            options: parse(&text),
        });
        assert_eq!(f.status, Status::Pass);
        let text = DEBIAN12.replace("CONFIG_MEMCG=y", "# CONFIG_MEMCG is not set");
        let f = decide(&KernelConfig {
            file: "f".into(),
            options: parse(&text),
        });
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.message.contains("CONFIG_MEMCG (not set)"),
            "{}",
            f.message
        );
        let text = DEBIAN12.replace("CONFIG_OVERLAY_FS=m\n", "");
        assert_eq!(
            decide(&KernelConfig {
                file: "f".into(),
                options: parse(&text)
            })
            .status,
            Status::Warn
        );
    }
}
