//! The command line: turns flags into a config, runs the command, and maps the outcome to an exit code.

use std::{
    fs::File,
    io::{self, BufRead, IsTerminal, Write},
    net::IpAddr,
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
    join::{self, JoinOptions},
    list,
    mask::{MaskedWriter, mask_secrets},
    multicast, report,
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
    /// Verify a `kubeadm join` command before running it: kubeadm's discovery, step by step.
    #[command(
        name = "join-check",
        after_help = "Example:\n  k8sdoctor join-check -- kubeadm join 192.168.1.2:6443 --token a24a11.0e6b932b0907deff --discovery-token-ca-cert-hash sha256:1ca7...\n  k8sdoctor join-check -o json 'kubeadm join 192.168.1.2:6443 --token ... --discovery-token-ca-cert-hash sha256:...'"
    )]
    JoinCheck(JoinCheckArgs),
    /// Multicast: msend/mreceive-compatible send and receive, and a probe of every sender→receiver pair.
    Multicast {
        #[command(subcommand)]
        cmd: McCmd,
    },
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

#[derive(Subcommand)]
enum McCmd {
    /// Send sequenced datagrams to a group, like msend (one a second by default).
    Send(McSendArgs),
    /// Join a group and print what arrives, like mreceive; a per-sender summary at the end.
    Receive(McReceiveArgs),
    /// Run on every participant: measure every sender→receiver pair, print the matrix and causes.
    Probe(McProbeArgs),
}

#[derive(Copy, Clone, ValueEnum)]
enum McFormat {
    Table,
    Json,
}

#[derive(Args)]
struct McCommon {
    /// Multicast group (default 224.1.1.1, or ff2e::1 with -6).
    #[arg(long)]
    group: Option<IpAddr>,
    /// Use the IPv6 default group.
    #[arg(short = '6', long = "ipv6")]
    ipv6: bool,
    /// UDP port of the group.
    #[arg(long, default_value_t = multicast::DEFAULT_PORT)]
    port: u16,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = McFormat::Table)]
    output: McFormat,
    /// No colour (also NO_COLOR, or stdout not a terminal).
    #[arg(long)]
    no_color: bool,
}

impl McCommon {
    fn group(&self) -> IpAddr {
        self.group.unwrap_or(multicast::default_group(self.ipv6))
    }

    fn format(&self) -> multicast::Format {
        match self.output {
            McFormat::Table => multicast::Format::Table,
            McFormat::Json => multicast::Format::Json,
        }
    }
}

