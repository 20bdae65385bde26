//! The one source of host data: files read under a root (`/` or `--root DIR`) and commands run with a
//! deadline; each read recorded to, or answered from, the run's [`tape`](super::tape) when it has one.

use std::{
    fs::{File, Metadata},
    io::{self, Read},
    os::{
        fd::OwnedFd,
        unix::{
            ffi::OsStringExt,
            fs::{FileTypeExt, MetadataExt, OpenOptionsExt},
        },
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use pathrs::{Root, flags::OpenFlags};
use serde::{Serialize, de::DeserializeOwned};
use thiserror::Error;

use super::{
    facts::{Fact, FactError},
    tape::{self, Answer, Call, CmdOutput, FileBody, Recorded, Recorder, Replay},
};

/// The largest host file read: configuration is kilobytes, so anything bigger is not what we expect.
pub const MAX_FILE: u64 = 16 << 20;
/// The most names listed from one directory.
const MAX_DIR_ENTRIES: usize = 100_000;

/// Host files as seen from a root directory; `/` means the live host.
///
/// Under any other root every path resolves chroot-like inside it (`openat2(RESOLVE_IN_ROOT)` through
/// `pathrs`, which walks with `O_PATH` on kernels without openat2): absolute symlinks resolve against the
/// root and `..` stops at it, so nothing outside the root is ever opened.
pub use super::tape::{CmdError, FileStat};

#[derive(Debug, Clone)]
pub struct Host {
    /// The root as the operator gave it (for messages).
    root: PathBuf,
    /// The same root, absolute and without symlinks (for journals and comparisons).
    canonical: PathBuf,
    /// The open root every non-live path resolves in; `None` only when `/` itself cannot be opened
    /// (or when a bundle answers every read).
    tree: Option<Arc<Root>>,
    /// `--live-network`: the network state ([`NET_PATHS`]) is read from this process's own `/proc` and `/sys`
    /// (its network namespace: the node's, in a hostNetwork pod), not from under the root.
    live_net: bool,
    tape: Tape,
    /// Within one run ([`Host::for_one_run`]): what each look at the file tree answered, so a path that
    /// several sources (and the role, stage and host block) read is opened once.
    memo: Option<Arc<Memo>>,
}

/// The answers of one run's file-tree calls (reads, listings, links, stats, existence), by call.
type Memo = std::sync::Mutex<std::collections::HashMap<Call, Answer>>;

/// Where the kernel shows the state of the reader's network namespace: under `--live-network` these are read
/// live even under a root (a fixture's or a node's copies would describe another namespace, or none).
pub const NET_PATHS: &[&str] = &[
    "/proc/net/",
    "/proc/self/net/",
    "/proc/sys/net/",
    "/sys/class/net/",
    "/sys/devices/virtual/net/",
];

/// Whether `abs` is network-namespace state (see [`NET_PATHS`]).
fn is_net_path(abs: &str) -> bool {
    NET_PATHS
        .iter()
        .any(|p| abs.starts_with(p) || abs == p.trim_end_matches('/'))
}

/// Whether reads go to the host only, are also recorded, or are answered from a recording.
#[derive(Debug, Clone, Default)]
pub enum Tape {
    #[default]
    Off,
    Record(Arc<Recorder>),
    Replay(Arc<Replay>),
}

#[derive(Debug, Error)]
pub enum HostError {
    #[error("--root {0}: no such directory")]
    NoRoot(String),
    #[error("--root {0}: not a directory")]
    NotDir(String),
    #[error("--root {0}: cannot open it: {1}")]
    Open(String, String),
    #[error(
        "--root {0}: this process has no /proc (mount one where k8sdoctor runs: paths inside the root are resolved safely through it)"
    )]
    NoProc(String),
}

/// Whether this process has a procfs: pathrs resolves inside a root through /proc/thread-self and
/// panics without one (an empty chroot, a container started without /proc).
fn have_proc() -> bool {
    Path::new("/proc/thread-self").exists() || Path::new("/proc/self/fd").exists()
}

/// What the look before a read saw of a file: the kind in words when it is refused, its size, and the
/// owner and mode the tape records.
#[derive(Debug, Clone, Copy)]
struct Look {
    refused: Option<&'static str>,
    len: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    /// `/dev/null` rather than a regular file.
    null_device: bool,
}

