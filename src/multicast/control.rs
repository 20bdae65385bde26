//! The probe's unicast control channel: JSON messages over UDP between participants (`--port`+1 by
//! default). A status every 100 ms says who is up, who finished sending, and carries the final
//! report; ping/pong measures unicast loss, round trip and the clock offset used for latency.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::{cause::Cause, now_ns, stats::StreamSummary};

/// What a receiver measured from one sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FromPeer {
    pub sender: IpAddr,
    pub main: StreamSummary,
    /// The high-TTL side stream (absent when --ttl is already that high).
    pub side: Option<StreamSummary>,
    /// From the sender's start to the first datagram, corrected for the clock offset.
    pub first_ms: Option<f64>,
    pub unicast_sent: u64,
    pub unicast_received: u64,
    pub rtt_ms: Option<f64>,
    /// Whether the receiver had heard from the sender at all (a status, a ping or a datagram) by
    /// the time it stopped listening. Reports without the field predate it and are taken as heard.
    #[serde(default = "heard_by_default")]
    pub heard: bool,
    /// Why the pair is not perfect, diagnosed on the receiver.
    pub cause: Option<Cause>,
}

fn heard_by_default() -> bool {
    true
}

/// A participant's final word: what it sent and what it received from everyone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub addr: IpAddr,
    pub sent: u64,
    pub from: Vec<FromPeer>,
    /// A reason for loss at every receiver found on the sender (an outbound firewall drop).
    pub outbound: Option<Cause>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub session: u64,
    pub from: IpAddr,
    pub id: u32,
    pub start_ns: Option<u64>,
    pub sent: Option<u64>,
    pub report: Option<Report>,
    /// Participants whose report this one holds.
    pub have: Vec<IpAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Msg {
    Status(Status),
    Ping {
        session: u64,
        from: IpAddr,
        seq: u64,
        t0: u64,
    },
    Pong {
        session: u64,
        from: IpAddr,
        seq: u64,
        t0: u64,
        t1: u64,
    },
}

/// What this participant knows of one peer.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: IpAddr,
    pub id: Option<u32>,
    /// When this probe first heard from it (a status or a ping); `None` while it has not spoken.
    pub first_heard: Option<Instant>,
    /// Pings sent to it before it was first heard: not a measurement of unicast (it was not up).
    pub pings_unheard: u64,
    /// Its first status said it had already sent everything: it was done before this probe was up
    /// (or heard), so no reception of its datagrams here can be judged.
    pub done_before_heard: bool,
    pub start_ns: Option<u64>,
    pub sent: Option<u64>,
    pub sent_seen: Option<Instant>,
    pub report: Option<Report>,
    pub has_mine: bool,
    pub pings: u64,
    pub pongs: u64,
    best_rtt_ns: Option<u64>,
    /// Peer clock minus this clock, from the fastest ping.
    pub offset_ns: i64,
}

impl Peer {
    pub fn new(addr: IpAddr) -> Peer {
        Peer {
            addr,
            id: None,
            first_heard: None,
            pings_unheard: 0,
            done_before_heard: false,
            start_ns: None,
            sent: None,
            sent_seen: None,
            report: None,
            has_mine: false,
            pings: 0,
            pongs: 0,
            best_rtt_ns: None,
            offset_ns: 0,
        }
    }

    pub fn rtt_ms(&self) -> Option<f64> {
        self.best_rtt_ns.map(|n| n as f64 / 1e6)
    }

    /// It spoke: from now on, pings to it measure unicast.
    fn hear(&mut self, now: Instant) {
        if self.first_heard.is_none() {
            self.first_heard = Some(now);
            self.pings_unheard = self.pings;
        }
    }

    /// Has it spoken at all?
    pub fn heard(&self) -> bool {
        self.first_heard.is_some()
    }

    /// Pings sent since it was first heard (all of them if it never was): what unicast loss is
    /// counted over, so a peer that came up late is not charged for the time it was not there.
    pub fn pings_heard(&self) -> u64 {
        self.pings - self.pings_unheard
    }

    /// Was it heard by `cutoff` (when this probe stopped waiting for senders)?
    pub fn heard_by(&self, cutoff: Instant) -> bool {
        self.first_heard.is_some_and(|t| t <= cutoff)
    }
}

