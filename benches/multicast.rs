//! Bench: multicast throughput of `send` → `receive` over a veth pair between two namespaces,
//! side by side with iperf2 multicast in the same run (64-byte datagrams, each at its top rate),
//! then the wall time of a 2-peer probe verdict and a 16-participant matrix at default settings.
//! Run as root: `cargo bench --bench multicast` (K8SDOCTOR_BENCH_SECS sets the throughput runs' length).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{Netns, Switch, bin, can_run_privileged, veth};

/// Runs a command to its end; returns status, stdout and the child's peak RSS in KiB.
fn run_measured(mut c: Command) -> (ExitStatus, String, i64) {
    let (status, out, sample) = common::run_capture(&mut c);
    (status, out, sample.maxrss_kib)
}

fn k8sdoctor(ns: &Netns, args: &[&str]) -> Command {
    let mut c = ns.command(bin().to_str().unwrap());
    c.arg("multicast").args(args);
    c
}

struct Throughput {
    sent: u64,
    delivered: u64,
    secs: f64,
    rss_kib: i64,
    /// The receiver's own report of kernel drops: SO_RXQ_OVFL for its socket, and the growth of
    /// /proc/net/snmp Udp RcvbufErrors in its namespace (ours only).
    kernel: Option<(u64, u64)>,
}

impl Throughput {
    fn rate(&self) -> f64 {
        self.delivered as f64 / self.secs
    }
    fn loss_pct(&self) -> f64 {
        100.0 * self.sent.saturating_sub(self.delivered) as f64 / self.sent.max(1) as f64
    }
}

fn ours(a: &Netns, b: &Netns, secs: f64) -> Throughput {
    let rx_secs = format!("{}", secs + 1.5);
    let rx = k8sdoctor(
        b,
        &[
            "receive",
            "--interface",
            "10.67.0.2",
            "--port",
            "4700",
            "--duration",
            &rx_secs,
            "-o",
            "json",
        ],
    );
    let rx = thread::spawn(move || run_measured(rx));
    thread::sleep(Duration::from_millis(500));
    let secs_s = format!("{secs}");
    let tx = k8sdoctor(
        a,
        &[
            "send",
            "--interface",
            "10.67.0.1",
            "--port",
            "4700",
            "--interval",
            "0",
            "--size",
            "64",
            "--duration",
            &secs_s,
            "-o",
            "json",
        ],
    );
    let (st, out, _) = run_measured(tx);
    assert!(st.success(), "send failed: {out}");
    let tx: Value = serde_json::from_str(&out).unwrap();
    let (_, out, rss) = rx.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
    let rx: Value = serde_json::from_str(&out).unwrap();
    Throughput {
        sent: tx["sent"].as_u64().unwrap(),
        delivered: rx["received"].as_u64().unwrap(),
        secs: tx["duration_ms"].as_f64().unwrap() / 1000.0,
        rss_kib: rss,
        kernel: Some((
            rx["socket_drops"].as_u64().unwrap_or(0),
            rx["kernel_rcvbuf_errors"].as_u64().unwrap_or(0),
        )),
    }
}

