//! Sources: each one typed input (the kubelet config, `/proc/swaps`, the firewall rules, the Kubernetes
//! API ...) with the function that gathers it and the kind of I/O it does; and [`Facts`], the gathered
//! values that checks read by source (`facts.get(&SWAP)?`).

use std::{
    any::Any,
    cell::RefCell,
    collections::BTreeMap,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
    time::Instant,
};

use super::{
    config::Config,
    facts::{Fact, FactError},
    host::Host,
};

/// What a source's gathering does, which decides the thread it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Io {
    /// Reads local files only: all such sources are read on the engine's own thread, since a thread
    /// costs more than reading the files (and a file read never blocks).
    Files,
    /// Runs commands: a thread of its own, so one that hangs cannot hold the others past the deadline.
    Command,
    /// Talks to the network: a thread of its own, for the same reason.
    Network,
}

/// When a command or network source really runs commands or talks to the network; otherwise it only
/// reads files (under `--root`, or with `--offline`) and shares the file worker rather than a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Always,
    /// Only on the live host.
    LiveHost,
    /// Only without `--offline`.
    Online,
    /// Only on the live host without `--offline`.
    LiveOnline,
}

/// One typed input: its unique name, its kind of I/O, and the function that gathers it.
pub struct Source<T> {
    pub name: &'static str,
    pub io: Io,
    pub reach: Reach,
    pub gather: fn(&Gather) -> Fact<T>,
}

impl<T> Source<T> {
    pub const fn files(name: &'static str, gather: fn(&Gather) -> Fact<T>) -> Self {
        Source {
            name,
            io: Io::Files,
            reach: Reach::Always,
            gather,
        }
    }
    pub const fn command(name: &'static str, gather: fn(&Gather) -> Fact<T>) -> Self {
        Source {
            name,
            io: Io::Command,
            reach: Reach::Always,
            gather,
        }
    }
    pub const fn network(name: &'static str, gather: fn(&Gather) -> Fact<T>) -> Self {
        Source {
            name,
            io: Io::Network,
            reach: Reach::Always,
            gather,
        }
    }
    /// Says when this command or network source does more than read files.
    pub const fn reaching(mut self, reach: Reach) -> Self {
        self.reach = reach;
        self
    }
}

/// A gathered value with its type erased; [`Facts::get`] gives it back typed.
pub type Value = Arc<dyn Any + Send + Sync>;

/// A source whatever its type, as a check's `needs` lists it.
pub trait AnySource: Sync {
    fn name(&self) -> &'static str;
    fn io(&self) -> Io;
    fn reach(&self) -> Reach;
    /// The I/O it does in this run: a command or network source that will only read files here (or a
    /// replay, which reads nothing) is `Files`, so no thread is spent on it.
    fn io_here(&self, host: &Host, cfg: &Config) -> Io {
        let live = host.is_live() && host.replay().is_none();
        let reaches = match self.reach() {
            Reach::Always => host.replay().is_none(),
            Reach::LiveHost => live,
            Reach::Online => host.replay().is_none() && !cfg.offline,
            Reach::LiveOnline => live && !cfg.offline,
        };
        if reaches { self.io() } else { Io::Files }
    }
    fn gather_value(&self, g: &Gather) -> Fact<Value>;
    /// The address of the gather function: tells apart two sources that share a name (a bug the
    /// registry's test catches).
    fn gather_addr(&self) -> usize;
}

impl<T: Any + Send + Sync> AnySource for Source<T> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn io(&self) -> Io {
        self.io
    }
    fn reach(&self) -> Reach {
        self.reach
    }
    fn gather_value(&self, g: &Gather) -> Fact<Value> {
        (self.gather)(g).map(|v| Arc::new(v) as Value)
    }
    fn gather_addr(&self) -> usize {
        self.gather as usize
    }
}

fn downcast<'a, T: Any>(name: &str, v: &'a Value) -> &'a T {
    v.downcast_ref::<T>()
        .unwrap_or_else(|| panic!("source {name} holds another type (two sources share the name)"))
}

/// Everything gathered for a run, by source. A source no selected check needs is never gathered and
/// reads as `Missing("not gathered")`.
#[derive(Default, Clone)]
pub struct Facts {
    values: BTreeMap<&'static str, Fact<Value>>,
}

