//! Sockets for multicast: interfaces by name or address, a sender (TTL, loopback, outgoing interface)
//! and a receiver (joined by interface index, received TTL read with recvmmsg control messages).

use std::{
    io,
    mem::{self, MaybeUninit},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};

/// A network interface with its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub index: u32,
    pub addrs: Vec<IpAddr>,
}

/// Every interface of this network namespace (getifaddrs), in index order.
pub fn interfaces() -> io::Result<Vec<Iface>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out: Vec<Iface> = Vec::new();
    let mut p = head;
    while !p.is_null() {
        // SAFETY: p walks the list getifaddrs returned; each name is a NUL-terminated string and each
        // address, when not null, is a sockaddr of the family it says.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let addr = if ifa.ifa_addr.is_null() {
            None
        } else {
            match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
                libc::AF_INET => {
                    let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        sin.sin_addr.s_addr,
                    ))))
                }
                libc::AF_INET6 => {
                    let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
                }
                _ => None,
            }
        };
        let i = match out.iter().position(|i| i.name == name) {
            Some(i) => i,
            None => {
                let c = std::ffi::CString::new(name.clone()).unwrap_or_default();
                let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
                out.push(Iface {
                    name,
                    index,
                    addrs: Vec::new(),
                });
                out.len() - 1
            }
        };
        if let Some(a) = addr {
            out[i].addrs.push(a);
        }
    }
    // SAFETY: head came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out.sort_by_key(|i| i.index);
    Ok(out)
}

/// The interface named `spec`, or the one carrying the address `spec`.
pub fn find_interface(spec: &str) -> Result<Iface> {
    let all = interfaces().context("cannot list network interfaces")?;
    let by_addr: Option<IpAddr> = spec.parse().ok();
    all.into_iter()
        .find(|i| i.name == spec || by_addr.is_some_and(|a| i.addrs.contains(&a)))
        .with_context(|| format!("--interface {spec}: no interface has that name or address"))
}

/// The interface that carries `addr`, if this namespace has it.
pub fn interface_with(addr: IpAddr) -> Option<Iface> {
    interfaces()
        .ok()?
        .into_iter()
        .find(|i| i.addrs.contains(&addr))
}

fn udp(domain_of: &SocketAddr) -> Result<Socket> {
    Socket::new(
        Domain::for_address(*domain_of),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .context("cannot create a UDP socket")
}

fn setsockopt_int(s: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: passes a valid int of the right size to setsockopt on an open socket.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A socket that sends to `group` with `ttl`, loopback on or off, out of `iface` (else the route's).
/// With `source`, it binds that address so receivers see it as the sender.
pub fn sender(
    group: SocketAddr,
    iface: Option<&Iface>,
    ttl: u8,
    multicast_loop: bool,
    source: Option<IpAddr>,
) -> Result<Socket> {
    let s = udp(&group)?;
    if let Some(src) = source {
        s.bind(&SockAddr::from(SocketAddr::new(src, 0)))
            .with_context(|| format!("cannot bind the sender to {src}"))?;
    }
    match group {
        SocketAddr::V4(_) => {
            s.set_multicast_ttl_v4(u32::from(ttl))
                .context("IP_MULTICAST_TTL")?;
            s.set_multicast_loop_v4(multicast_loop)
                .context("IP_MULTICAST_LOOP")?;
            if let Some(i) = iface {
                let mreq = libc::ip_mreqn {
                    imr_multiaddr: libc::in_addr { s_addr: 0 },
                    imr_address: libc::in_addr { s_addr: 0 },
                    imr_ifindex: i.index as i32,
                };
                // SAFETY: IP_MULTICAST_IF accepts an ip_mreqn on Linux; the struct is fully initialised.
                let r = unsafe {
                    libc::setsockopt(
                        s.as_raw_fd(),
                        libc::IPPROTO_IP,
                        libc::IP_MULTICAST_IF,
                        (&mreq as *const libc::ip_mreqn).cast(),
                        mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
                    )
                };
                if r != 0 {
                    return Err(io::Error::last_os_error())
                        .with_context(|| format!("IP_MULTICAST_IF {}", i.name));
                }
            }
        }
        SocketAddr::V6(_) => {
            s.set_multicast_hops_v6(u32::from(ttl))
                .context("IPV6_MULTICAST_HOPS")?;
            s.set_multicast_loop_v6(multicast_loop)
                .context("IPV6_MULTICAST_LOOP")?;
            if let Some(i) = iface {
                s.set_multicast_if_v6(i.index)
                    .with_context(|| format!("IPV6_MULTICAST_IF {}", i.name))?;
            }
        }
    }
    s.connect(&SockAddr::from(group))
        .with_context(|| format!("cannot send to {group} (is there a route to it?)"))?;
    Ok(s)
}

/// The receive buffer asked for: enough for a burst at line rate while the reader is descheduled.
const RCVBUF: usize = 8 << 20;

/// A socket bound to `group`'s port that joined `group` on `iface` (by index; 0 = the route's),
/// reports the received TTL with each datagram, and wakes every `tick` so callers can stop.
pub fn receiver(group: SocketAddr, iface: Option<&Iface>, tick: Duration) -> Result<Socket> {
    let s = udp(&group)?;
    s.set_reuse_address(true).context("SO_REUSEADDR")?;
    // Root may exceed net.core.rmem_max; others get what the sysctl allows.
    if setsockopt_int(&s, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF as i32).is_err() {
        let _ = s.set_recv_buffer_size(RCVBUF);
    }
    s.set_read_timeout(Some(tick)).context("SO_RCVTIMEO")?;
    // Bound to the group itself, the socket gets that group's datagrams only, like mreceive.
    s.bind(&SockAddr::from(group))
        .with_context(|| format!("cannot bind {group}"))?;
    let index = iface.map_or(0, |i| i.index);
    match group.ip() {
        IpAddr::V4(g) => {
            s.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(index))
                .map_err(|e| join_error(e, &group))?;
            setsockopt_int(&s, libc::IPPROTO_IP, libc::IP_RECVTTL, 1).context("IP_RECVTTL")?;
        }
        IpAddr::V6(g) => {
            s.join_multicast_v6(&g, index)
                .map_err(|e| join_error(e, &group))?;
            setsockopt_int(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)
                .context("IPV6_RECVHOPLIMIT")?;
        }
    }
    Ok(s)
}

/// Why a join failed, in the words FACTS.md uses: no route, or the membership limit.
fn join_error(e: io::Error, group: &SocketAddr) -> anyhow::Error {
    let hint = match e.raw_os_error() {
        Some(libc::ENODEV) | Some(libc::ENETUNREACH) => {
            " — no route to the multicast range and no --interface: add one (ip route add 224.0.0.0/4 dev IFACE) or pass --interface"
        }
        Some(libc::ENOBUFS) => {
            " — this socket reached net.ipv4.igmp_max_memberships (default 20); raise it"
        }
        _ => "",
    };
    anyhow::Error::new(e).context(format!("cannot join {}{hint}", group.ip()))
}

/// One datagram out of a [`Batch`].
pub struct Received<'a> {
    pub data: &'a [u8],
    pub from: SocketAddr,
    pub ttl: Option<u8>,
}

const BATCH: usize = 64;
const BUF: usize = 65536;
const CMSG: usize = 64;

/// Buffers for receiving up to 64 datagrams in one recvmmsg call.
pub struct Batch {
    bufs: Vec<u8>,
    names: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<[u64; CMSG / 8]>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    n: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            bufs: vec![0; BATCH * BUF],
            // SAFETY: sockaddr_storage and mmsghdr are plain C structs for which all-zero is valid.
            names: vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH],
            cmsgs: vec![[0; CMSG / 8]; BATCH],
            iovs: Vec::with_capacity(BATCH),
            hdrs: Vec::with_capacity(BATCH),
            n: 0,
        }
    }
}

