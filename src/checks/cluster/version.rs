//! Kubernetes versions (`v1.33.2`, `v1.32.4-eks-1`, `Kubernetes v1.33.2`) and the version-skew policy.

use std::fmt;

/// major.minor.patch of a Kubernetes component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// Parses `v1.33.2`, `1.33`, `v1.32.4-dispatcher`, `Kubernetes v1.33.2`; None for anything else.
    pub fn parse(text: &str) -> Option<Version> {
        let t = text.trim();
        let t = t.rsplit(' ').next().unwrap_or(t);
        let t = t.strip_prefix('v').unwrap_or(t);
        let core = t.split(['-', '+']).next()?;
        let mut it = core.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        let patch = it.next().map_or(Some(0), |p| p.parse().ok())?;
        Some(Version {
            major,
            minor,
            patch,
        })
    }

    /// Minors from `self` to `other` (positive: `other` is newer); None across majors.
    pub fn minors_to(self, other: Version) -> Option<i64> {
        (self.major == other.major).then(|| other.minor as i64 - self.minor as i64)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// How many minors a kubelet/kube-proxy may lag the API server: 3 since 1.28, 2 before.
pub fn kubelet_max_lag(server: Version) -> i64 {
    if server.major == 1 && server.minor < 28 {
        2
    } else {
        3
    }
}

/// Why a node component's version breaks the skew policy against the API server, or None.
pub fn kubelet_skew(server: Version, component: Version) -> Option<String> {
    match component.minors_to(server) {
        None => Some(format!(
            "major version differs from the API server {server}"
        )),
        Some(d) if d < 0 => Some(format!(
            "newer than the API server {server} (never allowed)"
        )),
        Some(d) if d > kubelet_max_lag(server) => Some(format!(
            "{d} minors older than the API server {server} (at most {} allowed)",
            kubelet_max_lag(server)
        )),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_shapes_components_print() {
        let v = |s| Version::parse(s).unwrap();
        assert_eq!(
            v("v1.33.2"),
            Version {
                major: 1,
                minor: 33,
                patch: 2
            }
        );
        assert_eq!(v("v1.32.4-dispatcher").minor, 32);
        assert_eq!(v("Kubernetes v1.29.0\n").minor, 29);
        assert_eq!(
            v("1.28"),
            Version {
                major: 1,
                minor: 28,
                patch: 0
            }
        );
        assert_eq!(v("v1.30.1+k3s1").patch, 1);
        assert_eq!(Version::parse("garbage"), None);
        assert_eq!(Version::parse(""), None);
    }

    #[test]
    fn skew_policy_is_three_minors_since_1_28_two_before_never_newer() {
        let v = |s| Version::parse(s).unwrap();
        assert_eq!(kubelet_skew(v("v1.33.2"), v("v1.30.9")), None);
        assert!(
            kubelet_skew(v("v1.33.2"), v("v1.29.0"))
                .unwrap()
                .contains("4 minors older")
        );
        assert!(
            kubelet_skew(v("v1.33.2"), v("v1.34.0"))
                .unwrap()
                .contains("newer")
        );
        assert_eq!(kubelet_skew(v("v1.27.3"), v("v1.25.0")), None);
        assert!(
            kubelet_skew(v("v1.27.3"), v("v1.24.0"))
                .unwrap()
                .contains("at most 2")
        );
        assert!(kubelet_skew(v("v1.33.0"), v("v2.33.0")).is_some());
    }
}