/// Looks at an open file or `O_PATH` handle (one `fstat`).
fn inspect(fd: impl std::os::fd::AsFd) -> io::Result<Look> {
    use rustix::fs::FileType as T;
    let st = rustix::fs::fstat(fd)?;
    let null_device = T::from_raw_mode(st.st_mode) == T::CharacterDevice && is_dev_null(st.st_rdev);
    let refused = match T::from_raw_mode(st.st_mode) {
        T::RegularFile => None,
        _ if null_device => None,
        T::Directory => Some("a directory"),
        T::Fifo => Some("a FIFO (named pipe)"),
        T::CharacterDevice => Some("a character device"),
        T::BlockDevice => Some("a block device"),
        T::Socket => Some("a socket"),
        _ => Some("not a regular file"),
    };
    Ok(Look {
        refused,
        len: st.st_size.max(0) as u64,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        null_device,
    })
}

/// `/dev/null` (char 1:3), which reads as an empty file: how files are masked (a bind mount, a unit linked
/// to it), so it is read like one rather than refused as a device.
fn is_dev_null(rdev: u64) -> bool {
    rustix::fs::major(rdev) == 1 && rustix::fs::minor(rdev) == 3
}

/// The same for a path on the live host (`stat`, following links), before anything is opened.
fn look_of(m: &Metadata) -> Look {
    let t = m.file_type();
    let null_device = t.is_char_device() && is_dev_null(m.rdev());
    let refused = if t.is_file() || null_device {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    };
    Look {
        refused,
        len: m.len(),
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        null_device,
    }
}

/// A `pathrs` error as the `io::Error` it carries, so callers can branch on `NotFound`.
pub fn io_error(e: pathrs::error::Error) -> io::Error {
    match e.kind() {
        pathrs::error::ErrorKind::OsError(Some(n)) => io::Error::from_raw_os_error(n),
        _ => io::Error::other(e.to_string()),
    }
}

/// Whether `openat2` works here: 0 not tried yet, 1 yes, 2 no (kernels before 5.6, or a seccomp filter
/// answering ENOSYS), after which pathrs' O_PATH walk resolves every path.
static OPENAT2: AtomicU8 = AtomicU8::new(0);

/// Opens `abs` inside the root with the kernel's own confinement: `openat2(RESOLVE_IN_ROOT |
/// RESOLVE_NO_MAGICLINKS)` on the root opened once, with no verification after the open, since the kernel
/// guarantees the result lies under the root (pathrs' per-open checks through /proc cost five system calls
/// a file). `None` when openat2 is unavailable or kept racing a rename: pathrs does that one.
fn openat2_in(t: &Root, abs: &str, flags: rustix::fs::OFlags) -> Option<io::Result<OwnedFd>> {
    use rustix::{
        fs::{Mode, OFlags, ResolveFlags},
        io::Errno,
    };
    if OPENAT2.load(Ordering::Relaxed) == 2 {
        return None;
    }
    // O_PATH takes no other flags under openat2.
    let flags = if flags.contains(OFlags::PATH) {
        flags | OFlags::CLOEXEC
    } else {
        flags | OFlags::CLOEXEC | OFlags::NOCTTY
    };
    for _ in 0..4 {
        match rustix::fs::openat2(
            t,
            abs,
            flags,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => {
                OPENAT2.store(1, Ordering::Relaxed);
                return Some(Ok(fd));
            }
            // A rename somewhere under the root raced the walk: the kernel asks for a retry.
            Err(Errno::AGAIN) => continue,
            Err(Errno::NOSYS) => {
                OPENAT2.store(2, Ordering::Relaxed);
                return None;
            }
            Err(e) => return Some(Err(e.into())),
        }
    }
    None
}

/// Reads at most [`MAX_FILE`] bytes; more is an error naming the cap. `len` is the size the look gave:
/// a file is read up to that size in one call (as big as it was when looked at, even if it grows since),
/// or to its end when it is shorter (a /sys attribute says a page); one that reports no size (a /proc
/// file) is read to its end.
fn read_capped(f: File, len: u64, abs: &str) -> Result<Vec<u8>, FactError> {
    let unreadable = |e: io::Error| FactError::Unreadable(format!("cannot read {abs}: {e}"));
    let mut f = f;
    let mut bytes = Vec::new();
    if len > 0 && len <= MAX_FILE {
        bytes.reserve_exact(len as usize);
        // `take` ends the read at `len` without asking the kernel again.
        (&mut f)
            .take(len)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
        // It stopped at `len` or at the end (shorter than it said: a /sys attribute says a page).
        return Ok(bytes);
    }
    bytes.reserve(4096);
    f.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(FactError::Unreadable(format!(
            "{abs} is larger than {} MiB; not read",
            MAX_FILE >> 20
        )));
    }
    Ok(bytes)
}

