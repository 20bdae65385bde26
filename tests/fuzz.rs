//! The fuzz targets of `k8sdoctor::fuzz_targets`, on stable: each is fed its seeds (fixtures and
//! `fuzz/seeds/NAME/`), every kept regression input (`fuzz/regressions/NAME/`), and a seeded
//! mutation loop of a bounded number of inputs (`K8SDOCTOR_FUZZ_ITERS`, default 300 per target).
//! No input may panic or take longer than the per-input bound. cargo-fuzz runs the same targets
//! without bounds on nightly (`fuzz/`).

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use k8sdoctor::fuzz_targets::{TARGETS, Target};

/// Longest one input may take (a debug build; a parser that hangs or goes quadratic exceeds it).
const PER_INPUT: Duration = Duration::from_secs(2);
/// Largest mutated input.
const MAX_LEN: usize = 32 << 10;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Files matching `pattern` (relative to the repository; `*` within one path component).
fn expand(base: &Path, pattern: &str) -> Vec<PathBuf> {
    let Some((first, rest)) = pattern.split_once('/').map_or(Some((pattern, "")), Some) else {
        return vec![];
    };
    let matches: Vec<PathBuf> = match first.split_once('*') {
        None => vec![base.join(first)],
        Some((pre, post)) => {
            let mut v: Vec<PathBuf> = std::fs::read_dir(base)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(pre) && n.ends_with(post))
                })
                .collect();
            v.sort();
            v
        }
    };
    if rest.is_empty() {
        matches.into_iter().filter(|p| p.is_file()).collect()
    } else {
        matches.iter().flat_map(|m| expand(m, rest)).collect()
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// A kept input and the file it came from.
type Kept = (PathBuf, Vec<u8>);

/// Seeds (regressions included) and the regression inputs of a target.
fn inputs(t: &Target) -> (Vec<Vec<u8>>, Vec<Kept>) {
    let root = repo();
    let mut seeds: Vec<Vec<u8>> = t
        .seeds
        .iter()
        .flat_map(|p| expand(&root, p))
        .chain(files_in(&root.join("fuzz/seeds").join(t.name)))
        .map(|p| std::fs::read(&p).unwrap())
        .collect();
    let regressions: Vec<Kept> = files_in(&root.join("fuzz/regressions").join(t.name))
        .into_iter()
        .map(|p| {
            let d = std::fs::read(&p).unwrap();
            (p, d)
        })
        .collect();
    seeds.extend(regressions.iter().map(|(_, d)| d.clone()));
    (seeds, regressions)
}

/// xorshift64*: the same inputs on every run for one seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Fragments that parsers branch on.
const INTERESTING: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"\0",
    b" ",
    b"\t",
    b"#",
    b"-",
    b"--",
    b"=",
    b":",
    b"::",
    b".",
    b"/",
    b"\\",
    b"'",
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b"*",
    b"&a",
    b"*a",
    b"!!binary ",
    b"---\n",
    b"\xc3\xa9",
    b"\xef\xbb\xbf",
    b"\xff",
    b"99999999999999999999",
    b"-1",
    b"0x",
    b"-2147483649",
    b"NaN",
    b"1e999",
    b"nameserver ",
    b"search ",
    b"options ndots:99999",
    b"swap",
    b"Filename",
    b"partition",
    b"table ",
    b"chain ",
    b"-A ",
    b"-j ",
    b"COMMIT\n",
    b"*filter\n",
    b":INPUT ACCEPT [0:0]\n",
    b"--dport ",
    b"{\"nftables\":[",
    b"ip saddr ",
    b"Content-Length: 99999999999\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"\r\n\r\n",
    b"ffffffff",
    b"K8MC\x01",
    b"--token ",
    b"--discovery-token-ca-cert-hash ",
    b"kubeadm join ",
    b"-v",
    b"\\\n",
    b"sha256:",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds
        .get(rng.below(seeds.len()))
        .cloned()
        .unwrap_or_default();
    for _ in 0..1 + rng.below(6) {
        let len = v.len();
        let at = rng.below(len + 1);
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            2 => {
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let end = (at + 1 + rng.below(64)).min(len);
                v.drain(at.min(end)..end);
            }
            4 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(256)).min(len);
                let chunk = v[start..end].repeat(1 + rng.below(16));
                v.splice(at..at, chunk);
            }
            5 | 6 => {
                let tok = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(at..at, tok.iter().copied());
            }
            7 if !seeds.is_empty() => {
                let other = &seeds[rng.below(seeds.len())];
                let start = rng.below(other.len() + 1);
                let end = (start + rng.below(512)).min(other.len());
                v.splice(at..at, other[start..end].iter().copied());
            }
            8 => v.truncate(at),
            _ => {}
        }
    }
    v.truncate(MAX_LEN);
    v
}

