//! The command line, and nothing else knows clap: the flags, and the one conversion of them into the
//! plain [`Command`] (configs and options of the library) that `main.rs` runs.

use std::{
    ffi::{OsStr, OsString},
    io::{self, IsTerminal, Write},
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Result, bail};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use k8sdoctor::{
    core::{
        catalog::Entry,
        check::{DynCheck, Role, Status},
        config::{Config, Format, RoleChoice, Selection},
        stage::{Stage, StageChoice},
    },
    fix::{FixFormat, FixOptions, Mode},
    fleet::{self, FleetOptions, McOptions},
    join::JoinOptions,
    manifests, multicast,
    policy::Policy,
};

#[derive(Parser)]
#[command(
    name = "k8sdoctor",
    version,
    about = "A doctor for Kubernetes nodes and clusters: finds the kubeadm install pitfalls, shows the evidence, says how to fix them.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
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
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Explain one check: the pitfall, why it matters, the fix.
    Explain {
        id: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Print the JSON Schema of the report (`--fleet`: of the fleet report; `--policy`: of a policy file).
    Schema {
        #[arg(long)]
        fleet: bool,
        #[arg(long, conflicts_with = "fleet")]
        policy: bool,
    },
    /// Verify a `kubeadm join` command before running it: kubeadm's discovery, step by step.
    #[command(
        name = "join-check",
        after_help = "Example:\n  k8sdoctor join-check -- kubeadm join 192.168.1.2:6443 --token a24a11.0e6b932b0907deff --discovery-token-ca-cert-hash sha256:1ca7...\n  k8sdoctor join-check -o json 'kubeadm join 192.168.1.2:6443 --token ... --discovery-token-ca-cert-hash sha256:...'\n  k8sdoctor join-check --bundle join.tar.gz -- kubeadm join ...   (then, anywhere: k8sdoctor join-check --from-bundle join.tar.gz)"
    )]
    JoinCheck(JoinCheckArgs),
    /// Multicast: msend/mreceive-compatible send and receive, and a probe of every sender→receiver pair.
    Multicast {
        #[command(subcommand)]
        cmd: McCmd,
    },
    /// Plan the host fixes (dry run), or apply, verify and undo them.
    Fix(FixArgs),
    /// Every node of a cluster at once, through one pod per node that the doctor creates and deletes.
    Fleet {
        #[command(subcommand)]
        cmd: FleetCmd,
    },
    // --- manifests (issue 22) ---
    /// Find removed and deprecated API versions in manifests before they break a deploy; --convert writes them converted.
    #[command(
        after_help = "Examples:\n  k8sdoctor manifests deploy/ --target-version 1.25\n  helm template my-chart | k8sdoctor manifests - -o json\n  k8sdoctor manifests old/ --offline --convert converted/"
    )]
    Manifests(ManifestsArgs),
    // --- end manifests ---
    /// Print the shell completion script for SHELL (bash, zsh, fish, powershell, elvish).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), made from this command line: `k8sdoctor man | man -l -`.
    Man,
}

#[derive(Subcommand)]
enum FleetCmd {
    /// Run the node checks on every selected node and merge the reports (node × check matrix, drift).
    Check(FleetCheckArgs),
    /// The guide's multicast test across nodes: one probe pod per node, one sender → receiver matrix.
    Multicast(FleetMcArgs),
    /// Delete every pod the doctor left in the namespace (earlier runs, --keep).
    Cleanup {
        #[command(flatten)]
        cluster: FleetClusterArgs,
    },
}

/// Which cluster, namespace, nodes and image the fleet commands use.
#[derive(Args)]
struct FleetClusterArgs {
    /// Namespace of the doctor's pods (created, with the Pod Security label they need, if absent).
    #[arg(long, value_name = "NS", default_value = "k8sdoctor")]
    namespace: String,
    /// Kubeconfig file.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
}

impl FleetClusterArgs {
    fn config(&self, timeout: Duration) -> Config {
        Config {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            // One API request may take this long; the run as a whole has --timeout.
            timeout: Duration::from_secs(10).min(timeout),
            ..Config::default()
        }
    }
}

