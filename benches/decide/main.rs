//! Per-HTLC decision cost (issue 7, benchmarks 1 and 2), side by side in one run:
//!
//! - each example policy as native Rust (the stateful ones, `rate-limit` and
//!   `circuitbreaker`, are their plugin crates compiled natively);
//! - the floor: a bare wasmtime component call of an empty `decide` with the full
//!   naive record (1366-byte onion inside), plus the same without the onion and
//!   under htlcgate's engine settings (fuel + epochs) to attribute the costs;
//! - the same empty `decide` through htlcgate's `Plugin` (htlcgate's own overhead);
//! - each example plugin through htlcgate's `Plugin` (`rate-limit` reading and
//!   writing its kv counters; `circuitbreaker` with the node context, one
//!   iteration being `decide` + the `outcome` that resolves the HTLC);
//! - the 3-plugin chain through htlcgate's `Chain` (one HTLC at a time, and
//!   1,000 in flight);
//! - the fee floor as an out-of-process plugin speaking JSON over a pipe (Rust and
//!   python3 children).
//!
//! `cargo bench --bench decide` prints criterion's figures, then a Markdown table
//! with the ratios and targets. Under `cargo test` every benchmark runs once (Go
//! and AssemblyScript plugins are skipped there: their toolchains may be missing).
//! See benches/README.md.

#[path = "../common/mod.rs"]
mod common;
mod empty;
mod floor;
mod interleave;
mod native;
mod pipe;
mod stateful;
mod summary;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use criterion::{BatchSize, Criterion, Throughput};
use htlcgate::chain::Chain;
use htlcgate::config::{PluginConfig, SandboxConfig};
use htlcgate::verdict::Verdict;
use htlcgate::wasm::engine::Sandbox;
use htlcgate::wasm::input::HtlcInput;
use htlcgate::wasm::plugin::{Plugin, Step};

/// HTLCs in flight in the chain's batch benchmark.
const BATCH: u64 = 1_000;

fn main() -> anyhow::Result<()> {
    if pipe::is_child() {
        pipe::child_main();
        return Ok(());
    }
    let full = common::is_bench_run();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let setup = Setup::new(full)?;
    let interleaved = run(&mut c, setup, full)?;
    c.final_summary();
    if full {
        summary::print(&summary::criterion_home(), &interleaved);
    }
    Ok(())
}

/// Everything the benchmarks call, loaded before any is timed.
struct Setup {
    sandbox: Sandbox,
    /// The passing HTLC as htlcgate's input (record + onion).
    input: Arc<HtlcInput>,
    /// The same HTLC with an empty onion blob.
    input_no_onion: Arc<HtlcInput>,
    /// The same request as LND sends it.
    request: htlcgate::lnd::proto::routerrpc::ForwardHtlcInterceptRequest,
    /// The empty decide for the naive world and for htlcgate's world.
    naive_empty: Vec<u8>,
    htlcgate_empty: Vec<u8>,
    /// Example plugins (name, config), in benchmark order.
    plugins: Vec<PluginConfig>,
}

/// `circuitbreaker`'s benchmark: its plugin name.
const BREAKER: &str = "circuitbreaker";

