//! Secret masking: bootstrap-token secrets, JWTs (service-account tokens) and bearer credentials never reach output.

/// Masks a bootstrap token's secret half: `a24a11.0e6b932b0907deff` → `a24a11.****************`.
pub fn mask_token(token: &str) -> String {
    match token.split_once('.') {
        Some((id, secret)) => format!("{id}.{}", "*".repeat(secret.len())),
        None => "*".repeat(token.len()),
    }
}

fn is_tok(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Masks every secret-shaped substring of `s`: bootstrap tokens, JWTs, and `Bearer <x>` values.
pub fn mask_secrets(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        let boundary = i == 0 || !is_b64url(b[i - 1]);
        // Bootstrap token: 6 [a-z0-9], '.', 16 [a-z0-9], not part of a longer word.
        if boundary
            && i + 23 <= b.len()
            && b[i..i + 6].iter().all(|&c| is_tok(c))
            && b[i + 6] == b'.'
            && b[i + 7..i + 23].iter().all(|&c| is_tok(c))
            && (i + 23 == b.len() || !is_b64url(b[i + 23]))
        {
            out.push_str(&s[copied..i + 7]);
            out.push_str("****************");
            i += 23;
            copied = i;
            continue;
        }
        // JWT: eyJ<b64>.<b64>.<b64>
        if boundary && b[i..].starts_with(b"eyJ") {
            let mut j = i;
            let mut dots = 0;
            while j < b.len() && (is_b64url(b[j]) || (b[j] == b'.' && dots < 2)) {
                if b[j] == b'.' {
                    dots += 1;
                }
                j += 1;
            }
            if dots == 2 && j - i > 20 {
                out.push_str(&s[copied..i]);
                out.push_str("eyJ****");
                i = j;
                copied = i;
                continue;
            }
        }
        // Bearer credentials in headers or error text.
        if b[i..].len() > 7 && b[i..i + 7].eq_ignore_ascii_case(b"bearer ") {
            let mut j = i + 7;
            while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'"' {
                j += 1;
            }
            if j > i + 7 {
                out.push_str(&s[copied..i + 7]);
                out.push_str("****");
                i = j;
                copied = i;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&s[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_the_guides_token_everywhere_in_a_line() {
        let line = "kubeadm join --token a24a11.0e6b932b0907deff 192.168.1.2:6443 --discovery-token-ca-cert-hash sha256:1ca7";
        let m = mask_secrets(line);
        assert!(!m.contains("0e6b932b0907deff"), "{m}");
        assert!(m.contains("a24a11.****************"));
        assert!(m.contains("192.168.1.2:6443"));
        assert_eq!(
            mask_token("a24a11.0e6b932b0907deff"),
            "a24a11.****************"
        );
    }

    #[test]
    fn masks_jwts_and_bearer_values_but_not_plain_text() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJrdWJlcm5ldGVzIn0.IWSHY_fSQ5hRDxdjVyc";
        let m = mask_secrets(&format!("token: {jwt} end"));
        assert_eq!(m, "token: eyJ**** end");
        assert_eq!(
            mask_secrets("Authorization: Bearer abc.def"),
            "Authorization: Bearer ****"
        );
        let plain = "nameserver 127.0.0.1 in /etc/resolv.conf:3 (k8s.gcr.io, 1.28.3)";
        assert_eq!(mask_secrets(plain), plain);
        // A longer word that merely contains the shape is not a token.
        let long = "xa24a11.0e6b932b0907deffx";
        assert_eq!(mask_secrets(long), long);
    }
}
