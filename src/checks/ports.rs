//! `ports.in-use`: kubeadm's ports from the LISTEN rows of `/proc/net/tcp{,6}` (never by binding), and
//! which process holds each one, through the socket inodes behind `/proc/*/fd`.

use super::{Area, stage::STAGE};
use crate::core::{check::CheckDef, source::Source};
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv6Addr},
};

use crate::{
    core::check::{Finding, Role},
    core::facts::Fact,
    core::host::Host,
    procnet::host_order_hex,
};

use crate::core::stage::Stage;


pub const AREA: Area = Area {
    checks: &[
        CheckDef {
            id: "ports.in-use",
            needs: &[&LISTENERS, &STAGE],
            run: |f, c| Ok(decide(f.get(&LISTENERS)?, c.role, *f.get(&STAGE)?)),
        },
    ],
    fixes: &[],
};

/// The LISTEN rows of /proc/net/tcp{,6} and the processes that hold kubeadm's ports.
pub const LISTENERS: Source<PortsFacts> = Source::files("listeners", |g| gather(g.host));

/// A port kubeadm needs, the component that holds it once installed, and whether only a control plane needs it.
#[derive(Debug, Clone, Copy)]
pub struct KubePort {
    pub port: u16,
    pub component: &'static str,
    pub control_plane_only: bool,
}

/// kubeadm's `Port-N` checks: init binds 6443, 10259, 10257, 2379, 2380; init and join bind 10250.
pub const PORTS: &[KubePort] = &[
    KubePort {
        port: 6443,
        component: "kube-apiserver",
        control_plane_only: true,
    },
    KubePort {
        port: 10259,
        component: "kube-scheduler",
        control_plane_only: true,
    },
    KubePort {
        port: 10257,
        component: "kube-controller-manager",
        control_plane_only: true,
    },
    KubePort {
        port: 2379,
        component: "etcd",
        control_plane_only: true,
    },
    KubePort {
        port: 2380,
        component: "etcd",
        control_plane_only: true,
    },
    KubePort {
        port: 10250,
        component: "kubelet",
        control_plane_only: false,
    },
];

/// The ports a node of this role needs.
pub fn ports_for(role: Role) -> impl Iterator<Item = &'static KubePort> {
    PORTS
        .iter()
        .filter(move |p| role == Role::ControlPlane || !p.control_plane_only)
}

/// TCP state 0A in /proc/net/tcp.
const LISTEN: &str = "0A";
/// Stop looking through /proc/*/fd after this many descriptors: a bound on a host with huge fd tables.
const MAX_FDS: usize = 200_000;

/// One LISTEN row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub file: String,
    pub line: usize,
    pub addr: IpAddr,
    pub port: u16,
    pub inode: u64,
}

impl Listener {
    pub fn cite(&self) -> String {
        let addr = match self.addr {
            IpAddr::V6(a) => format!("[{a}]"),
            a => a.to_string(),
        };
        format!(
            "{}:{}: {addr}:{} LISTEN (socket inode {})",
            self.file, self.line, self.port, self.inode
        )
    }
}

