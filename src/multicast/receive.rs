//! `multicast receive`: mreceive's job (join a group, print what arrives) plus a per-sender summary
//! (received, lost, duplicates, reordered) on --count, --duration or Ctrl-C. Foreign datagrams
//! (msend, iperf) are counted per source.

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
    Format, now_ns, sock,
    stats::StreamStats,
    wire::{self, Header},
};

/// What `receive` was asked to do.
#[derive(Debug, Clone)]
pub struct ReceiveOptions {
    pub group: IpAddr,
    pub port: u16,
    pub interface: Option<String>,
    /// Stop after this many datagrams (any sender).
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub format: Format,
}

/// One sender as `receive` saw it.
#[derive(Debug, Clone, Serialize)]
pub struct SenderSummary {
    pub source: String,
    /// `k8sdoctor` for our datagrams, `foreign` for anything else on the group and port.
    pub kind: &'static str,
    /// Our session id (hex); one source restarting `send` shows as two senders.
    pub session: Option<String>,
    pub received: u64,
    /// Missing sequence numbers since the first datagram received (ours only).
    pub lost: Option<u64>,
    pub duplicates: Option<u64>,
    pub reordered: Option<u64>,
    pub ttl: Option<u8>,
    pub bytes: u64,
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
}

#[derive(Hash, PartialEq, Eq, Clone, Copy)]
enum Key {
    Ours(SocketAddr, u64, u32),
    Foreign(SocketAddr),
}

struct Sender {
    key: Key,
    stats: StreamStats,
    foreign: u64,
    foreign_ttl: Option<u8>,
    bytes: u64,
}

/// Receives until --count, --duration or `stop`; prints each datagram in table mode.
pub fn run(
    opts: &ReceiveOptions,
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> Result<ReceiveSummary> {
    let iface = sock::group_and_interface(opts.group, opts.interface.as_deref())?;
    let group = SocketAddr::new(opts.group, opts.port);
    let s = sock::receiver(group, iface.as_ref(), Duration::from_millis(100))?;
    let verbose = opts.format == Format::Table;
    let start = Instant::now();
    let deadline = opts.duration.map(|d| start + d);
    let mut senders: Vec<Sender> = Vec::new();
    let mut index: HashMap<Key, usize> = HashMap::new();
    let mut total = 0u64;
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
            let h = Header::parse(d.data);
            let key = match h {
                Some(h) => Key::Ours(d.from, h.session, h.sender),
                None => Key::Foreign(d.from),
            };
            let at = *index.entry(key).or_insert_with(|| {
                senders.push(Sender {
                    key,
                    stats: StreamStats::default(),
                    foreign: 0,
                    foreign_ttl: None,
                    bytes: 0,
                });
                senders.len() - 1
            });
            let snd = &mut senders[at];
            snd.bytes += d.data.len() as u64;
            match h {
                Some(h) => snd.stats.record(h.seq, now, h.sent_ns, d.ttl),
                None => {
                    snd.foreign += 1;
                    snd.foreign_ttl = d.ttl.or(snd.foreign_ttl);
                }
            }
            total += 1;
            if verbose {
                match h {
                    Some(h) => writeln!(
                        out,
                        "Receive msg {} from {}: {}",
                        h.seq,
                        d.from,
                        String::from_utf8_lossy(wire::text(d.data))
                    )?,
                    None => writeln!(
                        out,
                        "Receive {} bytes from {} (foreign)",
                        d.data.len(),
                        d.from
                    )?,
                }
            }
            if opts.count.is_some_and(|c| total >= c) {
                break 'outer;
            }
        }
        if verbose && n > 0 {
            out.flush()?;
        }
    }
    let senders = senders
        .into_iter()
        .map(|s| match s.key {
            Key::Ours(from, session, _) => {
                let r = s.stats.summary(0);
                SenderSummary {
                    source: from.to_string(),
                    kind: "k8sdoctor",
                    session: Some(format!("{session:016x}")),
                    received: r.received,
                    lost: Some(r.lost(None)),
                    duplicates: Some(r.duplicates),
                    reordered: Some(r.reordered),
                    ttl: r.ttl,
                    bytes: s.bytes,
                }
            }
            Key::Foreign(from) => SenderSummary {
                source: from.to_string(),
                kind: "foreign",
                session: None,
                received: s.foreign,
                lost: None,
                duplicates: None,
                reordered: None,
                ttl: s.foreign_ttl,
                bytes: s.bytes,
            },
        })
        .collect();
    Ok(ReceiveSummary {
        group: opts.group.to_string(),
        port: opts.port,
        interface: iface.map(|i| i.name),
        received: total,
        duration_ms: start.elapsed().as_millis() as u64,
        senders,
    })
}
