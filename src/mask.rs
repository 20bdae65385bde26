//! Secret masking, the one layer every output goes through: bootstrap-token secrets, JWTs, Bearer and
//! Basic credentials, URL userinfo, kubeconfig credential fields, PEM private keys; and [`MaskedWriter`],
//! which masks whatever a renderer writes to stdout or stderr.

use std::{
    borrow::Cow,
    io::{self, Write},
};

use base64::Engine;

/// What a secret is replaced by.
const STARS: &str = "****";

/// Masks a bootstrap token's secret half: `a24a11.0e6b932b0907deff` → `a24a11.****************`.
pub fn mask_token(token: &str) -> String {
    match token.split_once('.') {
        Some((id, secret)) => format!("{id}.{}", "*".repeat(secret.len())),
        None => "*".repeat(token.len()),
    }
}

/// Whether `s` has the shape of a bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`, either case).
pub fn is_token_shaped(s: &str) -> bool {
    token_shape(s.as_bytes())
}

fn token_shape(b: &[u8]) -> bool {
    b.len() == 23 && b[6] == b'.' && b[..6].iter().chain(&b[7..]).all(u8::is_ascii_alphanumeric)
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Fields whose value is a credential, in kubeconfigs, ExecCredentials, flags and query strings.
const SECRET_KEYS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "client-key-data",
    "clientkeydata",
    "client-secret",
    "client_secret",
    "id-token",
    "id_token",
    "refresh-token",
    "refresh_token",
    "access-token",
    "access_token",
    "token-secret",
    "secret",
    // containerd's registry credentials.
    "auth",
    "identitytoken",
];

/// Masks every secret-shaped substring of `s`.
///
/// Each pass looks only where its shapes can start (found with `memchr`, or one table look-up a byte)
/// and copies the text only when it masks something: every byte of output goes through here, most of
/// it with nothing to mask.
pub fn mask_secrets(s: &str) -> String {
    let s = mask_pem_keys(s);
    let s = mask_exec_blocks(&s);
    let s = mask_userinfo(&s);
    let s = mask_keyed(&s);
    mask_words(&s).into_owned()
}

/// Where the next [`SECRET_KEYS`] key can start in `b[from..]`: a letter pair [`key_prefix`] admits at
/// the start of a word. One table look-up a byte, branching only at those places (`key_at` decides).
fn next_key(b: &[u8], from: usize) -> Option<usize> {
    let mut prev_word = from > 0 && WORD[b[from - 1] as usize];
    for i in from..b.len().saturating_sub(1) {
        let c = b[i];
        if KEY_FIRST[c as usize] & !prev_word
            && key_prefix(c.to_ascii_lowercase(), b[i + 1].to_ascii_lowercase())
        {
            return Some(i);
        }
        prev_word = WORD[c as usize];
    }
    None
}

/// Letters, digits and `_`: what may not come before a key.
static WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_alphanumeric() || c == b'_' as usize;
        c += 1;
    }
    t
};

/// The letters a [`SECRET_KEYS`] key starts with, either case.
static KEY_FIRST: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = matches!(
            (c as u8).to_ascii_lowercase(),
            b't' | b'p' | b'c' | b'i' | b'r' | b'a' | b's'
        );
        c += 1;
    }
    t
};

