//! The command line: turns flags into a config, runs the command, and maps the outcome to an exit code.

use std::{
    fs::File,
    io::{self, BufRead, IsTerminal, Write},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use k8sdoctor::{
    catalog,
    check::{Role, Status},
    config::{Config, Format, RoleChoice, Selection},
    engine,
    fix::{self, FixFormat, FixOptions, FixReport, Mode},
    list, report,
};

#[derive(Parser)]
#[command(
    name = "k8sdoctor",
    version,
    about = "A doctor for Kubernetes nodes and clusters: finds the kubeadm install pitfalls, shows the evidence, says how to fix them.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    check: CheckArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the checks (the default).
    Check(CheckArgs),
    /// Print the catalog of checks.
    List {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutFormat::Table)]
        output: OutFormat,
        #[arg(long)]
        no_color: bool,
    },
    /// Explain one check: the pitfall, why it matters, the fix.
    Explain { id: String },
    /// Print the JSON Schema of the report.
    Schema,
    /// Plan the host fixes (dry run), or apply, verify and undo them.
    Fix(FixArgs),
}

#[derive(Copy, Clone, ValueEnum)]
enum FixOut {
    Table,
    Json,
}

#[derive(Args)]
struct FixArgs {
    /// Checks to fix (comma list); default: every failing or warning check that has a fix.
    #[arg(value_delimiter = ',', value_name = "IDS")]
    ids: Vec<String>,
    /// Fix the host whose root is DIR; runtime steps are then skipped and only files under DIR change.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Apply the plan (without it, `fix` only shows what it would do).
    #[arg(long, conflicts_with = "undo")]
    apply: bool,
    /// Do not ask before applying or undoing (required without a terminal).
    #[arg(long)]
    yes: bool,
    /// Undo an apply from its journal (default: the newest in the journal directory).
    #[arg(long, value_name = "JOURNAL", num_args = 0..=1, conflicts_with = "ids")]
    undo: Option<Option<PathBuf>>,
    /// Where journals are kept (default: var/lib/k8sdoctor/fix under the root).
    #[arg(long, value_name = "DIR")]
    journal_dir: Option<PathBuf>,
    /// Node role; auto = control plane when etc/kubernetes/manifests/kube-apiserver.yaml exists.
    #[arg(long, value_enum, default_value_t = RoleArg::Auto)]
    role: RoleArg,
    /// Deadline for gathering the facts, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    timeout: f64,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = FixOut::Table)]
    output: FixOut,
    /// No colour (also NO_COLOR, or stdout not a terminal).
    #[arg(long)]
    no_color: bool,
}

#[derive(Copy, Clone, ValueEnum)]
enum OutFormat {
    Table,
    Json,
    Junit,
    Markdown,
}

impl From<OutFormat> for Format {
    fn from(o: OutFormat) -> Format {
        match o {
            OutFormat::Table => Format::Table,
            OutFormat::Json => Format::Json,
            OutFormat::Junit => Format::Junit,
            OutFormat::Markdown => Format::Markdown,
        }
    }
}

#[derive(Copy, Clone, ValueEnum)]
enum RoleArg {
    Auto,
    ControlPlane,
    Worker,
}

#[derive(Copy, Clone, ValueEnum)]
enum FailOn {
    Warn,
    Fail,
}

#[derive(Args)]
struct CheckArgs {
    /// Node role; auto = control plane when etc/kubernetes/manifests/kube-apiserver.yaml exists.
    #[arg(long, value_enum, default_value_t = RoleArg::Auto)]
    role: RoleArg,
    /// Run only these checks (comma list of ids, case-insensitive).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Skip these checks (comma list of ids, or `all`).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Read host files under DIR as if it were `/` (a container mounting the node's root).
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Kubeconfig file for the cluster checks.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// Skip every check that needs the network.
    #[arg(long)]
    offline: bool,
    /// Deadline for the whole run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    timeout: f64,
    /// Report format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutFormat::Table)]
    output: OutFormat,
    /// Write the report to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    output_file: Option<PathBuf>,
    /// Exit 1 when any result is at or above this level.
    #[arg(long, value_enum, default_value_t = FailOn::Fail)]
    fail_on: FailOn,
    /// No colour (also NO_COLOR, or stdout not a terminal).
    #[arg(long)]
    no_color: bool,
}

