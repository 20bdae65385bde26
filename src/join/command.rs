//! Reading a `kubeadm join` command line: shell-style splitting of a pasted command, then kubeadm's
//! flags (pflag syntax) down to what bears on token discovery.

use thiserror::Error;

use crate::mask::{mask_secrets, mask_token};

/// Why the words given are not a `kubeadm join` command at all (the doctor cannot start: exit 2).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    #[error(
        "no command given: pass the join command after `--`, e.g. `k8sdoctor join-check -- kubeadm join 192.168.1.2:6443 --token ...`"
    )]
    Empty,
    #[error("unbalanced {0} quote in the command")]
    Quote(char),
    #[error("the command must start with `kubeadm join`, it starts with {0:?}")]
    NotJoin(String),
    #[error(
        "{0} is not supported: join-check verifies token discovery from the command's own flags"
    )]
    Unsupported(&'static str),
}

/// Splits one pasted command line into words as a POSIX shell would: quotes, backslash escapes and
/// backslash-newline continuations (kubeadm init prints the join command over several lines).
pub fn shell_words(line: &str) -> Result<Vec<String>, CommandError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(n) => {
                    cur.push(n);
                    in_word = true;
                }
                None => {}
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => cur.push(n),
                        None => return Err(CommandError::Quote('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => cur.push(n),
                            Some('\n') => {}
                            Some(n) => {
                                cur.push('\\');
                                cur.push(n);
                            }
                            None => return Err(CommandError::Quote('"')),
                        },
                        Some(n) => cur.push(n),
                        None => return Err(CommandError::Quote('"')),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// What a `kubeadm join` command says about discovery; values are raw (the token is secret) until
/// [`JoinCommand::masked`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinCommand {
    /// Positional arguments: the first is the API server endpoint, kubeadm ignores the rest.
    pub endpoints: Vec<String>,
    /// `--discovery-token`, else `--token` (kubeadm's precedence).
    pub token: Option<String>,
    /// Every `--discovery-token-ca-cert-hash` value, comma lists split.
    pub hashes: Vec<String>,
    pub unsafe_skip_ca: bool,
    pub control_plane: bool,
    /// Flags that do not bear on discovery, by name.
    pub ignored: Vec<String>,
    /// Flags kubeadm join does not have, or that lack their value: kubeadm would refuse the command.
    pub problems: Vec<String>,
}

/// Whether a positional argument is a token put where the endpoint goes: `<6 alphanumerics>.<8 or
/// more alphanumerics>`, no port. (An endpoint always has `host:port`.) A secret masked to stars (the
/// command as a bundle holds it) still has the shape.
pub(crate) fn looks_like_token(arg: &str) -> bool {
    arg.split_once('.').is_some_and(|(id, secret)| {
        id.len() == 6
            && secret.len() >= 8
            && id.bytes().all(|b| b.is_ascii_alphanumeric())
            && (secret.bytes().all(|b| b.is_ascii_alphanumeric())
                || secret.bytes().all(|b| b == b'*'))
    })
}

/// A positional argument as shown: masked when it looks like a token.
pub(crate) fn shown_arg(arg: &str) -> String {
    if looks_like_token(arg) {
        mask_token(arg)
    } else {
        arg.to_string()
    }
}

/// kubeadm join's flags (and kubeadm's global ones) that take a value but do not bear on discovery.
const IGNORED_VALUED: &[&str] = &[
    "apiserver-advertise-address",
    "apiserver-bind-port",
    "certificate-key",
    "cri-socket",
    "ignore-preflight-errors",
    "node-name",
    "patches",
    "skip-phases",
    "tls-bootstrap-token",
    "log-file",
    "log-file-max-size",
    "rootfs",
    "v",
];
/// Boolean flags that do not bear on discovery.
const IGNORED_BOOL: &[&str] = &[
    "dry-run",
    "help",
    "add-dir-header",
    "one-output",
    "skip-headers",
    "skip-log-headers",
];

/// Parses a boolean flag's optional `=value` the way pflag does.
fn bool_value(name: &str, value: Option<&str>, problems: &mut Vec<String>) -> bool {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true" | "1" | "t") => true,
        Some("false" | "0" | "f") => false,
        Some(_) => {
            problems.push(format!("--{name} takes true or false"));
            true
        }
    }
}