/// `-----BEGIN … PRIVATE KEY-----` blocks lose their body (up to `-----END`, or the end of the text).
fn mask_pem_keys(s: &str) -> Cow<'_, str> {
    if !s.contains("-----BEGIN ") {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let after = &rest[begin + 11..];
        let Some(close) = after.find("-----") else {
            break;
        };
        let label = &after[..close];
        let body_start = begin + 11 + close + 5;
        if !label.ends_with("PRIVATE KEY") {
            out.push_str(&rest[..body_start]);
            rest = &rest[body_start..];
            continue;
        }
        out.push_str(&rest[..body_start]);
        out.push_str(STARS);
        match rest[body_start..].find("-----END") {
            Some(end) => rest = &rest[body_start + end..],
            None => return Cow::Owned(out),
        }
        // Copy the END marker itself so the next search starts after it.
        let marker = rest.find("-----").map_or(0, |_| 8);
        out.push_str(&rest[..marker]);
        rest = &rest[marker..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// A kubeconfig's `exec:` credential plugin: the values of its `env` and its `args` may be credentials
/// (an API key, a password flag's value); the command and the variables' names are kept.
fn mask_exec_blocks(s: &str) -> Cow<'_, str> {
    if !s.contains("exec:") {
        return Cow::Borrowed(s);
    }
    let indent = |l: &str| l.len() - l.trim_start_matches([' ', '-']).len();
    let mut out = String::with_capacity(s.len());
    // The indentation of the open `exec:` key, and of an open `args:` key inside it.
    let (mut exec, mut args): (Option<usize>, Option<usize>) = (None, None);
    for line in s.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let t = body.trim_start_matches([' ', '-']);
        let ind = indent(body);
        if !t.is_empty() && exec.is_some_and(|e| ind <= e) {
            (exec, args) = (None, None);
        }
        if !t.is_empty() && args.is_some_and(|a| ind <= a) && !body.trim_start().starts_with('-') {
            args = None;
        }
        if args.is_some_and(|a| ind >= a) && body.trim_start().starts_with('-') {
            let dash = body.find('-').unwrap_or(0);
            out.push_str(&body[..dash + 1]);
            out.push(' ');
            out.push_str(STARS);
            out.push_str(&line[body.len()..]);
            continue;
        }
        if exec.is_some() {
            if let Some(v) = t.strip_prefix("value:") {
                if !v.trim().is_empty() {
                    out.push_str(&body[..body.len() - v.len()]);
                    out.push(' ');
                    out.push_str(STARS);
                    out.push_str(&line[body.len()..]);
                    continue;
                }
            } else if let Some(v) = t.strip_prefix("args:") {
                if v.trim().starts_with('[') {
                    out.push_str(&body[..body.len() - v.len()]);
                    out.push_str(" [");
                    out.push_str(STARS);
                    out.push(']');
                    out.push_str(&line[body.len()..]);
                    continue;
                }
                args = Some(ind);
            }
        } else if t.starts_with("exec:") {
            exec = Some(ind);
        }
        out.push_str(line);
    }
    Cow::Owned(out)
}