fn color_wanted(no_color: bool) -> bool {
    !no_color && std::env::var_os("NO_COLOR").is_none() && io::stdout().is_terminal()
}

impl From<RoleArg> for RoleChoice {
    fn from(r: RoleArg) -> RoleChoice {
        match r {
            RoleArg::Auto => RoleChoice::Auto,
            RoleArg::ControlPlane => RoleChoice::Fixed(Role::ControlPlane),
            RoleArg::Worker => RoleChoice::Fixed(Role::Worker),
        }
    }
}

impl CheckArgs {
    fn into_config(self) -> Result<Config> {
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            bail!("--timeout must be a positive number of seconds");
        }
        Ok(Config {
            root: self.root,
            role: self.role.into(),
            selection: Selection {
                only: self.only,
                skip: self.skip,
            },
            kubeconfig: self.kubeconfig,
            context: self.context,
            offline: self.offline,
            timeout: Duration::from_secs_f64(self.timeout),
            format: self.output.into(),
            color: self.output_file.is_none() && color_wanted(self.no_color),
            output_file: self.output_file,
            fail_on: match self.fail_on {
                FailOn::Warn => Status::Warn,
                FailOn::Fail => Status::Fail,
            },
        })
    }
}

fn check(cfg: Config) -> Result<ExitCode> {
    let report = engine::run(&cfg)?;
    match &cfg.output_file {
        Some(path) => {
            let mut f = File::create(path)
                .with_context(|| format!("cannot write --output-file {}", path.display()))?;
            report.render(cfg.format, false, &mut f)?;
            f.flush()?;
            eprintln!("k8sdoctor: {} → {}", report.summary, path.display());
        }
        None => report.render(cfg.format, cfg.color, &mut io::stdout().lock())?,
    }
    Ok(if engine::fails(&report, cfg.fail_on) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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

fn fix_cmd(args: FixArgs) -> Result<ExitCode> {
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    let mode = match (args.apply, args.undo) {
        (_, Some(j)) => Mode::Undo(j),
        (true, None) => Mode::Apply,
        (false, None) => Mode::DryRun,
    };
    let changes = mode != Mode::DryRun;
    if changes && !args.yes && !io::stdin().is_terminal() {
        bail!(
            "refusing to change the host without --yes: there is no terminal to ask for confirmation"
        );
    }
    let opts = FixOptions {
        root: args.root,
        ids: args.ids,
        mode,
        journal_dir: args.journal_dir,
        timeout: Duration::from_secs_f64(args.timeout),
        role: args.role.into(),
    };
    let yes = args.yes;
    let report = fix::run(&opts, &mut |r| if yes { Ok(true) } else { ask(r) })?;
    let format = match args.output {
        FixOut::Table => FixFormat::Table,
        FixOut::Json => FixFormat::Json,
    };
    fix::render(
        &report,
        format,
        color_wanted(args.no_color),
        &mut io::stdout().lock(),
    )?;
    Ok(if report.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    let mut out = io::stdout().lock();
    match cli.command {
        None => check(cli.check.into_config()?),
        Some(Cmd::Check(args)) => check(args.into_config()?),
        Some(Cmd::List { output, no_color }) => {
            list::render_list(output.into(), color_wanted(no_color), &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Explain { id }) => {
            let Some(e) = catalog::find(&id) else {
                bail!("no check has the id {id:?} (see `k8sdoctor list`)");
            };
            list::render_explain(e, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Fix(args)) => fix_cmd(args),
        Some(Cmd::Schema) => {
            serde_json::to_writer_pretty(&mut out, &report::schema())?;
            writeln!(out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
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