#[derive(Args)]
struct FleetNodeArgs {
    /// Only these nodes (comma list of names).
    #[arg(long, value_delimiter = ',', conflicts_with = "selector")]
    nodes: Vec<String>,
    /// Only nodes matching this label selector.
    #[arg(long, short = 'l', value_name = "LABELS")]
    selector: Option<String>,
    /// The doctor's container image, pullable by every node; or one per architecture
    /// (`--image amd64=REF --image arm64=REF`: nodes of another architecture are named absent).
    #[arg(long, value_name = "[ARCH=]IMAGE", default_value = concat!("k8sdoctor:", env!("CARGO_PKG_VERSION")))]
    image: Vec<String>,
    /// A Secret in the namespace that the kubelets pull the image with.
    #[arg(long, value_name = "NAME")]
    image_pull_secret: Option<String>,
    /// Seconds for the whole run: pods starting and finishing (also their activeDeadlineSeconds).
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    timeout: f64,
    /// Leave the pods in place afterwards (`fleet cleanup` removes them).
    #[arg(long)]
    keep: bool,
    #[command(flatten)]
    cluster: FleetClusterArgs,
}

impl FleetNodeArgs {
    fn options(self, check_args: Vec<String>) -> Result<(Config, FleetOptions)> {
        let timeout = duration("--timeout", self.timeout, Unit::Secs)?;
        let cfg = self.cluster.config(timeout);
        Ok((
            cfg,
            FleetOptions {
                nodes: self.nodes,
                selector: self.selector,
                namespace: self.cluster.namespace,
                images: fleet::Images::parse(&self.image)?,
                pull_secret: self.image_pull_secret,
                timeout,
                keep: self.keep,
                check_args,
            },
        ))
    }
}

#[derive(Args)]
struct FleetCheckArgs {
    /// Run only these checks on each node.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Skip these checks on each node (or `all`).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Node role on every node (default: each node decides from its own files).
    #[arg(long, value_enum, default_value_t = RoleArg::Auto)]
    role: RoleArg,
    #[command(flatten)]
    policy: PolicyArgs,
    // -- fleet bundles (docs/bundle.md) --
    /// Also write every node's bundle (its inputs, secrets masked, and its report) into one
    /// archive FILE (a .tar.gz with a manifest naming each node).
    #[arg(long, value_name = "FILE")]
    bundle: Option<PathBuf>,
    /// Render the fleet report from a fleet bundle alone: every node's checks evaluated again,
    /// no cluster and no network.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["bundle", "keep", "nodes", "selector", "kubeconfig", "context"])]
    from_bundle: Option<PathBuf>,
    // -- end fleet bundles --
    #[command(flatten)]
    nodes: FleetNodeArgs,
    #[command(flatten)]
    report: ReportArgs,
}

#[derive(Args)]
struct FleetMcArgs {
    /// Probe the node network instead of the pod network (the overlay).
    #[arg(long)]
    host_network: bool,
    /// Multicast group (default 224.1.1.1).
    #[arg(long)]
    group: Option<IpAddr>,
    /// UDP port of the group (the control channel uses the next one).
    #[arg(long, default_value_t = multicast::DEFAULT_PORT)]
    port: u16,
    /// Datagrams each participant sends.
    #[arg(long, short = 'c', default_value_t = 100)]
    count: u64,
    /// Milliseconds between datagrams.
    #[arg(long, default_value_t = 10.0)]
    interval: f64,
    /// TTL of the datagrams.
    #[arg(long, default_value_t = 1)]
    ttl: u8,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = McFormat::Table)]
    output: McFormat,
    /// No colour (also NO_COLOR, or stdout not a terminal).
    #[arg(long)]
    no_color: bool,
    #[command(flatten)]
    nodes: FleetNodeArgs,
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
    #[command(after_help = multicast::mtools::SEND_HELP)]
    Send(McSendArgs),
    /// Join a group and print what arrives, like mreceive; a per-sender summary at the end.
    #[command(after_help = multicast::mtools::RECEIVE_HELP)]
    Receive(McReceiveArgs),
    /// Run on every participant: measure every sender→receiver pair, print the matrix and causes.
    Probe(McProbeArgs),
    // --- multicast node-firewall (issue 21) ---
    /// Run on a node (its network namespace): which rule of its live ruleset drops the group's
    /// traffic from each sender, on the forward path (pods) or the input path (--input).
    NodeFirewall(McNodeFwArgs),
    // --- end multicast node-firewall ---
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
    #[command(flatten)]
    mtools: McMtoolsArgs,
    /// Join the group on the sending socket too, like msend -join.
    #[arg(long)]
    join: bool,
}

