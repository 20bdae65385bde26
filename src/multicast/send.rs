//! `multicast send`: msend's job (group, port, TTL, interface, one datagram every interval, its
//! text or with `--numbered` its counter as payload, its lines) with a trailer that a `receive` or
//! `probe` counts (see [`super::wire`]).

use std::{
    fmt::Write as _,
    io::{self, Write},
    net::{IpAddr, SocketAddr},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{
    Format, now_ns, random_u64, sleep_until, sock,
    wire::{self, Header, Stream},
};

/// What `send` was asked to do.
#[derive(Debug, Clone)]
pub struct SendOptions {
    pub group: IpAddr,
    pub port: u16,
    pub ttl: u8,
    /// Interface name or address; `None` lets the route to the group decide, like msend.
    pub interface: Option<String>,
    /// Stop after this many datagrams; `None` runs until Ctrl-C.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Time between datagrams; zero sends as fast as the socket takes them.
    pub interval: Duration,
    pub text: String,
    /// msend's `-n`: the payload is the datagram's number (1, 2, ...) instead of the text.
    pub numbered: bool,
    /// Pad datagrams to this many bytes (text, NUL and the 40-byte trailer at least).
    pub size: usize,
    /// IP_MULTICAST_LOOP: on like msend, so a receiver on this host sees the datagrams.
    pub multicast_loop: bool,
    /// msend's `-join`: the sender joins the group too (a switch that snoops IGMP then forwards it here).
    pub join: bool,
    /// msend's `-q`: no line per datagram.
    pub quiet: bool,
    pub format: Format,
}

/// What `send` did.
#[derive(Debug, Clone, Serialize)]
pub struct SendSummary {
    pub group: String,
    pub port: u16,
    pub ttl: u8,
    pub sent: u64,
    pub bytes: usize,
    /// Sends the kernel refused for lack of buffer space (retried).
    pub send_errors: u64,
    pub duration_ms: u64,
    pub per_second: f64,
}

/// Sends until the count is reached or `stop` is set; prints msend's lines in table mode.
pub fn run(opts: &SendOptions, stop: &AtomicBool, out: &mut dyn Write) -> Result<SendSummary> {
    let iface = sock::group_and_interface(opts.group, opts.interface.as_deref())?;
    let dest = SocketAddr::new(opts.group, opts.port);
    let s = sock::sender(dest, iface.as_ref(), opts.ttl, opts.multicast_loop, None)?;
    if opts.join {
        sock::join(&s, dest, iface.as_ref(), None)?;
    }
    let mut h = Header {
        stream: Stream::Send,
        ttl: opts.ttl,
        session: random_u64(),
        sender: random_u64() as u32,
        // msend counts from 1; `mreceive -n` expects the first number to be 1.
        seq: 1,
        sent_ns: 0,
    };
    let mut dgram = wire::Datagram::new(opts.text.as_bytes(), opts.size);
    let mut number = String::new();
    let verbose = opts.format == Format::Table && !opts.quiet;
    let at = format!("[{}]:{}", opts.group, opts.port);
    if verbose {
        writeln!(out, "Now sending to multicast group: {at}")?;
        out.flush()?;
    }
    let start = Instant::now();
    let mut errors = 0u64;
    let deadline = opts.duration.map(|d| start + d);
    while opts.count.is_none_or(|c| h.seq <= c) && !stop.load(Ordering::Relaxed) {
        // Checking the clock every 64 datagrams keeps it off the fast path.
        if h.seq.is_multiple_of(64) && deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if !opts.interval.is_zero() {
            let n = (h.seq - 1).min(u64::from(u32::MAX)) as u32;
            sleep_until(start + opts.interval.saturating_mul(n), stop);
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        if opts.numbered {
            number.clear();
            write!(number, "{}", h.seq)?;
            dgram.set_text(number.as_bytes());
        }
        h.sent_ns = now_ns();
        match s.send(dgram.stamp(&h)) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::EAGAIN)) => {
                errors += 1;
                std::thread::yield_now();
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot send to {dest}")),
        }
        if verbose {
            let text = if opts.numbered { &number } else { &opts.text };
            if opts.interval.is_zero() {
                // msend's burst mode (-P 0) numbers its lines from 0.
                writeln!(out, "Send out msg {} to {at}: {text}", h.seq - 1)?;
            } else {
                writeln!(
                    out,
                    "Sending msg {}, TTL {}, to {at}: {text}",
                    h.seq, opts.ttl
                )?;
                out.flush()?;
            }
        }
        h.seq += 1;
    }
    let sent = h.seq - 1;
    let secs = start.elapsed().as_secs_f64();
    Ok(SendSummary {
        group: opts.group.to_string(),
        port: opts.port,
        ttl: opts.ttl,
        sent,
        bytes: dgram.len(),
        send_errors: errors,
        duration_ms: (secs * 1000.0) as u64,
        per_second: if secs > 0.0 { sent as f64 / secs } else { 0.0 },
    })
}
