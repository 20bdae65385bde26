//! `multicast probe`: every participant runs the same command; each sends sequenced datagrams with
//! loopback off, receives everyone else's, measures unicast separately over the control channel,
//! exchanges reports, and builds the same sender × receiver matrix with a verdict and cause per pair.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{
    Format,
    cause::{self, Cause, Local, PairObs},
    control::{Control, FromPeer, Peer, Report, Shared, session_id},
    evidence, now_ns, random_u64, sleep_until, sock,
    stats::StreamStats,
    wire::{self, Header, Stream},
};
use crate::host::Host;

/// The TTL of the side stream that tells "TTL too low" from "not routed".
const SIDE_TTL: u8 = 8;

/// What `probe` was asked to do.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Every participant's unicast address, this one included.
    pub peers: Vec<IpAddr>,
    /// Which of the peers this is; by default the first local one whose control port is free.
    pub local: Option<IpAddr>,
    pub group: IpAddr,
    pub port: u16,
    pub control_port: u16,
    pub ttl: u8,
    pub count: u64,
    pub interval: Duration,
    /// Highest loss (percent) a passing pair may show.
    pub max_loss: f64,
    /// How long to wait for peers to appear, and for their reports.
    pub wait: Duration,
    pub format: Format,
    /// Progress on stderr.
    pub progress: bool,
}

/// One sender→receiver pair of the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    pub sender: IpAddr,
    pub receiver: IpAddr,
    pub sent: Option<u64>,
    pub received: u64,
    /// Loss counted from the first datagram received (100 when none arrived).
    pub loss_pct: f64,
    pub duplicates: u64,
    pub reordered: u64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// From the sender's start to the first datagram received.
    pub first_ms: Option<f64>,
    /// Routers crossed: TTL sent minus TTL received.
    pub hops: Option<u8>,
    pub unicast_loss_pct: Option<f64>,
    pub rtt_ms: Option<f64>,
    /// `pass` or `fail`.
    pub verdict: &'static str,
    pub cause: Option<Cause>,
}

/// The whole probe as every participant prints it.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub group: IpAddr,
    pub port: u16,
    pub ttl: u8,
    pub count: u64,
    pub interval_ms: f64,
    pub max_loss_pct: f64,
    pub local: IpAddr,
    pub interface: String,
    pub participants: Vec<IpAddr>,
    pub duration_ms: u64,
    pub pass: bool,
    pub pairs: Vec<Pair>,
}

/// Per-sender streams seen by the receive thread.
#[derive(Default)]
struct Inbox {
    main: HashMap<IpAddr, StreamStats>,
    side: HashMap<IpAddr, StreamStats>,
    foreign: u64,
}

fn validate(o: &ProbeOptions) -> Result<Vec<IpAddr>> {
    let mut peers = o.peers.clone();
    peers.dedup();
    let mut seen = Vec::new();
    for p in &peers {
        if !seen.contains(p) {
            seen.push(*p);
        }
    }
    if seen.len() < 2 {
        bail!(
            "--peers needs at least two distinct addresses (every participant, this one included)"
        );
    }
    if seen.iter().any(|p| p.is_ipv4() != o.group.is_ipv4()) {
        bail!(
            "--peers and --group {} must be of the same address family",
            o.group
        );
    }
    sock::check_group(o.group)?;
    if o.count == 0 {
        bail!("--count must be at least 1");
    }
    if !(0.0..=100.0).contains(&o.max_loss) {
        bail!("--max-loss must be a percentage between 0 and 100");
    }
    if o.port == o.control_port {
        bail!("the control port must differ from --port");
    }
    Ok(seen)
}

/// Finds this participant among the peers and binds its control socket.
fn bind_self(o: &ProbeOptions, peers: &[IpAddr]) -> Result<(IpAddr, UdpSocket)> {
    let candidates: Vec<IpAddr> = match o.local {
        Some(l) if peers.contains(&l) => vec![l],
        Some(l) => bail!("--local {l} is not one of --peers"),
        None => peers
            .iter()
            .copied()
            .filter(|p| sock::interface_with(*p).is_some())
            .collect(),
    };
    if candidates.is_empty() {
        bail!("none of --peers is an address of this node: list this node's address too");
    }
    let mut last = None;
    for c in candidates {
        match UdpSocket::bind(SocketAddr::new(c, o.control_port)) {
            Ok(s) => return Ok((c, s)),
            Err(e) => last = Some((c, e)),
        }
    }
    let (c, e) = last.expect("one candidate");
    Err(e).with_context(|| format!("cannot bind the control channel on {c}:{}", o.control_port))
}