impl Setup {
    fn new(full: bool) -> anyhow::Result<Setup> {
        let mut names = vec![
            "fee-floor",
            "max-htlc",
            "channel-filter",
            "onion-size",
            "rate-limit",
        ];
        common::build_plugins(&[&names[..], &[BREAKER]].concat())?;
        if full {
            // Go and AssemblyScript need their toolchains; without them those rows
            // are left out, with the reason.
            for other in ["as-fee-floor", "go-fee-floor"] {
                match common::build_plugins(&[other]) {
                    Ok(()) => names.push(other),
                    Err(e) => eprintln!("decide: skipping {other}: {e:#}"),
                }
            }
        }
        let plugins = names.iter().map(|n| plugin_config(n)).collect();
        let repo = common::repo();
        let sandbox = Sandbox::new(&SandboxConfig {
            // Compiled once, then cached: `cargo test` stays quick.
            cache_dir: Some(repo.join("target/bench-cache")),
            ..SandboxConfig::default()
        })
        .context("starting the wasm engine")?
        // circuitbreaker maps the incoming channel to its peer through it.
        .with_node(stateful::node_context()?);
        let request = common::passing_forward(1);
        Ok(Setup {
            sandbox,
            input: Arc::new(HtlcInput::from_request(request.clone())?),
            input_no_onion: Arc::new(HtlcInput::from_request(
                htlcgate::lnd::proto::routerrpc::ForwardHtlcInterceptRequest {
                    onion_blob: Vec::new(),
                    ..request.clone()
                },
            )?),
            request,
            naive_empty: empty::component(
                &repo.join("benches/decide/naive.wit"),
                "naive-decider",
                false,
            )?,
            htlcgate_empty: empty::component(&repo.join("wit/plugin.wit"), "decider", true)?,
            plugins,
        })
    }

    fn load(&self, cfg: &PluginConfig) -> anyhow::Result<Plugin> {
        Plugin::load(&self.sandbox, cfg.clone()).with_context(|| format!("loading {}", cfg.name))
    }

    /// The 3-plugin chain's plugins: channel-filter, max-htlc, fee-floor.
    fn chain_plugins(&self) -> anyhow::Result<Vec<Plugin>> {
        ["channel-filter", "max-htlc", "fee-floor"]
            .iter()
            .map(|n| self.load(&plugin_config(n)))
            .collect()
    }
}

/// The `[[plugin]]` entry each example plugin runs with in the benchmarks.
fn plugin_config(name: &str) -> PluginConfig {
    let mut cfg = PluginConfig::with_defaults(name, common::plugin_path(name));
    let denied = common::DENIED_CHAN.to_string();
    let pairs: &[(&str, &str)] = match name {
        "fee-floor" | "as-fee-floor" | "go-fee-floor" => &[("base_msat", "1000"), ("ppm", "100")],
        "max-htlc" => &[("max_msat", "5000000000")],
        "channel-filter" => &[("deny_in", &denied)],
        "rate-limit" => stateful::RATE_LIMIT,
        BREAKER => stateful::CIRCUITBREAKER,
        _ => &[],
    };
    cfg.config = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let grants: &[&str] = match name {
        "onion-size" => &["onion-blob"],
        "rate-limit" => &["kv"],
        BREAKER => &["kv", "node"],
        _ => &[],
    };
    cfg.grants = grants.iter().map(|g| g.to_string()).collect();
    cfg
}

/// Rounds of the interleaved measurement.
const ROUNDS: usize = 300;

