//! The container runtimes' own configuration: containerd's `config.toml` (v1/v2 and v3 layouts), CRI-O's
//! `crio.conf` plus `crio.conf.d`, Docker's `daemon.json` (for cri-dockerd) — the cgroup driver each uses
//! and whether containerd serves the CRI at all.

use toml::Value;

pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
pub const CRIO_CONFIG: &str = "/etc/crio/crio.conf";
pub const CRIO_CONFIG_DIR: &str = "/etc/crio/crio.conf.d";
pub const DOCKER_DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// A cgroup driver as the kubelet names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Systemd,
    Cgroupfs,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Systemd => "systemd",
            Driver::Cgroupfs => "cgroupfs",
        }
    }

    pub fn parse(s: &str) -> Option<Driver> {
        match s.trim().trim_matches('"') {
            "systemd" => Some(Driver::Systemd),
            "cgroupfs" => Some(Driver::Cgroupfs),
            _ => None,
        }
    }
}

/// A runtime's driver and the evidence line that decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeDriver {
    pub driver: Driver,
    pub evidence: String,
}

/// What containerd's config says that our checks read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Containerd {
    pub driver: RuntimeDriver,
    /// `disabled_plugins` entry that turns the CRI off (Docker's containerd package ships `["cri"]`).
    pub cri_disabled: Option<String>,
}

/// The 1-based line of the first line containing `needle`, for evidence.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.split('#').next().unwrap_or("");
            l.contains(needle)
        })
        .map(|i| i + 1)
}

fn table<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// Parses containerd's config.toml. Version 3 (containerd 2.x) keeps the runtimes under
/// `io.containerd.cri.v1.runtime`; versions 1/2 under `io.containerd.grpc.v1.cri` (v1 also as `cri`).
pub fn parse_containerd(file: &str, text: &str) -> Result<Containerd, String> {
    let v: Value = toml::from_str(text).map_err(|e| format!("{file}: not valid TOML: {e}"))?;
    let version = v.get("version").and_then(Value::as_integer).unwrap_or(1);
    let cri_disabled = v
        .get("disabled_plugins")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter().filter_map(Value::as_str).find(|p| {
                matches!(
                    *p,
                    "cri" | "io.containerd.grpc.v1.cri" | "io.containerd.cri.v1.runtime"
                )
            })
        })
        .map(|p| {
            format!(
                "{file}:{}: disabled_plugins = [\"{p}\"]",
                line_of(text, "disabled_plugins").unwrap_or(0)
            )
        });
    let plugin_keys: &[&str] = if version >= 3 {
        &["io.containerd.cri.v1.runtime"]
    } else {
        &["io.containerd.grpc.v1.cri", "cri"]
    };
    let cri = plugin_keys.iter().find_map(|k| table(&v, &["plugins", k]));
    let default_runtime = cri
        .and_then(|c| table(c, &["containerd", "default_runtime_name"]))
        .and_then(Value::as_str)
        .unwrap_or("runc");
    let systemd = cri
        .and_then(|c| {
            table(
                c,
                &[
                    "containerd",
                    "runtimes",
                    default_runtime,
                    "options",
                    "SystemdCgroup",
                ],
            )
        })
        .and_then(Value::as_bool);
    let driver = match systemd {
        Some(b) => RuntimeDriver {
            driver: if b { Driver::Systemd } else { Driver::Cgroupfs },
            evidence: format!(
                "{file}:{}: SystemdCgroup = {b} (runtime {default_runtime}, config version {version})",
                line_of(text, "SystemdCgroup").unwrap_or(0)
            ),
        },
        None => RuntimeDriver {
            driver: Driver::Cgroupfs,
            evidence: format!(
                "{file}: no SystemdCgroup for runtime {default_runtime}: containerd's default is cgroupfs"
            ),
        },
    };
    Ok(Containerd {
        driver,
        cri_disabled,
    })
}

/// containerd without a config file: its built-in defaults (CRI on, cgroupfs).
pub fn containerd_defaults() -> Containerd {
    Containerd {
        driver: RuntimeDriver {
            driver: Driver::Cgroupfs,
            evidence: format!(
                "{CONTAINERD_CONFIG}: does not exist: containerd's default is cgroupfs"
            ),
        },
        cri_disabled: None,
    }
}

/// CRI-O's `cgroup_manager` from crio.conf and the crio.conf.d drop-ins (later files win); default systemd.
pub fn parse_crio(files: &[(String, String)]) -> Result<RuntimeDriver, String> {
    let mut found = None;
    for (file, text) in files {
        let v: Value = toml::from_str(text).map_err(|e| format!("{file}: not valid TOML: {e}"))?;
        if let Some(m) = table(&v, &["crio", "runtime", "cgroup_manager"]).and_then(Value::as_str) {
            let driver =
                Driver::parse(m).ok_or_else(|| format!("{file}: unknown cgroup_manager {m:?}"))?;
            found = Some(RuntimeDriver {
                driver,
                evidence: format!(
                    "{file}:{}: cgroup_manager = \"{m}\"",
                    line_of(text, "cgroup_manager").unwrap_or(0)
                ),
            });
        }
    }
    Ok(found.unwrap_or(RuntimeDriver {
        driver: Driver::Systemd,
        evidence: "crio.conf: no cgroup_manager: CRI-O's default is systemd".into(),
    }))
}