/// msend's and mreceive's -n and -q.
#[derive(Args)]
struct McMtoolsArgs {
    /// The payload is each datagram's number (msend -n / mreceive -n) instead of the text.
    #[arg(long)]
    numbered: bool,
    /// No line per datagram (gap lines still print).
    #[arg(long)]
    quiet: bool,
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
    #[command(flatten)]
    mtools: McMtoolsArgs,
    /// Only datagrams from this source address (a source-specific join, like mreceive -s).
    #[arg(long)]
    source: Option<IpAddr>,
}

/// Who takes part: `probe` and `node-firewall` take the same list.
#[derive(Args)]
struct McPeersArgs {
    /// Every participant's unicast address, this node's included (comma list).
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "peers_from_configmap"
    )]
    peers: Vec<IpAddr>,
    /// Read the participants from this ConfigMap in the pod's namespace (what fleet multicast pods do).
    #[arg(long, value_name = "NAME", conflicts_with = "peers")]
    peers_from_configmap: Option<String>,
}

#[derive(Args)]
struct McProbeArgs {
    #[command(flatten)]
    common: McCommon,
    #[command(flatten)]
    peers: McPeersArgs,
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
    /// Also write a compact result (pairs, verdicts, causes cut; at most 4096 bytes) to FILE: a
    /// pod's termination message, for `fleet multicast`.
    #[arg(long, value_name = "FILE")]
    termination_log: Option<PathBuf>,
}

// --- multicast node-firewall (issue 21) ---
#[derive(Args)]
struct McNodeFwArgs {
    #[command(flatten)]
    common: McCommon,
    #[command(flatten)]
    peers: McPeersArgs,
    /// Evaluate the input path (senders on the node network) instead of the forward path (pods).
    #[arg(long)]
    input: bool,
    /// Seconds the rule-reading tools may take.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    timeout: f64,
    /// Seconds to wait for the ConfigMap (with --peers-from-configmap).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    wait: f64,
    /// Also write the result compactly (at most 4096 bytes) to FILE: a pod's termination message.
    #[arg(long, value_name = "FILE")]
    termination_log: Option<PathBuf>,
}
// --- end multicast node-firewall ---

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
    // -- join-check bundles (docs/bundle.md) --
    /// Also write every input the steps read (answers, certificates, clock; never the token's secret) with the report to FILE (a .tar.gz).
    #[arg(long, value_name = "FILE")]
    bundle: Option<PathBuf>,
    /// Judge the steps again from a join-check bundle alone: no resolver, network or host file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["bundle", "command"])]
    from_bundle: Option<PathBuf>,
    // -- end join-check bundles --
    /// The join command, after `--` (or as one quoted argument): kubeadm join HOST:PORT --token ... .
    #[arg(
        value_name = "KUBEADM_JOIN",
        required_unless_present = "from_bundle",
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
    /// List every skipped check in the table (otherwise skips that share a reason are one row).
    #[arg(long)]
    show_skipped: bool,
}