fn run(c: &mut Criterion, s: Setup, full: bool) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let record = &s.input.record;
    let input = &s.input;

    // Native Rust: the policy with no sandbox.
    let fee = native::FeeFloor {
        base_msat: 1_000,
        ppm: 100,
    };
    let max = native::MaxHtlc {
        max_msat: 5_000_000_000,
    };
    let filter = native::ChannelFilter {
        deny_in: vec![common::DENIED_CHAN],
    };
    // The stateful plugins' own crates, natively (SDK stand-ins on this thread;
    // both plugins' few keys in its one map), each checked once to say `next`
    // and to read and write its state.
    let sdk_htlc = native::sdk_htlc(record);
    let sdk_settled = stateful::sdk_settled(record);
    let mut rate_limit = native::RateLimit::new(stateful::RATE_LIMIT)?;
    let mut breaker = native::CircuitBreaker::new(
        stateful::CIRCUITBREAKER,
        record.incoming_circuit_key.chan_id,
        stateful::peer()?,
        htlcgate::mock_node::START_HEIGHT,
    )?;
    let rl_inputs_src = Ring::new(|i| input_with_id(&s.request, i));
    let mut rl_sdk = Ring::new(|i| native::sdk_htlc(&rl_inputs_src.items[i as usize].record));
    stateful::check_rate_limit(
        "native rate-limit",
        &mut || rate_limit.decide(rl_sdk.next()) == native::Says::Next,
        &stateful::native_get,
    )?;
    stateful::check_breaker(
        "native circuitbreaker",
        &mut |half| match half {
            stateful::Half::Decide => breaker.decide(&sdk_htlc) == native::Says::Next,
            stateful::Half::Outcome => breaker.outcome(&sdk_settled).is_ok(),
        },
        &stateful::native_get,
        record,
    )?;
    let chain3 = native::Chain {
        filter: native::ChannelFilter {
            deny_in: vec![common::DENIED_CHAN],
        },
        max: native::MaxHtlc {
            max_msat: 5_000_000_000,
        },
        fee: native::FeeFloor {
            base_msat: 1_000,
            ppm: 100,
        },
    };

    // The floor: bare wasmtime, naive record.
    let mut floors = Vec::new();
    for (id, engine, onion) in [
        ("floor-wasmtime", floor::FloorEngine::Plain, true),
        ("floor-wasmtime-no-onion", floor::FloorEngine::Plain, false),
        ("floor-wasmtime-metered", floor::FloorEngine::Metered, true),
    ] {
        let mut f = floor::Floor::new(&s.naive_empty, engine, &s.request, onion)?;
        anyhow::ensure!(f.call(), "the empty decide must say next");
        floors.push((id, f));
    }
    // A 3-plugin chain's floor: three bare instances called in turn (each call
    // finds another instance's memory and code, as a chain's calls do).
    let mut floor3 = (0..3)
        .map(|_| floor::Floor::new(&s.naive_empty, floor::FloorEngine::Plain, &s.request, true))
        .collect::<anyhow::Result<Vec<_>>>()?;

    // The same empty decide through htlcgate, and each example plugin.
    let empty_cfg = PluginConfig::with_defaults("empty", "benches/decide/empty.rs (WAT)");
    let mut empty = Plugin::from_bytes(&s.sandbox, empty_cfg, &s.htlcgate_empty)
        .map_err(|e| anyhow::anyhow!("loading the empty decide: {e}"))?;
    let mut empty2 = Plugin::from_bytes(
        &s.sandbox,
        PluginConfig::with_defaults("empty-2", "benches/decide/empty.rs (WAT)"),
        &s.htlcgate_empty,
    )
    .map_err(|e| anyhow::anyhow!("loading the empty decide: {e}"))?;
    decide_once(&mut empty, input)?;
    let mut plugins = Vec::new();
    // rate-limit's rows cycle through distinct keys (see [`Ring`]).
    let mut rl_ring = Ring::new(|i| input_with_id(&s.request, i));
    for cfg in &s.plugins {
        let mut p = s.load(cfg)?;
        decide_once(&mut p, input)?;
        if cfg.name == "rate-limit" {
            let ns = s.sandbox.kv.namespace(&cfg.name)?;
            stateful::check_rate_limit(
                "rate-limit",
                &mut || matches!(p.decide(rl_ring.next()).0, Step::Next),
                &stateful::host_get(&ns),
            )?;
        }
        plugins.push((plugin_id(&cfg.name), p));
    }
    // circuitbreaker: one iteration is `decide` + the outcome that resolves the
    // HTLC (it counts each HTLC in flight until then), so its state stays bounded.
    let mut cb = s.load(&plugin_config(BREAKER))?;
    anyhow::ensure!(cb.exports_outcome(), "circuitbreaker must export outcome");
    let settled = stateful::settled(record);
    {
        let ns = s.sandbox.kv.namespace(BREAKER)?;
        stateful::check_breaker(
            "circuitbreaker",
            &mut |half| match half {
                stateful::Half::Decide => matches!(cb.decide(input).0, Step::Next),
                stateful::Half::Outcome => cb.outcome(&settled).0.is_ok(),
            },
            &stateful::host_get(&ns),
            record,
        )?;
    }

    // Three empty decides in a row: htlcgate's own cost of a 3-plugin chain, with
    // no plugin code in it (the target's "3 floors").
    let mut empties = (0..3)
        .map(|i| {
            let cfg =
                PluginConfig::with_defaults(&format!("empty-{i}"), "benches/decide/empty.rs (WAT)");
            Plugin::from_bytes(&s.sandbox, cfg, &s.htlcgate_empty)
                .map_err(|e| anyhow::anyhow!("loading the empty decide: {e}"))
        })
        .collect::<anyhow::Result<Vec<Plugin>>>()?;

    // The 3-plugin chain: the three calls on one thread, and through `Chain`.
    let mut seq = s.chain_plugins()?;
    let chain = Chain::from_plugins(s.chain_plugins()?, Verdict::Resume);
    let d = chain
        .decide(input.clone())
        .blocking_recv()
        .context("the chain dropped the HTLC")?;
    anyhow::ensure!(d.trace.len() == 3, "all three plugins must run: {d:?}");

    // The same policy out of process, JSON over a pipe.
    let mut pipes = vec![(
        "pipe-rust-fee-floor",
        pipe::PipePlugin::start(pipe::ChildKind::Rust)?,
    )];
    match pipe::PipePlugin::start(pipe::ChildKind::Python) {
        Ok(py) => pipes.push(("pipe-python-fee-floor", py)),
        Err(e) => eprintln!("decide: skipping the python3 pipe child: {e:#}"),
    }
    // A chain of 3 the way Core Lightning runs hooks: each plugin its own process,
    // asked one after the other.
    let mut pipe_chains: Vec<(&'static str, Vec<pipe::PipePlugin>)> = vec![(
        "pipe-rust-chain-3",
        (0..3)
            .map(|_| pipe::PipePlugin::start(pipe::ChildKind::Rust))
            .collect::<anyhow::Result<_>>()?,
    )];
    if pipes.len() > 1 {
        pipe_chains.push((
            "pipe-python-chain-3",
            (0..3)
                .map(|_| pipe::PipePlugin::start(pipe::ChildKind::Python))
                .collect::<anyhow::Result<_>>()?,
        ));
    }

    // criterion, one benchmark after the other.
    let mut g = c.benchmark_group("decide");
    g.bench_function("native-fee-floor", |b| {
        b.iter(|| fee.decide(black_box(record)))
    });
    g.bench_function("native-max-htlc", |b| {
        b.iter(|| max.decide(black_box(record)))
    });
    g.bench_function("native-channel-filter", |b| {
        b.iter(|| filter.decide(black_box(record)))
    });
    g.bench_function("native-chain-3", |b| {
        b.iter(|| chain3.decide(black_box(record)))
    });
    g.bench_function("native-rate-limit", |b| {
        b.iter(|| rate_limit.decide(black_box(rl_sdk.next())))
    });
    g.bench_function("native-circuitbreaker", |b| {
        b.iter(|| {
            let says = breaker.decide(black_box(&sdk_htlc));
            (says, breaker.outcome(black_box(&sdk_settled)))
        })
    });
    for (id, f) in floors.iter_mut() {
        g.bench_function(*id, |b| b.iter(|| f.call()));
    }
    g.bench_function("htlcgate-empty", |b| {
        b.iter(|| empty.decide(black_box(input)))
    });
    let no_onion = &s.input_no_onion;
    g.bench_function("htlcgate-empty-no-onion", |b| {
        b.iter(|| empty2.decide(black_box(no_onion)))
    });
    for (id, p) in plugins.iter_mut() {
        if *id == "htlcgate-rate-limit" {
            g.bench_function(*id, |b| b.iter(|| p.decide(black_box(rl_ring.next()))));
        } else {
            g.bench_function(*id, |b| b.iter(|| p.decide(black_box(input))));
        }
    }
    g.bench_function("htlcgate-circuitbreaker", |b| {
        b.iter(|| (cb.decide(black_box(input)), cb.outcome(black_box(&settled))))
    });
    g.bench_function("input-from-request", |b| {
        b.iter_batched(
            || s.request.clone(),
            |req| Arc::new(HtlcInput::from_request(req).expect("has a key")),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("htlcgate-chain-3-sequential", |b| {
        b.iter(|| {
            for p in seq.iter_mut() {
                black_box(p.decide(input));
            }
        })
    });
    g.bench_function("floor-wasmtime-x3", |b| {
        b.iter(|| {
            for f in floor3.iter_mut() {
                black_box(f.call());
            }
        })
    });
    g.bench_function("htlcgate-chain-3-empty-sequential", |b| {
        b.iter(|| {
            for p in empties.iter_mut() {
                black_box(p.decide(input));
            }
        })
    });
    g.bench_function("htlcgate-chain-3", |b| {
        b.iter(|| decide_chain(&chain, input))
    });
    for (id, p) in pipes.iter_mut() {
        g.bench_function(*id, |b| {
            b.iter(|| p.call(&s.request).expect("pipe child answers"))
        });
    }
    for (id, ps) in pipe_chains.iter_mut() {
        g.bench_function(*id, |b| {
            b.iter(|| {
                for p in ps.iter_mut() {
                    p.call(&s.request).expect("pipe child answers");
                }
            })
        });
    }
    g.finish();

    // Throughput: 1,000 HTLCs in flight in the chain (its threads pipeline them).
    let mut g = c.benchmark_group("chain-batch");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("htlcgate-chain-3-x1000", |b| {
        b.iter(|| batch(&chain, input))
    });
    g.finish();

    // The same subjects again, interleaved: the ratios of the summary.
    use interleave::Subject;
    let mut subjects: Vec<Subject<'_>> = Vec::new();
    subjects.push(Subject {
        id: "native-chain-3",
        call: Box::new(|| {
            black_box(chain3.decide(black_box(record)));
        }),
    });
    subjects.push(Subject {
        id: "native-rate-limit",
        call: Box::new(|| {
            black_box(rate_limit.decide(black_box(rl_sdk.next())));
        }),
    });
    subjects.push(Subject {
        id: "native-circuitbreaker",
        call: Box::new(|| {
            let says = breaker.decide(black_box(&sdk_htlc));
            let _ = black_box((says, breaker.outcome(black_box(&sdk_settled))));
        }),
    });
    for (id, f) in floors.iter_mut() {
        subjects.push(Subject {
            id,
            call: Box::new(move || {
                black_box(f.call());
            }),
        });
    }
    subjects.push(Subject {
        id: "htlcgate-empty",
        call: Box::new(|| {
            black_box(empty.decide(input));
        }),
    });
    subjects.push(Subject {
        id: "htlcgate-empty-no-onion",
        call: Box::new(|| {
            black_box(empty2.decide(no_onion));
        }),
    });
    let mut rl_ring = Some(rl_ring);
    for (id, p) in plugins.iter_mut() {
        let call: Box<dyn FnMut() + '_> = match rl_ring.take_if(|_| *id == "htlcgate-rate-limit") {
            Some(mut ring) => Box::new(move || {
                black_box(p.decide(ring.next()));
            }),
            None => Box::new(move || {
                black_box(p.decide(input));
            }),
        };
        subjects.push(Subject { id, call });
    }
    subjects.push(Subject {
        id: "htlcgate-circuitbreaker",
        call: Box::new(|| {
            let _ = black_box((cb.decide(input), cb.outcome(&settled)));
        }),
    });
    subjects.push(Subject {
        id: "htlcgate-chain-3-sequential",
        call: Box::new(|| {
            for p in seq.iter_mut() {
                black_box(p.decide(input));
            }
        }),
    });
    subjects.push(Subject {
        id: "floor-wasmtime-x3",
        call: Box::new(|| {
            for f in floor3.iter_mut() {
                black_box(f.call());
            }
        }),
    });
    subjects.push(Subject {
        id: "htlcgate-chain-3-empty-sequential",
        call: Box::new(|| {
            for p in empties.iter_mut() {
                black_box(p.decide(input));
            }
        }),
    });
    subjects.push(Subject {
        id: "htlcgate-chain-3",
        call: Box::new(|| decide_chain(&chain, input)),
    });
    subjects.push(Subject {
        id: "htlcgate-chain-3-x1000",
        call: Box::new(|| batch(&chain, input)),
    });
    for (id, p) in pipes.iter_mut() {
        let req = &s.request;
        subjects.push(Subject {
            id,
            call: Box::new(move || {
                p.call(req).expect("pipe child answers");
            }),
        });
    }
    for (id, ps) in pipe_chains.iter_mut() {
        let req = &s.request;
        subjects.push(Subject {
            id,
            call: Box::new(move || {
                for p in ps.iter_mut() {
                    p.call(req).expect("pipe child answers");
                }
            }),
        });
    }
    let rounds = if full { ROUNDS } else { 1 };
    let mut medians = interleave::run(&mut subjects, rounds);
    for (id, ns) in medians.iter_mut() {
        if id.starts_with("htlcgate-chain-3-x1000") {
            *ns /= BATCH as f64;
        }
    }
    Ok(medians)
}

/// The criterion id of an example plugin's row.
fn plugin_id(name: &str) -> &'static str {
    match name {
        "fee-floor" => "htlcgate-fee-floor",
        "max-htlc" => "htlcgate-max-htlc",
        "channel-filter" => "htlcgate-channel-filter",
        "onion-size" => "htlcgate-onion-size",
        "rate-limit" => "htlcgate-rate-limit",
        "as-fee-floor" => "htlcgate-as-fee-floor",
        "go-fee-floor" => "htlcgate-go-fee-floor",
        other => panic!("no benchmark id for plugin {other}"),
    }
}

