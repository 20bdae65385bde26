//! The datagram format of k8sdoctor's multicast traffic (version 1), and telling ours from foreign ones.
//!
//! Every datagram starts with a fixed 40-byte header, all integers big-endian:
//!
//! | offset | size | field                                                        |
//! |--------|------|--------------------------------------------------------------|
//! | 0      | 4    | magic `K8MC`                                                 |
//! | 4      | 1    | version, `1`                                                 |
//! | 5      | 1    | stream: 0 = `send`, 1 = probe, 2 = probe TTL side stream     |
//! | 6      | 1    | TTL (hop limit) the sender set                               |
//! | 7      | 1    | reserved, 0                                                  |
//! | 8      | 8    | session id (one `send` run, or one probe shared by its peers) |
//! | 16     | 4    | sender id (random per process)                               |
//! | 20     | 4    | reserved, 0                                                  |
//! | 24     | 8    | sequence number, from 0                                      |
//! | 32     | 8    | send time, nanoseconds since the Unix epoch (sender's clock) |
//!
//! The rest is the payload (`--text`, then zero padding up to `--size`). Any datagram that is
//! shorter than the header or lacks the magic/version is *foreign* (msend, iperf, ...): it is counted
//! per source but never parsed further. mreceive prints ours as a short string ("K8MC") and no harm.

pub const MAGIC: &[u8; 4] = b"K8MC";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 40;

/// Which stream a datagram belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Send,
    Probe,
    /// The probe's side stream sent with a high TTL, to tell "TTL too low" from "not routed".
    ProbeTtl,
}

impl Stream {
    fn code(self) -> u8 {
        match self {
            Stream::Send => 0,
            Stream::Probe => 1,
            Stream::ProbeTtl => 2,
        }
    }

    fn from_code(c: u8) -> Option<Stream> {
        match c {
            0 => Some(Stream::Send),
            1 => Some(Stream::Probe),
            2 => Some(Stream::ProbeTtl),
            _ => None,
        }
    }
}

/// The header of one of our datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub stream: Stream,
    pub ttl: u8,
    pub session: u64,
    pub sender: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

impl Header {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf` (which must be at least that long).
    pub fn write(&self, buf: &mut [u8]) {
        buf[0..4].copy_from_slice(MAGIC);
        buf[4] = VERSION;
        buf[5] = self.stream.code();
        buf[6] = self.ttl;
        buf[7] = 0;
        buf[8..16].copy_from_slice(&self.session.to_be_bytes());
        buf[16..20].copy_from_slice(&self.sender.to_be_bytes());
        buf[20..24].copy_from_slice(&[0; 4]);
        buf[24..32].copy_from_slice(&self.seq.to_be_bytes());
        buf[32..40].copy_from_slice(&self.sent_ns.to_be_bytes());
    }

    /// Parses our header, or `None` for a foreign datagram.
    pub fn parse(buf: &[u8]) -> Option<Header> {
        if buf.len() < HEADER_LEN || &buf[0..4] != MAGIC || buf[4] != VERSION {
            return None;
        }
        let u64_at = |o: usize| u64::from_be_bytes(buf[o..o + 8].try_into().expect("8 bytes"));
        Some(Header {
            stream: Stream::from_code(buf[5])?,
            ttl: buf[6],
            session: u64_at(8),
            sender: u32::from_be_bytes(buf[16..20].try_into().expect("4 bytes")),
            seq: u64_at(24),
            sent_ns: u64_at(32),
        })
    }
}

/// Builds a whole datagram: header, then the text, then zero padding up to `size` (if larger).
pub fn datagram(h: &Header, text: &[u8], size: usize) -> Vec<u8> {
    let mut buf = vec![0u8; (HEADER_LEN + text.len()).max(size)];
    h.write(&mut buf);
    buf[HEADER_LEN..HEADER_LEN + text.len()].copy_from_slice(text);
    buf
}

/// The text payload of one of our datagrams, up to the padding.
pub fn text(buf: &[u8]) -> &[u8] {
    let body = buf.get(HEADER_LEN..).unwrap_or_default();
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    &body[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h() -> Header {
        Header {
            stream: Stream::Probe,
            ttl: 8,
            session: 0x0102_0304_0506_0708,
            sender: 0xdead_beef,
            seq: 42,
            sent_ns: 1_700_000_000_123_456_789,
        }
    }

    #[test]
    fn round_trips_and_keeps_the_documented_layout() {
        let d = datagram(&h(), b"hello", 64);
        assert_eq!(d.len(), 64);
        assert_eq!(&d[0..8], b"K8MC\x01\x01\x08\x00");
        assert_eq!(&d[16..20], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(d[31], 42);
        assert_eq!(Header::parse(&d), Some(h()));
        assert_eq!(text(&d), b"hello");
        // Text longer than the size wins over the size.
        assert_eq!(datagram(&h(), &[b'x'; 100], 64).len(), HEADER_LEN + 100);
    }

    #[test]
    fn foreign_datagrams_are_not_parsed() {
        // msend's text, an iperf2 UDP header, a truncated header, a future version, an unknown stream.
        assert_eq!(Header::parse(b"Hello World!"), None);
        let mut iperf = vec![0u8; 64];
        iperf[3] = 1;
        assert_eq!(Header::parse(&iperf), None);
        let d = datagram(&h(), b"", 0);
        assert_eq!(Header::parse(&d[..HEADER_LEN - 1]), None);
        let mut v2 = d.clone();
        v2[4] = 2;
        assert_eq!(Header::parse(&v2), None);
        let mut bad = d;
        bad[5] = 9;
        assert_eq!(Header::parse(&bad), None);
    }
}
