//! The `htlcgate` command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use htlcgate::daemon::{self, LndFlags, ObserveFlags};

/// Policy on LND's HTLC forwarding path: a chain of sandboxed WebAssembly plugins
/// decides every forwarded HTLC.
#[derive(Parser, Debug)]
// `args_conflicts_with_subcommands`: `htlcgate --config X run` would otherwise
// take `--config X` for a bare `htlcgate` and run `run` with its defaults.
#[command(
    name = "htlcgate",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// What to do (default: run).
    #[command(subcommand)]
    command: Option<Command>,
    /// Flags for `run` when no subcommand is given.
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args, Debug, Clone)]
struct RunArgs {
    /// The TOML configuration file.
    #[arg(long, default_value = "htlcgate.toml")]
    config: PathBuf,
    /// LND's gRPC address, host:port (default localhost:10009).
    #[arg(long = "lnd.rpcserver")]
    rpcserver: Option<String>,
    /// LND's TLS certificate (default ~/.lnd/tls.cert).
    #[arg(long = "lnd.tlscertpath")]
    tlscertpath: Option<PathBuf>,
    /// A macaroon with offchain:read offchain:write (default the network's
    /// admin.macaroon).
    #[arg(long = "lnd.macaroonpath")]
    macaroonpath: Option<PathBuf>,
    /// mainnet | testnet | testnet4 | signet | regtest (default mainnet).
    #[arg(long)]
    network: Option<String>,
    /// Serve Prometheus /metrics and /healthz on HOST:PORT (off by default; e.g.
    /// 127.0.0.1:10088). Overrides `[metrics] listen`.
    #[arg(long = "metrics.listen", value_name = "HOST:PORT")]
    metrics_listen: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Hold LND's interceptor stream and decide every HTLC with the configured chain.
    Run(RunArgs),
    /// Start a mock LND on loopback and stream HTLCs through the example chain.
    Demo(htlcgate::demo::DemoArgs),
    /// Turn a core WebAssembly module built with the Go or AssemblyScript SDK into a
    /// plugin component (the world and the WASI adapter are built in).
    Componentize(htlcgate::componentize::ComponentizeArgs),
    /// Validate a plugin against the world, run its init and decide sample HTLCs,
    /// showing verdict, fuel and time.
    Check(htlcgate::check::CheckArgs),
    /// Plugin author's tools: `plugin new NAME --lang rust|go|assemblyscript`.
    #[command(subcommand)]
    Plugin(htlcgate::scaffold::PluginCommand),
    /// Run a config's chain offline over recorded HTLCs (audit log or `corpus`
    /// output); with --against, show where two configs' verdicts differ.
    Replay(htlcgate::replay::ReplayArgs),
    /// Print realistic HTLCs as JSON lines (for replay, benchmarks and tests).
    Corpus(htlcgate::corpus::CorpusArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The demo prints its own lines; only warnings (plugin faults) join them.
    let default_filter = match cli.command {
        Some(Command::Demo(_)) => "warn,htlcgate::mock_lnd=error",
        // Their output is data on stdout: logs go to stderr, only errors by default
        // (plugin faults are counted in replay's summary).
        Some(Command::Replay(_)) | Some(Command::Corpus(_)) => "error",
        _ => "info,h2=warn,tower=warn,hyper=warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_filter.into());
    match cli.command {
        Some(Command::Replay(_)) | Some(Command::Corpus(_)) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_writer(std::io::stderr)
            .init(),
        _ => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .init(),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        None => rt.block_on(run(cli.run)),
        Some(Command::Run(args)) => rt.block_on(run(args)),
        Some(Command::Demo(args)) => rt.block_on(htlcgate::demo::run(args.into())),
        Some(Command::Componentize(args)) => htlcgate::componentize::run(args),
        Some(Command::Check(args)) => htlcgate::check::run(args),
        Some(Command::Plugin(cmd)) => htlcgate::scaffold::run(cmd),
        Some(Command::Replay(args)) => rt.block_on(htlcgate::replay::run(args)),
        Some(Command::Corpus(args)) => htlcgate::corpus::run(args),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    daemon::run_with(
        args.config,
        LndFlags {
            rpcserver: args.rpcserver,
            tlscertpath: args.tlscertpath,
            macaroonpath: args.macaroonpath,
            network: args.network,
        },
        ObserveFlags {
            metrics_listen: args.metrics_listen,
        },
    )
    .await
}
