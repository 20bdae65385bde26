//! `files.kubeconfig-perms`: the guide's "Command Permissions" — each user's `~/.kube/config` belongs to that
//! user and is not readable by others; kubeadm's admin.conf, super-admin.conf and kubelet.conf are root's alone.

use super::{Area};
use crate::core::{check::CheckDef, source::Source};
use crate::{
    core::check::Finding,
    core::facts::Fact,
    core::host::{FileStat, Host},
};


pub const AREA: Area = Area {
    checks: &[
        CheckDef {
            id: "files.kubeconfig-perms",
            needs: &[&KUBECONFIGS],
            run: |f, _| Ok(decide(f.get(&KUBECONFIGS)?)),
        },
    ],
    fixes: &[],
};

/// kubeadm's kubeconfigs and every user's ~/.kube/config, with owners and modes.
pub const KUBECONFIGS: Source<PermsFacts> = Source::files("kubeconfig-files", |g| gather(g.host));

/// Credentials kubeadm writes that only root may read.
pub const ROOT_ONLY: &[&str] = &[
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/super-admin.conf",
    "/etc/kubernetes/kubelet.conf",
];

/// A login of /etc/passwd: name, uid, home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub home: String,
}

/// Parses /etc/passwd (`name:x:uid:gid:gecos:home:shell`); malformed lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<User> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7 && !l.starts_with('#')).then_some(())?;
            Some(User {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubeconfig {
    pub path: String,
    /// The user whose file it is (None: root-only kubeadm file).
    pub user: Option<User>,
    pub stat: FileStat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermsFacts {
    pub files: Vec<Kubeconfig>,
    /// uid → name, to say who owns a file.
    pub names: Vec<(u32, String)>,
}

pub fn gather(host: &Host) -> Fact<PermsFacts> {
    let users = parse_passwd(&host.read("/etc/passwd")?);
    let mut files = Vec::new();
    for p in ROOT_ONLY {
        if let Some(stat) = host.stat(p)? {
            files.push(Kubeconfig {
                path: p.to_string(),
                user: None,
                stat,
            });
        }
    }
    let mut homes = std::collections::BTreeSet::new();
    for u in &users {
        if !u.home.starts_with('/') || u.home == "/" || !homes.insert(u.home.clone()) {
            continue;
        }
        let p = format!("{}/.kube/config", u.home.trim_end_matches('/'));
        if let Some(stat) = host.stat(&p)? {
            files.push(Kubeconfig {
                path: p,
                user: Some(u.clone()),
                stat,
            });
        }
    }
    Ok(PermsFacts {
        files,
        names: users.iter().map(|u| (u.uid, u.name.clone())).collect(),
    })
}

fn owner(p: &PermsFacts, uid: u32) -> String {
    p.names
        .iter()
        .find(|(u, _)| *u == uid)
        .map_or(format!("uid {uid}"), |(_, n)| n.clone())
}

pub fn decide(p: &PermsFacts) -> Finding {
    if p.files.is_empty() {
        return Finding::skip(
            "no kubeconfig here: neither kubeadm's admin.conf/kubelet.conf nor any user's ~/.kube/config",
        );
    }
    let mut ev = Vec::new();
    let mut bad = Vec::new();
    let mut fixes = Vec::new();
    for f in &p.files {
        let who = owner(p, f.stat.uid);
        ev.push(format!("{}: owner {who}, mode {:04o}", f.path, f.stat.mode));
        match &f.user {
            None => {
                if f.stat.uid != 0 || f.stat.mode & 0o077 != 0 {
                    bad.push(format!(
                        "{} is {:04o} owned by {who}: it holds cluster credentials and must be root's alone",
                        f.path, f.stat.mode
                    ));
                    fixes.push(format!("chown root:root {0} && chmod 600 {0}", f.path));
                }
            }
            Some(u) => {
                if f.stat.uid != u.uid {
                    bad.push(format!(
                        "{} belongs to {who}, not {}: kubectl run as {} fails with \"permission denied\"",
                        f.path, u.name, u.name
                    ));
                    fixes.push(format!("chown {}: {}", u.name, f.path));
                }
                if f.stat.mode & 0o004 != 0 {
                    bad.push(format!(
                        "{} is readable by every user ({:04o}): anyone on the node gets its cluster credentials",
                        f.path, f.stat.mode
                    ));
                    fixes.push(format!("chmod 600 {}", f.path));
                }
            }
        }
    }
    if bad.is_empty() {
        return Finding::pass(format!(
            "{} kubeconfig(s) owned and protected as they should be",
            p.files.len()
        ))
        .evidence_all(ev);
    }
    Finding::warn(bad.join("; "))
        .evidence_all(ev)
        .remediation(fixes.join("; "))
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::check::Status;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nkube:x:1000:1000:Kube Admin,,,:/home/kube:/bin/bash\nbroken line\n";

    fn stat(uid: u32, mode: u32) -> FileStat {
        FileStat {
            uid,
            gid: uid,
            mode,
            is_file: true,
            is_dir: false,
        }
    }

    #[test]
    fn parses_passwd() {
        let u = parse_passwd(PASSWD);
        assert_eq!(u.len(), 4);
        assert_eq!(
            u[3],
            User {
                name: "kube".into(),
                uid: 1000,
                home: "/home/kube".into()
            }
        );
    }

    #[test]
    fn verdicts() {
        let users = parse_passwd(PASSWD);
        let kube = users[3].clone();
        let names = users.iter().map(|u| (u.uid, u.name.clone())).collect();
        let mut p = PermsFacts {
            files: vec![
                Kubeconfig {
                    path: "/etc/kubernetes/admin.conf".into(),
                    user: None,
                    stat: stat(0, 0o600),
                },
                Kubeconfig {
                    path: "/home/kube/.kube/config".into(),
                    user: Some(kube.clone()),
                    stat: stat(1000, 0o600),
                },
            ],
            names,
        };
        assert_eq!(decide(&p).status, Status::Pass);
        // The guide's copy without the chown: root owns the user's config.
        p.files[1].stat = stat(0, 0o644);
        let f = decide(&p);
        assert_eq!(f.status, Status::Warn);
        assert!(
            f.message.contains("belongs to root, not kube"),
            "{}",
            f.message
        );
        assert!(
            f.message.contains("readable by every user"),
            "{}",
            f.message
        );
        assert_eq!(
            f.remediation.as_deref(),
            Some("chown kube: /home/kube/.kube/config; chmod 600 /home/kube/.kube/config")
        );
        p.files[1].stat = stat(1000, 0o600);
        p.files[0].stat = stat(0, 0o644);
        assert!(decide(&p).message.contains("root's alone"));
        p.files.clear();
        assert_eq!(decide(&p).status, Status::Skip);
    }
}