/// State shared by the control thread and the probe.
#[derive(Debug)]
pub struct Shared {
    pub me: IpAddr,
    pub id: u32,
    pub session: u64,
    pub start_ns: Option<u64>,
    pub sent: Option<u64>,
    pub report: Option<Report>,
    pub peers: Vec<Peer>,
    pub foreign_sessions: u64,
}

impl Shared {
    fn status(&self) -> Msg {
        Msg::Status(Status {
            session: self.session,
            from: self.me,
            id: self.id,
            start_ns: self.start_ns,
            sent: self.sent,
            report: self.report.clone(),
            have: self
                .peers
                .iter()
                .filter(|p| p.report.is_some())
                .map(|p| p.addr)
                .collect(),
        })
    }

    fn peer(&mut self, from: IpAddr) -> Option<&mut Peer> {
        self.peers.iter_mut().find(|p| p.addr == from)
    }

    /// Applies one message; returns a reply to send back, if any.
    pub fn handle(&mut self, msg: Msg, src: SocketAddr, now: Instant) -> Option<Msg> {
        let (session, from) = match &msg {
            Msg::Status(s) => (s.session, s.from),
            Msg::Ping { session, from, .. } | Msg::Pong { session, from, .. } => (*session, *from),
        };
        // Each participant binds its control socket to its own address, so the two must agree.
        if from != src.ip() {
            return None;
        }
        if session != self.session {
            self.foreign_sessions += 1;
            return None;
        }
        let (me, session) = (self.me, self.session);
        match msg {
            Msg::Status(s) => {
                let p = self.peer(s.from)?;
                // Its first status (pings may come before one) already said it had sent all.
                p.done_before_heard |= p.id.is_none() && s.sent.is_some();
                p.hear(now);
                p.id = Some(s.id);
                p.start_ns = s.start_ns.or(p.start_ns);
                if p.sent.is_none() && s.sent.is_some() {
                    p.sent_seen = Some(now);
                }
                p.sent = s.sent.or(p.sent);
                if s.report.is_some() {
                    p.report = s.report;
                }
                p.has_mine = s.have.contains(&me);
                None
            }
            Msg::Ping { from, seq, t0, .. } => {
                self.peer(from)?.hear(now);
                Some(Msg::Pong {
                    session,
                    from: me,
                    seq,
                    t0,
                    t1: now_ns(),
                })
            }
            Msg::Pong { from, t0, t1, .. } => {
                let t3 = now_ns();
                let p = self.peer(from)?;
                p.pongs += 1;
                let rtt = t3.saturating_sub(t0);
                if p.best_rtt_ns.is_none_or(|b| rtt < b) {
                    p.best_rtt_ns = Some(rtt);
                    p.offset_ns = t1 as i64 - (t0 / 2 + t3 / 2) as i64;
                }
                None
            }
        }
    }
}

/// The control socket and the shared state; the thread it spawns stops when `stop` is set.
pub struct Control {
    pub sock: UdpSocket,
    pub port: u16,
    pub shared: Arc<Mutex<Shared>>,
}

impl Control {
    fn send(&self, msg: &Msg, to: IpAddr) {
        if let Ok(b) = serde_json::to_vec(msg) {
            // Loss is what the channel measures; a failed send is one more lost message.
            let _ = self.sock.send_to(&b, SocketAddr::new(to, self.port));
        }
    }

    /// Sends this participant's status to every peer.
    pub fn broadcast_status(&self) {
        let (msg, peers) = {
            let s = self.shared.lock().expect("control state");
            (
                s.status(),
                s.peers.iter().map(|p| p.addr).collect::<Vec<_>>(),
            )
        };
        for p in peers {
            self.send(&msg, p);
        }
    }

    /// Pings every peer once (counted towards unicast loss).
    pub fn ping_all(&self, seq: u64) {
        let (session, me, peers) = {
            let mut s = self.shared.lock().expect("control state");
            for p in &mut s.peers {
                p.pings += 1;
            }
            (
                s.session,
                s.me,
                s.peers.iter().map(|p| p.addr).collect::<Vec<_>>(),
            )
        };
        for p in peers {
            let t0 = now_ns();
            self.send(
                &Msg::Ping {
                    session,
                    from: me,
                    seq,
                    t0,
                },
                p,
            );
        }
    }

