//! mtools' command lines: invoked through a link named `msend` or `mreceive` the binary runs
//! `multicast send`/`receive`, and msend's/mreceive's flags (`-g GROUP`, `-text "Hi"`, `-join`,
//! clustered `-qn`, `-p4444`) are rewritten to our `--long` flags before clap parses.
//!
//! Hand-written rather than clap: msend parses with getopt_long_only, where `-text` is a long flag
//! while `-t 8` and `-t8` are the short TTL flag; clap has no single-dash long flags, and no way to
//! tell the two apart by getopt_long_only's rule (a word of two or more letters that begins a long
//! flag's name is that long flag, anything else is a cluster of short flags). mreceive uses plain
//! getopt, so it has short flags only.

use std::{ffi::OsString, path::Path};

/// Which mtools program a command line speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Send,
    Receive,
}

/// What an mtools short flag becomes.
#[derive(Debug, Clone, Copy)]
enum Becomes {
    /// Our long flag, without a value.
    Flag(&'static str),
    /// Our long flag, with the flag's value.
    Value(&'static str),
    /// Nothing (mtools' `-4`: IPv4 is the default).
    Nothing,
    /// `-v`: print the version.
    Version,
}

/// msend's and mreceive's short flags (their getopt strings) and what each becomes.
fn short(tool: Tool, c: char) -> Option<Becomes> {
    use Becomes::*;
    let common = match c {
        '4' => Some(Nothing),
        '6' => Some(Flag("--ipv6")),
        'g' => Some(Value("--group")),
        'h' => Some(Flag("--help")),
        'i' | 'I' => Some(Value("--interface")),
        'n' => Some(Flag("--numbered")),
        'p' => Some(Value("--port")),
        'q' => Some(Flag("--quiet")),
        'v' => Some(Version),
        _ => None,
    };
    common.or(match (tool, c) {
        (Tool::Send, 'c') => Some(Value("--count")),
        (Tool::Send, 'j') => Some(Flag("--join")),
        (Tool::Send, 'P') => Some(Value("--interval")),
        (Tool::Send, 't') => Some(Value("--ttl")),
        (Tool::Send, 'T') => Some(Value("--text")),
        (Tool::Receive, 's') => Some(Value("--source")),
        _ => None,
    })
}

/// Our flags of `send`/`receive` that take a value: their value passes through untouched, even when
/// it starts with a dash (`--text -n`).
const OURS_WITH_VALUE: &[&str] = &[
    "--group",
    "--port",
    "--output",
    "-o",
    "--ttl",
    "--interface",
    "--count",
    "--duration",
    "--interval",
    "--text",
    "--size",
    "--source",
];

/// The help text's note on mtools' spellings, for `multicast send --help`.
pub const SEND_HELP: &str = "msend's flags work too, single-dash long ones included: -g GROUP, -p PORT, -t TTL, \
-text TEXT (-T), -n, -P PERIOD_MS, -i ADDRESS, -I INTERFACE, -c NUM (0 = until Ctrl-C), -join, -q, -4, -6, -v. \
Invoked through a link named msend, this binary is `k8sdoctor multicast send`.";

/// The help text's note on mtools' spellings, for `multicast receive --help`.
pub const RECEIVE_HELP: &str = "mreceive's flags work too: -g GROUP, -p PORT, -i ADDRESS, -I INTERFACE, -n, -q, \
-s SOURCE, -4, -6, -v. Invoked through a link named mreceive, this binary is `k8sdoctor multicast receive`.";

/// Rewrites a command line: `msend ARGS`/`mreceive ARGS` (by the program's file name) become
/// `k8sdoctor multicast send|receive ARGS`, and mtools flags after `multicast send|receive` become
/// ours. Any other command line comes back as it was.
pub fn normalise(argv: Vec<OsString>) -> Vec<OsString> {
    let mut it = argv.into_iter();
    let Some(argv0) = it.next() else {
        return Vec::new();
    };
    let program = Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let (tool, rest): (Tool, Vec<OsString>) = match program {
        "msend" => (Tool::Send, it.collect()),
        "mreceive" => (Tool::Receive, it.collect()),
        _ => {
            let rest: Vec<OsString> = it.collect();
            let sub = |i: usize| rest.get(i).and_then(|a| a.to_str());
            let tool = match (sub(0), sub(1)) {
                (Some("multicast"), Some("send")) => Tool::Send,
                (Some("multicast"), Some("receive")) => Tool::Receive,
                _ => return std::iter::once(argv0).chain(rest).collect(),
            };
            (tool, rest.into_iter().skip(2).collect())
        }
    };
    let sub = match tool {
        Tool::Send => "send",
        Tool::Receive => "receive",
    };
    // Clap names the program after argv[0]; usage and errors then show what really runs.
    let head: Vec<OsString> = ["k8sdoctor", "multicast", sub].map(OsString::from).into();
    match translate(tool, rest) {
        Some(args) => head.into_iter().chain(args).collect(),
        None => vec!["k8sdoctor".into(), "--version".into()],
    }
}

/// Our flag `name` with `value`, as one word so that a value starting with a dash stays a value.
fn with_value(name: &str, value: OsString) -> OsString {
    let mut w = OsString::from(name);
    w.push("=");
    w.push(value);
    w
}

/// Rewrites the arguments after the subcommand; `None` when they ask for the version (`-v`).
fn translate(tool: Tool, args: Vec<OsString>) -> Option<Vec<OsString>> {
    let mut out = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let Some(s) = arg.to_str().map(str::to_string) else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            out.push(arg);
            out.extend(it);
            break;
        }
        if s.starts_with("--") || !s.starts_with('-') || s == "-" {
            let takes = OURS_WITH_VALUE.contains(&s.as_str());
            out.push(arg);
            if takes {
                out.extend(it.next());
            }
            continue;
        }
        let body = &s[1..];
        // getopt_long_only: two or more letters that begin `text` or `join` are that long flag.
        if tool == Tool::Send && body.len() >= 2 {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(OsString::from(v))),
                None => (body, None),
            };
            if "join".starts_with(name) {
                out.push("--join".into());
                continue;
            }
            if "text".starts_with(name) {
                match inline.or_else(|| it.next()) {
                    Some(v) => out.push(with_value("--text", v)),
                    // Clap says the value is missing.
                    None => out.push("--text".into()),
                }
                continue;
            }
        }
        let chars: Vec<char> = body.chars().collect();
        if short(tool, chars[0]).is_none() {
            // Ours (`-o json`, `-c 5`) or unknown: clap decides.
            let takes = OURS_WITH_VALUE.contains(&s.as_str());
            out.push(arg);
            if takes {
                out.extend(it.next());
            }
            continue;
        }
        let mut k = 0;
        while k < chars.len() {
            let Some(b) = short(tool, chars[k]) else {
                // The rest of a cluster that is not mtools': clap reports it.
                out.push(format!("-{}", chars[k..].iter().collect::<String>()).into());
                break;
            };
            match b {
                Becomes::Nothing => {}
                Becomes::Version => return None,
                Becomes::Flag(f) => out.push(f.into()),
                Becomes::Value(f) => {
                    let attached: String = chars[k + 1..].iter().collect();
                    let value = if attached.is_empty() {
                        it.next()
                    } else {
                        Some(attached.into())
                    };
                    match value {
                        // msend -c 0: send until stopped, which is our default.
                        Some(v) if f == "--count" && v == "0" => {}
                        Some(v) => out.push(with_value(f, v)),
                        None => out.push(f.into()),
                    }
                    break;
                }
            }
            k += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalise(args.iter().map(OsString::from).collect())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn msend_by_link_name_with_its_single_dash_long_flags() {
        assert_eq!(
            norm(&[
                "/usr/local/bin/msend",
                "-g",
                "239.1.2.3",
                "-p",
                "5000",
                "-t",
                "4",
                "-text",
                "Hello World!",
                "-join",
                "-n",
                "-P",
                "200"
            ]),
            [
                "k8sdoctor",
                "multicast",
                "send",
                "--group=239.1.2.3",
                "--port=5000",
                "--ttl=4",
                "--text=Hello World!",
                "--join",
                "--numbered",
                "--interval=200"
            ]
        );
        // getopt_long_only: --text and -text alike, abbreviations, `=`, attached short values,
        // clusters, a text that starts with a dash, -c 0 = until stopped, -4 = the default.
        assert_eq!(
            norm(&[
                "msend", "--text", "-x-", "-te=hi", "-t8", "-qn", "-jo", "-c", "0", "-4", "-c3"
            ]),
            [
                "k8sdoctor",
                "multicast",
                "send",
                "--text",
                "-x-",
                "--text=hi",
                "--ttl=8",
                "--quiet",
                "--numbered",
                "--join",
                "--count=3"
            ]
        );
        assert_eq!(norm(&["msend", "-T", "-n"])[3], "--text=-n");
        assert_eq!(norm(&["msend", "-v"]), ["k8sdoctor", "--version"]);
        assert_eq!(norm(&["msend", "-h"])[3], "--help");
    }

    #[test]
    fn mreceive_by_link_name_has_short_flags_only() {
        assert_eq!(
            norm(&[
                "mreceive",
                "-g",
                "224.1.1.1",
                "-I",
                "eth0",
                "-n",
                "-s",
                "10.0.0.1",
                "-q"
            ]),
            [
                "k8sdoctor",
                "multicast",
                "receive",
                "--group=224.1.1.1",
                "--interface=eth0",
                "--numbered",
                "--source=10.0.0.1",
                "--quiet"
            ]
        );
        // No -text or -t for mreceive: clap refuses them, as getopt would.
        assert_eq!(norm(&["mreceive", "-text", "x"])[3..], ["-text", "x"]);
    }

    #[test]
    fn our_own_command_lines_pass_through() {
        let ours = [
            "k8sdoctor",
            "multicast",
            "send",
            "--group",
            "224.1.1.1",
            "--count",
            "5",
            "-o",
            "json",
            "--interval",
            "0",
        ];
        assert_eq!(norm(&ours), ours.map(String::from));
        // Our -c and -i are msend's too, and mean the same.
        assert_eq!(
            norm(&["k8sdoctor", "multicast", "send", "-c", "2", "-i", "lo"])[3..],
            ["--count=2", "--interface=lo"]
        );
        // Translation only after `multicast send|receive`; other commands are left alone.
        let check = ["k8sdoctor", "check", "-n", "-g"];
        assert_eq!(norm(&check), check.map(String::from));
        let probe = ["k8sdoctor", "multicast", "probe", "-g"];
        assert_eq!(norm(&probe), probe.map(String::from));
        assert_eq!(
            norm(&["k8sdoctor", "multicast", "receive", "-p", "9"])[3],
            "--port=9"
        );
        assert!(norm(&[]).is_empty());
    }
}