impl Host {
    /// Opens a root; fails when it is not a directory, since every read below would be meaningless.
    pub fn new(root: impl Into<PathBuf>) -> Result<Host, HostError> {
        let root = root.into();
        let shown = || root.display().to_string();
        match std::fs::metadata(&root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(HostError::NotDir(shown())),
            Err(_) => return Err(HostError::NoRoot(shown())),
        }
        let canonical =
            std::fs::canonicalize(&root).map_err(|e| HostError::Open(shown(), e.to_string()))?;
        if !have_proc() {
            return Err(HostError::NoProc(shown()));
        }
        let tree = Root::open(&canonical).map_err(|e| HostError::Open(shown(), e.to_string()))?;
        Ok(Host {
            root,
            canonical,
            tree: Some(Arc::new(tree)),
            live_net: false,
            tape: Tape::Off,
            memo: None,
        })
    }

    /// The same host, every read also recorded (masked) into `rec`.
    pub fn recording(mut self, rec: Arc<Recorder>) -> Host {
        self.tape = Tape::Record(rec);
        self
    }

    /// A host that is a recording: every read answered from `replay`, nothing opened or run. `root`
    /// and `live` are the recorded host's, so the sources take the paths they took when it was recorded.
    pub fn replaying(recorded: &Recorded, replay: Arc<Replay>) -> Host {
        let root = recorded.root.as_str();
        Host {
            root: root.into(),
            canonical: if recorded.live {
                "/".into()
            } else {
                root.into()
            },
            tree: None,
            live_net: recorded.live_network,
            tape: Tape::Replay(replay),
            memo: None,
        }
    }

    /// The same host for one run: each file-tree call (read, listing, link, stat, existence) answered
    /// once and then from memory, since a run judges one state of the tree (commands and probes run
    /// every time). Not under a tape, which records and answers by source. A later run (`fix` verifying
    /// what it wrote) takes a fresh one.
    pub fn for_one_run(&self) -> Host {
        let mut h = self.clone();
        if matches!(h.tape, Tape::Off) {
            h.memo = Some(Arc::default());
        }
        h
    }

    /// The recording this host reads from, when it is one.
    pub fn replay(&self) -> Option<&Replay> {
        match &self.tape {
            Tape::Replay(r) => Some(r),
            _ => None,
        }
    }

    /// One taped read: `here` does it on the host; the answer goes through the tape (recorded masked and
    /// handed back as recorded, or looked up when replaying) and `back` turns it into the result.
    fn taped<R, T>(
        &self,
        call: impl FnOnce() -> Call,
        here: impl FnOnce() -> R,
        to: impl FnOnce(R) -> Answer,
        back: impl FnOnce(Option<&Answer>) -> T,
    ) -> T {
        match &self.tape {
            Tape::Off => match &self.memo {
                Some(memo) => {
                    let call = call();
                    if matches!(call, Call::Run { .. } | Call::Probe { .. }) {
                        return back(Some(&to(here())));
                    }
                    let lock = || memo.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(seen) = lock().get(&call) {
                        return back(Some(seen));
                    }
                    let answer = to(here());
                    let out = back(Some(&answer));
                    lock().insert(call, answer);
                    out
                }
                None => back(Some(&to(here()))),
            },
            Tape::Record(r) => back(Some(&r.record(call(), to(here())))),
            Tape::Replay(r) => back(r.answer(&call())),
        }
    }