    /// Receives and answers messages, and sends the status every 100 ms, until `stop`.
    pub fn serve(self: Arc<Self>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let _ = self.sock.set_read_timeout(Some(Duration::from_millis(20)));
            let mut buf = vec![0u8; 65536];
            let mut next_status = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() >= next_status {
                    self.broadcast_status();
                    next_status = Instant::now() + Duration::from_millis(100);
                }
                let Ok((n, src)) = self.sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(msg) = serde_json::from_slice::<Msg>(&buf[..n]) else {
                    continue;
                };
                let reply =
                    self.shared
                        .lock()
                        .expect("control state")
                        .handle(msg, src, Instant::now());
                if let Some(r) = reply {
                    self.send(&r, src.ip());
                }
            }
        })
    }
}

/// A session id every participant of the same probe computes alike (FNV-1a of its parameters).
pub fn session_id(peers: &[IpAddr], group: IpAddr, port: u16) -> u64 {
    let mut sorted: Vec<String> = peers.iter().map(|p| p.to_string()).collect();
    sorted.sort();
    let text = format!("{}|{group}|{port}", sorted.join(","));
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(me: &str, peers: &[&str]) -> Shared {
        Shared {
            me: me.parse().unwrap(),
            id: 1,
            session: 7,
            start_ns: None,
            sent: None,
            report: None,
            peers: peers
                .iter()
                .map(|p| Peer::new(p.parse().unwrap()))
                .collect(),
            foreign_sessions: 0,
        }
    }

    #[test]
    fn session_ids_ignore_peer_order() {
        let a: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        let b: Vec<IpAddr> = a.iter().rev().copied().collect();
        let g = "224.1.1.1".parse().unwrap();
        assert_eq!(session_id(&a, g, 4444), session_id(&b, g, 4444));
        assert_ne!(session_id(&a, g, 4444), session_id(&a, g, 4445));
    }

    #[test]
    fn statuses_pings_and_other_sessions() {
        let mut a = shared("10.0.0.1", &["10.0.0.2"]);
        let src: SocketAddr = "10.0.0.2:4445".parse().unwrap();
        let now = Instant::now();
        // Four pings went out before it was up: they do not measure unicast.
        a.peers[0].pings = 4;
        let st = Msg::Status(Status {
            session: 7,
            from: "10.0.0.2".parse().unwrap(),
            id: 9,
            start_ns: Some(5),
            sent: Some(100),
            report: None,
            have: vec!["10.0.0.1".parse().unwrap()],
        });
        // Round trip through JSON, as on the wire.
        let st: Msg = serde_json::from_slice(&serde_json::to_vec(&st).unwrap()).unwrap();
        assert!(a.handle(st, src, now).is_none());
        let p = &a.peers[0];
        assert!(p.heard() && p.has_mine);
        assert_eq!((p.id, p.sent, p.sent_seen), (Some(9), Some(100), Some(now)));
        assert_eq!(
            (p.first_heard, p.pings_unheard, p.pings_heard()),
            (Some(now), 4, 0)
        );
        assert!(p.heard_by(now) && !p.heard_by(now - Duration::from_millis(1)));
        // Its first word said it had sent everything: it was done before this probe was up.
        assert!(p.done_before_heard);

        let ping = Msg::Ping {
            session: 7,
            from: "10.0.0.2".parse().unwrap(),
            seq: 3,
            t0: 11,
        };
        assert!(matches!(
            a.handle(ping, src, now),
            Some(Msg::Pong { seq: 3, t0: 11, .. })
        ));
        let t0 = now_ns();
        let pong = Msg::Pong {
            session: 7,
            from: "10.0.0.2".parse().unwrap(),
            seq: 3,
            t0,
            t1: t0,
        };
        a.handle(pong, src, now);
        assert_eq!(a.peers[0].pongs, 1);
        assert!(a.peers[0].rtt_ms().is_some());

        let other = Msg::Ping {
            session: 8,
            from: "10.0.0.2".parse().unwrap(),
            seq: 1,
            t0: 1,
        };
        assert!(a.handle(other, src, now).is_none());
        assert_eq!(a.foreign_sessions, 1);
        // A stranger's status is ignored.
        let stranger = Msg::Status(Status {
            session: 7,
            from: "10.9.9.9".parse().unwrap(),
            id: 1,
            start_ns: None,
            sent: None,
            report: None,
            have: vec![],
        });
        assert!(
            a.handle(stranger.clone(), "10.9.9.9:4445".parse().unwrap(), now)
                .is_none()
        );
        assert!(a.handle(stranger, src, now).is_none());
        assert_eq!(a.peers.len(), 1);
    }
}