impl ReportArgs {
    /// Fills the report fields of a config.
    fn into_config(self, cfg: Config) -> Config {
        Config {
            format: self.output.into(),
            color: self.output_file.is_none() && color_wanted(self.no_color),
            output_file: self.output_file,
            fail_on: self.fail_on.into(),
            show_skipped: self.show_skipped || cfg.show_skipped,
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
enum StageArg {
    Auto,
    PreInit,
    PreJoin,
    Installed,
}

impl From<StageArg> for StageChoice {
    fn from(s: StageArg) -> StageChoice {
        match s {
            StageArg::Auto => StageChoice::Auto,
            StageArg::PreInit => StageChoice::Fixed(Stage::PreInit),
            StageArg::PreJoin => StageChoice::Fixed(Stage::PreJoin),
            StageArg::Installed => StageChoice::Fixed(Stage::Installed),
        }
    }
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
    /// Install stage: auto = installed when etc/kubernetes/kubelet.conf exists, else pre-init for a control plane and pre-join for a worker.
    #[arg(long, value_enum, default_value_t = StageArg::Auto)]
    stage: StageArg,
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
    /// Verbose table: every skipped check on its own row (as --show-skipped).
    #[arg(short = 'v', long)]
    verbose: bool,
    // --- live network (issue 21) ---
    /// Under --root, read the network state live from this process's network namespace (a hostNetwork
    /// pod's is the node's): the running iptables/nft ruleset, links, routes, net sysctls, listening
    /// sockets, firewalld/ufw processes. Needs CAP_NET_ADMIN for the ruleset.
    #[arg(long)]
    live_network: bool,
    // --- end live network ---
    // -- bundles (docs/bundle.md) --
    /// Also write every input the checks read, secrets masked, with the report to FILE (a .tar.gz).
    #[arg(long, value_name = "FILE")]
    bundle: Option<PathBuf>,
    /// Evaluate the checks from a bundle alone: no host file, command or network.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["bundle", "root", "kubeconfig", "context", "offline"])]
    from_bundle: Option<PathBuf>,
    /// With --from-bundle of a fleet bundle (`fleet check --bundle`): replay this node's bundle.
    #[arg(long, value_name = "NAME", requires = "from_bundle")]
    node: Option<String>,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    report: ReportArgs,
    /// Also write the compact report (ids, statuses, summary, what fits of the messages; at most
    /// 4096 bytes) to FILE: a pod's termination message, for `fleet check`.
    #[arg(long, value_name = "FILE")]
    termination_log: Option<PathBuf>,
}

// --- site policies (`--policy FILE`) ---

/// `--policy FILE`: a site's own checks, read and validated before anything runs.
#[derive(Args)]
struct PolicyArgs {
    /// Add the checks of a site policy file (YAML, repeatable): flows the firewall must accept, sysctls,
    /// file contents. `k8sdoctor schema --policy` prints its JSON Schema.
    #[arg(long = "policy", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// A policy given inline: its name (as the CLI was given it) on the first line, then the YAML. How
    /// `fleet check --policy` ships a policy to its pods, in their command line.
    #[arg(long = "policy-text", value_name = "TEXT", hide = true)]
    texts: Vec<String>,
}

/// The most one policy may take inside a pod's command line: Linux limits one argument to 128 KiB.
const POLICY_ARG_MAX: usize = 100 << 10;

impl PolicyArgs {
    fn load(&self) -> Result<Policy> {
        let mut p = k8sdoctor::policy::load(&self.files)?;
        for t in &self.texts {
            let (label, yaml) = t.split_once('\n').unwrap_or(("--policy-text", ""));
            k8sdoctor::policy::parse_into(label, yaml, &mut p)?;
        }
        Ok(p)
    }

    /// The `--policy-text` arguments that carry these files to the fleet's pods.
    fn shipped(&self) -> Result<Vec<String>> {
        let mut args = Vec::new();
        for f in &self.files {
            let label = f.display().to_string();
            let arg = format!("{label}\n{}", k8sdoctor::policy::read(f)?);
            if label.contains('\n') || arg.len() > POLICY_ARG_MAX {
                bail!(
                    "{label}: too large to ship to the pods in their command line (at most {} KiB)",
                    POLICY_ARG_MAX >> 10
                );
            }
            args.extend(["--policy-text".to_string(), arg]);
        }
        args.extend(
            self.texts
                .iter()
                .flat_map(|t| ["--policy-text".to_string(), t.clone()]),
        );
        Ok(args)
    }
}

// --- end of site policies ---

impl From<FailOn> for Status {
    fn from(f: FailOn) -> Status {
        match f {
            FailOn::Warn => Status::Warn,
            FailOn::Fail => Status::Fail,
        }
    }
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
    /// The run's config, and the run-time checks of its `--policy` files.
    fn into_config(self) -> Result<(Config, Vec<DynCheck>)> {
        let timeout = duration("--timeout", self.timeout, Unit::Secs)?;
        let extra = self.policy.load()?.checks();
        let cfg = self.report.into_config(Config {
            root: self.root,
            role: self.role.into(),
            stage: self.stage.into(),
            selection: Selection {
                only: self.only,
                skip: self.skip,
            },
            kubeconfig: self.kubeconfig,
            context: self.context,
            offline: self.offline,
            timeout,
            proxy_port: self.proxy_port,
            show_skipped: self.verbose,
            live_network: self.live_network,
            bundle: self.bundle,
            from_bundle: self.from_bundle,
            from_bundle_node: self.node,
            termination_log: self.termination_log,
            ..Config::default()
        });
        Ok((cfg, extra))
    }
}

/// The unit a duration flag is given in.
#[derive(Clone, Copy)]
enum Unit {
    /// Seconds, above 0.
    Secs,
    /// Milliseconds, 0 or more (0 = as fast as possible).
    Millis,
}

/// The one duration parser of every flag: finite, under 10^9 seconds, above 0 (seconds) or 0 and more
/// (milliseconds).
fn duration(flag: &str, value: f64, unit: Unit) -> Result<Duration> {
    let (secs, ok) = match unit {
        Unit::Secs => (value, value > 0.0),
        Unit::Millis => (value / 1000.0, value >= 0.0),
    };
    if !(ok && secs.is_finite() && secs < 1e9) {
        match unit {
            Unit::Secs => bail!("{flag} must be a positive number of seconds"),
            Unit::Millis => bail!("{flag} must be a number of milliseconds, 0 or more"),
        }
    }
    Ok(Duration::from_secs_f64(secs))
}

fn secs_opt(flag: &str, value: Option<f64>) -> Result<Option<Duration>> {
    value.map(|v| duration(flag, v, Unit::Secs)).transpose()
}

// --- manifests (issue 22) ---
#[derive(Args)]
struct ManifestsArgs {
    /// Manifest files, directories (recursive: *.yaml, *.yml, *.json), or - for stdin.
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<PathBuf>,
    /// The Kubernetes release to judge for (X.Y); default: the cluster's version, else the newest the table knows.
    #[arg(long, value_name = "X.Y")]
    target_version: Option<String>,
    /// Kubeconfig of the cluster whose version and discovery also decide.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// Never connect to a cluster.
    #[arg(long)]
    offline: bool,
    /// Write each convertible document converted for the target under DIR (mirroring the input paths).
    #[arg(long, value_name = "DIR")]
    convert: Option<PathBuf>,
    /// Deadline of each request to the cluster, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    timeout: f64,
    #[command(flatten)]
    report: ReportArgs,
}

fn manifests_command(a: ManifestsArgs) -> Result<Command> {
    let target = match &a.target_version {
        None => None,
        Some(t) => match manifests::lifecycle::Minor::parse(t) {
            Some(m) => Some(m),
            None => bail!("--target-version {t:?}: expected a release such as 1.25"),
        },
    };
    let timeout = duration("--timeout", a.timeout, Unit::Secs)?;
    let cfg = a.report.into_config(Config {
        kubeconfig: a.kubeconfig,
        context: a.context,
        offline: a.offline,
        timeout,
        ..Config::default()
    });
    Ok(Command::Manifests(manifests::Options {
        paths: a.paths,
        target,
        convert: a.convert,
        cfg,
    }))
}
// --- end manifests ---

/// What to run, in the library's plain terms.
pub enum Command {
    Check(Config, Vec<DynCheck>),
    List {
        format: Format,
        color: bool,
        /// Entries of `--policy` checks, listed after the catalog's.
        extra: Vec<Entry>,
    },
    /// The id, and the entries of `--policy` checks it may name.
    Explain(String, Vec<Entry>),
    Schema {
        fleet: bool,
        policy: bool,
    },
    JoinCheck(JoinOptions, Config),
    McSend(multicast::send::SendOptions),
    McReceive(multicast::receive::ReceiveOptions, bool),
    /// The probe, its colour, the ConfigMap to read the participants from first (fleet pods),
    /// and where to write its compact result (`--termination-log`).
    McProbe(
        multicast::probe::ProbeOptions,
        bool,
        Option<String>,
        Option<PathBuf>,
    ),
    // --- multicast node-firewall (issue 21) ---
    McNodeFirewall(McNodeFw),
    // --- end multicast node-firewall ---
    Fix(Fix),
    FleetCheck(Config, FleetOptions),
    /// `fleet check --from-bundle`: the config (its `from_bundle`) and the policy checks.
    FleetReplay(Config, Vec<DynCheck>),
    FleetMulticast {
        cfg: Config,
        opts: FleetOptions,
        mc: McOptions,
        json: bool,
        color: bool,
    },
    FleetCleanup(Config, String),
    /// `manifests` (issue 22).
    Manifests(manifests::Options),
    Completions(clap_complete::Shell),
    Man,
}

// --- multicast node-firewall (issue 21) ---
/// `multicast node-firewall`: whom to evaluate, and how to answer.
pub struct McNodeFw {
    /// The group; `None`: the probe's default for the senders' family.
    pub group: Option<IpAddr>,
    pub port: u16,
    pub peers: Vec<IpAddr>,
    pub peers_from_configmap: Option<String>,
    pub input: bool,
    pub timeout: Duration,
    pub wait: Duration,
    pub termination_log: Option<PathBuf>,
    pub format: multicast::Format,
    pub ipv6: bool,
}
// --- end multicast node-firewall ---

/// `fix`: the library's options, and how this terminal asks and shows.
pub struct Fix {
    pub opts: FixOptions,
    pub yes: bool,
    pub format: FixFormat,
    pub color: bool,
}

impl Cli {
    /// The one conversion from flags to what the library runs (bad values are errors, exit 2).
    pub fn into_command(self) -> Result<Command> {
        Ok(match self.command {
            None => {
                let (cfg, extra) = self.check.into_config()?;
                Command::Check(cfg, extra)
            }
            Some(Cmd::Check(args)) => {
                let (cfg, extra) = args.into_config()?;
                Command::Check(cfg, extra)
            }
            Some(Cmd::List {
                output,
                no_color,
                policy,
            }) => Command::List {
                format: output.into(),
                color: color_wanted(no_color),
                extra: policy.load()?.entries(),
            },
            Some(Cmd::Explain { id, policy }) => Command::Explain(id, policy.load()?.entries()),
            Some(Cmd::Schema { fleet, policy }) => Command::Schema { fleet, policy },
            Some(Cmd::JoinCheck(a)) => {
                let timeout = duration("--timeout", a.timeout, Unit::Secs)?;
                let cfg = a.report.into_config(Config {
                    timeout,
                    ..Config::default()
                });
                let opts = JoinOptions {
                    command: a.command,
                    timeout,
                    verbose: a.verbose,
                    bundle: a.bundle,
                    from_bundle: a.from_bundle,
                };
                Command::JoinCheck(opts, cfg)
            }
            Some(Cmd::Multicast { cmd }) => multicast_command(cmd)?,
            Some(Cmd::Fix(a)) => fix_command(a)?,
            Some(Cmd::Fleet { cmd }) => fleet_command(cmd)?,
            Some(Cmd::Manifests(a)) => manifests_command(a)?,
            Some(Cmd::Completions { shell }) => Command::Completions(shell),
            Some(Cmd::Man) => Command::Man,
        })
    }

    /// The command line as this binary was invoked: its name (argv[0]) picks what it is. Invoked
    /// as a kubectl plugin (a link or copy named kubectl-doctor) it is the same doctor, under
    /// kubectl's name for it in usage and help.
    pub fn from_invocation(argv: Vec<OsString>) -> Result<Cli, clap::Error> {
        let mut cmd = Cli::command();
        let argv0 = argv.first().map(Path::new).and_then(Path::file_name);
        if argv0 == Some(OsStr::new("kubectl-doctor")) {
            cmd = cmd.bin_name("kubectl doctor");
        }
        let matches = cmd.try_get_matches_from_mut(argv)?;
        Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
    }
}

/// Writes the completion script for `shell`, made from this command line.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// Writes the man page (roff), made from this command line.
pub fn man(out: &mut dyn Write) -> io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)
}

fn fleet_command(cmd: FleetCmd) -> Result<Command> {
    Ok(match cmd {
        FleetCmd::Cleanup { cluster } => {
            let ns = cluster.namespace.clone();
            Command::FleetCleanup(cluster.config(Duration::from_secs(10)), ns)
        }
        FleetCmd::Check(a) => {
            // A bad policy stops the run before any pod; its ids are known to --only/--skip.
            let policy: Vec<String> = a
                .policy
                .load()?
                .entries()
                .into_iter()
                .map(|e| e.id)
                .collect();
            let builtin = |ids: &[String]| -> Vec<String> {
                let ours = |i: &String| policy.iter().any(|p| p.eq_ignore_ascii_case(i));
                ids.iter().filter(|i| !ours(i)).cloned().collect()
            };
            fleet::unknown_ids(&builtin(&a.only), &builtin(&a.skip))?;
            if let Some(path) = a.from_bundle {
                let cfg = Config {
                    selection: Selection {
                        only: a.only,
                        skip: a.skip,
                    },
                    role: a.role.into(),
                    from_bundle: Some(path),
                    ..Config::default()
                };
                let extra = a.policy.load()?.checks();
                return Ok(Command::FleetReplay(a.report.into_config(cfg), extra));
            }
            // Each pod runs the node checks on its node's root; the doctor's own deadline there
            // is half the pod's, so a slow node still reports before the kubelet kills it.
            let secs = duration("--timeout", a.nodes.timeout, Unit::Secs)?.as_secs_f64();
            let mut args: Vec<String> = [
                "check",
                "--root",
                fleet::HOST_MOUNT,
                // The pod is hostNetwork: its own network namespace is the node's.
                "--live-network",
                "-o",
                "json",
                "--offline",
                "--termination-log",
                fleet::TERMINATION_LOG,
            ]
            .map(String::from)
            .to_vec();
            for (flag, list) in [("--only", &a.only), ("--skip", &a.skip)] {
                if !list.is_empty() {
                    args.extend([flag.to_string(), list.join(",")]);
                }
            }
            match a.role {
                RoleArg::Auto => {}
                RoleArg::ControlPlane => args.extend(["--role".into(), "control-plane".into()]),
                RoleArg::Worker => args.extend(["--role".into(), "worker".into()]),
            }
            args.extend(["--timeout".into(), format!("{:.0}", (secs / 2.0).max(5.0))]);
            args.extend(a.policy.shipped()?);
            if a.bundle.is_some() {
                // The pod's root is read-only: its bundle comes back framed in its log.
                args.extend(["--bundle".into(), k8sdoctor::bundle::TO_STDOUT.into()]);
            }
            let (cfg, opts) = a.nodes.options(args)?;
            let cfg = Config {
                bundle: a.bundle,
                ..cfg
            };
            Command::FleetCheck(a.report.into_config(cfg), opts)
        }
        FleetCmd::Multicast(a) => {
            let mc = McOptions {
                host_network: a.host_network,
                group: a.group,
                port: a.port,
                count: a.count,
                interval_ms: duration("--interval", a.interval, Unit::Millis)?.as_secs_f64()
                    * 1000.0,
                ttl: a.ttl,
            };
            let (cfg, opts) = a.nodes.options(Vec::new())?;
            Command::FleetMulticast {
                cfg,
                opts,
                mc,
                json: matches!(a.output, McFormat::Json),
                color: color_wanted(a.no_color),
            }
        }
    })
}

fn multicast_command(cmd: McCmd) -> Result<Command> {
    Ok(match cmd {
        McCmd::Send(a) => Command::McSend(multicast::send::SendOptions {
            group: a.common.group(),
            port: a.common.port,
            ttl: a.ttl,
            interface: a.interface,
            count: a.count,
            duration: secs_opt("--duration", a.duration)?,
            interval: duration("--interval", a.interval, Unit::Millis)?,
            text: a.text,
            numbered: a.mtools.numbered,
            size: a.size,
            multicast_loop: !a.no_loop,
            join: a.join,
            quiet: a.mtools.quiet,
            format: a.common.format(),
        }),
        McCmd::Receive(a) => Command::McReceive(
            multicast::receive::ReceiveOptions {
                group: a.common.group(),
                port: a.common.port,
                interface: a.interface,
                source: a.source,
                count: a.count,
                duration: secs_opt("--duration", a.duration)?,
                numbered: a.mtools.numbered,
                quiet: a.mtools.quiet,
                format: a.common.format(),
            },
            color_wanted(a.common.no_color),
        ),
        // --- multicast node-firewall (issue 21) ---
        McCmd::NodeFirewall(a) => Command::McNodeFirewall(McNodeFw {
            group: a.common.group,
            port: a.common.port,
            format: a.common.format(),
            ipv6: a.common.ipv6,
            peers: a.peers.peers,
            peers_from_configmap: a.peers.peers_from_configmap,
            input: a.input,
            timeout: duration("--timeout", a.timeout, Unit::Secs)?,
            wait: duration("--wait", a.wait, Unit::Secs)?,
            termination_log: a.termination_log,
        }),
        // --- end multicast node-firewall ---
        McCmd::Probe(a) => {
            let interval = duration("--interval", a.interval, Unit::Millis)?;
            let count = match secs_opt("--soak", a.soak)? {
                Some(secs) => {
                    if interval.is_zero() {
                        bail!("--soak needs an --interval above 0");
                    }
                    (secs.as_secs_f64() / interval.as_secs_f64()).ceil() as u64
                }
                None => a.count,
            };
            let v6 = a.common.ipv6 || a.peers.peers.first().is_some_and(IpAddr::is_ipv6);
            Command::McProbe(
                multicast::probe::ProbeOptions {
                    peers: a.peers.peers,
                    local: a.local,
                    group: a.common.group.unwrap_or(multicast::default_group(v6)),
                    port: a.common.port,
                    control_port: a.control_port.unwrap_or(a.common.port.wrapping_add(1)),
                    ttl: a.ttl,
                    count,
                    interval,
                    max_loss: a.max_loss,
                    wait: duration("--wait", a.wait, Unit::Secs)?,
                    format: a.common.format(),
                    progress: io::stderr().is_terminal()
                        && interval.as_secs_f64() * count as f64 > 2.0,
                },
                color_wanted(a.common.no_color),
                a.peers.peers_from_configmap,
                a.termination_log,
            )
        }
    })
}

fn fix_command(a: FixArgs) -> Result<Command> {
    let timeout = duration("--timeout", a.timeout, Unit::Secs)?;
    let mode = match (a.apply, a.undo) {
        (_, Some(j)) => Mode::Undo(j),
        (true, None) => Mode::Apply,
        (false, None) => Mode::DryRun,
    };
    Ok(Command::Fix(Fix {
        opts: FixOptions {
            root: a.root,
            ids: a.ids,
            mode,
            journal_dir: a.journal_dir,
            timeout,
            role: a.role.into(),
        },
        yes: a.yes,
        format: match a.output {
            FixOut::Table => FixFormat::Table,
            FixOut::Json => FixFormat::Json,
        },
        color: color_wanted(a.no_color),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_duration_parser_for_every_flag() {
        assert_eq!(
            duration("--timeout", 1.5, Unit::Secs).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            duration("--interval", 0.0, Unit::Millis).unwrap(),
            Duration::ZERO
        );
        assert_eq!(
            duration("--interval", 250.0, Unit::Millis).unwrap(),
            Duration::from_millis(250)
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e30] {
            let e = duration("--timeout", bad, Unit::Secs).unwrap_err();
            assert_eq!(
                e.to_string(),
                "--timeout must be a positive number of seconds"
            );
        }
        for bad in [-1.0, f64::NAN, 1e30] {
            let e = duration("--interval", bad, Unit::Millis).unwrap_err();
            assert_eq!(
                e.to_string(),
                "--interval must be a number of milliseconds, 0 or more"
            );
        }
    }
}
