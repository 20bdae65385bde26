//! The formats a join command carries: the bootstrap token (`<id>.<secret>`, secret never shown) and
//! the CA pins (`sha256:<hex>`), validated as kubeadm validates them.

use std::fmt;

use thiserror::Error;

use crate::mask::mask_token;

/// A bootstrap token. Its secret never reaches `Debug`, `Display`, an error message or a bundle: a
/// token replayed from a bundle has its id only ([`Token::withheld`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    secret: Option<String>,
}

/// Why a token string is not a bootstrap token. Messages show the masked token only.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    #[error(
        "token {0} has no '.': a bootstrap token is <id>.<secret>, 6 and 16 characters of [a-z0-9]"
    )]
    NoDot(String),
    #[error("token {shown}: the id {id:?} must be 6 characters of [a-z0-9] ({what})")]
    BadId {
        shown: String,
        id: String,
        what: String,
    },
    #[error("token {shown}: the secret must be 16 characters of [a-z0-9] ({what})")]
    BadSecret { shown: String, what: String },
}

/// The length of a bootstrap token's secret.
const SECRET_LEN: usize = 16;

fn tok_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// What is wrong with a token half of `want` characters, for the message.
fn what(s: &str, want: usize) -> String {
    let chars = if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Some("upper-case letters")
    } else if !tok_chars(s) {
        Some("characters outside [a-z0-9]")
    } else {
        None
    };
    let len = s.chars().count();
    match (len == want, chars) {
        (true, Some(c)) => format!("it has {c}"),
        (false, Some(c)) => format!("it has {len}, with {c}"),
        _ => format!("it has {len}"),
    }
}

impl Token {
    /// Parses `^[a-z0-9]{6}\.[a-z0-9]{16}$`, kubeadm's bootstrap token format.
    pub fn parse(s: &str) -> Result<Token, TokenError> {
        let shown = mask_token(s);
        let Some((id, secret)) = s.split_once('.') else {
            return Err(TokenError::NoDot(shown));
        };
        if id.len() != 6 || !tok_chars(id) {
            return Err(TokenError::BadId {
                shown,
                id: id.to_string(),
                what: what(id, 6),
            });
        }
        if secret.len() != SECRET_LEN || !tok_chars(secret) {
            return Err(TokenError::BadSecret {
                shown,
                what: what(secret, 16),
            });
        }
        Ok(Token {
            id: id.to_string(),
            secret: Some(secret.to_string()),
        })
    }

    /// A valid token known by its id alone: what a bundle holds of it (the secret never enters one).
    pub fn withheld(id: &str) -> Token {
        Token {
            id: id.to_string(),
            secret: None,
        }
    }

    /// The secret, for signing only; `None` for a token replayed from a bundle.
    pub fn secret(&self) -> Option<&str> {
        self.secret.as_deref()
    }

    /// `<id>.****************` (a valid token's secret has 16 characters, withheld or not).
    pub fn masked(&self) -> String {
        format!("{}.{}", self.id, "*".repeat(SECRET_LEN))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.masked())
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// A `--discovery-token-ca-cert-hash`: the SHA-256 of a CA's DER SubjectPublicKeyInfo, lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaHash(pub String);

/// Why a CA hash is malformed; the texts follow kubeadm's `pubkeypin.Set.Allow`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HashError {
    #[error("invalid hash {0:?}, expected \"format:hex-value\"; the known format is sha256")]
    NoFormat(String),
    #[error("unknown hash format {format:?} in {hash:?}; the known format is sha256")]
    UnknownFormat { hash: String, format: String },
    #[error(
        "invalid hash {hash:?}: expected a 32 byte SHA-256 hash (64 hex digits), found {digits} hex digits"
    )]
    Length { hash: String, digits: usize },
    #[error("invalid hash {hash:?}: {bad:?} is not a hex digit")]
    NotHex { hash: String, bad: char },
}

impl CaHash {
    /// Parses `sha256:<64 hex>` (the format is case-insensitive, like kubeadm's).
    pub fn parse(s: &str) -> Result<CaHash, HashError> {
        let parts: Vec<&str> = s.split(':').collect();
        let [format, value] = parts[..] else {
            return Err(HashError::NoFormat(s.to_string()));
        };
        if !format.eq_ignore_ascii_case("sha256") {
            return Err(HashError::UnknownFormat {
                hash: s.to_string(),
                format: format.to_string(),
            });
        }
        if value.len() != 64 {
            return Err(HashError::Length {
                hash: s.to_string(),
                digits: value.chars().count(),
            });
        }
        if let Some(bad) = value.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(HashError::NotHex {
                hash: s.to_string(),
                bad,
            });
        }
        Ok(CaHash(value.to_ascii_lowercase()))
    }
}

impl fmt::Display for CaHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUIDE: &str = "a24a11.0e6b932b0907deff";

    #[test]
    fn the_guides_token_parses_and_never_shows_its_secret() {
        let t = Token::parse(GUIDE).unwrap();
        assert_eq!(t.id, "a24a11");
        assert_eq!(t.secret(), Some("0e6b932b0907deff"));
        let w = Token::withheld("a24a11");
        assert_eq!((w.secret(), w.masked()), (None, t.masked()));
        for shown in [format!("{t}"), format!("{t:?}"), t.masked()] {
            assert!(!shown.contains("0e6b932b0907deff"), "{shown}");
            assert!(shown.contains("a24a11.****************"), "{shown}");
        }
    }

    #[test]
    fn each_bad_token_shape_has_its_own_message_without_the_secret() {
        let cases = [
            ("a24a110e6b932b0907deff", "has no '.'"),
            ("a24a1.0e6b932b0907deff", "id \"a24a1\" must be 6"),
            ("A24A11.0e6b932b0907deff", "upper-case"),
            ("a24a11.0e6b932b0907def", "it has 15"),
            ("a24a11.0E6B932B0907DEFF", "(it has upper-case letters)"),
            (
                "a24a11.0E6B932B0907DEF",
                "(it has 15, with upper-case letters)",
            ),
            ("a24a11.0e6b932b0907de_f", "outside [a-z0-9]"),
        ];
        for (bad, want) in cases {
            let e = Token::parse(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
            let secret = bad.split_once('.').map_or(bad, |(_, s)| s);
            assert!(!e.contains(secret), "{bad}: secret leaked in {e}");
        }
    }

    #[test]
    fn hashes_parse_like_kubeadm() {
        let hex = "1ca7fbf4d402849f34a6dbf5810ee584df015d6deeb55ca6ff1f0a87773b97f9";
        assert_eq!(CaHash::parse(&format!("sha256:{hex}")).unwrap().0, hex);
        assert_eq!(
            CaHash::parse(&format!("SHA256:{}", hex.to_uppercase()))
                .unwrap()
                .to_string(),
            format!("sha256:{hex}")
        );
        let e = |s: &str| CaHash::parse(s).unwrap_err();
        assert!(matches!(e(hex), HashError::NoFormat(_)));
        assert!(matches!(
            e(&format!("md5:{hex}")),
            HashError::UnknownFormat { .. }
        ));
        assert!(matches!(
            e(&format!("sha256:{}", &hex[..63])),
            HashError::Length { digits: 63, .. }
        ));
        assert!(matches!(
            e(&format!("sha256:{}g", &hex[..63])),
            HashError::NotHex { bad: 'g', .. }
        ));
        assert!(matches!(
            e(&format!("sha256:{hex}:x")),
            HashError::NoFormat(_)
        ));
    }
}