fn millis(ms: f64, flag: &str) -> Result<Duration> {
    if !(ms.is_finite() && ms >= 0.0) {
        bail!("{flag} must be a number of milliseconds, 0 or more");
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

fn seconds(s: f64, flag: &str) -> Result<Duration> {
    if !(s.is_finite() && s > 0.0) {
        bail!("{flag} must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(s))
}

#[derive(Args)]
struct McSendArgs {
    #[command(flatten)]
    common: McCommon,
    /// TTL (hop limit) of the datagrams.
    #[arg(long, default_value_t = 1)]
    ttl: u8,
    /// Interface to send from, by name or address (default: the route to the group).
    #[arg(long, short = 'i')]
    interface: Option<String>,
    /// Stop after N datagrams (default: until Ctrl-C).
    #[arg(long, short = 'c')]
    count: Option<u64>,
    /// Stop after SECS seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Milliseconds between datagrams; 0 = as fast as possible.
    #[arg(long, default_value_t = 1000.0)]
    interval: f64,
    /// Text carried in each datagram.
    #[arg(long, default_value = "Hello World!")]
    text: String,
    /// Pad each datagram to this many bytes.
    #[arg(long, default_value_t = 0)]
    size: usize,
    /// Turn IP_MULTICAST_LOOP off (msend leaves it on, so this host's receivers see the datagrams).
    #[arg(long)]
    no_loop: bool,
}

#[derive(Args)]
struct McReceiveArgs {
    #[command(flatten)]
    common: McCommon,
    /// Interface to join on, by name or address (default: the route to the group).
    #[arg(long, short = 'i')]
    interface: Option<String>,
    /// Stop after N datagrams.
    #[arg(long, short = 'c')]
    count: Option<u64>,
    /// Stop after SECS seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
}

#[derive(Args)]
struct McProbeArgs {
    #[command(flatten)]
    common: McCommon,
    /// Every participant's unicast address, this node's included (comma list).
    #[arg(long, value_delimiter = ',', required = true)]
    peers: Vec<IpAddr>,
    /// Which of --peers this is (default: the first local one whose control port is free).
    #[arg(long)]
    local: Option<IpAddr>,
    /// UDP port of the unicast control channel (default: --port + 1).
    #[arg(long)]
    control_port: Option<u16>,
    /// TTL of the datagrams (a TTL-8 side stream is sent too, to tell TTL from routing).
    #[arg(long, default_value_t = 1)]
    ttl: u8,
    /// Datagrams each participant sends.
    #[arg(long, short = 'c', default_value_t = 100)]
    count: u64,
    /// Milliseconds between datagrams.
    #[arg(long, default_value_t = 10.0)]
    interval: f64,
    /// Highest loss in percent a pair may show and still pass.
    #[arg(long, default_value_t = 0.0)]
    max_loss: f64,
    /// Run for SECS seconds instead of --count (catches IGMP snooping without a querier: ~260 s).
    #[arg(long, value_name = "SECS")]
    soak: Option<f64>,
    /// Seconds to wait for peers to start, and for their reports.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    wait: f64,
}

#[derive(Args)]
struct JoinCheckArgs {
    /// Deadline for the whole check (resolution, connect, TLS, the request), in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    timeout: f64,
    #[command(flatten)]
    report: ReportArgs,
    /// Log each step to stderr (the token secret is masked there too).
    #[arg(short = 'v', long)]
    verbose: bool,
    /// The join command, after `--` (or as one quoted argument): kubeadm join HOST:PORT --token ... .
    #[arg(
        value_name = "KUBEADM_JOIN",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,
}

/// Where and how `check` and `join-check` write their report, and when they exit 1.
#[derive(Args)]
struct ReportArgs {
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

impl ReportArgs {
    /// Fills the report fields of a config.
    fn into_config(self, cfg: Config) -> Config {
        Config {
            format: self.output.into(),
            color: self.output_file.is_none() && color_wanted(self.no_color),
            output_file: self.output_file,
            fail_on: self.fail_on.into(),
            ..cfg
        }
    }
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
    /// Port `kubectl proxy` listens on, for proxy.localhost.
    #[arg(long, value_name = "PORT", default_value_t = 8001)]
    proxy_port: u16,
    #[command(flatten)]
    report: ReportArgs,
}

impl From<FailOn> for Status {
    fn from(f: FailOn) -> Status {
        match f {
            FailOn::Warn => Status::Warn,
            FailOn::Fail => Status::Fail,
        }
    }
}

fn positive_secs(secs: f64) -> Result<Duration> {
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        bail!("--timeout must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(secs))
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
        let timeout = positive_secs(self.timeout)?;
        Ok(self.report.into_config(Config {
            root: self.root,
            role: self.role.into(),
            selection: Selection {
                only: self.only,
                skip: self.skip,
            },
            kubeconfig: self.kubeconfig,
            context: self.context,
            offline: self.offline,
            timeout,
            proxy_port: self.proxy_port,
            ..Config::default()
        }))
    }
}

/// Writes the report where the config says and maps it to the exit code (`check` and `join-check`).
fn emit(report: &report::Report, cfg: &Config) -> Result<ExitCode> {
    match &cfg.output_file {
        Some(path) => {
            let f = File::create(path)
                .with_context(|| format!("cannot write --output-file {}", path.display()))?;
            let mut f = MaskedWriter::new(f);
            report.render(cfg.format, false, &mut f)?;
            f.flush()?;
            eprintln!("k8sdoctor: {} → {}", report.summary, path.display());
        }
        None => {
            let mut out = MaskedWriter::new(io::stdout().lock());
            report.render(cfg.format, cfg.color, &mut out)?;
            out.flush()?;
        }
    }
    Ok(if engine::fails(report, cfg.fail_on) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn check(cfg: Config) -> Result<ExitCode> {
    emit(&engine::run(&cfg)?, &cfg)
}

fn join_check(args: JoinCheckArgs) -> Result<ExitCode> {
    let timeout = positive_secs(args.timeout)?;
    let report = join::run(&JoinOptions {
        command: args.command,
        timeout,
        verbose: args.verbose,
    })?;
    let cfg = args.report.into_config(Config {
        timeout,
        ..Config::default()
    });
    emit(&report, &cfg)
}

fn run_multicast(cmd: McCmd) -> Result<ExitCode> {
    let stop = multicast::interrupt_flag()?;
    let mut out = io::stdout().lock();
    match cmd {
        McCmd::Send(a) => {
            let opts = multicast::send::SendOptions {
                group: a.common.group(),
                port: a.common.port,
                ttl: a.ttl,
                interface: a.interface,
                count: a.count,
                duration: a.duration.map(|d| seconds(d, "--duration")).transpose()?,
                interval: millis(a.interval, "--interval")?,
                text: a.text,
                size: a.size,
                multicast_loop: !a.no_loop,
                format: a.common.format(),
            };
            let s = multicast::send::run(&opts, &stop, &mut out)?;
            multicast::output::send(&s, opts.format, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        McCmd::Receive(a) => {
            let opts = multicast::receive::ReceiveOptions {
                group: a.common.group(),
                port: a.common.port,
                interface: a.interface,
                count: a.count,
                duration: a.duration.map(|d| seconds(d, "--duration")).transpose()?,
                format: a.common.format(),
            };
            let s = multicast::receive::run(&opts, &stop, &mut out)?;
            multicast::output::receive(&s, opts.format, color_wanted(a.common.no_color), &mut out)?;
            // Nothing received is a failure a script can see.
            Ok(if s.received > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        McCmd::Probe(a) => {
            let interval = millis(a.interval, "--interval")?;
            let count = match a.soak {
                Some(secs) => {
                    let secs = seconds(secs, "--soak")?;
                    if interval.is_zero() {
                        bail!("--soak needs an --interval above 0");
                    }
                    (secs.as_secs_f64() / interval.as_secs_f64()).ceil() as u64
                }
                None => a.count,
            };
            let v6 = a.common.ipv6 || a.peers.first().is_some_and(IpAddr::is_ipv6);
            let opts = multicast::probe::ProbeOptions {
                peers: a.peers,
                local: a.local,
                group: a.common.group.unwrap_or(multicast::default_group(v6)),
                port: a.common.port,
                control_port: a.control_port.unwrap_or(a.common.port.wrapping_add(1)),
                ttl: a.ttl,
                count,
                interval,
                max_loss: a.max_loss,
                wait: seconds(a.wait, "--wait")?,
                format: a.common.format(),
                progress: io::stderr().is_terminal() && interval.as_secs_f64() * count as f64 > 2.0,
            };
            let r = multicast::probe::run(&opts, stop)?;
            multicast::output::probe(&r, opts.format, color_wanted(a.common.no_color), &mut out)?;
            Ok(if r.pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// Shows the plan on stderr and asks y/N on the terminal.
fn ask(report: &FixReport) -> Result<bool> {
    let mut err = MaskedWriter::new(io::stderr().lock());
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
    let mut out = MaskedWriter::new(io::stdout().lock());
    fix::render(&report, format, color_wanted(args.no_color), &mut out)?;
    out.flush()?;
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
        Some(Cmd::JoinCheck(args)) => join_check(args),
        Some(Cmd::Multicast { cmd }) => run_multicast(cmd),
        Some(Cmd::Fix(args)) => fix_cmd(args),
        Some(Cmd::Schema) => {
            serde_json::to_writer_pretty(&mut out, &report::schema())?;
            writeln!(out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
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
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`k8sdoctor | head`) is not the doctor's failure.
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("k8sdoctor: {}", mask_secrets(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}
