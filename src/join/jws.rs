//! The detached JWS that signs cluster-info for a bootstrap token (`jws-kubeconfig-<id>`), computed
//! and compared exactly as kubeadm's `jws.DetachedTokenIsValid` does.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64URL};
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::token::Token;

/// The protected header kubeadm's signer emits (go-jose, keys in sorted order).
fn header(id: &str) -> String {
    format!(r#"{{"alg":"HS256","kid":"{id}"}}"#)
}

/// The HMAC key: the token's secret (absent for a token replayed from a bundle).
fn key(token: &Token) -> Option<hmac::Key> {
    token
        .secret()
        .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.as_bytes()))
}

fn signing_input(header_b64: &str, content: &str) -> String {
    format!("{header_b64}.{}", B64URL.encode(content))
}

/// `b64url(header)..b64url(HMAC-SHA256(secret, b64url(header).b64url(content)))`.
///
/// kubeadm zero-pads the secret to 32 bytes for go-jose; HMAC pads every key shorter than its
/// 64-byte block with zeros anyway, so the 16-byte secret gives the same MAC.
/// `None` for a token without its secret (replayed from a bundle): it signs nothing.
pub fn detached_signature(content: &str, token: &Token) -> Option<String> {
    let h = B64URL.encode(header(&token.id));
    let sig = hmac::sign(&key(token)?, signing_input(&h, content).as_bytes());
    Some(format!("{h}..{}", B64URL.encode(sig.as_ref())))
}

/// How a signature found in cluster-info compares with the one the token gives. A bundle records it
/// (the secret that decides it never enters one), so a replay re-reads the verdict, not the MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Valid,
    /// Not `header..signature` with a decodable header.
    Malformed(String),
    /// A well-formed signature whose header is not the one kubeadm signs for this token id.
    OtherHeader(String),
    /// Same header, different MAC: the secret half of the token is wrong (or the content changed).
    WrongSecret,
    /// The token's secret is not at hand (a token replayed from a bundle): the MAC cannot be computed.
    NoSecret,
}

/// Checks `found` against the signature `token` gives over `content`. kubeadm compares the whole
/// strings; base64url here is canonical (no padding, no stray bits), so checking the header text and
/// then the MAC (in constant time) accepts exactly the same strings.
pub fn verify(found: &str, content: &str, token: &Token) -> Verdict {
    let parts: Vec<&str> = found.split('.').collect();
    let [h, payload, sig] = parts[..] else {
        return Verdict::Malformed(format!(
            "{} part(s) separated by '.', a detached JWS has 3",
            parts.len()
        ));
    };
    if !payload.is_empty() {
        return Verdict::Malformed("the payload part is not empty (not a detached JWS)".into());
    }
    let Some(text) = B64URL
        .decode(h)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return Verdict::Malformed("the header is not base64url-encoded UTF-8".into());
    };
    let Ok(mac) = B64URL.decode(sig) else {
        return Verdict::Malformed("the signature is not base64url".into());
    };
    if text != header(&token.id) {
        return Verdict::OtherHeader(text);
    }
    let Some(key) = key(token) else {
        return Verdict::NoSecret;
    };
    match hmac::verify(&key, signing_input(h, content).as_bytes(), &mac) {
        Ok(()) => Verdict::Valid,
        Err(_) => Verdict::WrongSecret,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> Token {
        Token::parse(s).unwrap()
    }

    #[test]
    fn the_signature_verifies_and_a_wrong_secret_is_told_apart() {
        let t = token("abcdef.0123456789abcdef");
        let content = "apiVersion: v1\nkind: Config\n";
        let sig = detached_signature(content, &t).unwrap();
        assert!(
            sig.starts_with("eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9.."),
            "{sig}"
        );
        assert_eq!(verify(&sig, content, &t), Verdict::Valid);
        let wrong = token("abcdef.0123456789abcdee");
        assert_eq!(verify(&sig, content, &wrong), Verdict::WrongSecret);
        // A change to the signed kubeconfig is caught the same way.
        assert_eq!(verify(&sig, "tampered", &t), Verdict::WrongSecret);
        let other = detached_signature(content, &token("zzzzzz.0123456789abcdef")).unwrap();
        assert!(
            matches!(verify(&other, content, &t), Verdict::OtherHeader(h) if h.contains("zzzzzz"))
        );
        assert!(matches!(verify("abc", content, &t), Verdict::Malformed(_)));
        assert!(
            matches!(verify("a.b.c", content, &t), Verdict::Malformed(m) if m.contains("payload"))
        );
        assert!(matches!(
            verify("!!..x", content, &t),
            Verdict::Malformed(_)
        ));
        assert_eq!(
            verify(&sig, content, &Token::withheld("abcdef")),
            Verdict::NoSecret
        );
    }
}