    /// Asks the world something that is not a host file or a command (an API, a socket, the resolver)
    /// through the tape: recorded (masked) as `key`, or answered from the recording.
    pub fn probe<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
        f: impl FnOnce() -> T,
    ) -> Fact<T> {
        let back = |a: Option<&Answer>| match a {
            Some(Answer::Value(v)) => T::deserialize(v).map_err(|e| {
                FactError::Unreadable(format!("the bundle's record of {key} does not read: {e}"))
            }),
            _ => Err(tape::absent()),
        };
        let call = || Call::Probe { key: key.into() };
        match &self.tape {
            Tape::Off => Ok(f()),
            Tape::Record(r) => {
                let v = serde_json::to_value(f())
                    .map_err(|e| FactError::Unreadable(format!("cannot record {key}: {e}")))?;
                back(Some(&r.record(call(), Answer::Value(v))))
            }
            Tape::Replay(r) => back(r.answer(&call())),
        }
    }

    /// Runs a command of the host (the live host's PATH), through the tape like every read.
    pub fn run(&self, program: &str, args: &[&str], timeout: Duration) -> Result<String, CmdError> {
        self.taped(
            || Call::Run {
                argv: std::iter::once(program)
                    .chain(args.iter().copied())
                    .map(String::from)
                    .collect(),
            },
            || run_raw(program, args, timeout),
            Answer::Run,
            |a| match a {
                Some(Answer::Run(r)) => r.clone().and_then(|o| finish(program, o)),
                _ => Err(CmdError::NotInBundle(program.to_string())),
            },
        )
    }

    /// The live host (`/`).
    pub fn live() -> Host {
        Host {
            root: "/".into(),
            canonical: "/".into(),
            tree: have_proc()
                .then(|| Root::open("/").ok().map(Arc::new))
                .flatten(),
            live_net: false,
            tape: Tape::Off,
            memo: None,
        }
    }

    /// The same root with the network state read live (`--live-network`): see [`NET_PATHS`].
    pub fn with_live_network(mut self) -> Host {
        self.live_net = true;
        self
    }

    /// Whether the network state (ruleset, links, routes, net sysctls, sockets) is the running one of this
    /// process's network namespace: on the live host, or under a root with `--live-network`.
    pub fn network_is_live(&self) -> bool {
        self.is_live() || self.live_net
    }

    /// Whether this is the running host, so its /proc and commands describe the same machine.
    pub fn is_live(&self) -> bool {
        self.canonical == Path::new("/")
    }

    /// The root as given.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The root, absolute and canonical.
    pub fn canonical(&self) -> &Path {
        &self.canonical
    }

    /// The open root that every path of this host resolves in (also for `/`): what `fix` writes through.
    pub fn tree(&self) -> io::Result<&Root> {
        self.tree
            .as_deref()
            .ok_or_else(|| io::Error::other("cannot open / as the root"))
    }

    /// The non-live tree to resolve `abs` in, or `None` when it is read live (plain paths, as the kernel
    /// resolves them): on the live host, and for network state under `--live-network`.
    fn confined(&self, abs: &str) -> Option<&Root> {
        if self.is_live() || (self.live_net && is_net_path(abs)) {
            None
        } else {
            self.tree.as_deref()
        }
    }

    pub fn exists(&self, abs: &str) -> bool {
        self.taped(
            || Call::Exists { path: abs.into() },
            || match self.confined(abs) {
                Some(t) => match openat2_in(t, abs, rustix::fs::OFlags::PATH) {
                    Some(r) => r.is_ok(),
                    None => t.resolve(abs).is_ok(),
                },
                None => Path::new(abs).exists(),
            },
            Answer::Bool,
            |a| matches!(a, Some(Answer::Bool(true))),
        )
    }

    /// Opens a regular file without blocking: a FIFO, device, socket or directory is refused before it is
    /// opened for reading, and so is one over `cap` bytes. `Ok(None)` when it does not exist.
    ///
    /// The look (an `O_PATH` handle's `fstat`, or `stat` on the live host) is the only one: what the
    /// look refuses is never opened, which is what keeps a device's open from having effects. A file
    /// swapped between the look and the open is opened non-blocking and read capped at the size the
    /// look gave (or [`MAX_FILE`]), so even then nothing blocks and nothing is read without bound.
    fn open_regular(&self, abs: &str, cap: u64) -> Result<Option<(File, Look)>, FactError> {
        let unreadable = |e: io::Error| FactError::Unreadable(format!("cannot read {abs}: {e}"));
        let refuse = |look: Look| -> FactError {
            match look.refused {
                Some(kind) => FactError::Unreadable(format!("{abs} is {kind}; not read")),
                None => FactError::Unreadable(format!(
                    "{abs} is {} bytes, larger than {} MiB; not read",
                    look.len,
                    cap >> 20
                )),
            }
        };
        let fits = |look: &Look| look.refused.is_none() && look.len <= cap;
        let opened: io::Result<Result<(File, Look), Look>> = match self.confined(abs) {
            Some(t) => match openat2_in(t, abs, rustix::fs::OFlags::PATH) {
                Some(handle) => handle.and_then(|handle| {
                    let look = inspect(&handle)?;
                    if !fits(&look) {
                        return Ok(Err(look));
                    }
                    let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK;
                    openat2_in(t, abs, flags)
                        .unwrap_or_else(|| {
                            t.open_subpath(abs, OpenFlags::O_RDONLY | OpenFlags::O_NONBLOCK)
                                .map(OwnedFd::from)
                                .map_err(io_error)
                        })
                        .map(|fd| Ok((File::from(fd), look)))
                }),
                None => t.resolve(abs).map_err(io_error).and_then(|handle| {
                    // Without openat2 (pathrs' O_PATH walk): the open is a second in-root resolution (not a
                    // reopen through /proc, which would make pathrs mount a private procfs), so what it
                    // opened is looked at again.
                    let look = inspect(&handle)?;
                    if !fits(&look) {
                        return Ok(Err(look));
                    }
                    let file = t
                        .open_subpath(abs, OpenFlags::O_RDONLY | OpenFlags::O_NONBLOCK)
                        .map_err(io_error)?;
                    let again = inspect(&file)?;
                    Ok(if fits(&again) {
                        Ok((file, again))
                    } else {
                        Err(again)
                    })
                }),
            },
            None => std::fs::metadata(abs).and_then(|m| {
                let look = look_of(&m);
                if !fits(&look) {
                    return Ok(Err(look));
                }
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                    .open(abs)
                    .map(|f| Ok((f, look)))
            }),
        };
        match opened {
            Ok(Ok(open)) => Ok(Some(open)),
            Ok(Err(look)) => Err(refuse(look)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(unreadable(e)),
        }
    }

    /// Reads a text file; bytes that are not UTF-8 are replaced, so a stray byte never hides a line.
    pub fn read(&self, abs: &str) -> Result<String, FactError> {
        match self.read_opt(abs)? {
            Some(s) => Ok(s),
            None => Err(FactError::Missing(format!("{abs} does not exist"))),
        }
    }

    /// Like [`Host::read`], but a missing file is `Ok(None)` rather than an error.
    pub fn read_opt(&self, abs: &str) -> Result<Option<String>, FactError> {
        Ok(self
            .read_bytes(abs)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// A file's bytes (at most [`MAX_FILE`]), `Ok(None)` when it does not exist.
    pub fn read_bytes(&self, abs: &str) -> Result<Option<Vec<u8>>, FactError> {
        if matches!(self.tape, Tape::Off) && self.memo.is_none() {
            return match self.open_regular(abs, MAX_FILE)? {
                Some((f, look)) => read_capped(f, look.len, abs).map(Some),
                None => Ok(None),
            };
        }
        self.taped(
            || Call::Read { path: abs.into() },
            || self.read_body(abs),
            Answer::File,
            |a| match a {
                Some(Answer::File(r)) => r.clone().map(|b| b.map(|b| b.bytes)),
                _ => Err(tape::absent()),
            },
        )
    }

    /// A file's bytes with its mode, owner and kind, for the tape.
    fn read_body(&self, abs: &str) -> Fact<Option<FileBody>> {
        let Some((f, look)) = self.open_regular(abs, MAX_FILE)? else {
            return Ok(None);
        };
        Ok(Some(FileBody {
            bytes: read_capped(f, look.len, abs)?,
            member: String::new(),
            mode: look.mode,
            uid: look.uid,
            gid: look.gid,
            kind: if look.null_device {
                "null-device"
            } else {
                "file"
            }
            .into(),
        }))
    }

    /// Opens a regular file of any size for streaming (a binary to scan) and gives its size; FIFOs and
    /// devices are refused as by [`Host::read`]. Not taped: a source that scans a file records what it
    /// found with [`Host::probe`], and a replay opens nothing.
    pub fn open_stream(&self, abs: &str) -> Result<Option<(File, u64)>, FactError> {
        if let Tape::Replay(_) = self.tape {
            return Err(FactError::Unreadable(format!(
                "{abs}: {}",
                tape::NOT_IN_BUNDLE
            )));
        }
        Ok(self
            .open_regular(abs, u64::MAX)?
            .map(|(f, look)| (f, look.len)))
    }

    /// Where a symbolic link points, or `None` when the path is not a link.
    pub fn link_target(&self, abs: &str) -> Option<PathBuf> {
        self.taped(
            || Call::Link { path: abs.into() },
            || self.link_here(abs),
            |p| Answer::Link(p.map(|p| p.to_string_lossy().into_owned())),
            |a| match a {
                Some(Answer::Link(Some(p))) => Some(PathBuf::from(p)),
                _ => None,
            },
        )
    }

    fn link_here(&self, abs: &str) -> Option<PathBuf> {
        let Some(t) = self.confined(abs) else {
            return std::fs::read_link(abs).ok();
        };
        // The parent resolved in the root, the link itself read (not followed) from it.
        let (parent, name) = abs.rsplit_once('/')?;
        if name.is_empty() || name == "." || name == ".." {
            return t.readlink(abs).ok();
        }
        let parent = if parent.is_empty() { "/" } else { parent };
        let flags = rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY;
        match openat2_in(t, parent, flags) {
            Some(dir) => {
                let target = rustix::fs::readlinkat(&dir.ok()?, name, Vec::new()).ok()?;
                Some(PathBuf::from(std::ffi::OsString::from_vec(
                    target.into_bytes(),
                )))
            }
            None => t.readlink(abs).ok(),
        }
    }

    /// File names in a directory, sorted; a missing directory is empty.
    pub fn list_dir(&self, abs: &str) -> Result<Vec<String>, FactError> {
        self.taped(
            || Call::List { path: abs.into() },
            || self.list_here(abs),
            Answer::List,
            |a| match a {
                Some(Answer::List(r)) => r.clone(),
                _ => Err(tape::absent()),
            },
        )
    }

    fn list_here(&self, abs: &str) -> Result<Vec<String>, FactError> {
        let unlistable = |e: io::Error| FactError::Unreadable(format!("cannot list {abs}: {e}"));
        let mut names = Vec::new();
        let mut push = |name: String| -> Result<(), FactError> {
            if names.len() >= MAX_DIR_ENTRIES {
                return Err(FactError::Unreadable(format!(
                    "{abs} holds more than {MAX_DIR_ENTRIES} entries; not listed"
                )));
            }
            names.push(name);
            Ok(())
        };
        match self.confined(abs) {
            Some(t) => {
                let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY;
                let dir = match openat2_in(t, abs, flags).unwrap_or_else(|| {
                    t.open_subpath(abs, OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY)
                        .map(OwnedFd::from)
                        .map_err(io_error)
                }) {
                    Ok(d) => d,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(unlistable(e)),
                };
                let entries = rustix::fs::Dir::read_from(&dir).map_err(|e| unlistable(e.into()))?;
                for e in entries {
                    let e = e.map_err(|e| unlistable(e.into()))?;
                    let name = e.file_name().to_string_lossy();
                    if name != "." && name != ".." {
                        push(name.into_owned())?;
                    }
                }
            }
            None => match std::fs::read_dir(abs) {
                Ok(rd) => {
                    for e in rd.filter_map(|e| e.ok()) {
                        push(e.file_name().to_string_lossy().into_owned())?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(unlistable(e)),
            },
        }
        names.sort();
        Ok(names)
    }
}

impl Host {
    /// Owner, mode and kind of a file (links followed); a missing file is `Ok(None)`.
    pub fn stat(&self, abs: &str) -> Result<Option<FileStat>, FactError> {
        self.taped(
            || Call::Stat { path: abs.into() },
            || self.stat_here(abs),
            Answer::Stat,
            |a| match a {
                Some(Answer::Stat(r)) => r.clone(),
                _ => Err(tape::absent()),
            },
        )
    }

    fn stat_here(&self, abs: &str) -> Result<Option<FileStat>, FactError> {
        use rustix::fs::FileType as T;
        let st = match self.confined(abs) {
            // Resolved inside the root like every other read; the O_PATH handle is only fstat-ed.
            Some(t) => openat2_in(t, abs, rustix::fs::OFlags::PATH)
                .unwrap_or_else(|| t.resolve(abs).map(OwnedFd::from).map_err(io_error))
                .and_then(|h| rustix::fs::fstat(&h).map_err(io::Error::from)),
            None => rustix::fs::stat(abs).map_err(io::Error::from),
        };
        match st {
            Ok(st) => Ok(Some(FileStat {
                uid: st.st_uid,
                gid: st.st_gid,
                mode: st.st_mode & 0o7777,
                is_file: T::from_raw_mode(st.st_mode) == T::RegularFile,
                is_dir: T::from_raw_mode(st.st_mode) == T::Directory,
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FactError::Unreadable(format!("cannot stat {abs}: {e}"))),
        }
    }
}

/// Whether a tool's complaint means it lacked privilege (iptables-save, nft, ss ... say it in
/// their own words).
fn refused_for_privilege(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    [
        "permission denied",
        "operation not permitted",
        "must be root",
        "you must be root",
    ]
    .iter()
    .any(|p| s.contains(p))
}

impl From<CmdError> for FactError {
    fn from(e: CmdError) -> Self {
        match e {
            CmdError::NotFound(_) => FactError::Missing(e.to_string()),
            CmdError::NotInBundle(_) => tape::absent(),
            _ => FactError::Unreadable(e.to_string()),
        }
    }
}

/// Runs a command with no stdin and returns its stdout; the child is killed at the deadline.
/// (Sources run commands through [`Host::run`], which records and replays them.)
pub fn run_command(program: &str, args: &[&str], timeout: Duration) -> Result<String, CmdError> {
    run_raw(program, args, timeout).and_then(|o| finish(program, o))
}

/// A command's exit code, stdout and stderr; an error only when it did not run or finish in time.
fn run_raw(program: &str, args: &[&str], timeout: Duration) -> Result<CmdOutput, CmdError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            // Stdio::null() opens /dev/null first: without one (a bare chroot) that ENOENT is not the tool's.
            if e.kind() == io::ErrorKind::NotFound && !Path::new("/dev/null").exists() {
                CmdError::Spawn(
                    program.to_string(),
                    "there is no /dev/null to give it".into(),
                )
            } else if e.kind() == io::ErrorKind::NotFound {
                CmdError::NotFound(program.to_string())
            } else {
                CmdError::Spawn(program.to_string(), e.to_string())
            }
        })?;
    let over = Arc::new(AtomicBool::new(false));
    let out = drain(child.stdout.take().expect("piped stdout"), &over);
    let err = drain(child.stderr.take().expect("piped stderr"), &over);
    let deadline = Instant::now() + timeout;
    let kill = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if over.load(Ordering::Relaxed) => {
                kill(&mut child);
                return Err(CmdError::TooLarge(program.to_string(), MAX_FILE >> 20));
            }
            Ok(None) if Instant::now() >= deadline => {
                kill(&mut child);
                return Err(CmdError::Timeout(program.to_string(), timeout));
            }
            Ok(None) => thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(CmdError::Spawn(program.to_string(), e.to_string())),
        }
    };
    // A process the command left behind may hold its pipes open: wait for them only until the deadline.
    let collect = |rx: mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| CmdError::Timeout(program.to_string(), timeout))
    };
    let (stdout, stderr) = (collect(out)?, collect(err)?);
    if over.load(Ordering::Relaxed) {
        return Err(CmdError::TooLarge(program.to_string(), MAX_FILE >> 20));
    }
    Ok(CmdOutput {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// Reads a command's stream on a thread of its own, at most [`MAX_FILE`] bytes: past that it stops
/// reading and raises `over`, so the command is killed instead of filling memory.
fn drain(stream: impl Read + Send + 'static, over: &Arc<AtomicBool>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::sync_channel(1);
    let over = over.clone();
    thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stream.take(MAX_FILE + 1).read_to_end(&mut b);
        if b.len() as u64 > MAX_FILE {
            over.store(true, Ordering::Relaxed);
        }
        let _ = tx.send(b);
    });
    rx
}

