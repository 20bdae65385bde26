//! Sockets for multicast: interfaces by name or address, a sender (TTL, loopback, outgoing interface)
//! and a receiver (joined by interface index, received TTL read with recvmmsg control messages).
//! Every call goes through a safe wrapper: `nix` (getifaddrs, if_nametoindex, SO_RCVBUFFORCE,
//! IP_RECVTTL, recvmmsg and its control messages), `rustix` (IP_MULTICAST_IF by index), `socket2`.

use std::{
    io::{self, IoSliceMut},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    os::fd::AsRawFd,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use nix::{
    errno::Errno,
    sys::socket::{
        ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, setsockopt, sockopt,
    },
};
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
    let mut out: Vec<Iface> = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs()? {
        let addr = ifa.address.as_ref().and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        });
        let i = match out.iter().position(|i| i.name == ifa.interface_name) {
            Some(i) => i,
            None => {
                // An interface that vanished since getifaddrs gets index 0 (never matched by a join).
                let index = nix::net::if_::if_nametoindex(ifa.interface_name.as_str()).unwrap_or(0);
                out.push(Iface {
                    name: ifa.interface_name,
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
                // By index (an ip_mreqn), so an interface without an IPv4 address of its own works too.
                rustix::net::sockopt::set_ip_multicast_if_with_ifindex(
                    &s,
                    &Ipv4Addr::UNSPECIFIED,
                    &Ipv4Addr::UNSPECIFIED,
                    i.index,
                )
                .with_context(|| format!("IP_MULTICAST_IF {}", i.name))?;
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

/// The receive buffer asked for: a 64-byte datagram costs about 1 KiB of buffer (its skb), so 32 MiB
/// hold ~30 000 datagrams, ~50 ms at a veth's top rate: enough while a loaded host deschedules the
/// reader. Memory is only used while datagrams wait.
const RCVBUF: usize = 32 << 20;

/// A socket bound to `group`'s port that joined `group` on `iface` (by index; 0 = the route's),
/// from `source` only when one is given (SSM, mreceive's `-s`),
/// reports the received TTL with each datagram, and wakes every `tick` so callers can stop.
pub fn receiver(
    group: SocketAddr,
    iface: Option<&Iface>,
    source: Option<IpAddr>,
    tick: Duration,
) -> Result<Socket> {
    let s = udp(&group)?;
    s.set_reuse_address(true).context("SO_REUSEADDR")?;
    // Root may exceed net.core.rmem_max; others get what the sysctl allows.
    if setsockopt(&s, sockopt::RcvBufForce, &RCVBUF).is_err() {
        let _ = s.set_recv_buffer_size(RCVBUF);
    }
    // The kernel's count of datagrams it dropped for this socket (buffer full), with each datagram.
    let _ = setsockopt(&s, sockopt::RxqOvfl, &1);
    s.set_read_timeout(Some(tick)).context("SO_RCVTIMEO")?;
    // Bound to the group itself, the socket gets that group's datagrams only, like mreceive.
    s.bind(&SockAddr::from(group))
        .with_context(|| format!("cannot bind {group}"))?;
    join(&s, group, iface, source)?;
    match group.ip() {
        IpAddr::V4(_) => setsockopt(&s, sockopt::Ipv4RecvTtl, &true).context("IP_RECVTTL")?,
        IpAddr::V6(_) => {
            setsockopt(&s, sockopt::Ipv6RecvHopLimit, &true).context("IPV6_RECVHOPLIMIT")?
        }
    }
    Ok(s)
}

/// Joins `group` on `iface` (by index; none = the route's), from `source` only when given (SSM).
pub fn join(
    s: &Socket,
    group: SocketAddr,
    iface: Option<&Iface>,
    source: Option<IpAddr>,
) -> Result<()> {
    let index = iface.map_or(0, |i| i.index);
    match (group.ip(), source) {
        (IpAddr::V4(g), None) => s
            .join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(index))
            .map_err(|e| join_error(e, &group)),
        (IpAddr::V4(g), Some(IpAddr::V4(src))) => {
            // IP_ADD_SOURCE_MEMBERSHIP takes the interface by address: its first IPv4 one.
            let on = iface
                .and_then(|i| {
                    i.addrs.iter().find_map(|a| match a {
                        IpAddr::V4(a) => Some(*a),
                        IpAddr::V6(_) => None,
                    })
                })
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            s.join_ssm_v4(&src, &g, &on)
                .map_err(|e| join_error(e, &group))
        }
        (IpAddr::V6(g), None) => s
            .join_multicast_v6(&g, index)
            .map_err(|e| join_error(e, &group)),
        (_, Some(src)) => bail!(
            "--source {src}: source-specific joins are supported for IPv4 groups with an IPv4 source only"
        ),
    }
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

/// What recvmmsg said of one datagram; its bytes stay in [`Batch::bufs`].
#[derive(Clone, Copy)]
struct Meta {
    len: usize,
    from: Option<SocketAddr>,
    ttl: Option<u8>,
}

/// Buffers for receiving up to 64 datagrams in one recvmmsg call.
pub struct Batch {
    bufs: Vec<u8>,
    headers: MultiHeaders<SockaddrStorage>,
    meta: Vec<Meta>,
    /// The kernel's SO_RXQ_OVFL count for this socket (datagrams dropped, buffer full), latest seen.
    drops: u32,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            bufs: vec![0; BATCH * BUF],
            headers: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(libc::c_int, u32))),
            meta: Vec::with_capacity(BATCH),
            drops: 0,
        }
    }
}

impl Batch {
    /// Waits (up to the socket's read timeout) for at least one datagram, then takes all that are
    /// queued, up to 64. Returns how many; 0 when the timeout passed or a signal interrupted.
    pub fn recv(&mut self, s: &Socket) -> io::Result<usize> {
        self.meta.clear();
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = self
            .bufs
            .chunks_mut(BUF)
            .map(|c| [IoSliceMut::new(c)])
            .collect();
        let msgs = match recvmmsg(
            s.as_raw_fd(),
            &mut self.headers,
            iovs.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        ) {
            Ok(m) => m,
            Err(Errno::EAGAIN | Errno::ETIMEDOUT | Errno::EINTR) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        for m in msgs {
            let mut ttl = None;
            // A truncated control buffer (cannot happen with the space reserved) only loses the TTL.
            for c in m.cmsgs().into_iter().flatten() {
                match c {
                    ControlMessageOwned::Ipv4Ttl(v) | ControlMessageOwned::Ipv6HopLimit(v) => {
                        ttl = u8::try_from(v).ok();
                    }
                    ControlMessageOwned::RxqOvfl(d) => self.drops = self.drops.max(d),
                    _ => {}
                }
            }
            self.meta.push(Meta {
                len: m.bytes.min(BUF),
                from: m.address.and_then(socket_addr),
                ttl,
            });
        }
        Ok(self.meta.len())
    }

    /// The i-th datagram of the last [`Batch::recv`].
    pub fn get(&self, i: usize) -> Option<Received<'_>> {
        let m = self.meta.get(i)?;
        Some(Received {
            data: &self.bufs[i * BUF..i * BUF + m.len],
            from: m.from?,
            ttl: m.ttl,
        })
    }

    /// Datagrams the kernel dropped for this socket because its receive buffer was full.
    pub fn socket_drops(&self) -> u32 {
        self.drops
    }
}

/// The source address recvmmsg wrote.
fn socket_addr(a: SockaddrStorage) -> Option<SocketAddr> {
    a.as_sockaddr_in()
        .map(|v4| SocketAddr::V4((*v4).into()))
        .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into())))
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
