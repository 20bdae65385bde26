//! Per-stream counters of a receiver: received, lost (from the first datagram seen), duplicates,
//! reordered, one-way latency samples, received TTL and time of first/last arrival.

use serde::{Deserialize, Serialize};

/// Sequence numbers further than this past the first one are counted but not checked for duplicates,
/// so a bogus sequence number cannot make the receiver allocate without bound (8 MiB of bits).
const MAX_TRACKED: u64 = 1 << 26;

/// What one receiver knows about one sender's stream while it runs.
#[derive(Debug, Default, Clone)]
pub struct StreamStats {
    seen: Vec<u64>,
    first_seq: Option<u64>,
    max_seq: u64,
    received: u64,
    duplicates: u64,
    reordered: u64,
    first_ns: u64,
    last_ns: u64,
    ttl: Option<u8>,
    latencies_ns: Vec<i64>,
    keep_latency: bool,
}

impl StreamStats {
    /// A tracker that also keeps one latency sample per datagram (the probe needs them; `receive` does not).
    pub fn with_latency() -> StreamStats {
        StreamStats {
            keep_latency: true,
            ..StreamStats::default()
        }
    }

    /// Records one arrival. `recv_ns`/`sent_ns` are Unix-epoch nanoseconds on each side's clock.
    pub fn record(&mut self, seq: u64, recv_ns: u64, sent_ns: u64, ttl: Option<u8>) {
        let first = *self.first_seq.get_or_insert(seq);
        if self.received + self.duplicates == 0 {
            self.first_ns = recv_ns;
            self.max_seq = seq;
        }
        self.last_ns = recv_ns;
        if ttl.is_some() {
            self.ttl = ttl;
        }
        if seq < first {
            // Earlier than the first one seen: it arrived late, so it is reordered; move the origin back
            // only by counting it, since loss is reckoned from the first datagram received.
            self.received += 1;
            self.reordered += 1;
            return;
        }
        let off = seq - first;
        if off < MAX_TRACKED {
            let (w, b) = ((off / 64) as usize, off % 64);
            if self.seen.len() <= w {
                self.seen.resize(w + 1, 0);
            }
            if self.seen[w] & (1 << b) != 0 {
                self.duplicates += 1;
                return;
            }
            self.seen[w] |= 1 << b;
        }
        self.received += 1;
        if seq < self.max_seq {
            self.reordered += 1;
        } else {
            self.max_seq = seq;
        }
        if self.keep_latency {
            self.latencies_ns.push(recv_ns as i64 - sent_ns as i64);
        }
    }

    /// The counters so far. `offset_ns` (sender clock minus receiver clock) corrects the latencies.
    pub fn summary(&self, offset_ns: i64) -> StreamSummary {
        let mut lat: Vec<i64> = self.latencies_ns.iter().map(|l| l + offset_ns).collect();
        lat.sort_unstable();
        let pct = |p: f64| -> Option<f64> {
            if lat.is_empty() {
                return None;
            }
            let i = ((lat.len() - 1) as f64 * p).round() as usize;
            Some(lat[i].max(0) as f64 / 1e6)
        };
        StreamSummary {
            received: self.received,
            first_seq: self.first_seq,
            max_seq: self.first_seq.map(|_| self.max_seq),
            duplicates: self.duplicates,
            reordered: self.reordered,
            first_ns: self.first_seq.map(|_| self.first_ns),
            last_ns: self.first_seq.map(|_| self.last_ns),
            ttl: self.ttl,
            latency_p50_ms: pct(0.50),
            latency_p99_ms: pct(0.99),
        }
    }
}

/// A stream's counters as reported (and exchanged between probe participants).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamSummary {
    pub received: u64,
    pub first_seq: Option<u64>,
    pub max_seq: Option<u64>,
    pub duplicates: u64,
    pub reordered: u64,
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
    /// TTL (hop limit) of the last datagram received.
    pub ttl: Option<u8>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

impl StreamSummary {
    /// Datagrams missing between the first one received and `last` (the sender's last sequence
    /// number when known, else the highest seen). Late arrivals from before the first do not count.
    pub fn lost(&self, last: Option<u64>) -> u64 {
        match (self.first_seq, last.or(self.max_seq)) {
            (Some(first), Some(last)) if last >= first => {
                let expected = last - first + 1;
                let in_range = self.received.min(expected);
                expected - in_range
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_loss_duplicates_and_reordering_from_the_first_datagram() {
        let mut s = StreamStats::with_latency();
        // Starts at 3 (0..2 were before the join), loses 5, duplicates 4, delivers 7 before 6.
        for (seq, t) in [(3, 10), (4, 11), (4, 12), (7, 13), (6, 14), (8, 15)] {
            s.record(seq, t * 1_000_000, t * 1_000_000 - 2_000_000, Some(63));
        }
        let r = s.summary(0);
        assert_eq!(r.received, 5);
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.reordered, 1);
        assert_eq!(r.first_seq, Some(3));
        assert_eq!(r.max_seq, Some(8));
        assert_eq!(r.lost(None), 1); // 5
        assert_eq!(r.lost(Some(9)), 2); // 5 and 9
        assert_eq!(r.ttl, Some(63));
        assert_eq!(r.latency_p50_ms, Some(2.0));
        assert_eq!(s.summary(-1_000_000).latency_p99_ms, Some(1.0));
        assert_eq!(r.first_ns, Some(10_000_000));
        assert_eq!(r.last_ns, Some(15_000_000));
    }

    #[test]
    fn nothing_received_is_no_loss_yet_and_no_latency() {
        let r = StreamStats::default().summary(0);
        assert_eq!(
            (r.received, r.lost(Some(99)), r.latency_p50_ms),
            (0, 0, None)
        );
    }

    #[test]
    fn a_huge_sequence_number_does_not_allocate_without_bound() {
        let mut s = StreamStats::default();
        s.record(0, 1, 1, None);
        s.record(u64::MAX - 1, 2, 2, None);
        assert_eq!(s.summary(0).received, 2);
        assert!(s.seen.len() <= 1);
    }
}