impl Batch {
    /// Waits (up to the socket's read timeout) for at least one datagram, then takes all that are
    /// queued, up to 64. Returns how many; 0 when the timeout passed or a signal interrupted.
    pub fn recv(&mut self, s: &Socket) -> io::Result<usize> {
        self.iovs.clear();
        self.hdrs.clear();
        for i in 0..BATCH {
            self.iovs.push(libc::iovec {
                iov_base: self.bufs[i * BUF..].as_mut_ptr().cast(),
                iov_len: BUF,
            });
        }
        for i in 0..BATCH {
            // SAFETY: all-zero is a valid msghdr; the pointers set below outlive the call.
            let mut h: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = CMSG;
            self.hdrs.push(h);
        }
        // SAFETY: hdrs holds BATCH valid headers pointing into buffers owned by self.
        let r = unsafe {
            libc::recvmmsg(
                s.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            self.n = 0;
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        self.n = r as usize;
        Ok(self.n)
    }

    /// The i-th datagram of the last [`Batch::recv`].
    pub fn get(&self, i: usize) -> Option<Received<'_>> {
        if i >= self.n {
            return None;
        }
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(BUF);
        let from = sockaddr(&self.names[i])?;
        Some(Received {
            data: &self.bufs[i * BUF..i * BUF + len],
            from,
            ttl: ttl_of(&h.msg_hdr),
        })
    }
}

/// The source address recvmmsg wrote.
fn sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))),
                u16::from_be(sin.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)),
                u16::from_be(sin6.sin6_port),
            ))
        }
        _ => None,
    }
}

/// The IP_TTL / IPV6_HOPLIMIT control message of a received datagram.
fn ttl_of(m: &libc::msghdr) -> Option<u8> {
    // SAFETY: walks the control messages the kernel wrote, with the libc CMSG macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(m);
        while !c.is_null() {
            let (lvl, ty) = ((*c).cmsg_level, (*c).cmsg_type);
            if (lvl == libc::IPPROTO_IP && ty == libc::IP_TTL)
                || (lvl == libc::IPPROTO_IPV6 && ty == libc::IPV6_HOPLIMIT)
            {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32);
                return u8::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(m, c);
        }
    }
    None
}

/// Checks that `group` is a multicast address, with a clear message when it is not.
pub fn check_group(group: IpAddr) -> Result<()> {
    if !group.is_multicast() {
        bail!("--group {group} is not a multicast address (224.0.0.0/4 or ff00::/8)");
    }
    Ok(())
}

/// The checks `send` and `receive` share: a multicast group, and the `--interface` if one was named.
pub fn group_and_interface(group: IpAddr, interface: Option<&str>) -> Result<Option<Iface>> {
    check_group(group)?;
    interface.map(find_interface).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_listed_and_found_by_name_and_address() {
        let all = interfaces().unwrap();
        let lo = all.iter().find(|i| i.name == "lo").expect("lo");
        assert!(lo.index > 0);
        assert!(lo.addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(find_interface("lo").unwrap().index, lo.index);
        assert_eq!(find_interface("127.0.0.1").unwrap().name, "lo");
        assert!(find_interface("no-such-if0").is_err());
        assert_eq!(
            interface_with(IpAddr::V4(Ipv4Addr::LOCALHOST))
                .unwrap()
                .name,
            "lo"
        );
    }

    #[test]
    fn a_unicast_group_is_refused() {
        assert!(check_group("10.0.0.1".parse().unwrap()).is_err());
        assert!(check_group("224.1.1.1".parse().unwrap()).is_ok());
        assert!(check_group("ff2e::1".parse().unwrap()).is_ok());
    }
}
