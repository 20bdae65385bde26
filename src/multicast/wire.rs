//! The datagram format of k8sdoctor's multicast traffic (version 2), laid out so that mtools reads it:
//! what msend would send comes first, our statistics trailer after.
//!
//! ```text
//! TEXT  NUL  TRAILER (40 bytes)  [zero padding up to --size]
//! ```
//!
//! TEXT is `--text`, or with `--numbered` (msend's `-n`) the sequence number in decimal, exactly as
//! msend writes its counter (`1`, `2`, ... ); mreceive prints TEXT up to the NUL and `mreceive -n`
//! reads the number with `atoi`, so both show ours as they show msend's. The trailer, all integers
//! big-endian:
//!
//! | offset | size | field                                                        |
//! |--------|------|--------------------------------------------------------------|
//! | 0      | 4    | magic `K8MC`                                                 |
//! | 4      | 1    | version, `2`                                                 |
//! | 5      | 1    | stream: 0 = `send`, 1 = probe, 2 = probe TTL side stream     |
//! | 6      | 1    | TTL (hop limit) the sender set                               |
//! | 7      | 1    | reserved, 0                                                  |
//! | 8      | 8    | session id (one `send` run, or one probe shared by its peers) |
//! | 16     | 4    | sender id (random per process)                               |
//! | 20     | 4    | reserved, 0                                                  |
//! | 24     | 8    | sequence number (`send` counts from 1, like msend)           |
//! | 32     | 8    | send time, nanoseconds since the Unix epoch (sender's clock) |
//!
//! A datagram without a trailer right after its first NUL is *foreign* (msend, iperf, ...): its
//! text is still shown, and with `--numbered` its leading number is tracked like our sequence.

pub const MAGIC: &[u8; 4] = b"K8MC";
pub const VERSION: u8 = 2;
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
    /// Writes the trailer into the first [`HEADER_LEN`] bytes of `buf` (which must be at least that long).
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

    /// Parses a trailer that starts at `buf[0]`, or `None`.
    fn read(buf: &[u8]) -> Option<Header> {
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

/// One datagram as it arrived: the text before the first NUL, and our trailer when it is ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub text: &'a [u8],
    pub header: Option<Header>,
}

/// Splits a datagram into its text and (for ours) trailer. msend's datagrams have zeros (or the rest
/// of an earlier `-text`) after the NUL, never the magic, so they parse as foreign.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    match buf.iter().position(|&b| b == 0) {
        Some(nul) => Parsed {
            text: &buf[..nul],
            header: Header::read(&buf[nul + 1..]),
        },
        None => Parsed {
            text: buf,
            header: None,
        },
    }
}

/// The number at the start of a text, read as `mreceive -n` does (`atoi`: spaces, an optional `+`,
/// digits); `None` when there is no digit.
pub fn number(text: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(text).ok()?.trim_start();
    let s = s.strip_prefix('+').unwrap_or(s);
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

/// A reusable send buffer: TEXT, NUL, the trailer (restamped per datagram), zero padding.
#[derive(Debug, Clone)]
pub struct Datagram {
    buf: Vec<u8>,
    trailer: usize,
    size: usize,
}

impl Datagram {
    /// A buffer for `text`, padded to `size` bytes when that is longer than text, NUL and trailer.
    pub fn new(text: &[u8], size: usize) -> Datagram {
        let mut d = Datagram {
            buf: Vec::new(),
            trailer: 0,
            size,
        };
        d.set_text(text);
        d
    }

    /// Replaces the text (for `--numbered`, the number of each datagram); keeps the trailer's place
    /// right after the NUL.
    pub fn set_text(&mut self, text: &[u8]) {
        // A NUL inside the text would end it early for mreceive and hide the trailer from us.
        let text = &text[..text.iter().position(|&b| b == 0).unwrap_or(text.len())];
        let len = (text.len() + 1 + HEADER_LEN).max(self.size);
        self.buf.clear();
        self.buf.resize(len, 0);
        self.buf[..text.len()].copy_from_slice(text);
        self.trailer = text.len() + 1;
    }

    /// Writes `h` into the trailer and returns the datagram to send.
    pub fn stamp(&mut self, h: &Header) -> &[u8] {
        h.write(&mut self.buf[self.trailer..]);
        &self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
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
    fn text_comes_first_then_nul_then_the_documented_trailer() {
        let mut d = Datagram::new(b"hello", 64);
        let buf = d.stamp(&h()).to_vec();
        assert_eq!(buf.len(), 64);
        assert_eq!(&buf[..6], b"hello\0");
        assert_eq!(&buf[6..14], b"K8MC\x02\x01\x08\x00");
        assert_eq!(&buf[22..26], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(buf[37], 42);
        assert_eq!(
            parse(&buf),
            Parsed {
                text: b"hello",
                header: Some(h())
            }
        );
        // Text longer than the size wins over the size.
        assert_eq!(Datagram::new(&[b'x'; 100], 64).len(), 100 + 1 + HEADER_LEN);
        // A NUL in the text ends it, as it would for mreceive.
        let mut d = Datagram::new(b"a\0b", 0);
        assert_eq!(parse(d.stamp(&h())).text, b"a");
    }

    #[test]
    fn numbered_text_is_what_msend_n_writes_and_mreceive_n_reads() {
        let mut d = Datagram::new(b"ignored", 0);
        d.set_text(b"17");
        let buf = d.stamp(&h()).to_vec();
        assert_eq!(&buf[..3], b"17\0");
        assert_eq!(number(parse(&buf).text), Some(17));
        assert_eq!(parse(&buf).header.map(|h| h.seq), Some(42));
        // msend -n after -text "Hello": "3\0llo" and zeros.
        let mut msend = b"3\0llo".to_vec();
        msend.resize(1024, 0);
        let p = parse(&msend);
        assert_eq!((p.text, p.header), (&b"3"[..], None));
        assert_eq!(number(p.text), Some(3));
        assert_eq!(number(b" +12abc"), Some(12));
        assert_eq!(number(b"Hello"), None);
        assert_eq!(number(b""), None);
    }

    #[test]
    fn foreign_datagrams_have_no_trailer() {
        // msend's text, an iperf2 UDP header, a truncated trailer, a future version, an unknown stream.
        let mut msend = b"Hello World!".to_vec();
        msend.resize(1024, 0);
        assert_eq!(parse(&msend).text, b"Hello World!");
        assert_eq!(parse(&msend).header, None);
        assert_eq!(parse(b"no nul at all").header, None);
        let mut iperf = vec![0u8; 64];
        iperf[3] = 1;
        assert_eq!(parse(&iperf).header, None);
        let mut d = Datagram::new(b"", 0);
        let full = d.stamp(&h()).to_vec();
        assert!(parse(&full).header.is_some());
        assert_eq!(parse(&full[..HEADER_LEN]).header, None);
        let mut v1 = full.clone();
        v1[5] = 1;
        assert_eq!(parse(&v1).header, None);
        let mut bad = full;
        bad[6] = 9;
        assert_eq!(parse(&bad).header, None);
    }
}
