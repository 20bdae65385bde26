//! The binary: parses the command line ([`cli`]), runs the command, and maps the outcome to an exit code.

mod cli;

use std::{
    fs::File,
    io::{self, BufRead, IsTerminal, Write},
    process::ExitCode,
};

use anyhow::{Context, Result, bail};
use k8sdoctor::{
    core::{self, catalog, config::Config, engine},
    fix::{self, FixFormat, FixReport},
    fleet, join, list,
    mask::{MaskedWriter, mask_secrets},
    multicast, report,
};

use cli::{Cli, Command};

// --- multicast node-firewall (issue 21) ---
/// `multicast node-firewall`: the senders (from the ConfigMap in a fleet pod), one read of this
/// namespace's live ruleset, the result (compact in the termination message too). Exit 1 when a
/// rule drops some sender's traffic, 2 when the rules could not be read.
fn node_firewall(o: cli::McNodeFw, out: &mut dyn Write) -> Result<ExitCode> {
    let peers = match &o.peers_from_configmap {
        Some(name) => fleet::peers_from_configmap(name, o.wait)?,
        None => o.peers,
    };
    let v6 = o.ipv6 || peers.first().is_some_and(std::net::IpAddr::is_ipv6);
    let group = o.group.unwrap_or(multicast::default_group(v6));
    let path = if o.input {
        k8sdoctor::checks::firewall::eval::Hook::Input
    } else {
        k8sdoctor::checks::firewall::eval::Hook::Forward
    };
    let fw = multicast::nodefw::observe(&peers, group, o.port, path, o.timeout);
    if let Some(p) = &o.termination_log {
        std::fs::write(p, fw.compact())
            .with_context(|| format!("cannot write --termination-log {}", p.display()))?;
    }
    match o.format {
        multicast::Format::Json => {
            serde_json::to_writer(&mut *out, &fw)?;
            writeln!(out)?;
        }
        multicast::Format::Table => fw.render(out)?,
    }
    Ok(match (&fw.error, fw.blocks()) {
        (Some(_), _) => ExitCode::from(2),
        (None, true) => ExitCode::from(1),
        (None, false) => ExitCode::SUCCESS,
    })
}
// --- end multicast node-firewall ---

/// Writes the report where the config says and maps it to the exit code (`check` and `join-check`).
fn emit(report: &report::Report, cfg: &Config) -> Result<ExitCode> {
    emit_framed(report, None, cfg)
}

/// [`emit`], then a bundle framed for a pod log (`check --bundle -`) on stdout.
fn emit_framed(report: &report::Report, framed: Option<&str>, cfg: &Config) -> Result<ExitCode> {
    if let Some(path) = &cfg.termination_log {
        std::fs::write(path, fleet::compact_report(report))
            .with_context(|| format!("cannot write --termination-log {}", path.display()))?;
    }
    match &cfg.output_file {
        Some(path) => {
            let f = File::create(path)
                .with_context(|| format!("cannot write --output-file {}", path.display()))?;
            let mut f = MaskedWriter::new(f);
            report.render_with(cfg.format, false, cfg.show_skipped, &mut f)?;
            f.flush()?;
            eprintln!("k8sdoctor: {} → {}", report.summary, path.display());
        }
        None => {
            // One write of the whole report, not a syscall per line.
            let mut out = Vec::new();
            report.render_with(cfg.format, cfg.color, cfg.show_skipped, &mut out)?;
            let mut stdout = MaskedWriter::new(io::stdout().lock());
            stdout.write_all(&out)?;
            stdout.flush()?;
        }
    }
    if let Some(text) = framed {
        // Base64 of a masked bundle: nothing for the masking layer to find, and it must stay whole.
        let mut stdout = io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
    }
    Ok(exit(!engine::fails(report, cfg.fail_on)))
}