fn iperf(a: &Netns, b: &Netns, secs: f64) -> Throughput {
    let mut rx = b.command("timeout");
    rx.args([
        &format!("{}", secs + 2.0),
        "iperf",
        "-s",
        "-u",
        "-B",
        "224.1.1.1",
        "-p",
        "5001",
        "-l",
        "64",
        "-y",
        "C",
    ]);
    let rx = thread::spawn(move || run_measured(rx));
    thread::sleep(Duration::from_millis(500));
    let mut tx = a.command("iperf");
    tx.args([
        "-c",
        "224.1.1.1",
        "-u",
        "-b",
        "10G",
        "-l",
        "64",
        "-T",
        "1",
        "-p",
        "5001",
        "-t",
        &format!("{secs}"),
    ]);
    let (_, out, _) = run_measured(tx);
    let sent: u64 = out
        .lines()
        .find_map(|l| {
            l.split("Sent ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    let (_, out, rss) = rx.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
    // CSV: ...,interval,bytes,bps,jitter,lost,total,pct,outoforder
    let f: Vec<&str> = out.lines().last().unwrap_or("").split(',').collect();
    let bytes: u64 = f
        .get(7)
        .and_then(|v| v.parse().ok())
        .expect("iperf server report");
    let interval = f
        .get(6)
        .and_then(|i| i.split('-').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(secs);
    Throughput {
        sent,
        delivered: bytes / 64,
        secs: interval,
        rss_kib: rss,
        kernel: None,
    }
}

/// Starts the probe with default settings on every namespace at once; wall time until all are done.
fn probe_wall_time(nss: &[Netns], peers: &str) -> (Duration, bool) {
    let start = Instant::now();
    let children: Vec<_> = nss
        .iter()
        .map(|ns| {
            k8sdoctor(ns, &["probe", "--peers", peers, "-o", "json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut pass = true;
    for c in children {
        let o = c.wait_with_output().unwrap();
        pass &= o.status.success();
    }
    (start.elapsed(), pass)
}

fn main() {
    if !can_run_privileged(&["ip", "iperf", "timeout"]) {
        return;
    }
    let secs: f64 = std::env::var("K8SDOCTOR_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let (a, b) = (Netns::new("mcb"), Netns::new("mcb"));
    veth(&a, "10.67.0.1/24", &b, "10.67.0.2/24");
    for (ns, dev) in [(&a, "10.67.0.1"), (&b, "10.67.0.2")] {
        let out = ns.exec(&["ip", "-o", "addr", "show", "to", dev]);
        let name = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string();
        // iperf2 picks the interface by route.
        ns.exec(&["ip", "route", "add", "224.0.0.0/4", "dev", &name]);
    }

    let rounds: usize = std::env::var("K8SDOCTOR_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    println!(
        "multicast throughput, 64-byte datagrams over a veth pair, {secs} s per run (best of {rounds} rounds)"
    );
    let (mut best_ours, mut best_iperf): (Option<Throughput>, Option<Throughput>) = (None, None);
    let mut losses = Vec::new();
    for round in 1..=rounds {
        let o = ours(&a, &b, secs);
        let i = iperf(&a, &b, secs);
        for (name, t) in [("k8sdoctor", &o), ("iperf2", &i)] {
            println!(
                "  round {round} {name:9}: sent {:>9}, delivered {:>9} in {:.2} s = {:>9.0} datagrams/s, loss {:.3} %, receiver peak RSS {} KiB",
                t.sent,
                t.delivered,
                t.secs,
                t.rate(),
                t.loss_pct(),
                t.rss_kib
            );
            if let Some((sock, snmp)) = t.kernel {
                println!(
                    "  round {round} {name:9}: kernel drops seen by the receiver: socket (SO_RXQ_OVFL) {sock}, Udp RcvbufErrors +{snmp}"
                );
            }
        }
        losses.push(o.loss_pct());
        if best_ours.as_ref().is_none_or(|b| o.rate() > b.rate()) {
            best_ours = Some(o);
        }
        if best_iperf.as_ref().is_none_or(|b| i.rate() > b.rate()) {
            best_iperf = Some(i);
        }
    }
    let (o, i) = (best_ours.unwrap(), best_iperf.unwrap());
    losses.sort_by(f64::total_cmp);
    println!(
        "  k8sdoctor self-inflicted loss, median of {rounds} rounds: {:.3} % (target < 0.1 %)",
        losses[losses.len() / 2]
    );
    println!(
        "  ratio delivered/s k8sdoctor : iperf2 = {:.2} (target ≥ 0.80); k8sdoctor self-inflicted loss {:.3} % (target < 0.1 %); iperf2 loss {:.1} %",
        o.rate() / i.rate(),
        o.loss_pct(),
        i.loss_pct()
    );
    drop((a, b));

    let (a, b) = (Netns::new("mcb"), Netns::new("mcb"));
    veth(&a, "10.67.1.1/24", &b, "10.67.1.2/24");
    let (t, pass) = probe_wall_time(&[a, b], "10.67.1.1,10.67.1.2");
    println!(
        "2-peer probe verdict at default settings: {:.2} s (target ≤ 2 s), pass = {pass}",
        t.as_secs_f64()
    );

    let sw = Switch::new("mcb");
    let nss: Vec<Netns> = (0..16).map(|_| Netns::new("mcb")).collect();
    let mut addrs = Vec::new();
    for (i, ns) in nss.iter().enumerate() {
        let a = format!("10.67.2.{}", i + 1);
        sw.plug(ns, &format!("{a}/24"));
        addrs.push(a);
    }
    let (t, pass) = probe_wall_time(&nss, &addrs.join(","));
    println!(
        "16-participant matrix at default settings: {:.2} s (target ≤ 5 s), pass = {pass}",
        t.as_secs_f64()
    );
}
