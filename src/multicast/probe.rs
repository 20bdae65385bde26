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
use crate::core::host::Host;

/// The TTL of the side stream that tells "TTL too low" from "not routed".
const SIDE_TTL: u8 = 8;

/// A report carries one entry per peer (under 1 KiB each) and must fit one UDP datagram.
const MAX_PARTICIPANTS: usize = 48;

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
    /// Whether the receiver had heard from the sender at all by the time it stopped listening
    /// (false also when the receiver gave no report).
    pub heard: bool,
    /// `pass`, `fail`, or `not-measured` (its sender was done before its receiver was up; the
    /// cause says so).
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
    /// From the start until this probe stopped waiting for the others' datagrams: the time it
    /// listened. A peer first heard after that is `not-measured` here.
    pub listened_ms: u64,
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
    if seen.len() > MAX_PARTICIPANTS {
        bail!(
            "--peers lists {} addresses; at most {MAX_PARTICIPANTS} (each report travels in one UDP datagram)",
            seen.len()
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

/// Polls `done` every 5 ms until it holds, `deadline` passes or `stop` is set; `tick` runs each time.
fn wait_until(
    deadline: Instant,
    stop: &AtomicBool,
    mut tick: impl FnMut(),
    done: impl Fn() -> bool,
) {
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) && !done() {
        tick();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Unicast pings to every peer, every 100 ms.
struct Pinger {
    control: Arc<Control>,
    sent: u64,
    next: Instant,
}

impl Pinger {
    fn tick(&mut self) {
        let now = Instant::now();
        if now >= self.next {
            self.control.ping_all(self.sent);
            self.sent += 1;
            self.next = now + Duration::from_millis(100);
        }
    }
}

/// The two multicast sockets of a participant and the header they stamp.
struct Streams {
    main: socket2::Socket,
    side: Option<socket2::Socket>,
    header: Header,
}

impl Streams {
    /// Sends `count` datagrams on each stream at the interval, pinging and reporting progress;
    /// returns how many were sent (fewer when interrupted).
    fn send(&mut self, o: &ProbeOptions, stop: &AtomicBool, pinger: &mut Pinger) -> u64 {
        let h = &mut self.header;
        let mut buf = wire::Datagram::new(b"k8sdoctor multicast probe", 64);
        let start = Instant::now();
        let (mut next_progress, mut errors) = (start, 0u64);
        let total = o.interval.as_secs_f64() * o.count as f64;
        while h.seq < o.count && !stop.load(Ordering::Relaxed) {
            pinger.tick();
            let now = Instant::now();
            if o.progress && now >= next_progress {
                let elapsed = (now - start).as_secs_f64();
                crate::core::stderr::progress(&format!(
                    "probe: {}/{} datagrams sent, {elapsed:.0}/{total:.0} s ",
                    h.seq, o.count
                ));
                next_progress = now + Duration::from_millis(250);
            }
            let due = o
                .interval
                .saturating_mul(h.seq.min(u64::from(u32::MAX)) as u32);
            sleep_until(start + due, stop);
            (h.stream, h.ttl, h.sent_ns) = (Stream::Probe, o.ttl, now_ns());
            if self.main.send(buf.stamp(h)).is_err() {
                errors += 1;
            }
            if let Some(side) = &self.side {
                (h.stream, h.ttl) = (Stream::ProbeTtl, SIDE_TTL);
                let _ = side.send(buf.stamp(h));
            }
            h.seq += 1;
        }
        if o.progress {
            crate::core::stderr::progress_end(&format!(
                "probe: {} datagrams sent; collecting reports            ",
                h.seq
            ));
        }
        if errors > 0 {
            crate::core::stderr::note(&format!("{errors} of {} multicast sends failed", h.seq));
        }
        h.seq
    }
}

/// Why nothing this probe received from `p` can be judged, if it came up too late to be measured:
/// it had sent everything before it was first heard, or it was first heard only after this probe
/// had stopped listening (`cutoff`: it stopped waiting for the senders it had heard).
fn came_late(p: &Peer, me: IpAddr, cutoff: Instant, received: u64) -> Option<Cause> {
    if received > 0 {
        return None;
    }
    let (what, when) = if p.done_before_heard {
        ("had sent all its datagrams before", "was up")
    } else if p.first_heard.is_some_and(|t| t > cutoff) {
        ("was first heard only after", "had stopped listening")
    } else {
        return None;
    };
    Some(Cause::new(
        cause::LATE_JOIN,
        format!(
            "{} {what} {me} {when} (it started late): not measured",
            p.addr
        ),
    ))
}

/// This participant's report: what it received from each peer, with a cause for every imperfect
/// pair; `cutoff` is when it stopped waiting for senders.
fn own_report(
    o: &ProbeOptions,
    s: &Shared,
    inbox: &Inbox,
    local: &Local,
    side: bool,
    cutoff: Instant,
) -> Report {
    let summary = |map: &HashMap<IpAddr, StreamStats>, p: &Peer| {
        map.get(&p.addr)
            .map(|st| st.summary(p.offset_ns))
            .unwrap_or_default()
    };
    let from = s
        .peers
        .iter()
        .map(|p| {
            let main = summary(&inbox.main, p);
            let side = side.then(|| summary(&inbox.side, p));
            let obs = PairObs {
                sender: p.addr,
                sent: p.sent,
                ttl: o.ttl,
                main: &main,
                side: side.as_ref().map(|s| (SIDE_TTL, s)),
                unicast_sent: p.pings_heard(),
                unicast_received: p.pongs.min(p.pings_heard()),
            };
            let imperfect = p.sent.is_none_or(|sent| {
                main.received == 0 || main.lost(Some(sent.saturating_sub(1))) > 0
            });
            // On the sender's clock, like its start time.
            let first_ms = match (main.first_ns, p.start_ns) {
                (Some(f), Some(start)) => {
                    Some((f as i64 + p.offset_ns - start as i64).max(0) as f64 / 1e6)
                }
                _ => None,
            };
            let cause = came_late(p, s.me, cutoff, main.received)
                .or_else(|| imperfect.then(|| cause::diagnose(&obs, local)));
            let (unicast_sent, unicast_received) = (obs.unicast_sent, obs.unicast_received);
            FromPeer {
                sender: p.addr,
                heard: p.heard_by(cutoff) || main.received > 0,
                cause,
                main,
                side,
                first_ms,
                unicast_sent,
                unicast_received,
                rtt_ms: p.rtt_ms(),
            }
        })
        .collect();
    Report {
        addr: s.me,
        sent: s.sent.unwrap_or(0),
        from,
        outbound: cause::outbound(local),
    }
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

    let (rx, join_error) =
        match sock::receiver(group, Some(&iface), None, Duration::from_millis(50)) {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
    let session = session_id(&peers, o.group, o.port);
    let id = random_u64() as u32;
    let mut streams = Streams {
        main: sock::sender(group, Some(&iface), o.ttl, false, Some(me))?,
        side: (o.ttl < SIDE_TTL)
            .then(|| sock::sender(group, Some(&iface), SIDE_TTL, false, Some(me)))
            .transpose()?,
        header: Header {
            stream: Stream::Probe,
            ttl: o.ttl,
            session,
            sender: id,
            seq: 0,
            sent_ns: 0,
        },
    };

    let shared = Arc::new(Mutex::new(Shared {
        me,
        id,
        session,
        start_ns: None,
        sent: None,
        report: None,
        peers: peers
            .iter()
            .filter(|p| **p != me)
            .map(|p| Peer::new(*p))
            .collect(),
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
    let all_heard = || lock().peers.iter().all(Peer::heard);
    wait_until(Instant::now() + o.wait, &stop, || {}, all_heard);

    lock().start_ns = Some(now_ns());
    let mut pinger = Pinger {
        control: Arc::clone(&control),
        sent: 0,
        next: Instant::now(),
    };
    let sent = streams.send(o, &stop, &mut pinger);
    lock().sent = Some(sent);

    // Wait until each peer that showed up finished sending and its last datagrams had time to land;
    // keep pinging (at least 3 times) so short runs still measure unicast.
    let linger =
        Duration::from_millis(200) + o.interval.saturating_mul(2).min(Duration::from_secs(2));
    let senders_done = || {
        let now = Instant::now();
        let s = lock();
        s.peers.iter().all(|p| p.pings >= 3)
            && s.peers
                .iter()
                .all(|p| !p.heard() || p.sent_seen.is_some_and(|t| now >= t + linger))
    };
    wait_until(
        Instant::now() + o.wait,
        &stop,
        || pinger.tick(),
        senders_done,
    );
    // Listening ends here: a peer first heard after this was not measured.
    let cutoff = Instant::now();
    let listened_ms = started.elapsed().as_millis() as u64;
    // Replies to the last pings may be in flight: up to half a second more, so a slow peer's
    // answer is not counted as unicast loss.
    let pongs_in = || {
        lock()
            .peers
            .iter()
            .all(|p| !p.heard() || p.pongs >= p.pings_heard())
    };
    wait_until(
        Instant::now() + Duration::from_millis(500),
        &stop,
        || {},
        pongs_in,
    );

    // Read while the receiver is still joined, so /proc/net/igmp shows the membership.
    let state = evidence::node_state(&host, o.group.is_ipv6());
    let after = evidence::snapshot(&host);
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
    let report = own_report(
        o,
        &lock(),
        &inbox.lock().expect("inbox"),
        &local,
        streams.side.is_some(),
        cutoff,
    );
    lock().report = Some(report);

    // Exchange reports until everyone who showed up has ours and we have theirs.
    let exchanged = || {
        lock()
            .peers
            .iter()
            .all(|p| !p.heard() || (p.report.is_some() && p.has_mine))
    };
    wait_until(Instant::now() + o.wait, &stop, || {}, exchanged);
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
    reports.extend(
        s.report
            .clone()
            .map(|r| first_heard_late(r, &s.peers, cutoff)),
    );
    let sent_by: HashMap<IpAddr, Option<u64>> = s
        .peers
        .iter()
        .map(|p| (p.addr, p.sent))
        .chain([(me, Some(sent))])
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
        listened_ms,
        pass: pairs.iter().all(|p| p.verdict == "pass"),
        pairs,
    })
}

/// This probe's own report as its matrix reads it: a peer it had not heard from when it stopped
/// listening, but heard from afterwards (it came up while this probe waited for the others'
/// reports), was not measured here. The report already sent to the peers keeps the diagnosis made
/// then; the receiver's own view is the one a fleet run prefers.
fn first_heard_late(mut report: Report, peers: &[Peer], cutoff: Instant) -> Report {
    for f in &mut report.from {
        let late = peers
            .iter()
            .find(|p| p.addr == f.sender)
            .and_then(|p| came_late(p, report.addr, cutoff, f.main.received));
        if late.is_some() {
            f.cause = late;
        }
    }
    report
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
            match wire::parse(d.data).header {
                Some(h) if h.session == session && h.sender != me => {
                    let map = match h.stream {
                        Stream::ProbeTtl => &mut inbox.side,
                        _ => &mut inbox.main,
                    };
                    map.entry(d.from.ip())
                        .or_default()
                        .record(h.seq, now, Some(h.sent_ns), d.ttl);
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
    sent_by: &HashMap<IpAddr, Option<u64>>,
    o: &ProbeOptions,
) -> Vec<Pair> {
    let mut pairs = Vec::new();
    for &sender in peers {
        let sender_report = reports.iter().find(|r| r.addr == sender);
        let sent = match sender_report {
            Some(r) => Some(r.sent),
            None => sent_by.get(&sender).copied().flatten(),
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
                    heard: false,
                    verdict: "fail",
                    cause: Some(Cause::new(
                        "no-result",
                        format!("no report from {receiver}: its control channel did not answer (is the probe running there, and is UDP port {} open?)", o.control_port),
                    )),
                });
                continue;
            };
            let m = &fp.main;
            let late = fp
                .cause
                .as_ref()
                .is_some_and(|c| c.code == cause::LATE_JOIN);
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
                first_ms: fp.first_ms,
                hops: m.ttl.map(|t| o.ttl.saturating_sub(t)),
                unicast_loss_pct: (fp.unicast_sent > 0).then(|| {
                    100.0 * (fp.unicast_sent - fp.unicast_received.min(fp.unicast_sent)) as f64
                        / fp.unicast_sent as f64
                }),
                rtt_ms: fp.rtt_ms,
                heard: fp.heard,
                verdict: match (pass, late) {
                    (true, _) => "pass",
                    (false, true) => "not-measured",
                    (false, false) => "fail",
                },
                cause,
            });
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multicast::stats::StreamSummary;

    fn opts() -> ProbeOptions {
        ProbeOptions {
            peers: vec![],
            local: None,
            group: "224.1.1.1".parse().unwrap(),
            port: 4444,
            control_port: 4445,
            ttl: 1,
            count: 100,
            interval: Duration::from_millis(10),
            max_loss: 1.0,
            wait: Duration::from_secs(1),
            format: Format::Json,
            progress: false,
        }
    }

    fn from(sender: &str, first: u64, received: u64, cause: Option<Cause>) -> FromPeer {
        FromPeer {
            sender: sender.parse().unwrap(),
            main: StreamSummary {
                received,
                first_seq: (received > 0).then_some(first),
                max_seq: (received > 0).then_some(99),
                ttl: Some(1),
                ..StreamSummary::default()
            },
            side: None,
            first_ms: Some(0.5),
            unicast_sent: 10,
            unicast_received: 9,
            rtt_ms: Some(0.2),
            heard: true,
            cause,
        }
    }

    /// A peer this probe first heard from after it had made its report (it came up while this one
    /// waited for the others' reports) was not measured here: its pair is not a unicast failure.
    #[test]
    fn a_peer_first_heard_after_the_report_was_made_is_not_measured() {
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            "10.0.0.3".parse().unwrap(),
        );
        let unicast = Cause::new(
            "unicast",
            "unicast fails too: 0 of 3 unicast probes answered",
        );
        let silent = |s: &str| FromPeer {
            heard: false,
            unicast_received: 0,
            ..from(s, 0, 0, Some(unicast.clone()))
        };
        let mine = Report {
            addr: a,
            sent: 100,
            from: vec![silent("10.0.0.2"), silent("10.0.0.3")],
            outbound: None,
        };
        // b spoke up after the report; c never did (nothing says it was up at all).
        let cutoff = Instant::now();
        let mut peers = vec![Peer::new(b), Peer::new(c)];
        peers[0].first_heard = Some(cutoff + Duration::from_millis(300));
        let theirs = Report {
            addr: b,
            sent: 100,
            from: vec![from("10.0.0.1", 0, 0, None)],
            outbound: None,
        };
        let reports = vec![theirs, first_heard_late(mine, &peers, cutoff)];
        let sent_by: HashMap<IpAddr, Option<u64>> =
            [(a, Some(100)), (b, Some(100)), (c, None)].into();
        let pairs = matrix(&[a, b, c], &reports, &sent_by, &opts());
        let ba = pairs
            .iter()
            .find(|p| p.sender == b && p.receiver == a)
            .unwrap();
        assert_eq!(ba.verdict, "not-measured", "{ba:?}");
        let why = &ba.cause.as_ref().unwrap().message;
        assert!(
            why.contains("10.0.0.2 was first heard only after 10.0.0.1 had stopped listening"),
            "{why}"
        );
        assert!(!ba.heard);
        let ca = pairs
            .iter()
            .find(|p| p.sender == c && p.receiver == a)
            .unwrap();
        assert_eq!((ca.verdict, ca.cause.as_ref()), ("fail", Some(&unicast)));
    }

    /// A receiver that was up only after its sender had sent everything measured nothing: the pair
    /// is not measured, not a 100 % loss.
    #[test]
    fn a_pair_whose_sender_was_done_before_the_receiver_was_up_is_not_measured() {
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let late = Cause::new(cause::LATE_JOIN, "10.0.0.1 had sent all its datagrams");
        let reports = vec![
            Report {
                addr: a,
                sent: 100,
                from: vec![from("10.0.0.2", 0, 100, None)],
                outbound: None,
            },
            Report {
                addr: b,
                sent: 100,
                from: vec![from("10.0.0.1", 0, 0, Some(late.clone()))],
                outbound: None,
            },
        ];
        let sent_by: HashMap<IpAddr, Option<u64>> = [(a, Some(100)), (b, Some(100))].into();
        let pairs = matrix(&[a, b], &reports, &sent_by, &opts());
        let ab = pairs.iter().find(|p| p.sender == a).unwrap();
        assert_eq!(
            (ab.verdict, ab.cause.as_ref()),
            ("not-measured", Some(&late))
        );
        let ba = pairs.iter().find(|p| p.sender == b).unwrap();
        assert_eq!(ba.verdict, "pass");
    }

    #[test]
    fn the_matrix_counts_loss_from_the_first_datagram_and_picks_causes() {
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            "10.0.0.3".parse().unwrap(),
        );
        let fw = Cause::new("firewall", "outbound drop");
        let reports = vec![
            Report {
                addr: a,
                sent: 100,
                // From b: first 10 lost to the join, then 1 of 90 lost → 1.1 %, above 1 %.
                from: vec![
                    from("10.0.0.2", 10, 89, Some(Cause::new("unknown", "?"))),
                    from("10.0.0.3", 0, 0, None),
                ],
                outbound: None,
            },
            Report {
                addr: b,
                sent: 100,
                from: vec![
                    from("10.0.0.1", 0, 100, None),
                    from("10.0.0.3", 0, 100, None),
                ],
                outbound: Some(fw.clone()),
            },
        ];
        let sent_by: HashMap<IpAddr, Option<u64>> =
            [(a, Some(100)), (b, Some(100)), (c, Some(100))].into();
        let pairs = matrix(&[a, b, c], &reports, &sent_by, &opts());
        let get = |s: IpAddr, r: IpAddr| {
            pairs
                .iter()
                .find(|p| p.sender == s && p.receiver == r)
                .unwrap()
        };
        assert_eq!(pairs.len(), 6);
        let ab = get(a, b);
        assert_eq!(
            (ab.verdict, ab.loss_pct, ab.hops, ab.cause.is_none()),
            ("pass", 0.0, Some(0), true)
        );
        assert_eq!(ab.unicast_loss_pct, Some(10.0));
        let ba = get(b, a);
        assert_eq!((ba.verdict, ba.loss_pct), ("fail", 1.11));
        // The receiver found nothing; the sender's outbound drop explains it.
        assert_eq!(ba.cause.as_ref().unwrap(), &fw);
        let ca = get(c, a);
        assert_eq!((ca.verdict, ca.loss_pct), ("fail", 100.0));
        assert_eq!(ca.cause.as_ref().unwrap().code, "unknown");
        // c never reported: the pairs into it fail with no-result.
        assert_eq!(get(a, c).cause.as_ref().unwrap().code, "no-result");
    }
}
