//! The one wasmtime engine every plugin runs on, and the clock that enforces
//! wall-clock deadlines.
//!
//! Deadlines use epoch interruption: a ticker thread advances the engine's epoch every
//! [`TICK`] while a plugin call runs (`wasm/clock.rs`; it parks when none has run for
//! a while), and each call sets its deadline in ticks. Unlike a watchdog that kills
//! threads, this costs one load and compare at loop headers and function entries and
//! cannot leave a store half-written: the guest traps at a safe point.

use std::sync::Arc;

use wasmtime::component::Component;
use wasmtime::{Config, Engine, OptLevel};

use crate::wasm::cache::{CacheOutcome, CompileCache};
use crate::wasm::clock::{CallMarker, EpochClock, PARKED_LOOK};

use crate::config::SandboxConfig;
use crate::kv::KvStore;
use crate::lnd::node::NodeContext;

pub use crate::wasm::clock::{ticks, TICK};

/// The engine plus its epoch ticker; dropping the last clone stops the ticker.
#[derive(Clone)]
pub struct Sandbox {
    /// The wasmtime engine (fuel, epochs and stack cap enabled).
    pub engine: Engine,
    /// The compiled-code cache, if enabled.
    pub cache: Option<CompileCache>,
    /// Plugin key-value state (memory only unless set with [`Sandbox::with_kv`]).
    pub kv: KvStore,
    /// The node context behind the `channel` and `block-height` imports; `None`
    /// (both answer none) unless set with [`Sandbox::with_node`].
    pub node: Option<NodeContext>,
    /// A replay's sandbox: plugins' monotonic clock and randomness come from the
    /// recorded HTLCs ([`crate::wasm::determinism`]); set with
    /// [`Sandbox::for_replay`].
    pub replay: bool,
    /// Keeps the ticker alive; the ticker stops when the last `Sandbox` is dropped.
    ticker: Arc<Ticker>,
}

struct Ticker {
    clock: Arc<EpochClock>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.clock.stop();
    }
}

impl Sandbox {
    /// Builds the engine with fuel metering, epoch interruption and the stack cap,
    /// and starts the ticker thread.
    pub fn new(cfg: &SandboxConfig) -> anyhow::Result<Sandbox> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(cfg.max_wasm_stack_kb * 1024)
            .cranelift_opt_level(OptLevel::Speed);
        let engine = Engine::new(&config)?;
        let clock = EpochClock::start(&engine, PARKED_LOOK)?;
        let cache = match &cfg.cache_dir {
            Some(dir) => match CompileCache::new(dir, &engine) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "compile cache disabled: {e}");
                    None
                }
            },
            None => None,
        };
        Ok(Sandbox {
            engine,
            cache,
            kv: KvStore::memory(),
            node: None,
            replay: false,
            ticker: Arc::new(Ticker { clock }),
        })
    }

    /// The same sandbox with plugin state kept in `kv` (the journal's store, so that
    /// it survives restarts and is durable before the verdicts that depend on it).
    pub fn with_kv(mut self, kv: KvStore) -> Sandbox {
        self.kv = kv;
        self
    }

    /// The same sandbox with plugins' `channel` and `block-height` imports answered
    /// from `node` (memory reads: a plugin never waits on LND).
    pub fn with_node(mut self, node: NodeContext) -> Sandbox {
        self.node = Some(node);
        self
    }

    /// The same sandbox for `htlcgate replay`: plugins' monotonic clock and
    /// randomness are derived from the recorded HTLCs, so that a replay decides
    /// the same way every time ([`crate::wasm::determinism`]).
    pub fn for_replay(mut self) -> Sandbox {
        self.replay = true;
        self
    }

    /// A marker for one plugin's calls: the epoch advances (deadlines run) only
    /// while some plugin's call is marked running.
    pub fn call_marker(&self) -> CallMarker {
        self.ticker.clock.marker()
    }

    /// Compiles a component, through the cache when there is one.
    pub fn compile(&self, bytes: &[u8]) -> wasmtime::Result<(Component, CacheOutcome)> {
        match &self.cache {
            Some(c) => c.load(&self.engine, bytes),
            None => Ok((Component::new(&self.engine, bytes)?, CacheOutcome::Miss)),
        }
    }
}
