//! Shared test support: the privileged-test gate and network namespaces that always clean up.
#![allow(dead_code)]

pub mod apiserver;
pub mod archive;
pub mod dryrun;
pub mod harness;
pub mod hostile;
pub mod image;
pub mod kubelet;
pub mod openssl;
pub mod tcp;

use std::{
    path::PathBuf,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

/// Whether privileged tests must run (CI sets K8SDOCTOR_PRIVILEGED_TESTS=1): then a missing prerequisite fails.
pub fn privileged_required() -> bool {
    std::env::var("K8SDOCTOR_PRIVILEGED_TESTS").is_ok_and(|v| v == "1")
}

/// Returns true when the live test can run: root and every tool present. Otherwise prints why and
/// returns false, or panics when K8SDOCTOR_PRIVILEGED_TESTS=1. (Files run by `harness` use
/// `harness::require` instead, which reports the test as ignored.)
pub fn can_run_privileged(tools: &[&str]) -> bool {
    let missing = harness::missing(true, tools);
    if missing.is_empty() {
        return true;
    }
    let msg = format!("live test needs {}", missing.join(", "));
    assert!(
        !privileged_required(),
        "{msg} (K8SDOCTOR_PRIVILEGED_TESTS=1)"
    );
    eprintln!("SKIPPED: {msg}");
    false
}

/// Runs a command and panics with its output when it fails.
pub fn sh(args: &[&str]) -> Output {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace the test owns; deleted (with its interfaces and rules) on drop, even on panic.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `k8sd-<tag>-<pid>-<n>` with loopback up.
    pub fn new(tag: &str) -> Netns {
        let name = format!(
            "k8sd-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace; panics when it fails.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Runs `f` on a thread that has entered the namespace: sockets it creates (a listener, a UDP
    /// socket) live in the namespace and can then be used from any thread.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                enter_netns(&self.name);
                f()
            });
            // A scoped handle: same as harness::join, keeping the helper's panic message.
            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// A command ready to run inside the namespace (for spawning or checking the status yourself).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// Joins two namespaces with a veth pair and gives each end an address (CIDR notation).
pub fn veth(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let (va, vb) = (
        format!("va{}x{n}", std::process::id() % 100000),
        format!("vb{}x{n}", std::process::id() % 100000),
    );
    sh(&[
        "ip", "link", "add", &va, "netns", &a.name, "type", "veth", "peer", "name", &vb, "netns",
        &b.name,
    ]);
    a.exec(&["ip", "addr", "add", a_addr, "dev", &va]);
    a.exec(&["ip", "link", "set", &va, "up"]);
    b.exec(&["ip", "addr", "add", b_addr, "dev", &vb]);
    b.exec(&["ip", "link", "set", &vb, "up"]);
}

/// The built binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_k8sdoctor"))
}

/// The repository's fixtures directory.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A Linux bridge inside its own "switch" namespace (never the host's); participants plug in with a
/// veth each. Dropping it deletes the namespace, and with it the bridge and the veth pairs.
pub struct Switch {
    pub ns: Netns,
}

/// Adds an up bridge `name` with this MAC to `ns`, flooding multicast (IGMP snooping off, so tests
/// do not depend on it). The MAC is set explicitly: a bridge otherwise takes the lowest MAC of its
/// ports, which changes as ports come and go (and with it the MAC of any address on the bridge).
pub fn bridge(ns: &Netns, name: &str, mac: &str) {
    ns.exec(&[
        "ip",
        "link",
        "add",
        name,
        "address",
        mac,
        "type",
        "bridge",
        "mcast_snooping",
        "0",
    ]);
    ns.exec(&["ip", "link", "set", name, "up"]);
}

impl Switch {
    /// A switch: one bridge `br0` (see [`bridge`]) in a namespace of its own.
    pub fn new(tag: &str) -> Switch {
        let ns = Netns::new(tag);
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        bridge(
            &ns,
            "br0",
            &format!("02:00:00:fe:{:02x}:{:02x}", (n >> 8) & 0xff, n & 0xff),
        );
        Switch { ns }
    }

    /// A veth pair whose outer end is an up port of the bridge; returns the inner end's name in `ns`.
    fn port(&self, ns: &Netns, prefix: &str) -> String {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let tag = std::process::id() % 100000;
        let (inner, outer) = (format!("{prefix}{tag}i{n}"), format!("{prefix}{tag}o{n}"));
        sh(&[
            "ip",
            "link",
            "add",
            &inner,
            "netns",
            &ns.name,
            "type",
            "veth",
            "peer",
            "name",
            &outer,
            "netns",
            &self.ns.name,
        ]);
        self.ns
            .exec(&["ip", "link", "set", &outer, "master", "br0"]);
        self.ns.exec(&["ip", "link", "set", &outer, "up"]);
        inner
    }

    /// Plugs `ns` into the bridge with address `addr` (CIDR); returns the interface name inside `ns`.
    pub fn plug(&self, ns: &Netns, addr: &str) -> String {
        let inner = self.port(ns, "mc");
        ns.exec(&["ip", "addr", "add", addr, "dev", &inner]);
        ns.exec(&["ip", "link", "set", &inner, "up"]);
        inner
    }

    /// Connects the bridge `bridge` inside `ns` to this switch (an L2 uplink, no address).
    pub fn uplink(&self, ns: &Netns, bridge: &str) {
        let inner = self.port(ns, "up");
        ns.exec(&["ip", "link", "set", &inner, "master", bridge]);
        ns.exec(&["ip", "link", "set", &inner, "up"]);
    }
}

/// Whether the running kernel routes multicast (CONFIG_IP_MROUTE): only then does every network
/// namespace have /proc/net/ip_mr_vif, and MRT_INIT works (without it, ENOPROTOOPT).
pub fn kernel_routes_multicast() -> bool {
    std::path::Path::new("/proc/net/ip_mr_vif").exists()
}

/// A minimal static multicast router (what smcroute does): kernel multicast routing in a namespace,
/// with virtual interfaces and (source, group) → outgoing interfaces entries. Forwarding stops
/// when it is dropped (closing the MRT_INIT socket clears the table).
pub struct MulticastRouter {
    _sock: std::os::fd::OwnedFd,
}

#[repr(C)]
struct VifCtl {
    vifi: u16,
    flags: u8,
    threshold: u8,
    rate_limit: u32,
    lcl_ifindex: i32,
    rmt_addr: u32,
}

#[repr(C)]
struct MfcCtl {
    origin: u32,
    group: u32,
    parent: u16,
    ttls: [u8; 32],
    pkt_cnt: u32,
    byte_cnt: u32,
    wrong_if: u32,
    expire: i32,
}

impl MulticastRouter {
    /// Routes `group` from `source` arriving on `vifs[0]` out of every other interface in `vifs`,
    /// for datagrams whose TTL is above 1 (so TTL 1 never crosses, as with a real router).
    pub fn new(
        ns: &Netns,
        vifs: &[&str],
        source: std::net::Ipv4Addr,
        group: std::net::Ipv4Addr,
    ) -> MulticastRouter {
        use std::os::fd::{FromRawFd, OwnedFd};
        const MRT_INIT: i32 = 200;
        const MRT_ADD_VIF: i32 = 202;
        const MRT_ADD_MFC: i32 = 204;
        const VIFF_USE_IFINDEX: u8 = 0x8;
        let indexes: Vec<i32> = vifs
            .iter()
            .map(|v| {
                let o = ns.exec(&["cat", &format!("/sys/class/net/{v}/ifindex")]);
                String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
            })
            .collect();
        let name = ns.name.clone();
        // setns changes only the calling thread, so the socket is made in a thread of its own.
        let sock = harness::join(std::thread::spawn(move || {
            enter_netns(&name);
            let set = |name: i32, p: *const libc::c_void, len: usize, fd: i32| {
                // SAFETY: p points at a live, fully initialised struct of `len` bytes.
                let r = unsafe {
                    libc::setsockopt(fd, libc::IPPROTO_IP, name, p, len as libc::socklen_t)
                };
                assert_eq!(
                    r,
                    0,
                    "setsockopt {name}: {}",
                    std::io::Error::last_os_error()
                );
            };
            // SAFETY: plain syscalls on descriptors this thread owns.
            unsafe {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_IGMP);
                assert!(
                    fd >= 0,
                    "raw IGMP socket: {}",
                    std::io::Error::last_os_error()
                );
                let sock = OwnedFd::from_raw_fd(fd);
                let one: i32 = 1;
                let r = libc::setsockopt(
                    fd,
                    libc::IPPROTO_IP,
                    MRT_INIT,
                    (&one as *const i32).cast(),
                    4,
                );
                if r != 0
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOPROTOOPT)
                {
                    harness::kernel_lacks("multicast routing (CONFIG_IP_MROUTE)");
                }
                assert_eq!(
                    r,
                    0,
                    "setsockopt MRT_INIT: {}",
                    std::io::Error::last_os_error()
                );
                for (i, ifindex) in indexes.iter().enumerate() {
                    let v = VifCtl {
                        vifi: i as u16,
                        flags: VIFF_USE_IFINDEX,
                        threshold: 1,
                        rate_limit: 0,
                        lcl_ifindex: *ifindex,
                        rmt_addr: 0,
                    };
                    set(
                        MRT_ADD_VIF,
                        (&v as *const VifCtl).cast(),
                        std::mem::size_of::<VifCtl>(),
                        fd,
                    );
                }
                let mut ttls = [0u8; 32];
                for t in ttls.iter_mut().take(indexes.len()).skip(1) {
                    *t = 1;
                }
                let m = MfcCtl {
                    origin: u32::from(source).to_be(),
                    group: u32::from(group).to_be(),
                    parent: 0,
                    ttls,
                    pkt_cnt: 0,
                    byte_cnt: 0,
                    wrong_if: 0,
                    expire: 0,
                };
                set(
                    MRT_ADD_MFC,
                    (&m as *const MfcCtl).cast(),
                    std::mem::size_of::<MfcCtl>(),
                    fd,
                );
                sock
            }
        }));
        MulticastRouter { _sock: sock }
    }
}
/// Joins two namespaces with a veth pair whose ends get the given names (names are per namespace) and addresses.
pub fn veth_named(
    a: &Netns,
    a_if: &str,
    a_addrs: &[&str],
    b: &Netns,
    b_if: &str,
    b_addrs: &[&str],
) {
    sh(&[
        "ip", "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
    for (ns, ifname, addrs) in [(a, a_if, a_addrs), (b, b_if, b_addrs)] {
        for addr in addrs {
            ns.exec(&["ip", "addr", "add", addr, "dev", ifname]);
        }
        ns.exec(&["ip", "link", "set", ifname, "up"]);
    }
}

/// Runs a command inside a namespace with `input` on its stdin (iptables-restore, nft -f -); panics when it fails.
pub fn feed(ns: &Netns, args: &[&str], input: &str) {
    use std::io::Write;
    let mut c = ns
        .command(args[0])
        .args(&args[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

pub mod kube_proxy;
/// Runs `f` on a thread that has entered the network namespace `ns` (its sockets live there); the rest of
/// the process stays where it is.
pub fn in_netns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let name = ns.name.clone();
    std::thread::spawn(move || {
        enter_netns(&name);
        f()
    })
}

/// Moves the calling thread (only it: setns is per thread) into the named network namespace.
pub fn enter_netns(name: &str) {
    use std::os::fd::AsRawFd;
    let path = format!("/run/netns/{name}");
    let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // SAFETY: setns on a descriptor this thread owns; it changes only this thread's namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

/// A pinned older kubectl client, `kubectl.1.<minor>`: on PATH (where `.ci/run` puts the one it
/// installs), else beside the binary the `kubectl` on PATH resolves to (Google Cloud SDK's layout);
/// the test is not run (ignored with the reason, or failed when privileged tests are required)
/// without one. Returns its path and the version it reports (`v1.27.1`).
pub fn kubectl_minor(minor: u32) -> (PathBuf, String) {
    let name = format!("kubectl.1.{minor}");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path).map(|d| d.join(&name));
    let beside = std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .filter_map(|k| std::fs::canonicalize(k).ok())
        .filter_map(|k| Some(k.parent()?.join(&name)));
    let Some(found) = on_path.chain(beside).find(|p| p.is_file()) else {
        harness::not_run(format!("needs {name} (bash .ci/run installs it)"));
    };
    let o = sh(&[found.to_str().unwrap(), "version", "--client", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("kubectl version JSON");
    let version = v["clientVersion"]["gitVersion"]
        .as_str()
        .expect("clientVersion.gitVersion")
        .to_string();
    (found, version)
}

/// `shared/vendor/<sub>` (reference tool sources) beside the repository or one level up (a worktree).
pub fn vendor(sub: &str) -> Option<PathBuf> {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .skip(1)
        .take(3)
        .map(|d| d.join("shared/vendor").join(sub))
        .find(|p| p.is_dir())
}