/// Runs the probe. An error means it could not run (exit 2); otherwise the matrix decides.
pub fn run(o: &ProbeOptions, stop: Arc<AtomicBool>) -> Result<ProbeResult> {
    let started = Instant::now();
    let peers = validate(o)?;
    let (me, csock) = bind_self(o, &peers)?;
    let iface = sock::interface_with(me).context("the local address vanished")?;
    let local_addrs: Vec<IpAddr> = sock::interfaces()
        .context("cannot list interfaces")?
        .into_iter()
        .flat_map(|i| i.addrs)
        .collect();
    let host = Host::live();
    let before = evidence::snapshot(&host);
    let group = SocketAddr::new(o.group, o.port);

    let (rx, join_error) = match sock::receiver(group, Some(&iface), Duration::from_millis(50)) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let main_tx = sock::sender(group, Some(&iface), o.ttl, false, Some(me))?;
    let side_tx = (o.ttl < SIDE_TTL)
        .then(|| sock::sender(group, Some(&iface), SIDE_TTL, false, Some(me)))
        .transpose()?;

    let session = session_id(&peers, o.group, o.port);
    let id = random_u64() as u32;
    let others: Vec<IpAddr> = peers.iter().copied().filter(|p| *p != me).collect();
    let shared = Arc::new(Mutex::new(Shared {
        me,
        id,
        session,
        start_ns: None,
        sent: None,
        report: None,
        peers: others.iter().map(|p| Peer::new(*p)).collect(),
        foreign_sessions: 0,
    }));
    let control = Arc::new(Control {
        sock: csock,
        port: o.control_port,
        shared: Arc::clone(&shared),
    });
    let threads_stop = Arc::new(AtomicBool::new(false));
    let control_thread = Arc::clone(&control).serve(Arc::clone(&threads_stop));
    let inbox = Arc::new(Mutex::new(Inbox::default()));
    let rx_thread = rx.map(|s| {
        let (inbox, stop) = (Arc::clone(&inbox), Arc::clone(&threads_stop));
        std::thread::spawn(move || receive_loop(&s, session, id, &inbox, &stop))
    });
    let lock = || shared.lock().expect("control state");

    // Rendezvous: start once every peer is up (it joined before it said so), or at the deadline.
    let deadline = Instant::now() + o.wait;
    while Instant::now() < deadline
        && !stop.load(Ordering::Relaxed)
        && !lock().peers.iter().all(|p| p.heard)
    {
        std::thread::sleep(Duration::from_millis(5));
    }

    // Send both streams; ping every peer each 100 ms.
    let start = Instant::now();
    let start_ns = now_ns();
    lock().start_ns = Some(start_ns);
    let mut h = Header {
        stream: Stream::Probe,
        ttl: o.ttl,
        session,
        sender: id,
        seq: 0,
        sent_ns: 0,
    };
    let mut buf = wire::datagram(&h, b"k8sdoctor multicast probe", 64);
    let (mut pings, mut next_ping, mut next_progress) = (0u64, start, start);
    let mut send_errors = 0u64;
    let total = o.interval.as_secs_f64() * o.count as f64;
    while h.seq < o.count && !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next_ping {
            control.ping_all(pings);
            pings += 1;
            next_ping = now + Duration::from_millis(100);
        }
        if o.progress && now >= next_progress {
            eprint!(
                "\rprobe: {}/{} datagrams sent, {:.0}/{total:.0} s ",
                h.seq,
                o.count,
                (now - start).as_secs_f64()
            );
            next_progress = now + Duration::from_millis(250);
        }
        sleep_until(
            start
                + o.interval
                    .saturating_mul(h.seq.min(u64::from(u32::MAX)) as u32),
            &stop,
        );
        h.stream = Stream::Probe;
        h.ttl = o.ttl;
        h.sent_ns = now_ns();
        h.write(&mut buf);
        if main_tx.send(&buf).is_err() {
            send_errors += 1;
        }
        if let Some(side) = &side_tx {
            h.stream = Stream::ProbeTtl;
            h.ttl = SIDE_TTL;
            h.write(&mut buf);
            let _ = side.send(&buf);
        }
        h.seq += 1;
    }
    if o.progress {
        eprintln!(
            "\rprobe: {} datagrams sent; collecting reports            ",
            h.seq
        );
    }
    if send_errors > 0 {
        eprintln!(
            "k8sdoctor: {send_errors} of {} multicast sends failed",
            h.seq
        );
    }
    lock().sent = Some(h.seq);

    // Wait until each peer that showed up finished sending and its last datagrams had time to land;
    // keep pinging so short runs still measure unicast.
    let linger =
        Duration::from_millis(200) + o.interval.saturating_mul(2).min(Duration::from_secs(2));
    let deadline = Instant::now() + o.wait;
    loop {
        let now = Instant::now();
        let ready = lock()
            .peers
            .iter()
            .all(|p| !p.heard || p.sent_seen.is_some_and(|t| now >= t + linger));
        if (ready && pings >= 3) || now >= deadline || stop.load(Ordering::Relaxed) {
            break;
        }
        if now >= next_ping {
            control.ping_all(pings);
            pings += 1;
            next_ping = now + Duration::from_millis(100);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Replies to the last pings are in flight: give them up to half a second, so a slow peer's
    // answer is not counted as unicast loss.
    let pongs_due = Instant::now() + Duration::from_millis(500);
    while Instant::now() < pongs_due && !lock().peers.iter().all(|p| !p.heard || p.pongs >= p.pings)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Read while the receiver is still joined, so /proc/net/igmp shows the membership.
    let state = evidence::node_state(&host, o.group.is_ipv6());
    let after = evidence::snapshot(&host);

    let report = {
        let inbox = inbox.lock().expect("inbox");
        let s = lock();
        let local = Local {
            local_addrs: &local_addrs,
            iface_name: &iface.name,
            iface_index: iface.index,
            group: o.group,
            port: o.port,
            join_error: join_error.as_deref(),
            state: &state,
            before: &before,
            after: &after,
        };
        let from = s
            .peers
            .iter()
            .map(|p| {
                let main = inbox
                    .main
                    .get(&p.addr)
                    .map(|st| st.summary(p.offset_ns))
                    .unwrap_or_default();
                let side = side_tx.as_ref().map(|_| {
                    inbox
                        .side
                        .get(&p.addr)
                        .map(|st| st.summary(p.offset_ns))
                        .unwrap_or_default()
                });
                let obs = PairObs {
                    sender: p.addr,
                    sent: p.sent,
                    ttl: o.ttl,
                    main: &main,
                    side: side.as_ref().map(|s| (SIDE_TTL, s)),
                    unicast_sent: p.pings,
                    unicast_received: p.pongs,
                };
                let imperfect = p.sent.is_none_or(|sent| {
                    main.received == 0 || main.lost(Some(sent.saturating_sub(1))) > 0
                });
                let cause = imperfect.then(|| cause::diagnose(&obs, &local));
                FromPeer {
                    sender: p.addr,
                    main,
                    side,
                    unicast_sent: p.pings,
                    unicast_received: p.pongs,
                    rtt_ms: p.rtt_ms(),
                    cause,
                }
            })
            .collect();
        Report {
            addr: me,
            sent: h.seq,
            start_ns,
            from,
            outbound: cause::outbound(&local),
        }
    };
    lock().report = Some(report);

    // Exchange reports until everyone who showed up has ours and we have theirs.
    let deadline = Instant::now() + o.wait;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        let done = lock()
            .peers
            .iter()
            .all(|p| !p.heard || (p.report.is_some() && p.has_mine));
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // A last status, so peers learn we hold their reports and can stop waiting.
    for _ in 0..3 {
        control.broadcast_status();
        std::thread::sleep(Duration::from_millis(2));
    }
    threads_stop.store(true, Ordering::Relaxed);
    let _ = control_thread.join();
    if let Some(t) = rx_thread {
        let _ = t.join();
    }

    let s = lock();
    let mut reports: Vec<Report> = s.peers.iter().filter_map(|p| p.report.clone()).collect();
    reports.extend(s.report.clone());
    let sent_by: HashMap<IpAddr, (Option<u64>, Option<u64>)> = s
        .peers
        .iter()
        .map(|p| (p.addr, (p.sent, p.start_ns)))
        .chain([(me, (Some(h.seq), Some(start_ns)))])
        .collect();
    let pairs = matrix(&peers, &reports, &sent_by, o);
    Ok(ProbeResult {
        group: o.group,
        port: o.port,
        ttl: o.ttl,
        count: o.count,
        interval_ms: o.interval.as_secs_f64() * 1000.0,
        max_loss_pct: o.max_loss,
        local: me,
        interface: iface.name.clone(),
        participants: peers.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        pass: pairs.iter().all(|p| p.verdict == "pass"),
        pairs,
    })
}

fn receive_loop(
    s: &socket2::Socket,
    session: u64,
    me: u32,
    inbox: &Mutex<Inbox>,
    stop: &AtomicBool,
) {
    let mut batch = sock::Batch::default();
    while !stop.load(Ordering::Relaxed) {
        let Ok(n) = batch.recv(s) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if n == 0 {
            continue;
        }
        let now = now_ns();
        let mut inbox = inbox.lock().expect("inbox");
        for i in 0..n {
            let Some(d) = batch.get(i) else { continue };
            match Header::parse(d.data) {
                Some(h) if h.session == session && h.sender != me => {
                    let map = match h.stream {
                        Stream::ProbeTtl => &mut inbox.side,
                        _ => &mut inbox.main,
                    };
                    map.entry(d.from.ip())
                        .or_insert_with(StreamStats::with_latency)
                        .record(h.seq, now, h.sent_ns, d.ttl);
                }
                Some(h) if h.sender == me => {}
                _ => inbox.foreign += 1,
            }
        }
    }
}

/// Builds every pair from the reports; the same on every participant that holds the same reports.
fn matrix(
    peers: &[IpAddr],
    reports: &[Report],
    sent_by: &HashMap<IpAddr, (Option<u64>, Option<u64>)>,
    o: &ProbeOptions,
) -> Vec<Pair> {
    let mut pairs = Vec::new();
    for &sender in peers {
        let sender_report = reports.iter().find(|r| r.addr == sender);
        let (sent, start_ns) = match sender_report {
            Some(r) => (Some(r.sent), Some(r.start_ns)),
            None => sent_by.get(&sender).copied().unwrap_or((None, None)),
        };
        for &receiver in peers {
            if receiver == sender {
                continue;
            }
            let Some(fp) = reports
                .iter()
                .find(|r| r.addr == receiver)
                .and_then(|r| r.from.iter().find(|f| f.sender == sender))
            else {
                pairs.push(Pair {
                    sender,
                    receiver,
                    sent,
                    received: 0,
                    loss_pct: 100.0,
                    duplicates: 0,
                    reordered: 0,
                    latency_p50_ms: None,
                    latency_p99_ms: None,
                    first_ms: None,
                    hops: None,
                    unicast_loss_pct: None,
                    rtt_ms: None,
                    verdict: "fail",
                    cause: Some(Cause::new(
                        "no-result",
                        format!("no report from {receiver}: its control channel did not answer (is the probe running there, and is UDP port {} open?)", o.control_port),
                    )),
                });
                continue;
            };
            let m = &fp.main;
            let loss_pct = match (sent, m.first_seq) {
                (Some(sent), Some(first)) if sent > first => {
                    100.0 * m.lost(Some(sent - 1)) as f64 / (sent - first) as f64
                }
                _ => 100.0,
            };
            let pass = sent.is_some_and(|s| s > 0) && m.received > 0 && loss_pct <= o.max_loss;
            let cause = if pass {
                None
            } else {
                let fallback = || {
                    Cause::new(
                        "unknown",
                        format!("loss {loss_pct:.1} % is above --max-loss {} %", o.max_loss),
                    )
                };
                match (&fp.cause, sender_report.and_then(|r| r.outbound.clone())) {
                    (Some(c), Some(out)) if c.code == "unknown" => Some(out),
                    (Some(c), _) => Some(c.clone()),
                    (None, Some(out)) => Some(out),
                    (None, None) => Some(fallback()),
                }
            };
            pairs.push(Pair {
                sender,
                receiver,
                sent,
                received: m.received,
                loss_pct: (loss_pct * 100.0).round() / 100.0,
                duplicates: m.duplicates,
                reordered: m.reordered,
                latency_p50_ms: m.latency_p50_ms,
                latency_p99_ms: m.latency_p99_ms,
                first_ms: match (m.first_ns, start_ns) {
                    (Some(f), Some(s)) => Some(f.saturating_sub(s) as f64 / 1e6),
                    _ => None,
                },
                hops: m.ttl.map(|t| o.ttl.saturating_sub(t)),
                unicast_loss_pct: (fp.unicast_sent > 0).then(|| {
                    100.0 * (fp.unicast_sent - fp.unicast_received.min(fp.unicast_sent)) as f64
                        / fp.unicast_sent as f64
                }),
                rtt_ms: fp.rtt_ms,
                verdict: if pass { "pass" } else { "fail" },
                cause,
            });
        }
    }
    pairs
}