/// Runs a fleet check or replay: the JSON document streams to the output as nodes arrive, the
/// other formats render from the matrix at the end.
fn fleet_out(
    cfg: &Config,
    stdout: &mut dyn Write,
    bundle: Option<std::path::PathBuf>,
    run: impl FnOnce(fleet::Output) -> Result<fleet::Matrix>,
) -> Result<ExitCode> {
    let mut file = match &cfg.output_file {
        Some(path) => Some(io::BufWriter::new(File::create(path).with_context(
            || format!("cannot write --output-file {}", path.display()),
        )?)),
        None => None,
    };
    let json = cfg.format == core::config::Format::Json;
    let ran = {
        let to: &mut dyn Write = match &mut file {
            Some(f) => f,
            None => stdout,
        };
        run(fleet::Output {
            json: json.then_some(to),
            keep: fleet::Keep::for_format(cfg.format),
            bundle,
            command_line: std::env::args().collect::<Vec<_>>().join(" "),
        })
    };
    let matrix = match ran {
        Ok(m) => m,
        Err(e) => {
            // A run that failed before its first node leaves no empty --output-file behind.
            if let (Some(f), Some(path)) = (file.take(), &cfg.output_file)
                && f.get_ref().metadata().is_ok_and(|m| m.len() == 0)
                && f.buffer().is_empty()
            {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
    };
    match &mut file {
        Some(f) if !json => matrix.render(cfg.format, false, f)?,
        None if !json => matrix.render(cfg.format, cfg.color, stdout)?,
        _ => {}
    }
    if let Some(f) = &mut file {
        f.flush()?;
    }
    Ok(exit(matrix.worst().is_none_or(|w| w < cfg.fail_on)))
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Shows the plan on stderr and asks y/N on the terminal.
fn ask(report: &FixReport) -> Result<bool> {
    let mut err = io::stderr().lock();
    fix::render(report, FixFormat::Table, false, &mut err)?;
    let what = if report.mode == "undo" {
        "Undo these changes"
    } else {
        "Apply these changes"
    };
    write!(err, "{what}? [y/N] ")?;
    err.flush()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

fn fix_cmd(f: cli::Fix) -> Result<ExitCode> {
    let changes = f.opts.mode != fix::Mode::DryRun;
    if changes && !f.yes && !io::stdin().is_terminal() {
        bail!(
            "refusing to change the host without --yes: there is no terminal to ask for confirmation"
        );
    }
    let yes = f.yes;
    let report = fix::run(&f.opts, &mut |r| if yes { Ok(true) } else { ask(r) })?;
    let mut out = MaskedWriter::new(io::stdout().lock());
    fix::render(&report, f.format, f.color, &mut out)?;
    out.flush()?;
    Ok(exit(!report.failed()))
}

fn run(cmd: Command) -> Result<ExitCode> {
    // Every byte of output goes through the masking layer (it flushes on drop too).
    let mut out = MaskedWriter::new(io::stdout().lock());
    match cmd {
        Command::Check(cfg, extra) => {
            let (report, framed) = k8sdoctor::bundle::run_check(&cfg, &extra)?;
            emit_framed(&report, framed.as_deref(), &cfg)
        }
        Command::List {
            format,
            color,
            extra,
        } => {
            list::render_list(format, color, &extra, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain(id, extra) => {
            // Policy checks (`--policy FILE`) are explained from their own entries.
            let policy = extra.iter().find(|e| e.id.eq_ignore_ascii_case(&id));
            let Some(e) = catalog::find(&id).or(policy) else {
                bail!(
                    "no check has the id {id:?} (see `k8sdoctor list`; policy checks need their --policy FILE)"
                );
            };
            list::render_explain(e, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema { fleet, policy } => {
            let schema = if fleet {
                fleet::schema()
            } else if policy {
                serde_json::to_value(k8sdoctor::policy::schema())?
            } else {
                report::schema()
            };
            serde_json::to_writer_pretty(&mut out, &schema)?;
            writeln!(out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::JoinCheck(opts, cfg) => emit(&join::run(&opts)?, &cfg),
        Command::McSend(opts) => {
            let stop = multicast::interrupt_flag()?;
            let s = multicast::send::run(&opts, &stop, &mut out)?;
            multicast::output::send(&s, opts.format, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::McReceive(opts, color) => {
            let stop = multicast::interrupt_flag()?;
            let s = multicast::receive::run(&opts, &stop, &mut out)?;
            multicast::output::receive(&s, opts.format, color, &mut out)?;
            // Nothing received is a failure a script can see.
            Ok(exit(s.received > 0))
        }
        Command::McProbe(mut opts, color, configmap, termination_log) => {
            if let Some(name) = configmap {
                opts.peers = fleet::peers_from_configmap(&name, opts.wait)?;
            }
            let stop = multicast::interrupt_flag()?;
            let r = multicast::probe::run(&opts, stop)?;
            if let Some(path) = &termination_log {
                let compact = fleet::compact_probe(&serde_json::to_value(&r)?);
                std::fs::write(path, compact).with_context(|| {
                    format!("cannot write --termination-log {}", path.display())
                })?;
            }
            multicast::output::probe(&r, opts.format, color, &mut out)?;
            Ok(exit(r.pass))
        }
        // --- multicast node-firewall (issue 21) ---
        Command::McNodeFirewall(o) => node_firewall(o, &mut out),
        // --- end multicast node-firewall ---
        Command::Fix(f) => fix_cmd(f),
        Command::FleetCheck(cfg, opts) => {
            let stop = multicast::interrupt_flag()?;
            fleet_out(&cfg, &mut out, cfg.bundle.clone(), |o| {
                fleet::check(&cfg, &opts, stop, &|m| core::stderr::note(m), o)
            })
        }
        Command::FleetReplay(cfg, extra) => {
            let path = cfg.from_bundle.clone().unwrap_or_default();
            fleet_out(&cfg, &mut out, None, |o| {
                fleet::replay(&cfg, &extra, &path, o)
            })
        }
        Command::FleetMulticast {
            cfg,
            opts,
            mc,
            json,
            color,
        } => {
            let stop = multicast::interrupt_flag()?;
            let r = fleet::multicast(&cfg, &opts, &mc, stop, &|m| core::stderr::note(m))?;
            if json {
                serde_json::to_writer_pretty(&mut out, &r)?;
                writeln!(out)?;
            } else {
                r.render_table(color, &mut out)?;
            }
            Ok(exit(r.pass))
        }
        // --- manifests (issue 22) ---
        Command::Manifests(opts) => emit(
            &k8sdoctor::manifests::run(&opts, &|m| core::stderr::note(m))?,
            &opts.cfg,
        ),
        // --- end manifests ---
        Command::Completions(shell) => {
            cli::completions(shell, &mut out);
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            cli::man(&mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::FleetCleanup(cfg, ns) => {
            let n = fleet::cleanup(&cfg, &ns)?;
            core::stderr::note(&format!("deleted {n} doctor pod(s) in namespace {ns}"));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    // msend/mreceive links and mtools' flags become our command line (see multicast::mtools);
    // a `kubectl-doctor` link names itself as the kubectl plugin.
    let argv = multicast::mtools::normalise(std::env::args_os().collect());
    let cli = match Cli::from_invocation(argv) {
        Ok(cli) => cli,
        // Usage errors quote the arguments, which may hold a token or password.
        Err(e) => {
            let text = mask_secrets(&e.to_string());
            let _ = if e.use_stderr() {
                write!(io::stderr(), "{text}")
            } else {
                write!(io::stdout(), "{text}")
            };
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    match cli.into_command().and_then(run) {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`k8sdoctor | head`) is not the doctor's failure.
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("k8sdoctor: {e:#}");
            ExitCode::from(2)
        }
    }
}