/// An IPv6 address as /proc/net/tcp6 prints it: four 32-bit words, each in host order.
pub fn host_order_hex6(s: &str) -> Option<Ipv6Addr> {
    if s.len() != 32 || !s.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(4).enumerate() {
        let word = u32::from_str_radix(&s[i * 8..i * 8 + 8], 16).ok()?;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    Some(Ipv6Addr::from(bytes))
}

/// The LISTEN rows of /proc/net/tcp or tcp6 text; `file` names it in evidence. Malformed rows are skipped.
pub fn parse_listeners(file: &str, text: &str) -> Vec<Listener> {
    text.lines()
        .enumerate()
        .skip(1)
        .filter_map(|(i, l)| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(3) != Some(&LISTEN) {
                return None;
            }
            let (addr, port) = f.get(1)?.split_once(':')?;
            let addr = match addr.len() {
                8 => IpAddr::V4(host_order_hex(addr)?),
                32 => IpAddr::V6(host_order_hex6(addr)?),
                _ => return None,
            };
            Some(Listener {
                file: file.to_string(),
                line: i + 1,
                addr,
                port: u16::from_str_radix(port, 16).ok()?,
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// The inode of a `/proc/PID/fd/N` link target `socket:[12345]`.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// A process holding a listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    /// `/proc/PID/comm`: the name, cut to 15 bytes by the kernel.
    pub comm: String,
}

impl Owner {
    /// Whether this process is `component` (comm is cut at 15 bytes: `kube-controller`).
    pub fn is(&self, component: &str) -> bool {
        let cut = &component[..component.len().min(15)];
        self.comm == cut
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortsFacts {
    pub listeners: Vec<Listener>,
    /// Owners by socket inode, for the inodes of kubeadm's ports that could be traced.
    pub owners: BTreeMap<u64, Owner>,
    /// Why owners may be missing (not the live host, /proc/PID/fd not readable ...), when they may be.
    pub owners_note: Option<String>,
}

/// Reads /proc/net/tcp{,6} and traces the owners of kubeadm's ports; tcp6 absent (IPv6 off) is fine.
pub fn gather(host: &Host) -> Fact<PortsFacts> {
    let mut listeners = parse_listeners("/proc/net/tcp", &host.read("/proc/net/tcp")?);
    if let Some(t6) = host.read_opt("/proc/net/tcp6")? {
        listeners.extend(parse_listeners("/proc/net/tcp6", &t6));
    }
    let wanted: BTreeSet<u64> = listeners
        .iter()
        .filter(|l| PORTS.iter().any(|p| p.port == l.port))
        .map(|l| l.inode)
        .collect();
    let (owners, owners_note) = trace_owners(host, &wanted);
    Ok(PortsFacts {
        listeners,
        owners,
        owners_note,
    })
}

/// Finds which process holds each wanted socket inode by reading `/proc/*/fd` links.
fn trace_owners(host: &Host, wanted: &BTreeSet<u64>) -> (BTreeMap<u64, Owner>, Option<String>) {
    let mut owners = BTreeMap::new();
    if wanted.is_empty() {
        return (owners, None);
    }
    let pids: Vec<u32> = match host.list_dir("/proc") {
        Ok(names) => names.iter().filter_map(|n| n.parse().ok()).collect(),
        Err(e) => return (owners, Some(e.to_string())),
    };
    let (mut unreadable, mut seen) = (0usize, 0usize);
    'pids: for pid in pids {
        let fds = match host.list_dir(&format!("/proc/{pid}/fd")) {
            Ok(fds) => fds,
            Err(_) => {
                unreadable += 1;
                continue;
            }
        };
        for fd in fds {
            seen += 1;
            if seen > MAX_FDS {
                break 'pids;
            }
            let Some(inode) = host
                .link_target(&format!("/proc/{pid}/fd/{fd}"))
                .and_then(|t| socket_inode(&t.to_string_lossy()))
            else {
                continue;
            };
            if wanted.contains(&inode) && !owners.contains_key(&inode) {
                let comm = host
                    .read_opt(&format!("/proc/{pid}/comm"))
                    .ok()
                    .flatten()
                    .map(|c| c.trim().to_string())
                    .unwrap_or_else(|| "?".into());
                owners.insert(inode, Owner { pid, comm });
                if owners.len() == wanted.len() {
                    break 'pids;
                }
            }
        }
    }
    let note = (owners.len() < wanted.len()).then(|| {
        if unreadable > 0 {
            format!("/proc/PID/fd of {unreadable} process(es) could not be read (run as root to see every owner)")
        } else if !host.is_live() {
            format!(
                "--root {}: no process under the root holds these sockets",
                host.root().display()
            )
        } else {
            "no process found holding these sockets (they may live in another PID namespace)".into()
        }
    });
    (owners, note)
}

/// Decides `ports.in-use`: before install every needed port is free; installed, each is held by its component.
pub fn decide(p: &PortsFacts, role: Role, stage: Stage) -> Finding {
    let mut ev = Vec::new();
    let mut busy = Vec::new();
    let mut foreign = Vec::new();
    let mut unknown = Vec::new();
    let mut down = Vec::new();
    for kp in ports_for(role) {
        let rows: Vec<&Listener> = p.listeners.iter().filter(|l| l.port == kp.port).collect();
        if rows.is_empty() {
            ev.push(format!("port {}: no LISTEN row", kp.port));
            if !stage.is_pre_install() {
                down.push(format!("{} ({})", kp.port, kp.component));
            }
            continue;
        }
        for l in rows {
            let owner = p.owners.get(&l.inode);
            ev.push(match owner {
                Some(o) => format!("{} held by pid {} ({})", l.cite(), o.pid, o.comm),
                None => format!("{} held by an unknown process", l.cite()),
            });
            let who = owner.map_or("an unknown process".to_string(), |o| {
                format!("pid {} ({})", o.pid, o.comm)
            });
            if stage.is_pre_install() {
                busy.push(format!("{} by {who}", kp.port));
            } else {
                match owner {
                    Some(o) if o.is(kp.component) => {}
                    Some(_) => foreign.push(format!(
                        "{} is held by {who}, not {}",
                        kp.port, kp.component
                    )),
                    None => unknown.push(format!("{} ({})", kp.port, kp.component)),
                }
            }
        }
    }
    busy.dedup();
    if let Some(n) = &p.owners_note {
        ev.push(format!("owners: {n}"));
    }
    let list = |v: &[String]| v.join(", ");
    if !busy.is_empty() {
        let kubeadm = busy
            .iter()
            .filter_map(|b| b.split(' ').next())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|p| format!("[ERROR Port-{p}]"))
            .collect::<Vec<_>>()
            .join(" ");
        return Finding::fail(format!(
            "before {}: port(s) already in use: {}; kubeadm's preflight fails with {kubeadm}",
            if stage == Stage::PreInit { "kubeadm init" } else { "kubeadm join" },
            list(&busy)
        ))
        .evidence_all(ev)
        .remediation(
            "stop what listens there (`ss -ltnp 'sport = :PORT'` names it); if it is a previous cluster's component, run `kubeadm reset` first",
        );
    }
    if !foreign.is_empty() || !down.is_empty() {
        let mut parts = foreign.clone();
        if !down.is_empty() {
            parts.push(format!("nothing listens on {}", list(&down)));
        }
        return Finding::fail(format!("installed node: {}", parts.join("; ")))
            .evidence_all(ev)
            .remediation(
                "check the component: `crictl ps -a` and `crictl logs <id>` for static pods, `journalctl -u kubelet` for the kubelet; stop a foreign process that took the port",
            );
    }
    if !unknown.is_empty() {
        return Finding::warn(format!(
            "installed node: the owner of port(s) {} could not be told",
            list(&unknown)
        ))
        .evidence_all(ev)
        .remediation(
            "run as root on the node itself so /proc/PID/fd can be read, or check with `ss -ltnp`",
        );
    }
    let ports: Vec<String> = ports_for(role).map(|k| k.port.to_string()).collect();
    Finding::pass(if stage.is_pre_install() {
        format!("ports {} are free", ports.join(", "))
    } else {
        format!("ports {} are held by their components", ports.join(", "))
    })
    .evidence_all(ev)
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::check::Status;
    use std::net::Ipv4Addr;

    // Captured on an Ubuntu 22.04 control plane: apiserver on [::]:6443, etcd on 127.0.0.1 and the node IP,
    // the kubelet on [::]:10250, a time-wait row and an established row that must be ignored.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:094B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31001 1 0000000000000000 100 0 0 10 0\n\
   1: 0A01A8C0:094C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31002 1 0000000000000000 100 0 0 10 0\n\
   2: 0100007F:2811 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31003 1 0000000000000000 100 0 0 10 0\n\
   3: 0100007F:2813 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31004 1 0000000000000000 100 0 0 10 0\n\
   4: 0A01A8C0:192B 0B01A8C0:C350 01 00000000:00000000 00:00000000 00000000     0        0 31005 1 0000000000000000 20 4 30 10 -1\n\
   5: garbage\n";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000000000000000000000000000:192B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 32001 1 0000000000000000 100 0 0 10 0\n\
   1: 00000000000000000000000000000000:280A 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 32002 1 0000000000000000 100 0 0 10 0\n\
   2: 0000000000000000FFFF00000100007F:2833 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 32003 1 0000000000000000 100 0 0 10 0\n";

    fn facts() -> PortsFacts {
        let mut listeners = parse_listeners("/proc/net/tcp", TCP);
        listeners.extend(parse_listeners("/proc/net/tcp6", TCP6));
        let own = |pid, comm: &str| Owner {
            pid,
            comm: comm.into(),
        };
        PortsFacts {
            listeners,
            owners: [
                (31001, own(1201, "etcd")),
                (31002, own(1201, "etcd")),
                (31003, own(1310, "kube-controller")),
                (31004, own(1311, "kube-scheduler")),
                (32001, own(1402, "kube-apiserver")),
                (32002, own(801, "kubelet")),
            ]
            .into(),
            owners_note: None,
        }
    }

    #[test]
    fn parses_listen_rows_of_both_families() {
        let l = parse_listeners("/proc/net/tcp", TCP);
        assert_eq!(l.len(), 4, "the established row and garbage are skipped");
        assert_eq!(l[0].addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!((l[0].port, l[0].inode, l[0].line), (2379, 31001, 2));
        assert_eq!((l[2].port, l[3].port), (10257, 10259));
        assert_eq!(l[1].addr, "192.168.1.10".parse::<IpAddr>().unwrap());
        assert_eq!(l[1].port, 2380);
        let l6 = parse_listeners("/proc/net/tcp6", TCP6);
        assert_eq!(l6[0].addr, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert_eq!(l6[0].port, 6443);
        assert_eq!(
            l6[2].addr,
            "::ffff:127.0.0.1".parse::<IpAddr>().unwrap(),
            "v4-mapped addresses decode word by word"
        );
        assert_eq!(
            l6[1].cite(),
            "/proc/net/tcp6:3: [::]:10250 LISTEN (socket inode 32002)"
        );
        assert_eq!(socket_inode("socket:[32002]"), Some(32002));
        assert_eq!(socket_inode("pipe:[1]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert!(parse_listeners("x", "").is_empty());
    }

    #[test]
    fn a_busy_port_fails_before_install_naming_the_process() {
        let p = facts();
        let f = decide(&p, Role::ControlPlane, Stage::PreInit);
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.message.contains("6443 by pid 1402 (kube-apiserver)"),
            "{}",
            f.message
        );
        assert!(f.message.contains("[ERROR Port-2379]"), "{}", f.message);
        // A worker only needs 10250.
        let f = decide(&p, Role::Worker, Stage::PreJoin);
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.message.contains("10250 by pid 801 (kubelet)"),
            "{}",
            f.message
        );
        assert!(!f.message.contains("6443"));
        let free = PortsFacts {
            listeners: vec![],
            owners: BTreeMap::new(),
            owners_note: None,
        };
        assert_eq!(
            decide(&free, Role::ControlPlane, Stage::PreInit).status,
            Status::Pass
        );
    }

    #[test]
    fn installed_ports_must_be_held_by_their_components() {
        let mut p = facts();
        let f = decide(&p, Role::ControlPlane, Stage::Installed);
        assert_eq!(f.status, Status::Pass, "{f:?}");
        assert!(
            Owner {
                pid: 1,
                comm: "kube-controller".into()
            }
            .is("kube-controller-manager")
        );
        // The kubelet's port taken by something else.
        p.owners.insert(
            32002,
            Owner {
                pid: 77,
                comm: "nginx".into(),
            },
        );
        let f = decide(&p, Role::ControlPlane, Stage::Installed);
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.message
                .contains("10250 is held by pid 77 (nginx), not kubelet"),
            "{}",
            f.message
        );
        // Owner unknown: warn.
        p.owners.remove(&32002);
        p.owners_note = Some("cannot read".into());
        let f = decide(&p, Role::ControlPlane, Stage::Installed);
        assert_eq!(f.status, Status::Warn, "{f:?}");
        // Nothing on 6443 after install: the API server is down.
        p.listeners.retain(|l| l.port != 6443);
        let f = decide(&p, Role::ControlPlane, Stage::Installed);
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.message
                .contains("nothing listens on 6443 (kube-apiserver)"),
            "{}",
            f.message
        );
    }
}