/// `scheme://user:pass@host` → `scheme://user:****@host`; `scheme://secret@host` → `scheme://****@host`.
fn mask_userinfo(s: &str) -> Cow<'_, str> {
    if !s.contains("://") {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let start = i + 3;
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let authority_end = rest
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`') || c.is_whitespace()
            })
            .unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some((user, _)) = rest[..at].split_once(':') {
                out.push_str(user);
                out.push(':');
            }
            out.push_str(STARS);
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Whether a [`SECRET_KEYS`] key starts with these two (lower-case) letters.
fn key_prefix(a: u8, b: u8) -> bool {
    matches!(
        (a, b),
        (b't', b'o')
            | (b'p', b'a')
            | (b'c', b'l')
            | (b'i', b'd')
            | (b'r', b'e')
            | (b'a', b'c')
            | (b's', b'e')
            | (b'a', b'u')
    )
}

/// The length of the secret key `b[i..]` starts with, case-insensitively, not inside a longer word.
fn key_at(b: &[u8], i: usize) -> Option<usize> {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    // Most text starts no key: its first two letters are tested before any key is compared.
    let second = b.get(i + 1).map_or(0, u8::to_ascii_lowercase);
    if !key_prefix(b[i].to_ascii_lowercase(), second) || (i > 0 && word(b[i - 1])) {
        return None;
    }
    SECRET_KEYS
        .iter()
        .filter(|k| {
            let n = k.len();
            b.len() >= i + n
                && b[i..i + n].eq_ignore_ascii_case(k.as_bytes())
                && b.get(i + n).is_none_or(|&c| !word(c) && c != b'-')
        })
        .map(|k| k.len())
        .max()
}

/// Values of credential fields: `"token": "x"` (JSON), `token: x` at a line's start (YAML) and
/// `token=x` / `--password=x` (flags, query strings, env).
fn mask_keyed(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let mut out = String::new();
    let (mut i, mut copied) = (0, 0);
    // Only where a key's letters start can `key_at` find one.
    while let Some(at) = next_key(b, i) {
        i = at;
        let Some(n) = key_at(b, i) else {
            i += 1;
            continue;
        };
        let line_start = memchr::memrchr(b'\n', &b[..i]).map_or(0, |p| p + 1);
        // JSON, possibly escaped inside another string (`\"token\": \"x\"`).
        let close = match b.get(i + n..i + n + 2) {
            Some([b'\\', b'"']) => 2,
            _ if b.get(i + n) == Some(&b'"') => 1,
            _ => 0,
        };
        let quoted = i > 0 && b[i - 1] == b'"' && close > 0;
        let mut j = i + n + if quoted { close } else { 0 };
        // TOML and INI put spaces around `=` (`password = "x"`), at the start of a line.
        let at_line_start = b[line_start..i].iter().all(|&c| c == b' ' || c == b'\t');
        if !quoted && at_line_start {
            let mut k = j;
            while k < b.len() && (b[k] == b' ' || b[k] == b'\t') {
                k += 1;
            }
            if b.get(k) == Some(&b'=') {
                j = k;
            }
        }
        let sep = b.get(j).copied();
        let yaml_key = !quoted
            && sep == Some(b':')
            && b[line_start..i]
                .iter()
                .all(|&c| c == b' ' || c == b'\t' || c == b'-' || c == b'{' || c == b',');
        let value_start;
        let value_end;
        if quoted && (sep == Some(b':') || sep == Some(b'=')) {
            j += 1;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            if b.get(j) == Some(&b'\\') {
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                i += n;
                continue;
            }
            value_start = j + 1;
            let mut k = value_start;
            while k < b.len() && b[k] != b'"' && b[k] != b'\\' {
                k += 1;
            }
            value_end = k;
        } else if yaml_key || (!quoted && sep == Some(b'=')) {
            j += 1;
            while (yaml_key || at_line_start) && j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
                j += 1;
            }
            if matches!(b.get(j), Some(b'"' | b'\'')) {
                j += 1;
            }
            value_start = j;
            let stop = |c: u8| {
                c.is_ascii_whitespace() || matches!(c, b'"' | b'\'' | b'&' | b',' | b'}' | b';')
            };
            let mut k = value_start;
            while k < b.len() && !stop(b[k]) {
                k += 1;
            }
            value_end = k;
        } else {
            i += n;
            continue;
        }
        // A boolean is a setting, never a credential (`--anonymous-auth=false`): kept as it is.
        let boolean = ["true", "false"]
            .iter()
            .any(|w| s[value_start..value_end].eq_ignore_ascii_case(w));
        if value_end > value_start && !boolean {
            out.push_str(&s[copied..value_start]);
            out.push_str(STARS);
            copied = value_end;
        }
        i = value_end.max(i + n);
    }
    if copied == 0 {
        return Cow::Borrowed(s);
    }
    out.push_str(&s[copied..]);
    Cow::Owned(out)
}

/// Whether the word after `Basic ` is base64 of `user:password`.
fn is_basic_credential(word: &str) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(word)
        .is_ok_and(|d| d.contains(&b':'))
}

