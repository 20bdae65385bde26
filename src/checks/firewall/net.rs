//! Address prefixes (IPv4 and IPv6 in one type) and the containment tests the evaluator needs.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

/// An address prefix such as `192.168.0.0/16` or `fd00::/8`; host bits are always zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Net {
    v6: bool,
    bits: u128,
    len: u8,
}

/// How a prefix relates to another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Every address of the first is in the second.
    Inside,
    /// No address is shared.
    Disjoint,
    /// Some addresses are shared, some are not.
    Partial,
}

impl Net {
    pub fn new(addr: IpAddr, len: u8) -> Option<Net> {
        let (v6, bits, max) = match addr {
            IpAddr::V4(a) => (false, u32::from(a) as u128, 32),
            IpAddr::V6(a) => (true, u128::from(a), 128),
        };
        (len <= max).then(|| Net {
            v6,
            bits: bits & mask(len, max),
            len,
        })
    }

    pub fn host(addr: IpAddr) -> Net {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        Net::new(addr, len).expect("full-length prefix")
    }

    pub fn is_v6(&self) -> bool {
        self.v6
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    fn max(&self) -> u8 {
        if self.v6 { 128 } else { 32 }
    }

    pub fn addr(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.bits))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.bits as u32))
        }
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        self.overlap_with(&Net::host(a)) != Overlap::Disjoint
    }

    /// How `self` relates to `other`: inside it, disjoint from it, or partly in it.
    pub fn overlap_with(&self, other: &Net) -> Overlap {
        if self.v6 != other.v6 {
            return Overlap::Disjoint;
        }
        let common = self.len.min(other.len);
        let m = mask(common, self.max());
        if self.bits & m != other.bits & m {
            Overlap::Disjoint
        } else if self.len >= other.len {
            Overlap::Inside
        } else {
            Overlap::Partial
        }
    }

    /// The two halves of this prefix, or `None` for a single address.
    pub fn halves(&self) -> Option<(Net, Net)> {
        (self.len < self.max()).then(|| {
            let len = self.len + 1;
            let bit = 1u128 << (self.max() - len);
            (
                Net { len, ..*self },
                Net {
                    len,
                    bits: self.bits | bit,
                    ..*self
                },
            )
        })
    }

    /// Relation of `self` to an inclusive address range `lo..=hi` (of the same family).
    pub fn overlap_with_range(&self, lo: IpAddr, hi: IpAddr) -> Overlap {
        let num = |a: IpAddr| match a {
            IpAddr::V4(a) => (false, u32::from(a) as u128),
            IpAddr::V6(a) => (true, u128::from(a)),
        };
        let ((f1, lo), (f2, hi)) = (num(lo), num(hi));
        if f1 != self.v6 || f2 != self.v6 {
            return Overlap::Disjoint;
        }
        let first = self.bits;
        let last = self.bits | !mask(self.len, self.max()) & mask(self.max(), self.max());
        if last < lo || first > hi {
            Overlap::Disjoint
        } else if first >= lo && last <= hi {
            Overlap::Inside
        } else {
            Overlap::Partial
        }
    }
}

fn mask(len: u8, max: u8) -> u128 {
    if len == 0 {
        0
    } else {
        (u128::MAX << (128 - len as u32)) >> (128 - max as u32)
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}

impl serde::Serialize for Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for Net {
    type Err = String;
    /// `10.0.0.0/8`, `10.0.0.1` (a host), `10.0.0.0/255.0.0.0` (iptables prints masks this way when not a prefix).
    fn from_str(s: &str) -> Result<Net, String> {
        let bad = || format!("not an address or prefix: {s:?}");
        let (a, l) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        if l.is_empty() {
            return Ok(Net::host(addr));
        }
        let len = match l.parse::<u8>() {
            Ok(n) => n,
            Err(_) => {
                let m: Ipv4Addr = l.parse().map_err(|_| bad())?;
                let m = u32::from(m);
                if m.leading_ones() + m.trailing_zeros() != 32 {
                    return Err(format!("non-contiguous netmask in {s:?}"));
                }
                m.leading_ones() as u8
            }
        };
        Net::new(addr, len).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Net {
        s.parse().unwrap()
    }

    #[test]
    fn parses_prefixes_hosts_and_masks() {
        assert_eq!(n("192.168.1.7/16").to_string(), "192.168.0.0/16");
        assert_eq!(n("10.0.0.1").to_string(), "10.0.0.1/32");
        assert_eq!(n("10.0.0.0/255.0.0.0").to_string(), "10.0.0.0/8");
        assert_eq!(n("fd00::1/8").to_string(), "fd00::/8");
        assert!("10.0.0.0/33".parse::<Net>().is_err());
        assert!("10.0.0.0/255.0.255.0".parse::<Net>().is_err());
        assert!("eth0".parse::<Net>().is_err());
    }

    #[test]
    fn overlap_and_halves() {
        assert_eq!(
            n("192.168.1.0/24").overlap_with(&n("192.168.0.0/16")),
            Overlap::Inside
        );
        assert_eq!(
            n("192.168.0.0/16").overlap_with(&n("192.168.1.0/24")),
            Overlap::Partial
        );
        assert_eq!(
            n("10.0.0.0/8").overlap_with(&n("192.168.0.0/16")),
            Overlap::Disjoint
        );
        assert_eq!(
            n("10.0.0.0/8").overlap_with(&n("0.0.0.0/0")),
            Overlap::Inside
        );
        assert_eq!(n("10.0.0.0/8").overlap_with(&n("::/0")), Overlap::Disjoint);
        let (a, b) = n("10.0.0.0/8").halves().unwrap();
        assert_eq!(
            (a.to_string(), b.to_string()),
            ("10.0.0.0/9".into(), "10.128.0.0/9".into())
        );
        assert!(n("10.0.0.1").halves().is_none());
        let lo = "10.0.0.5".parse().unwrap();
        let hi = "10.0.0.9".parse().unwrap();
        assert_eq!(n("10.0.0.6/31").overlap_with_range(lo, hi), Overlap::Inside);
        assert_eq!(
            n("10.0.0.0/24").overlap_with_range(lo, hi),
            Overlap::Partial
        );
        assert_eq!(
            n("10.0.1.0/24").overlap_with_range(lo, hi),
            Overlap::Disjoint
        );
        assert!(n("0.0.0.0/0").contains("1.2.3.4".parse().unwrap()));
    }
}