/// Runs one input: no panic, within the time bound; a failing input is saved for fuzz/regressions.
fn exercise(t: &Target, input: &[u8], origin: &str) {
    let started = Instant::now();
    let r = catch_unwind(AssertUnwindSafe(|| (t.run)(input)));
    let took = started.elapsed();
    if r.is_err() || took > PER_INPUT {
        let dir = repo().join("target/fuzz-failures");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}-{}", t.name, origin.replace('/', "_")));
        std::fs::write(&path, input).unwrap();
        panic!(
            "fuzz target {} {} on {origin} ({took:?}); input saved to {} (keep it in fuzz/regressions/{}/)",
            t.name,
            if r.is_err() {
                "panicked"
            } else {
                "exceeded the per-input bound"
            },
            path.display(),
            t.name
        );
    }
}

#[test]
fn every_fuzz_target_survives_its_seeds_regressions_and_mutations() {
    let iters: usize = std::env::var("K8SDOCTOR_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    for t in TARGETS {
        let (seeds, regressions) = inputs(t);
        assert!(
            !seeds.is_empty(),
            "fuzz target {} has no seed input",
            t.name
        );
        for (path, data) in &regressions {
            exercise(t, data, &path.display().to_string());
        }
        for (i, s) in seeds.iter().enumerate() {
            exercise(t, s, &format!("seed {i}"));
        }
        // One fixed seed per target: a failure reproduces with the same iteration number.
        let mut rng =
            Rng(0x9e37_79b9_7f4a_7c15 ^ t.name.len() as u64 ^ (t.name.as_bytes()[0] as u64) << 32);
        for i in 0..iters {
            let input = mutate(&mut rng, &seeds);
            exercise(t, &input, &format!("mutation {i}"));
        }
    }
}

/// Each target has its cargo-fuzz entry, and fuzz/ lists it: the two stay one list.
#[test]
fn fuzz_dir_has_an_entry_for_every_target() {
    let manifest = std::fs::read_to_string(repo().join("fuzz/Cargo.toml")).unwrap();
    for t in TARGETS {
        let src = repo().join(format!("fuzz/fuzz_targets/{}.rs", t.name));
        let text =
            std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        assert!(
            text.contains(&format!("target(\"{}\")", t.name)),
            "{}",
            src.display()
        );
        assert!(
            manifest.contains(&format!("name = \"{}\"", t.name)),
            "fuzz/Cargo.toml lacks {}",
            t.name
        );
    }
    let entries = files_in(&repo().join("fuzz/fuzz_targets")).len();
    assert_eq!(
        entries,
        TARGETS.len(),
        "fuzz/fuzz_targets has entries for no target"
    );
}

/// Regression: `/proc/swaps` of random bytes is reported as not the swap table, not as devices.
#[test]
fn random_proc_swaps_is_not_counted() {
    let data = std::fs::read(repo().join("fuzz/regressions/swaps/random-bytes")).unwrap();
    assert!(k8sdoctor::checks::swap::parse_proc_swaps(&String::from_utf8_lossy(&data)).is_err());
}