/// Bootstrap tokens, JWTs, and `Bearer x` / `Basic x` credentials.
fn mask_words(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let mut copied = 0;
    let mut starts = WordStarts::new(b);
    while let Some(at) = starts.next_from(i) {
        i = at;
        // Every shape below starts with a letter or digit after a non-word byte.
        if !b[i].is_ascii_alphanumeric() || (i > 0 && is_b64url(b[i - 1])) {
            i += 1;
            continue;
        }
        // Bootstrap token: 6 alphanumerics, '.', 16 alphanumerics, not part of a longer word.
        if i + 23 <= b.len()
            && token_shape(&b[i..i + 23])
            && (i + 23 == b.len() || !is_b64url(b[i + 23]))
        {
            out.push_str(&s[copied..i + 7]);
            out.push_str("****************");
            i += 23;
            copied = i;
            continue;
        }
        // JWT: eyJ<b64>.<b64>.<b64>
        if b[i..].starts_with(b"eyJ") {
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
        // Authorization schemes in headers or error text.
        for (scheme, always) in [(&b"bearer "[..], true), (&b"basic "[..], false)] {
            let n = scheme.len();
            if b.len() > i + n && b[i..i + n].eq_ignore_ascii_case(scheme) {
                let mut j = i + n;
                while j < b.len()
                    && !b[j].is_ascii_whitespace()
                    && !matches!(b[j], b'"' | b'\'' | b',')
                {
                    j += 1;
                }
                if j > i + n && (always || is_basic_credential(&s[i + n..j])) {
                    out.push_str(&s[copied..i + n]);
                    out.push_str(STARS);
                    copied = j;
                    break;
                }
            }
        }
        if copied > i {
            i = copied;
            continue;
        }
        i += 1;
    }
    if copied == 0 {
        return Cow::Borrowed(s);
    }
    out.push_str(&s[copied..]);
    Cow::Owned(out)
}

/// The places `mask_words` can mask at, in order: six bytes before a '.' (a bootstrap token), `eyJ` (a
/// JWT), and a 'b' (an authorization scheme), each found with `memchr` (no searcher to build: this runs
/// for every string of a report); each kind's next place is kept until the scan passes it.
struct WordStarts<'a> {
    b: &'a [u8],
    /// The next place of each kind at or after where it was last looked for (`usize::MAX`: none left).
    next: [usize; 3],
}

impl<'a> WordStarts<'a> {
    fn new(b: &'a [u8]) -> Self {
        let mut w = WordStarts { b, next: [0; 3] };
        for k in 0..3 {
            w.next[k] = w.find(k, 0);
        }
        w
    }

    fn find(&self, kind: usize, from: usize) -> usize {
        let Some(rest) = self.b.get(from..) else {
            return usize::MAX;
        };
        let found = match kind {
            0 => rest.get(6..).and_then(|r| memchr::memchr(b'.', r)),
            // 'J' is rare in text: each is a JWT's start when "ey" comes before it.
            1 => memchr::memchr_iter(b'J', rest)
                .find(|&j| j >= 2 && &rest[j - 2..j] == b"ey")
                .map(|j| j - 2),
            // Both schemes start with a 'b' (either case); the scan tests the rest there.
            _ => memchr::memchr2(b'b', b'B', rest),
        };
        found.map_or(usize::MAX, |p| from + p)
    }

    /// The first place at or after `from`.
    fn next_from(&mut self, from: usize) -> Option<usize> {
        for k in 0..3 {
            if self.next[k] < from {
                self.next[k] = self.find(k, from);
            }
        }
        let at = *self.next.iter().min()?;
        (at != usize::MAX).then_some(at)
    }
}

/// A writer that masks secrets in everything written through it, line by line (a PEM private key is
/// held until its END line so its body is masked whole). Call `flush` (or drop it) to emit the rest.
pub struct MaskedWriter<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

/// Held text is emitted unmasked-by-block past this size, still masked line by line.
const HOLD_LIMIT: usize = 1 << 20;

impl<W: Write> MaskedWriter<W> {
    pub fn new(inner: W) -> Self {
        MaskedWriter {
            inner,
            pending: Vec::new(),
        }
    }

    fn emit(&mut self, upto: usize) -> io::Result<()> {
        let text = String::from_utf8_lossy(&self.pending[..upto]);
        let masked = mask_secrets(&text);
        self.inner.write_all(masked.as_bytes())?;
        self.pending.drain(..upto);
        Ok(())
    }