impl Facts {
    /// A source's value for a check: `?` turns a failed source into the check's `skip` or `error`.
    pub fn get<T: Any>(&self, source: &Source<T>) -> Result<&T, FactError> {
        match self.values.get(source.name) {
            None => Err(FactError::Missing("not gathered".into())),
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(v)) => Ok(downcast(source.name, v)),
        }
    }

    /// Sets a source's value (the engine, and tests building facts by hand).
    pub fn set<T: Any + Send + Sync>(&mut self, source: &Source<T>, value: Fact<T>) {
        self.values
            .insert(source.name, value.map(|v| Arc::new(v) as Value));
    }

    /// [`Facts::set`] for building facts in one expression.
    pub fn with<T: Any + Send + Sync>(mut self, source: &Source<T>, value: Fact<T>) -> Self {
        self.set(source, value);
        self
    }

    /// A source's value to change in place (tests adjusting facts they built); `None` unless it is
    /// set, gathered fine and not shared.
    pub fn get_mut<T: Any>(&mut self, source: &Source<T>) -> Option<&mut T> {
        match self.values.get_mut(source.name)? {
            Ok(v) => Arc::get_mut(v)?.downcast_mut::<T>(),
            Err(_) => None,
        }
    }

    /// The sources gathered, by name.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.values.keys().copied()
    }

    pub(crate) fn insert(&mut self, name: &'static str, value: Fact<Value>) {
        self.values.insert(name, value);
    }
}

impl std::fmt::Debug for Facts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.values
                    .iter()
                    .map(|(k, v)| (k, v.as_ref().map(|_| "gathered"))),
            )
            .finish()
    }
}

/// One source gathered: its value and how long it took.
#[derive(Clone)]
pub struct Gathered {
    pub name: &'static str,
    pub value: Fact<Value>,
    pub ms: u64,
}

/// What a gather function may use: the host, the run's config, and the other sources it builds on
/// (each gathered once per worker, then shared: the DNS and swap sources read one parsed kubelet config).
pub struct Gather<'a> {
    pub host: &'a Host,
    pub cfg: &'a Config,
    done: RefCell<Vec<Gathered>>,
}

impl<'a> Gather<'a> {
    pub fn new(host: &'a Host, cfg: &'a Config) -> Self {
        Gather {
            host,
            cfg,
            done: RefCell::new(Vec::new()),
        }
    }

    /// Another source's value, gathered now unless this worker already has it. It runs on this
    /// source's thread, so a file source builds only on file sources.
    pub fn get<T: Any + Send + Sync>(&self, source: &Source<T>) -> Result<Arc<T>, FactError> {
        self.value(source)?.downcast::<T>().map_err(|_| {
            panic!(
                "source {} holds another type (two sources share the name)",
                source.name
            )
        })
    }

    /// Gathers a source (once); a panic in its gather function becomes `Unreadable`.
    pub fn value(&self, source: &dyn AnySource) -> Fact<Value> {
        let name = source.name();
        let hit = self
            .done
            .borrow()
            .iter()
            .find(|g| g.name == name)
            .map(|g| g.value.clone());
        if let Some(v) = hit {
            return v;
        }
        let t = Instant::now();
        let value = match self.host.replay() {
            // A source the recording did not gather (one added since) has nothing to read.
            Some(r) if !r.has_source(name) => Err(super::tape::absent()),
            _ => super::tape::in_source(name, || {
                catch_unwind(AssertUnwindSafe(|| source.gather_value(self))).unwrap_or_else(|p| {
                    Err(FactError::Unreadable(format!(
                        "gathering panicked: {}",
                        panic_text(&*p)
                    )))
                })
            }),
        };
        self.done.borrow_mut().push(Gathered {
            name,
            value: value.clone(),
            ms: t.elapsed().as_millis() as u64,
        });
        value
    }

    /// The sources gathered since the first `from` (their order is the order they finished).
    pub fn gathered_since(&self, from: usize) -> Vec<Gathered> {
        self.done.borrow()[from..].to_vec()
    }
}

/// The message of a caught panic.
pub fn panic_text(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
