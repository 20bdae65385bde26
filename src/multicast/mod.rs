//! Multicast: `send` and `receive`, a drop-in for mtools' msend/mreceive that keep statistics, and
//! `probe`, an omping-style run on every participant that measures each sender→receiver pair and
//! names the cause of a failure with evidence read on the node.
//!
//! Layout: [`wire`] (datagram format), [`sock`] (socket options, recvmmsg with TTL), [`stats`]
//! (per-stream counters), [`send`]/[`receive`] (the mtools pair), [`probe`] with its unicast
//! [`control`] channel, [`evidence`]/[`firewall`] (what the node shows), [`cause`] (diagnosis) and
//! [`output`] (tables and JSON); [`mtools`] reads msend/mreceive command lines; [`nodefw`] is the
//! node's own ruleset for the group's traffic (`fleet multicast`'s observer in the node's namespace).

pub mod cause;
pub mod control;
pub mod evidence;
pub mod firewall;
pub mod mtools;
pub mod nodefw;
pub mod output;
pub mod probe;
pub mod receive;
pub mod send;
pub mod sock;
pub mod stats;
pub mod wire;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};

/// mtools' defaults.
pub const DEFAULT_GROUP_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(224, 1, 1, 1));
pub const DEFAULT_GROUP_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xff2e, 0, 0, 0, 0, 0, 0, 1));
pub const DEFAULT_PORT: u16 = 4444;

/// The default group of a family.
pub fn default_group(v6: bool) -> IpAddr {
    if v6 {
        DEFAULT_GROUP_V6
    } else {
        DEFAULT_GROUP_V4
    }
}

/// How `send`, `receive` and `probe` print their result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

/// A flag set by SIGINT/SIGTERM, so a run stops at its next tick and still prints its summary.
pub fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag)).context("cannot handle Ctrl-C")?;
    }
    Ok(flag)
}

/// Now, in nanoseconds since the Unix epoch (the clock carried in datagrams).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A random number from the kernel, for session and sender ids.
pub fn random_u64() -> u64 {
    let mut v = [0u8; 8];
    if rustix::rand::getrandom(&mut v, rustix::rand::GetRandomFlags::empty()).is_ok_and(|n| n == 8)
    {
        u64::from_ne_bytes(v)
    } else {
        now_ns() ^ (u64::from(std::process::id()) << 32)
    }
}

/// Sleeps until `due`, waking every 100 ms to see whether `stop` was set.
pub fn sleep_until(due: Instant, stop: &AtomicBool) {
    loop {
        let now = Instant::now();
        if now >= due || stop.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        std::thread::sleep((due - now).min(Duration::from_millis(100)));
    }
}