    /// Where the complete, safely maskable text ends: the last newline outside an open PEM key.
    fn cut(&self) -> Option<usize> {
        let last_nl = self.pending.iter().rposition(|&c| c == b'\n')? + 1;
        let text = &self.pending[..last_nl];
        // The last BEGIN of a private key with no END after it.
        let open = rfind(text, b"-----BEGIN ").filter(|&k| {
            let line = &text[k..];
            let line = &line[..line.iter().position(|&c| c == b'\n').unwrap_or(line.len())];
            find(line, b"PRIVATE KEY").is_some() && find(&text[k..], b"-----END").is_none()
        });
        match open {
            Some(k) if self.pending.len() < HOLD_LIMIT => {
                let begin = text[..k]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |p| p + 1);
                (begin > 0).then_some(begin)
            }
            _ => Some(last_nl),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::rfind(hay, needle)
}

impl<W: Write> Write for MaskedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if buf.contains(&b'\n')
            && let Some(cut) = self.cut()
        {
            self.emit(cut)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.emit(self.pending.len())?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for MaskedWriter<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boolean_setting_is_not_a_secret() {
        assert_eq!(
            mask_secrets("kube-apiserver --anonymous-auth=false --token=abc123"),
            format!("kube-apiserver --anonymous-auth=false --token={STARS}")
        );
        assert_eq!(mask_secrets("auth: xyz"), format!("auth: {STARS}"));
    }

    #[test]
    fn masks_the_guides_token_everywhere_in_a_line() {
        let line = "kubeadm join --token a24a11.0e6b932b0907deff 192.168.1.2:6443 --discovery-token-ca-cert-hash sha256:1ca7";
        let m = mask_secrets(line);
        assert!(!m.contains("0e6b932b0907deff"), "{m}");
        assert!(m.contains("a24a11.****************"));
        assert!(m.contains("192.168.1.2:6443"));
        assert!(m.contains("sha256:1ca7"), "the CA hash is public: {m}");
        assert_eq!(
            mask_token("a24a11.0e6b932b0907deff"),
            "a24a11.****************"
        );
        // Upper case is still token-shaped.
        assert_eq!(
            mask_secrets("h:6443 A24A11.0E6B932B0907DEFF"),
            "h:6443 A24A11.****************"
        );
    }

    #[test]
    fn masks_jwts_and_bearer_values_but_not_plain_text() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJrdWJlcm5ldGVzIn0.IWSHY_fSQ5hRDxdjVyc";
        let m = mask_secrets(&format!("got {jwt} end"));
        assert_eq!(m, "got eyJ**** end");
        assert_eq!(
            mask_secrets("Authorization: Bearer abc.def"),
            "Authorization: Bearer ****"
        );
        for plain in [
            "nameserver 127.0.0.1 in /etc/resolv.conf:3 (k8s.gcr.io, 1.28.3)",
            "no token: pass --token <id>.<secret> (or --discovery-token)",
            "basic authentication is not configured",
            "the token secret is masked; secrets in kube-system",
            "https://192.168.1.2:6443/api?timeout=5s",
        ] {
            assert_eq!(mask_secrets(plain), plain);
        }
        // A longer word that merely contains the shape is not a token.
        let long = "xa24a11.0e6b932b0907deffx";
        assert_eq!(mask_secrets(long), long);
    }

    #[test]
    fn masks_basic_credentials_and_url_userinfo() {
        // base64("admin:s3cr3t")
        assert_eq!(
            mask_secrets("echo: Authorization: Basic YWRtaW46czNjcjN0"),
            "echo: Authorization: Basic ****"
        );
        assert_eq!(
            mask_secrets("server: https://admin:PASS@10.0.0.1:6443/api"),
            "server: https://admin:****@10.0.0.1:6443/api"
        );
        assert_eq!(
            mask_secrets("\"server\":\"https://tok3n@h:6443\""),
            "\"server\":\"https://****@h:6443\""
        );
    }