/// One HTLC through the chain, waiting for its decision.
fn decide_chain(chain: &Chain, input: &Arc<HtlcInput>) {
    chain
        .decide(input.clone())
        .blocking_recv()
        .expect("decided");
}

/// [`BATCH`] HTLCs in flight through the chain, waiting for all decisions.
fn batch(chain: &Chain, input: &Arc<HtlcInput>) {
    let rxs: Vec<_> = (0..BATCH).map(|_| chain.decide(input.clone())).collect();
    for rx in rxs {
        rx.blocking_recv().expect("decided");
    }
}

/// HTLCs the rate-limit rows cycle through: the benchmark HTLC under distinct
/// ids. rate-limit counts each circuit key once (an HTLC asked again after a
/// reload is not counted twice), so timing one key over and over would time its
/// "already counted" path; it remembers the last 2,048 ids per channel, so a
/// ring twice that long makes every call count a new HTLC.
struct Ring<T> {
    items: Vec<T>,
    next: usize,
}

/// The ring's length.
const RING: u64 = 4_096;

impl<T> Ring<T> {
    /// `make(i)` for i in 0..[`RING`].
    fn new(make: impl FnMut(u64) -> T) -> Ring<T> {
        Ring {
            items: (0..RING).map(make).collect(),
            next: 0,
        }
    }

    /// The next item, round and round.
    fn next(&mut self) -> &T {
        let i = self.next;
        self.next = (i + 1) % self.items.len();
        &self.items[i]
    }
}

/// The benchmark request under HTLC id `base + i`, as htlcgate's input.
fn input_with_id(
    request: &htlcgate::lnd::proto::routerrpc::ForwardHtlcInterceptRequest,
    i: u64,
) -> Arc<HtlcInput> {
    let mut r = request.clone();
    if let Some(k) = r.incoming_circuit_key.as_mut() {
        k.htlc_id = k.htlc_id.wrapping_add(1_000_000 + i);
    }
    Arc::new(HtlcInput::from_request(r).expect("the benchmark request has a key"))
}

/// Decides once and checks the plugin passes the benchmark HTLC.
fn decide_once(p: &mut Plugin, input: &Arc<HtlcInput>) -> anyhow::Result<()> {
    match p.decide(input).0 {
        Step::Next => Ok(()),
        other => anyhow::bail!("{} should pass the benchmark HTLC: {other:?}", p.name),
    }
}