/// Docker's cgroup driver from daemon.json `exec-opts` (`native.cgroupdriver=systemd`); its default is
/// systemd on cgroup v2 and cgroupfs on v1.
pub fn parse_docker(text: Option<&str>, cgroup_v2: bool) -> Result<RuntimeDriver, String> {
    let default = || RuntimeDriver {
        driver: if cgroup_v2 {
            Driver::Systemd
        } else {
            Driver::Cgroupfs
        },
        evidence: format!(
            "{DOCKER_DAEMON_JSON}: no native.cgroupdriver: Docker's default on cgroup {} is {}",
            if cgroup_v2 { "v2" } else { "v1" },
            if cgroup_v2 { "systemd" } else { "cgroupfs" }
        ),
    };
    let Some(text) = text else {
        return Ok(default());
    };
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("{DOCKER_DAEMON_JSON}: not valid JSON: {e}"))?;
    let opt = v["exec-opts"].as_array().and_then(|a| {
        a.iter()
            .filter_map(|o| o.as_str())
            .find_map(|o| o.strip_prefix("native.cgroupdriver="))
    });
    match opt {
        Some(d) => Ok(RuntimeDriver {
            driver: Driver::parse(d)
                .ok_or_else(|| format!("{DOCKER_DAEMON_JSON}: unknown cgroup driver {d:?}"))?,
            evidence: format!("{DOCKER_DAEMON_JSON}: exec-opts native.cgroupdriver={d}"),
        }),
        None => Ok(default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `containerd config default` of containerd 1.7, trimmed, with the guide's edit.
    const CONTAINERD_V2: &str = r#"disabled_plugins = []
version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.8"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          runtime_type = "io.containerd.runc.v2"
          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            SystemdCgroup = true
"#;

    #[test]
    fn containerd_v2_v3_and_dockers_package() {
        let c = parse_containerd(CONTAINERD_CONFIG, CONTAINERD_V2).unwrap();
        assert_eq!(c.driver.driver, Driver::Systemd);
        assert_eq!(
            c.driver.evidence,
            "/etc/containerd/config.toml:13: SystemdCgroup = true (runtime runc, config version 2)"
        );
        assert_eq!(c.cri_disabled, None);
        let v3 = "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n  SystemdCgroup = false\n";
        let c = parse_containerd("f", v3).unwrap();
        assert_eq!(c.driver.driver, Driver::Cgroupfs);
        // A v2-style key in a v3 file is not read: containerd 2 ignores it too.
        let mixed = "version = 3\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n";
        assert_eq!(
            parse_containerd("f", mixed).unwrap().driver.driver,
            Driver::Cgroupfs
        );
        // Docker's containerd.io package: CRI disabled.
        let docker = "#   Copyright 2018-2022 Docker Inc.\n\ndisabled_plugins = [\"cri\"]\n";
        let c = parse_containerd(CONTAINERD_CONFIG, docker).unwrap();
        assert_eq!(
            c.cri_disabled.as_deref(),
            Some("/etc/containerd/config.toml:3: disabled_plugins = [\"cri\"]")
        );
        assert_eq!(c.driver.driver, Driver::Cgroupfs);
        // A custom default runtime is the one that counts.
        let crun = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\ndefault_runtime_name = \"crun\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.crun.options]\nSystemdCgroup = true\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = false\n";
        assert_eq!(
            parse_containerd("f", crun).unwrap().driver.driver,
            Driver::Systemd
        );
        assert!(parse_containerd("f", "version = [").is_err());
    }

    #[test]
    fn crio_drop_ins_win_and_default_is_systemd() {
        let files = vec![
            (
                CRIO_CONFIG.to_string(),
                "[crio.runtime]\ncgroup_manager = \"systemd\"\n".to_string(),
            ),
            (
                format!("{CRIO_CONFIG_DIR}/02-cgroup.conf"),
                "[crio.runtime]\nconmon_cgroup = \"pod\"\ncgroup_manager = \"cgroupfs\"\n"
                    .to_string(),
            ),
        ];
        let d = parse_crio(&files).unwrap();
        assert_eq!(d.driver, Driver::Cgroupfs);
        assert_eq!(
            d.evidence,
            "/etc/crio/crio.conf.d/02-cgroup.conf:3: cgroup_manager = \"cgroupfs\""
        );
        assert_eq!(parse_crio(&[]).unwrap().driver, Driver::Systemd);
        let bad = vec![(
            "f".to_string(),
            "[crio.runtime]\ncgroup_manager = \"x\"\n".to_string(),
        )];
        assert!(parse_crio(&bad).is_err());
    }

    #[test]
    fn docker_exec_opts_and_defaults() {
        let d = parse_docker(
            Some(r#"{"exec-opts": ["native.cgroupdriver=systemd"]}"#),
            false,
        )
        .unwrap();
        assert_eq!(d.driver, Driver::Systemd);
        assert_eq!(parse_docker(None, true).unwrap().driver, Driver::Systemd);
        assert_eq!(
            parse_docker(Some("{}"), false).unwrap().driver,
            Driver::Cgroupfs
        );
        assert!(parse_docker(Some("{"), false).is_err());
    }
}
