//! `multicast receive`: mreceive's job (join a group, print what arrives in mreceive's words, with
//! `--numbered` its numbered lines and gap messages) plus a per-sender summary (received, lost,
//! duplicates, reordered, latency between two of ours) and the kernel's own drop counters, on
//! --count, --duration or Ctrl-C. msend's datagrams are shown and, numbered, tracked like ours.

use std::{
    collections::HashMap,
    io::Write,
    net::{IpAddr, SocketAddr},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{
    Format, evidence, now_ns, sock,
    stats::{Arrival, StreamStats},
    wire,
};
use crate::core::host::Host;

/// What `receive` was asked to do.
#[derive(Debug, Clone)]
pub struct ReceiveOptions {
    pub group: IpAddr,
    pub port: u16,
    pub interface: Option<String>,
    /// mreceive's `-s`: only datagrams from this source (a source-specific join).
    pub source: Option<IpAddr>,
    /// Stop after this many datagrams (any sender).
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    /// mreceive's `-n`: payloads are numbers (msend -n); print numbered lines, track foreign numbers.
    pub numbered: bool,
    /// mreceive's `-q`: no line per datagram (gap and duplicate lines still print, as in mreceive).
    pub quiet: bool,
    pub format: Format,
}

/// One sender as `receive` saw it.
#[derive(Debug, Clone, Serialize)]
pub struct SenderSummary {
    pub source: String,
    /// `k8sdoctor` for our datagrams, `foreign` for anything else on the group and port (msend, iperf).
    pub kind: &'static str,
    /// Our session id (hex); one source restarting `send` shows as two senders.
    pub session: Option<String>,
    pub received: u64,
    /// Missing sequence numbers since the first datagram received (ours, and foreign ones that
    /// carried numbers under --numbered).
    pub lost: Option<u64>,
    pub duplicates: Option<u64>,
    pub reordered: Option<u64>,
    pub ttl: Option<u8>,
    pub bytes: u64,
    /// One-way latency (receiver's clock minus the sender's stamp; ours only, and only as good as
    /// the two clocks agree).
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

/// What `receive` saw.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiveSummary {
    pub group: String,
    pub port: u16,
    pub interface: Option<String>,
    pub received: u64,
    pub duration_ms: u64,
    pub senders: Vec<SenderSummary>,
    /// Datagrams the kernel dropped for this socket because its receive buffer was full
    /// (SO_RXQ_OVFL): loss on this host, not on the network.
    pub socket_drops: u64,
    /// The growth of Udp/Udp6 RcvbufErrors in /proc/net/snmp(6) during the run: every socket of this
    /// network namespace, so other programs' drops count too. `None` when /proc is unreadable.
    pub kernel_rcvbuf_errors: Option<u64>,
}

#[derive(Hash, PartialEq, Eq, Clone, Copy)]
enum Key {
    Ours(SocketAddr, u64, u32),
    Foreign(SocketAddr),
}

struct Sender {
    key: Key,
    stats: StreamStats,
    /// Foreign datagrams received, numbered or not.
    foreign: u64,
    /// Whether any foreign datagram carried a number (then its loss is known).
    numbered: bool,
    ttl: Option<u8>,
    bytes: u64,
}

/// Udp and Udp6 RcvbufErrors of this network namespace, now.
fn rcvbuf_errors(host: &Host) -> Option<u64> {
    let snmp = host.read_opt("/proc/net/snmp").ok().flatten()?;
    let snmp6 = host.read_opt("/proc/net/snmp6").ok().flatten();
    Some(evidence::rcvbuf_errors(&snmp, snmp6.as_deref()))
}

/// Receives until --count, --duration or `stop`; prints mreceive's lines in table mode.
pub fn run(
    opts: &ReceiveOptions,
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> Result<ReceiveSummary> {
    let iface = sock::group_and_interface(opts.group, opts.interface.as_deref())?;
    let group = SocketAddr::new(opts.group, opts.port);
    let s = sock::receiver(
        group,
        iface.as_ref(),
        opts.source,
        Duration::from_millis(100),
    )?;
    let host = Host::live();
    let errors_before = rcvbuf_errors(&host);
    let table = opts.format == Format::Table;
    let verbose = table && !opts.quiet;
    if verbose {
        writeln!(
            out,
            "Now receiving from multicast group: [{}]:{}",
            opts.group, opts.port
        )?;
        out.flush()?;
    }
    let start = Instant::now();
    let deadline = opts.duration.map(|d| start + d);
    let mut senders: Vec<Sender> = Vec::new();
    let mut index: HashMap<Key, usize> = HashMap::new();
    let mut total = 0u64;
    let mut first_at: Option<Instant> = None;
    let mut batch = sock::Batch::default();
    'outer: while !stop.load(Ordering::Relaxed)
        && opts.count.is_none_or(|c| total < c)
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        let n = batch
            .recv(&s)
            .with_context(|| format!("receiving on {group}"))?;
        let now = now_ns();
        for i in 0..n {
            let Some(d) = batch.get(i) else { continue };
            let p = wire::parse(d.data);
            let key = match p.header {
                Some(h) => Key::Ours(d.from, h.session, h.sender),
                None => Key::Foreign(d.from),
            };
            let at = *index.entry(key).or_insert_with(|| {
                senders.push(Sender {
                    key,
                    stats: StreamStats::default(),
                    foreign: 0,
                    numbered: false,
                    ttl: None,
                    bytes: 0,
                });
                senders.len() - 1
            });
            let snd = &mut senders[at];
            snd.bytes += d.data.len() as u64;
            snd.ttl = d.ttl.or(snd.ttl);
            // Ours carry the sequence in the trailer; msend's only as the text, under --numbered.
            let (seq, arrival) = match p.header {
                Some(h) => (
                    Some(h.seq),
                    Some(snd.stats.record(h.seq, now, Some(h.sent_ns), d.ttl)),
                ),
                None => {
                    snd.foreign += 1;
                    let num = opts.numbered.then(|| wire::number(p.text)).flatten();
                    snd.numbered |= num.is_some();
                    (num, num.map(|n| snd.stats.record(n, now, None, d.ttl)))
                }
            };
            total += 1;
            let first = *first_at.get_or_insert_with(Instant::now);
            if verbose {
                if opts.numbered {
                    let ms = first.elapsed().as_millis();
                    writeln!(
                        out,
                        "{total:5}\t[{}]:{:5}\t{}.{:03}\t{:5}",
                        d.from.ip(),
                        d.from.port(),
                        ms / 1000,
                        ms % 1000,
                        // mreceive's atoi reads a text without a number as 0.
                        seq.unwrap_or(0)
                    )?;
                } else {
                    writeln!(
                        out,
                        "Receive msg {total} from [{}]:{}: {}",
                        d.from.ip(),
                        d.from.port(),
                        String::from_utf8_lossy(p.text)
                    )?;
                }
            }
            if let (true, Some(seq), Some(a)) = (table, seq, arrival) {
                gap_line(seq, a, out)?;
            }
            if opts.count.is_some_and(|c| total >= c) {
                break 'outer;
            }
        }
        if table && n > 0 {
            out.flush()?;
        }
    }
    let errors_after = rcvbuf_errors(&host);
    let senders = senders.into_iter().map(summary).collect();
    Ok(ReceiveSummary {
        group: opts.group.to_string(),
        port: opts.port,
        interface: iface.map(|i| i.name),
        received: total,
        duration_ms: start.elapsed().as_millis() as u64,
        senders,
        socket_drops: u64::from(batch.socket_drops()),
        kernel_rcvbuf_errors: errors_before
            .zip(errors_after)
            .map(|(b, a)| a.saturating_sub(b)),
    })
}

/// mreceive's words for a datagram out of order: the numbers it skipped, a duplicate, a late one.
fn gap_line(seq: u64, a: Arrival, out: &mut dyn Write) -> Result<()> {
    const STARS: &str = "****************";
    match a {
        Arrival::InOrder => {}
        Arrival::Gap { first, last } if first == last => {
            writeln!(out, "{STARS}\nMessage not received: {first}\n{STARS}")?
        }
        Arrival::Gap { first, last } => writeln!(
            out,
            "{STARS}\nMessages not received: {first} to {last}\n{STARS}"
        )?,
        Arrival::Duplicate => writeln!(out, "Duplicate message received: {seq}")?,
        Arrival::Late { highest } => {
            writeln!(out, "{STARS}\nGap detected: {seq} from {highest}\n{STARS}")?
        }
    }
    Ok(())
}

fn summary(s: Sender) -> SenderSummary {
    let r = s.stats.summary(0);
    let (kind, session, received, tracked) = match s.key {
        Key::Ours(_, session, _) => (
            "k8sdoctor",
            Some(format!("{session:016x}")),
            r.received,
            true,
        ),
        Key::Foreign(_) => ("foreign", None, s.foreign, s.numbered),
    };
    let source = match s.key {
        Key::Ours(from, ..) | Key::Foreign(from) => from.to_string(),
    };
    SenderSummary {
        source,
        kind,
        session,
        received,
        lost: tracked.then(|| r.lost(None)),
        duplicates: tracked.then_some(r.duplicates),
        reordered: tracked.then_some(r.reordered),
        ttl: s.ttl,
        bytes: s.bytes,
        latency_p50_ms: r.latency_p50_ms,
        latency_p99_ms: r.latency_p99_ms,
    }
}
