//! Per-stream counters of a receiver: received, lost (from the first datagram seen), duplicates,
//! reordered, one-way latency samples (a bounded reservoir), received TTL and time of first/last
//! arrival; and what each arrival was, for the lines mreceive prints (gap, duplicate, late).

use serde::{Deserialize, Serialize};

/// Sequence numbers further than this past the first one are counted but not checked for duplicates,
/// so a bogus sequence number cannot make the receiver allocate without bound (8 MiB of bits).
const MAX_TRACKED: u64 = 1 << 26;

/// Latency samples kept per stream; past this, reservoir sampling keeps a uniform subset, so a long
/// run at line rate holds 512 KiB per sender, not a sample per datagram.
const MAX_SAMPLES: usize = 1 << 16;

/// What one arrival was, relative to the highest sequence number seen before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The first datagram, or the one after the highest seen.
    InOrder,
    /// It skipped `first..=last` (they are missing so far).
    Gap { first: u64, last: u64 },
    /// Seen before.
    Duplicate,
    /// Older than `highest`, the highest seen: it arrived late (reordered).
    Late { highest: u64 },
}

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
    latency_seen: u64,
    rng: u64,
}

impl StreamStats {
    /// Records one arrival and says what it was. `recv_ns`/`sent_ns` are Unix-epoch nanoseconds on
    /// each side's clock; `sent_ns` is `None` for a sender that does not stamp its datagrams (msend).
    pub fn record(
        &mut self,
        seq: u64,
        recv_ns: u64,
        sent_ns: Option<u64>,
        ttl: Option<u8>,
    ) -> Arrival {
        let first = *self.first_seq.get_or_insert(seq);
        if self.received + self.duplicates == 0 {
            self.first_ns = recv_ns;
            self.max_seq = seq;
        }
        let highest = self.max_seq;
        self.last_ns = recv_ns;
        if ttl.is_some() {
            self.ttl = ttl;
        }
        if seq < first {
            // Earlier than the first one seen: it arrived late, so it is reordered; move the origin back
            // only by counting it, since loss is reckoned from the first datagram received.
            self.received += 1;
            self.reordered += 1;
            return Arrival::Late { highest };
        }
        let off = seq - first;
        if off < MAX_TRACKED {
            let (w, b) = ((off / 64) as usize, off % 64);
            if self.seen.len() <= w {
                self.seen.resize(w + 1, 0);
            }
            if self.seen[w] & (1 << b) != 0 {
                self.duplicates += 1;
                return Arrival::Duplicate;
            }
            self.seen[w] |= 1 << b;
        }
        self.received += 1;
        if let Some(sent) = sent_ns {
            self.sample(recv_ns as i64 - sent as i64);
        }
        if seq < highest {
            self.reordered += 1;
            Arrival::Late { highest }
        } else {
            self.max_seq = seq;
            if seq > highest + 1 {
                Arrival::Gap {
                    first: highest + 1,
                    last: seq - 1,
                }
            } else {
                Arrival::InOrder
            }
        }
    }

    /// Keeps a latency sample: all of the first [`MAX_SAMPLES`], then each with probability
    /// MAX_SAMPLES/n in place of a random kept one (reservoir sampling).
    fn sample(&mut self, ns: i64) {
        self.latency_seen += 1;
        if self.latencies_ns.len() < MAX_SAMPLES {
            self.latencies_ns.push(ns);
            return;
        }
        // xorshift64*, seeded from the count; statistical quality is ample for picking samples.
        if self.rng == 0 {
            self.rng = 0x9e37_79b9_7f4a_7c15;
        }
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let j = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % self.latency_seen;
        if let Some(slot) = self.latencies_ns.get_mut(j as usize) {
            *slot = ns;
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
        let mut s = StreamStats::default();
        // Starts at 3 (0..2 were before the join), loses 5, duplicates 4, delivers 7 before 6.
        let arrivals: Vec<Arrival> = [(3, 10), (4, 11), (4, 12), (7, 13), (6, 14), (8, 15)]
            .into_iter()
            .map(|(seq, t)| {
                s.record(
                    seq,
                    t * 1_000_000,
                    Some(t * 1_000_000 - 2_000_000),
                    Some(63),
                )
            })
            .collect();
        assert_eq!(
            arrivals,
            [
                Arrival::InOrder,
                Arrival::InOrder,
                Arrival::Duplicate,
                Arrival::Gap { first: 5, last: 6 },
                Arrival::Late { highest: 7 },
                Arrival::InOrder
            ]
        );

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
        // Older than the first one seen: late, and no loss is reckoned before the first.
        assert_eq!(
            s.record(1, 16_000_000, None, None),
            Arrival::Late { highest: 8 }
        );
    }

    #[test]
    fn latency_samples_stay_bounded_and_representative() {
        let mut s = StreamStats::default();
        for seq in 0..(MAX_SAMPLES as u64 * 4) {
            // Latency 1 ms for the first quarter, 3 ms after: the median must move to 3 ms.
            let lat = if seq < MAX_SAMPLES as u64 {
                1_000_000
            } else {
                3_000_000
            };
            s.record(seq, 10_000_000 + lat, Some(10_000_000), None);
        }
        assert_eq!(s.latencies_ns.len(), MAX_SAMPLES);
        assert_eq!(s.summary(0).latency_p50_ms, Some(3.0));
        // msend stamps nothing: no latency at all.
        let mut m = StreamStats::default();
        m.record(1, 5, None, None);
        assert_eq!(m.summary(0).latency_p50_ms, None);
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
        s.record(0, 1, Some(1), None);
        s.record(u64::MAX - 1, 2, Some(2), None);
        assert_eq!(s.summary(0).received, 2);
        assert!(s.seen.len() <= 1);
    }
}