impl JoinCommand {
    /// Parses the words of a command that starts with `kubeadm join` (a leading `sudo`, or a shell
    /// prompt `$`/`#` copied from a guide, is allowed).
    pub fn parse(words: &[String]) -> Result<JoinCommand, CommandError> {
        let mut rest: &[String] = words;
        while let Some((first, tail)) = rest.split_first() {
            if matches!(first.as_str(), "sudo" | "$" | "#") {
                rest = tail;
            } else {
                break;
            }
        }
        let program = rest.first().ok_or(CommandError::Empty)?;
        let program_ok = program == "kubeadm" || program.ends_with("/kubeadm");
        if !program_ok || rest.get(1).map(String::as_str) != Some("join") {
            let start = rest.iter().take(2).cloned().collect::<Vec<_>>().join(" ");
            return Err(CommandError::NotJoin(mask_secrets(&start)));
        }
        let mut cmd = JoinCommand::default();
        let (mut token, mut discovery_token) = (None, None);
        let mut args = rest[2..].iter();
        while let Some(arg) = args.next() {
            if arg == "--" {
                cmd.endpoints.extend(args.by_ref().cloned());
                break;
            }
            let (name, inline) = if let Some(long) = arg.strip_prefix("--") {
                match long.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (long.to_string(), None),
                }
            } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
                // pflag shorthands: -v LEVEL, -v=LEVEL, -vLEVEL, -h (by character: `-é` is one).
                let mut chars = short.chars();
                let first = chars.next().unwrap_or_default();
                let v = chars.as_str();
                let n = match first {
                    'v' => "v",
                    'h' => "help",
                    _ => {
                        cmd.problems
                            .push(format!("unknown shorthand flag: -{first}"));
                        continue;
                    }
                };
                let v = v.strip_prefix('=').unwrap_or(v);
                (n.to_string(), (!v.is_empty()).then(|| v.to_string()))
            } else {
                cmd.endpoints.push(arg.clone());
                continue;
            };
            let mut value = |cmd: &mut JoinCommand| match inline.clone() {
                Some(v) => Some(v),
                None => {
                    let v = args.next().cloned();
                    if v.is_none() {
                        cmd.problems
                            .push(format!("flag needs an argument: --{name}"));
                    }
                    v
                }
            };
            match name.as_str() {
                "token" => token = value(&mut cmd),
                "discovery-token" => discovery_token = value(&mut cmd),
                "discovery-token-ca-cert-hash" => {
                    if let Some(v) = value(&mut cmd) {
                        cmd.hashes.extend(
                            v.split(',')
                                .map(str::trim)
                                .filter(|s| !s.is_empty())
                                .map(String::from),
                        );
                    }
                }
                "discovery-token-unsafe-skip-ca-verification" => {
                    cmd.unsafe_skip_ca = bool_value(&name, inline.as_deref(), &mut cmd.problems)
                }
                "control-plane" => {
                    cmd.control_plane = bool_value(&name, inline.as_deref(), &mut cmd.problems)
                }
                "config" => {
                    return Err(CommandError::Unsupported(
                        "--config (a JoinConfiguration file)",
                    ));
                }
                "discovery-file" => {
                    return Err(CommandError::Unsupported(
                        "--discovery-file (file discovery)",
                    ));
                }
                n if IGNORED_VALUED.contains(&n) => {
                    value(&mut cmd);
                    cmd.ignored.push(format!("--{n}"));
                }
                n if IGNORED_BOOL.contains(&n) => {
                    bool_value(n, inline.as_deref(), &mut cmd.problems);
                    cmd.ignored.push(format!("--{n}"));
                }
                n => cmd.problems.push(format!("unknown flag: --{n}")),
            }
        }
        cmd.token = discovery_token.or(token);
        Ok(cmd)
    }

    /// The command with every secret masked, as a bundle holds it: the token's secret half (whatever
    /// its shape) and tokens put where the endpoint goes. The values of ignored flags
    /// (`--certificate-key`, `--tls-bootstrap-token`) were never kept.
    pub fn masked(&self) -> JoinCommand {
        JoinCommand {
            endpoints: self.endpoints.iter().map(|e| shown_arg(e)).collect(),
            token: self.token.as_deref().map(mask_token),
            ..self.clone()
        }
    }

    /// The command as one line for a bundle's manifest: what discovery reads, secrets masked, the
    /// values of the flags it ignores left out.
    pub fn shown(&self) -> String {
        let m = self.masked();
        let mut w: Vec<String> = vec!["kubeadm".into(), "join".into()];
        w.extend(m.endpoints);
        if let Some(t) = m.token {
            w.extend(["--token".into(), t]);
        }
        for h in m.hashes {
            w.extend(["--discovery-token-ca-cert-hash".into(), h]);
        }
        if m.unsafe_skip_ca {
            w.push("--discovery-token-unsafe-skip-ca-verification".into());
        }
        if m.control_plane {
            w.push("--control-plane".into());
        }
        for flag in m.ignored {
            let valued = IGNORED_VALUED.contains(&flag.trim_start_matches('-'));
            w.push(flag);
            if valued {
                w.push("****".into());
            }
        }
        w.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guide's literal join command, as `kubeadm init` printed it.
    pub const GUIDE: &str = "kubeadm join --token a24a11.0e6b932b0907deff 192.168.1.2:6443 --discovery-token-ca-cert-hash sha256:1ca7fbf4d402849f34a6dbf5810ee584df015d6deeb55ca6ff1f0a87773b97f9";

    fn parse(line: &str) -> JoinCommand {
        JoinCommand::parse(&shell_words(line).unwrap()).unwrap()
    }

    #[test]
    fn the_guides_join_command_parses() {
        let c = parse(GUIDE);
        assert_eq!(c.endpoints, ["192.168.1.2:6443"]);
        assert_eq!(c.token.as_deref(), Some("a24a11.0e6b932b0907deff"));
        assert_eq!(
            c.hashes,
            ["sha256:1ca7fbf4d402849f34a6dbf5810ee584df015d6deeb55ca6ff1f0a87773b97f9"]
        );
        assert!(!c.unsafe_skip_ca && !c.control_plane);
        assert!(c.ignored.is_empty() && c.problems.is_empty());
        // The guide's variant for a node with swap: the extra flag is ignored.
        let c = parse(&format!("# {GUIDE} --ignore-preflight-errors Swap"));
        assert_eq!(c.ignored, ["--ignore-preflight-errors"]);
        assert_eq!(c.endpoints, ["192.168.1.2:6443"]);
    }

    #[test]
    fn continuation_lines_quotes_and_equals_forms() {
        let c = parse(
            "sudo kubeadm join cp.example:6443 --token='abcdef.0123456789abcdef' \\\n    --discovery-token-ca-cert-hash \"sha256:aa,sha256:bb\" \\\n    --discovery-token-ca-cert-hash=sha256:cc --control-plane --node-name=w1 -v5",
        );
        assert_eq!(c.endpoints, ["cp.example:6443"]);
        assert_eq!(c.token.as_deref(), Some("abcdef.0123456789abcdef"));
        assert_eq!(c.hashes, ["sha256:aa", "sha256:bb", "sha256:cc"]);
        assert!(c.control_plane);
        assert_eq!(c.ignored, ["--node-name", "--v"]);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
    }

    #[test]
    fn discovery_token_wins_over_token() {
        let c = parse(
            "kubeadm join h:1 --discovery-token aaaaaa.bbbbbbbbbbbbbbbb --token cccccc.dddddddddddddddd --discovery-token-unsafe-skip-ca-verification",
        );
        assert_eq!(c.token.as_deref(), Some("aaaaaa.bbbbbbbbbbbbbbbb"));
        assert!(c.unsafe_skip_ca);
        let c = parse("kubeadm join h:1 --discovery-token-unsafe-skip-ca-verification=false");
        assert!(!c.unsafe_skip_ca);
    }

    #[test]
    fn unknown_flags_and_missing_values_are_problems_kubeadm_would_refuse() {
        let c = parse("kubeadm join h:1 --tokn=x --token");
        assert_eq!(
            c.problems,
            ["unknown flag: --tokn", "flag needs an argument: --token"]
        );
        let c = parse("kubeadm join h:1 -x");
        assert_eq!(c.problems, ["unknown shorthand flag: -x"]);
    }

    #[test]
    fn not_a_join_command_or_unsupported_discovery_is_a_usage_error() {
        let e = |l: &str| JoinCommand::parse(&shell_words(l).unwrap()).unwrap_err();
        assert_eq!(e(""), CommandError::Empty);
        assert!(matches!(e("kubeadm init"), CommandError::NotJoin(_)));
        assert!(matches!(e("kubectl join x"), CommandError::NotJoin(_)));
        assert!(matches!(
            e("kubeadm join --discovery-file a.conf"),
            CommandError::Unsupported(_)
        ));
        assert!(matches!(
            e("kubeadm join --config j.yaml"),
            CommandError::Unsupported(_)
        ));
        assert_eq!(
            shell_words("kubeadm 'join").unwrap_err(),
            CommandError::Quote('\'')
        );
        assert_eq!(shell_words("a \"b").unwrap_err(), CommandError::Quote('"'));
        assert_eq!(shell_words("/usr/bin/kubeadm join").unwrap().len(), 2);
        assert!(JoinCommand::parse(&shell_words("/usr/bin/kubeadm join").unwrap()).is_ok());
    }
}
