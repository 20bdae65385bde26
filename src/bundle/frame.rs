//! A bundle carried in text: how a `fleet check` pod (read-only root, no writable volume) hands its
//! node's bundle back through its log, after the JSON report. `check --bundle -` prints
//!
//! ```text
//! k8sdoctor-bundle-begin 1 size=<bytes> sha256=<hex>
//! <base64, lines of at most 4,000 characters>
//! k8sdoctor-bundle-end
//! ```
//!
//! and the CLI finds, decodes and verifies it (size, digest, the per-node cap). Pure: text in,
//! bytes out.

use base64::Engine;

use super::format::sha256_hex;

/// The most a node's bundle may hold (compressed): the pod log carries it base64'd beside the
/// report, under the CLI's 8 MiB log read and a kubelet's 10 MiB log rotation. A CentOS node's
/// bundle is about 12 KiB.
pub const MAX_NODE_BUNDLE: usize = 4 << 20;
const BEGIN: &str = "k8sdoctor-bundle-begin 1 ";
const END: &str = "k8sdoctor-bundle-end";
/// Said instead of a frame when the node could not send its bundle (it stays reported).
const OMITTED: &str = "k8sdoctor-bundle-omitted ";
/// Base64 characters per line: short enough for every runtime's log line limit (16 KiB), long
/// enough that the runtime's per-line prefix costs little.
const LINE: usize = 4000;

/// Why a framed bundle cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("the bundle is {0} bytes, more than the {max} MiB a node may send", max = MAX_NODE_BUNDLE >> 20)]
    TooBig(usize),
    #[error("its begin line is malformed: {0}")]
    Header(String),
    #[error("it was cut: no end line (the log was truncated?)")]
    Cut,
    #[error("its base64 is damaged: {0}")]
    Base64(String),
    #[error("it holds {got} bytes, its begin line says {want}")]
    Size { got: usize, want: usize },
    #[error("its SHA-256 differs from the one its begin line names")]
    Digest,
    #[error("the node did not send it: {0}")]
    Omitted(String),
}

/// The framed text of a bundle (ends with a line break); an over-large bundle is refused.
pub fn encode(bytes: &[u8]) -> Result<String, FrameError> {
    if bytes.len() > MAX_NODE_BUNDLE {
        return Err(FrameError::TooBig(bytes.len()));
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = format!("{BEGIN}size={} sha256={}\n", bytes.len(), sha256_hex(bytes));
    out.reserve(b64.len() + b64.len() / LINE + END.len() + 2);
    for chunk in b64.as_bytes().chunks(LINE) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(END);
    out.push('\n');
    Ok(out)
}

/// What a node prints instead of a frame when its bundle cannot be sent (too large): the report
/// still goes out, and the CLI records why the node has no bundle.
pub fn omitted(why: &dyn std::fmt::Display) -> String {
    format!("{OMITTED}{why}\n")
}

/// The bundle framed in `log` (the last one, after the report): None when there is no begin line.
pub fn find(log: &str) -> Option<Result<Vec<u8>, FrameError>> {
    if let Some(i) = log
        .rfind(OMITTED)
        .filter(|&i| i == 0 || log.as_bytes()[i - 1] == b'\n')
    {
        let why = log[i + OMITTED.len()..].lines().next().unwrap_or_default();
        return Some(Err(FrameError::Omitted(why.chars().take(300).collect())));
    }
    let start = log
        .rmatch_indices(BEGIN)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || log.as_bytes()[i - 1] == b'\n')?;
    Some(decode(&log[start..]))
}

fn decode(text: &str) -> Result<Vec<u8>, FrameError> {
    let mut lines = text.lines();
    let head = lines.next().unwrap_or_default();
    let fields = head.strip_prefix(BEGIN).unwrap_or_default();
    let field = |k: &str| {
        fields
            .split(' ')
            .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
    };
    let bad = || FrameError::Header(head.chars().take(120).collect());
    let size: usize = field("size").and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let digest = field("sha256")
        .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(bad)?;
    if size > MAX_NODE_BUNDLE {
        return Err(FrameError::TooBig(size));
    }
    let mut b64 = String::with_capacity(size.div_ceil(3) * 4);
    let mut ended = false;
    for l in lines {
        if l == END {
            ended = true;
            break;
        }
        if b64.len() + l.len() > size.div_ceil(3) * 4 {
            return Err(FrameError::Size {
                got: (b64.len() + l.len()) / 4 * 3,
                want: size,
            });
        }
        b64.push_str(l.trim_end_matches('\r'));
    }
    if !ended {
        return Err(FrameError::Cut);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| FrameError::Base64(e.to_string()))?;
    if bytes.len() != size {
        return Err(FrameError::Size {
            got: bytes.len(),
            want: size,
        });
    }
    if sha256_hex(&bytes) != digest.to_ascii_lowercase() {
        return Err(FrameError::Digest);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_bundle_comes_back_whole_or_not_at_all() {
        let bytes: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let framed = encode(&bytes).unwrap();
        assert!(framed.lines().all(|l| l.len() <= LINE + 80));
        let log = format!("{{\"report\": 1}}\nnoise\n{framed}trailing\n");
        assert_eq!(find(&log), Some(Ok(bytes.clone())));
        assert_eq!(find("{}\nno bundle here\n"), None);
        // Cut anywhere inside: an error, never other bytes.
        let at = log.find(BEGIN).unwrap();
        for cut in (at + 1..log.len() - "trailing\n".len() - 1).step_by(997) {
            assert!(matches!(find(&log[..cut]), Some(Err(_)) | None), "{cut}");
        }
        let mut flipped = log.clone().into_bytes();
        let data = at + log[at..].find('\n').unwrap() + 11;
        flipped[data] = if flipped[data] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(find(&flipped), Some(Err(FrameError::Digest)));
        let lying = log.replace(&format!("size={}", bytes.len()), "size=5");
        assert!(matches!(find(&lying), Some(Err(FrameError::Size { .. }))));
        let big = encode(&vec![0; MAX_NODE_BUNDLE + 1]).unwrap_err();
        assert_eq!(big, FrameError::TooBig(MAX_NODE_BUNDLE + 1));
        let said = format!("{{\"report\": 1}}\n{}", omitted(&big));
        assert!(
            matches!(find(&said), Some(Err(FrameError::Omitted(m))) if m.contains("more than the 4 MiB")),
            "{said}"
        );
    }
}