/// A command's stdout when it succeeded, else why not (in our words when it lacked privilege).
fn finish(program: &str, out: CmdOutput) -> Result<String, CmdError> {
    if out.code != Some(0) {
        let stderr = out.stderr.trim().to_string();
        if refused_for_privilege(&stderr) {
            return Err(CmdError::NeedsRoot {
                program: program.to_string(),
                said: stderr,
            });
        }
        return Err(CmdError::Failed {
            program: program.to_string(),
            code: out
                .code
                .map_or_else(|| "a signal".to_string(), |c| c.to_string()),
            stderr,
        });
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tool refused for lack of privilege is told apart from one that failed, in our words.
    #[test]
    fn a_tool_refused_for_privilege_says_run_as_root() {
        let e = run_command(
            "sh",
            &["-c", "echo 'iptables-save v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)' >&2; exit 4"],
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(matches!(e, CmdError::NeedsRoot { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.starts_with("sh was refused access (iptables-save"),
            "{text}"
        );
        assert!(text.contains("run k8sdoctor as root"), "{text}");
        let other = run_command(
            "sh",
            &["-c", "echo 'no such table' >&2; exit 1"],
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(matches!(other, CmdError::Failed { .. }), "{other:?}");
    }

    #[test]
    fn reads_under_root_and_reports_missing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/hostname"), b"node\xff1\n").unwrap();
        let h = Host::new(dir.path()).unwrap();
        assert_eq!(h.read("/etc/hostname").unwrap(), "node\u{fffd}1\n");
        assert!(matches!(h.read("/etc/nope"), Err(FactError::Missing(_))));
        assert_eq!(h.read_opt("/etc/nope").unwrap(), None);
        // A directory where a file is expected cannot be read: an error, not a skip.
        assert!(matches!(h.read("/etc"), Err(FactError::Unreadable(_))));
        assert!(!h.is_live());
    }

    #[test]
    fn live_reads_refuse_fifos_devices_and_huge_files_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let big = dir.path().join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_FILE + 1)
            .unwrap();
        let live = Host::live();
        let err = |p: &Path| live.read(p.to_str().unwrap()).unwrap_err().to_string();
        assert!(err(&fifo).contains("is a FIFO"), "{}", err(&fifo));
        assert!(err(Path::new("/dev/zero")).contains("character device"));
        // /dev/null masks files: it reads as empty.
        assert_eq!(live.read("/dev/null").unwrap(), "");
        assert!(err(&big).contains("larger than 16 MiB"));
        assert!(err(dir.path()).contains("directory"));
        // /proc pseudo-files report size 0 and still read.
        assert!(live.read("/proc/self/status").unwrap().contains("Pid:"));
        assert!(!live.read("/proc/sys/kernel/osrelease").unwrap().is_empty());
        // The same under a root: the FIFO is refused before it is opened.
        let h = Host::new(dir.path()).unwrap();
        assert!(h.read("/fifo").unwrap_err().to_string().contains("FIFO"));
        assert!(
            h.read("/big")
                .unwrap_err()
                .to_string()
                .contains("bytes, larger")
        );
    }

    #[test]
    fn a_root_resolves_links_and_dotdot_inside_itself() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("r");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::write(top.path().join("secret"), "outside\n").unwrap();
        std::fs::write(root.join("secret"), "inside\n").unwrap();
        std::fs::write(root.join("real/a"), "a\n").unwrap();
        std::os::unix::fs::symlink("/secret", root.join("etc/abs")).unwrap();
        std::os::unix::fs::symlink("../../secret", root.join("etc/rel")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("etc/dir")).unwrap();
        std::os::unix::fs::symlink("/etc/loop", root.join("etc/loop")).unwrap();
        let h = Host::new(root.join("etc/..")).unwrap();
        assert_eq!(h.canonical(), std::fs::canonicalize(&root).unwrap());
        for p in [
            "/etc/abs",
            "/etc/rel",
            "/../../secret",
            "/etc/../../../secret",
        ] {
            assert_eq!(h.read(p).unwrap(), "inside\n", "{p}");
        }
        assert_eq!(h.list_dir("/etc/dir").unwrap(), vec!["a"]);
        assert!(h.exists("/etc/dir/a"));
        assert_eq!(h.link_target("/etc/abs"), Some(PathBuf::from("/secret")));
        assert!(matches!(h.read("/etc/loop"), Err(FactError::Unreadable(_))));
        assert!(Host::new("/").unwrap().is_live());
    }

    #[test]
    fn one_run_looks_at_each_path_once_and_runs_commands_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "first\n").unwrap();
        let host = Host::new(dir.path()).unwrap();
        let run = host.for_one_run();
        assert_eq!(run.read("/f").unwrap(), "first\n");
        assert!(!run.exists("/later"));
        std::fs::write(&file, "second, longer\n").unwrap();
        std::fs::write(dir.path().join("later"), "").unwrap();
        // The run judges the tree as it first saw it; the host itself, and a later run, see it now.
        assert_eq!(run.read("/f").unwrap(), "first\n");
        assert!(!run.exists("/later"));
        assert_eq!(host.read("/f").unwrap(), "second, longer\n");
        let next = host.for_one_run();
        assert_eq!(next.read("/f").unwrap(), "second, longer\n");
        assert!(next.exists("/later"));
        // Commands are not remembered.
        let counter = dir.path().join("count");
        let script = format!("echo x >> {0}; wc -l < {0}", counter.display());
        let once = run
            .run("sh", &["-c", &script], Duration::from_secs(5))
            .unwrap();
        let twice = run
            .run("sh", &["-c", &script], Duration::from_secs(5))
            .unwrap();
        assert_eq!((once.trim(), twice.trim()), ("1", "2"));
    }

    #[test]
    fn rejects_a_missing_root() {
        let e = Host::new("/nonexistent/root").unwrap_err();
        assert!(e.to_string().contains("no such directory"));
    }

    #[test]
    fn commands_report_missing_failure_and_timeout() {
        assert!(matches!(
            run_command("k8sdoctor-no-such-tool", &[], Duration::from_secs(1)),
            Err(CmdError::NotFound(_))
        ));
        assert_eq!(
            run_command("sh", &["-c", "echo hi"], Duration::from_secs(5)).unwrap(),
            "hi\n"
        );
        assert!(matches!(
            run_command("sh", &["-c", "echo boom >&2; exit 3"], Duration::from_secs(5)),
            Err(CmdError::Failed { ref code, ref stderr, .. }) if code == "3" && stderr == "boom"
        ));
        let t = Instant::now();
        assert!(matches!(
            run_command("sleep", &["5"], Duration::from_millis(200)),
            Err(CmdError::Timeout(..))
        ));
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    /// Endless output is cut at the cap and the command killed; a process the command leaves behind
    /// holding its stdout open does not keep the caller waiting past the deadline.
    #[test]
    fn endless_output_and_a_lingering_child_are_bounded() {
        assert!(matches!(
            run_command("sh", &["-c", "exec yes"], Duration::from_secs(20)),
            Err(CmdError::TooLarge(ref p, 16)) if p == "sh"
        ));
        let t = Instant::now();
        let r = run_command(
            "sh",
            &["-c", "sleep 3 & echo started"],
            Duration::from_millis(500),
        );
        assert!(matches!(r, Err(CmdError::Timeout(..))), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}