    #[test]
    fn masks_kubeconfig_and_exec_credential_fields() {
        let kc = "users:\n- name: a\n  user:\n    token: s3cr3t-t0ken\n    password: \"hunter2\"\n    client-key-data: LS0tLS1CRUdJTg==\n";
        let m = mask_secrets(kc);
        for s in ["s3cr3t-t0ken", "hunter2", "LS0tLS1CRUdJTg"] {
            assert!(!m.contains(s), "{m}");
        }
        assert!(
            m.contains("token: ****") && m.contains("client-key-data: ****"),
            "{m}"
        );
        let exec =
            r#"{"kind":"ExecCredential","status":{"token":"abc\"def","clientKeyData":"KEYBYTES"}}"#;
        let m = mask_secrets(exec);
        assert!(!m.contains("abc") && !m.contains("KEYBYTES"), "{m}");
        assert_eq!(mask_secrets("--password=hunter2 x"), "--password=**** x");
        assert_eq!(
            mask_secrets("GET /x?token=abc&y=1"),
            "GET /x?token=****&y=1"
        );
    }

    #[test]
    fn the_key_prefilter_admits_every_key() {
        for k in SECRET_KEYS {
            let b = k.as_bytes();
            assert!(key_prefix(b[0], b[1]), "{k}");
        }
    }

    #[test]
    fn masks_exec_plugin_env_and_args_and_toml_credentials() {
        let kc = "users:\n- name: a\n  user:\n    exec:\n      command: aws-iam-authenticator\n      args:\n      - token\n      - --secret-access-key\n      - AKIAEXECARG\n      env:\n      - name: AWS_SECRET_ACCESS_KEY\n        value: EXECENVSECRET\n- name: b\n  user:\n    username: admin\n";
        let m = mask_secrets(kc);
        assert!(
            !m.contains("AKIAEXECARG") && !m.contains("EXECENVSECRET"),
            "{m}"
        );
        for kept in [
            "command: aws-iam-authenticator",
            "name: AWS_SECRET_ACCESS_KEY",
            "username: admin",
            "- name: b",
        ] {
            assert!(m.contains(kept), "{kept}: {m}");
        }
        let toml = "[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"r.example\".auth]\n  username = \"u\"\n  password = \"T0mlPass\"\n  auth = \"dTpUMG1sUGFzcw==\"\n";
        let m = mask_secrets(toml);
        assert!(
            !m.contains("T0mlPass") && !m.contains("dTpUMG1sUGFzcw"),
            "{m}"
        );
        assert!(m.contains("username = \"u\""), "{m}");
        assert_eq!(
            mask_secrets("max_concurrent_downloads = 3"),
            "max_concurrent_downloads = 3"
        );
    }

    #[test]
    fn masks_pem_private_keys_but_not_certificates() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n-----BEGIN RSA PRIVATE KEY-----\nMIIEsecret\n-----END RSA PRIVATE KEY-----\nafter";
        let m = mask_secrets(pem);
        assert!(
            m.contains("MIIC") && !m.contains("MIIEsecret") && m.ends_with("after"),
            "{m}"
        );
        let unterminated = "-----BEGIN PRIVATE KEY-----\nMIIEsecret";
        assert!(!mask_secrets(unterminated).contains("MIIEsecret"));
    }

    #[test]
    fn the_writer_masks_across_writes_and_multibyte_text() {
        let mut out = Vec::new();
        {
            let mut w = MaskedWriter::new(&mut out);
            for chunk in [
                "é Bearer ab",
                "cdef\n",
                "-----BEGIN EC PRIVATE KEY-----\n",
                "SECRETBODY\n",
                "-----END EC PRIVATE KEY-----\n",
                "a24a11.0e6b9",
                "32b0907deff",
            ] {
                w.write_all(chunk.as_bytes()).unwrap();
            }
        }
        let s = String::from_utf8(out).unwrap();
        assert!(
            !s.contains("abcdef") && !s.contains("SECRETBODY") && !s.contains("0e6b"),
            "{s}"
        );
        assert!(s.starts_with("é Bearer ****\n"), "{s}");
    }
}
