//! What `send`, `receive` and `probe` print: tables for people, JSON for scripts (stdout only).

use std::io::Write;

use anyhow::Result;
use comfy_table::{Cell, Color};
use serde::Serialize;

use super::{Format, probe::ProbeResult, receive::ReceiveSummary, send::SendSummary};
use crate::report::status_table;

fn json(v: &impl Serialize, out: &mut dyn Write) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, v)?;
    writeln!(out)?;
    Ok(())
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("—".to_string(), |v| v.to_string())
}

fn ms(v: Option<f64>) -> String {
    v.map_or("—".to_string(), |v| format!("{v:.2}"))
}

/// The end of `send`.
pub fn send(s: &SendSummary, format: Format, out: &mut dyn Write) -> Result<()> {
    match format {
        Format::Json => json(s, out),
        Format::Table => {
            writeln!(
                out,
                "sent {} datagrams of {} bytes to {}:{} (TTL {}) in {:.1} s, {:.0}/s",
                s.sent,
                s.bytes,
                s.group,
                s.port,
                s.ttl,
                s.duration_ms as f64 / 1000.0,
                s.per_second
            )?;
            Ok(())
        }
    }
}

/// The summary of `receive`.
pub fn receive(s: &ReceiveSummary, format: Format, color: bool, out: &mut dyn Write) -> Result<()> {
    if format == Format::Json {
        return json(s, out);
    }
    writeln!(
        out,
        "\nreceived {} datagrams on {}:{} in {:.1} s from {} sender(s)",
        s.received,
        s.group,
        s.port,
        s.duration_ms as f64 / 1000.0,
        s.senders.len()
    )?;
    if !s.senders.is_empty() {
        let mut t = status_table(
            &[
                "sender",
                "kind",
                "received",
                "lost",
                "duplicates",
                "reordered",
                "TTL",
                "latency p50/p99 ms",
            ],
            color,
        );
        for x in &s.senders {
            t.add_row(vec![
                x.source.clone(),
                x.kind.to_string(),
                x.received.to_string(),
                opt(x.lost),
                opt(x.duplicates),
                opt(x.reordered),
                opt(x.ttl),
                match x.latency_p50_ms {
                    None => "—".to_string(),
                    Some(_) => format!("{}/{}", ms(x.latency_p50_ms), ms(x.latency_p99_ms)),
                },
            ]);
        }
        writeln!(out, "{t}")?;
    }
    // Loss on this host (a receive buffer that overflowed) is not loss on the network.
    writeln!(
        out,
        "kernel drops on this host: {} for this socket (receive buffer full), Udp RcvbufErrors +{} in this network namespace",
        s.socket_drops,
        opt(s.kernel_rcvbuf_errors)
    )?;
    Ok(())
}

/// The probe's matrix, pair table, causes with evidence, and verdict.
pub fn probe(r: &ProbeResult, format: Format, color: bool, out: &mut dyn Write) -> Result<()> {
    if format == Format::Json {
        return json(r, out);
    }
    writeln!(
        out,
        "multicast probe {}:{} TTL {}, {} datagrams every {} ms, {} participants (this is {} on {})\n",
        r.group,
        r.port,
        r.ttl,
        r.count,
        r.interval_ms,
        r.participants.len(),
        r.local,
        r.interface
    )?;
    let mut header = vec!["loss % (sender ↓, receiver →)".to_string()];
    header.extend(r.participants.iter().map(|p| p.to_string()));
    let hdr: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut grid = status_table(&hdr, color);
    for s in &r.participants {
        let mut row = vec![Cell::new(s)];
        for rc in &r.participants {
            let cell = match r.pairs.iter().find(|p| p.sender == *s && p.receiver == *rc) {
                None => Cell::new("—"),
                Some(p) => {
                    let c = Cell::new(format!("{:.1}", p.loss_pct));
                    match (color, p.verdict) {
                        (false, _) => c,
                        (true, "pass") => c.fg(Color::Green),
                        (true, _) => c.fg(Color::Red),
                    }
                }
            };
            row.push(cell);
        }
        grid.add_row(row);
    }
    writeln!(out, "{grid}")?;
    let mut t = status_table(
        &[
            "sender → receiver",
            "sent",
            "recv",
            "loss %",
            "dup",
            "reord",
            "p50/p99 ms",
            "first ms",
            "hops",
            "unicast loss %",
            "verdict",
        ],
        color,
    );
    for p in &r.pairs {
        t.add_row(vec![
            format!("{} → {}", p.sender, p.receiver),
            opt(p.sent),
            p.received.to_string(),
            format!("{:.1}", p.loss_pct),
            p.duplicates.to_string(),
            p.reordered.to_string(),
            format!("{}/{}", ms(p.latency_p50_ms), ms(p.latency_p99_ms)),
            ms(p.first_ms),
            opt(p.hops),
            p.unicast_loss_pct.map_or("—".into(), |v| format!("{v:.0}")),
            p.verdict.to_string(),
        ]);
    }
    writeln!(out, "{t}")?;
    let failing: Vec<_> = r.pairs.iter().filter(|p| p.verdict != "pass").collect();
    for p in &failing {
        if let Some(c) = &p.cause {
            writeln!(
                out,
                "✗ {} → {} [{}] {}",
                p.sender, p.receiver, c.code, c.message
            )?;
            for e in &c.evidence {
                writeln!(out, "    • {e}")?;
            }
        }
    }
    if failing.is_empty() {
        writeln!(
            out,
            "verdict: all {} pairs pass (max loss {} %)",
            r.pairs.len(),
            r.max_loss_pct
        )?;
    } else {
        writeln!(
            out,
            "verdict: {} of {} pairs fail (max loss {} %)",
            failing.len(),
            r.pairs.len(),
            r.max_loss_pct
        )?;
    }
    Ok(())
}
