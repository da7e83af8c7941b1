//! One plugin: its compiled component, its long-lived sandboxed instance, and the
//! bookkeeping that turns misbehaviour into faults and quarantine.
//!
//! The component is compiled and pre-instantiated once at load ([`Plugin::load`]),
//! against world 0.2.0 or, failing that, the frozen 0.1.0 (`wasm::world`);
//! `decide` and `outcome` run on one long-lived instance, with fuel, an epoch
//! deadline and a memory cap set per call. After a trap the instance is thrown
//! away and rebuilt (wasmtime refuses to re-enter a component instance that
//! trapped, and its memory may be half-written).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;

use crate::config::PluginConfig;
use crate::kv::Namespace;
use crate::verdict::{self, Verdict};
use crate::wasm::bindings::{HtlcOutcome, Resolution};
use crate::wasm::clock::CallMarker;
use crate::wasm::determinism::Determinism;
use crate::wasm::engine::{ticks, Sandbox};
use crate::wasm::fault::PluginFault;
use crate::wasm::grants;
use crate::wasm::imports::{LogLimiter, PluginState};
use crate::wasm::input::HtlcInput;
use crate::wasm::world::{Exports, Pre, PrepareError};
use sha2::Digest;

/// Why a plugin could not be loaded. Each names the plugin, the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("plugin `{plugin}` ({path}): cannot read the file: {reason}")]
    Read {
        /// Plugin name.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// A core wasm module, not a component.
    #[error("plugin `{plugin}` ({path}): this is a core WebAssembly module, not a component; build it for wasm32-wasip2 (Rust) or turn it into a component with the SDK's build command (see README, Writing a plugin)")]
    CoreModule {
        /// Plugin name.
        plugin: String,
        /// Its file.
        path: PathBuf,
    },
    /// Not WebAssembly, or a component wasmtime cannot compile.
    #[error("plugin `{plugin}` ({path}): not a valid WebAssembly component: {reason}")]
    Invalid {
        /// Plugin name.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// The compiler's message.
        reason: String,
    },
    /// The component implements neither version of the `decider` world
    /// (`htlcgate:plugin@0.2.0` nor `@0.1.0`), or imports something htlcgate does
    /// not provide.
    #[error("plugin `{plugin}` ({path}): fits neither the htlcgate:plugin@0.2.0 nor the htlcgate:plugin@0.1.0 `decider` world: {reason}; build it against wit/plugin.wit (0.2.0, what the SDKs use) or wit/v0.1/plugin.wit (0.1.0)")]
    WrongWorld {
        /// Plugin name.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// Which import or export does not match, for each version.
        reason: String,
    },
    /// The file's sha256 is not the configured one.
    #[error("plugin `{plugin}` ({path}): sha256 is {actual}, but the config expects {expected}; the file changed: check where it came from, then update `sha256` in [[plugin]]")]
    IntegrityMismatch {
        /// Plugin name.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// The configured hash.
        expected: String,
        /// The file's hash.
        actual: String,
    },
    /// The component imports a capability its entry does not grant.
    #[error("plugin `{plugin}` ({path}): imports `{import}` ({gives}), which is not granted; add grants = [\"{grant}\"] to its [[plugin]] entry if you trust it with that")]
    NotGranted {
        /// Plugin name.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// The import.
        import: String,
        /// The capability to grant.
        grant: &'static str,
        /// What the capability gives.
        gives: &'static str,
    },
    /// The plugin's key-value namespace could not be opened.
    #[error("plugin `{plugin}` ({path}): cannot open its key-value state: {reason}; check the journal file (`journal.path`)")]
    State {
        /// Plugin name.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// The store's message.
        reason: String,
    },
    /// `init` returned an error.
    #[error("plugin `{plugin}` ({path}): init refused the configuration: {message}; fix [plugin.config] for `{plugin}`")]
    InitRefused {
        /// Plugin name.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// The plugin's own message.
        message: String,
    },
    /// Instantiation or `init` faulted (trap, fuel, deadline, memory).
    #[error("plugin `{plugin}` ({path}): failed while starting (instantiate + init): {fault}")]
    InitFault {
        /// Plugin name.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// The fault; its limits are `init_fuel` and `init_timeout_ms`.
        fault: PluginFault,
    },
}

/// What one plugin said about one HTLC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// No opinion: the next plugin decides.
    Next,
    /// A valid verdict.
    Verdict(Verdict),
    /// The plugin faulted; its `on_fault` applies.
    Fault(PluginFault),
    /// The plugin is quarantined and was not called; its `on_fault` applies.
    Quarantined,
    /// The plugin answered `hold(ms)`: keep the HTLC held and ask this plugin
    /// again after this long (at least 1 ms). Not a verdict and not a fault.
    Hold(Duration),
}

/// The cost of one call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Fuel units used.
    pub fuel: u64,
    /// Wall-clock time of the call.
    pub elapsed: Duration,
}

struct Live {
    store: Store<PluginState>,
    exports: Exports,
}

/// A loaded plugin: compiled, instantiated and `init`ed.
pub struct Plugin {
    /// Its `[[plugin]]` entry.
    pub cfg: PluginConfig,
    /// Its name, shared with log lines.
    pub name: Arc<str>,
    sandbox: Sandbox,
    /// Marks this plugin's calls running, for the epoch ticker.
    marker: CallMarker,
    pre: Pre,
    live: Option<Live>,
    /// The log rate limiter, shared by every instance this plugin gets.
    log: Arc<std::sync::Mutex<LogLimiter>>,
    /// Its key-value namespace, when granted `kv`.
    kv: Option<Arc<Namespace>>,
    /// Its replay clock and randomness, in a replay's sandbox
    /// ([`Sandbox::for_replay`]); shared by every instance it gets.
    determinism: Option<Arc<Determinism>>,
    consecutive_faults: u32,
    quarantined: bool,
    /// The plugin called `ignore-outcomes` (in any instance): `outcome` is not
    /// called any more.
    ignores_outcomes: bool,
}

/// The component magic: `\0asm`, then layer 1 (component) version 0x0d.
const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
/// A core module header (version 1).
const MODULE_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

impl Plugin {
    /// In a replay's sandbox, the plugin's replay clock and randomness (which
    /// count the decisions that read randomness); `None` elsewhere.
    pub fn determinism(&self) -> Option<Arc<Determinism>> {
        self.determinism.clone()
    }

    /// Reads, compiles, links, instantiates and `init`s a plugin.
    pub fn load(sandbox: &Sandbox, cfg: PluginConfig) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(&cfg.path).map_err(|e| LoadError::Read {
            plugin: cfg.name.clone(),
            path: cfg.path.clone(),
            reason: e.to_string(),
        })?;
        Plugin::from_bytes(sandbox, cfg, &bytes)
    }

    /// As [`Plugin::load`], from bytes already read (`cfg.path` names them in errors).
    pub fn from_bytes(
        sandbox: &Sandbox,
        cfg: PluginConfig,
        bytes: &[u8],
    ) -> Result<Plugin, LoadError> {
        let plugin = cfg.name.clone();
        let path = cfg.path.clone();
        if let Some(expected) = &cfg.sha256 {
            let actual = hex::encode(sha2::Sha256::digest(bytes));
            if &actual != expected {
                return Err(LoadError::IntegrityMismatch {
                    plugin,
                    path,
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        if bytes.starts_with(&MODULE_HEADER) {
            return Err(LoadError::CoreModule { plugin, path });
        }
        if !bytes.starts_with(&COMPONENT_HEADER) {
            return Err(LoadError::Invalid {
                plugin,
                path,
                reason: "the file does not start with the WebAssembly component header (\\0asm, version 0x0d)".into(),
            });
        }
        let (component, cached) = sandbox.compile(bytes).map_err(|e| LoadError::Invalid {
            plugin: plugin.clone(),
            path: path.clone(),
            reason: format!("{e:#}"),
        })?;
        tracing::debug!(plugin = %plugin, cache = ?cached, "plugin compiled");
        for (import, _) in component.component_type().imports(&sandbox.engine) {
            if let Some(cap) = grants::covering(import) {
                if !cfg.grants.iter().any(|g| g == cap.name) {
                    return Err(LoadError::NotGranted {
                        plugin,
                        path,
                        import: import.to_owned(),
                        grant: cap.name,
                        gives: cap.gives,
                    });
                }
            }
        }
        let pre = Pre::new(sandbox, &component).map_err(|e| match e {
            PrepareError::Linker(reason) => LoadError::Invalid {
                plugin: plugin.clone(),
                path: path.clone(),
                reason,
            },
            e @ PrepareError::Neither { .. } => LoadError::WrongWorld {
                plugin: plugin.clone(),
                path: path.clone(),
                reason: e.to_string(),
            },
        })?;
        tracing::debug!(
            plugin = %plugin,
            world = pre.version(),
            outcome = pre.exports_outcome(),
            "plugin linked"
        );
        let name: Arc<str> = Arc::from(cfg.name.as_str());
        let log = Arc::new(std::sync::Mutex::new(LogLimiter::new(name.clone())));
        let kv = if cfg.grants.iter().any(|g| g == "kv") {
            Some(
                sandbox
                    .kv
                    .namespace(&cfg.name)
                    .map_err(|e| LoadError::State {
                        plugin: plugin.clone(),
                        path: path.clone(),
                        reason: e.to_string(),
                    })?,
            )
        } else {
            None
        };
        let determinism = sandbox.replay.then(|| Determinism::new(&name));
        let mut p = Plugin {
            cfg,
            name,
            sandbox: sandbox.clone(),
            marker: sandbox.call_marker(),
            pre,
            live: None,
            log,
            kv,
            determinism,
            consecutive_faults: 0,
            quarantined: false,
            ignores_outcomes: false,
        };
        let live = p.start()?;
        p.ignores_outcomes = live.store.data().ignores_outcomes;
        p.live = Some(live);
        Ok(p)
    }

    /// Instantiates and runs `init` under the init limits (the deadline runs: the
    /// start is marked as a running call).
    fn start(&self) -> Result<Live, LoadError> {
        self.marker.enter();
        let started = self.instantiate_and_init();
        self.marker.exit();
        started
    }

    fn instantiate_and_init(&self) -> Result<Live, LoadError> {
        self.instantiate_and_init_with(self.kv.clone())
    }

    /// Whether the plugin listens to outcomes: it exports `outcome` and does not
    /// answer one with `ignore-outcomes` (as Rust SDK plugins that keep the
    /// default `Plugin::outcome` do). Found out on a throwaway instance with
    /// throwaway key-value state, told one sample event (a forward of HTLC 0:0
    /// failed downstream): this plugin's instance and state are not touched. A
    /// probe that cannot run counts as listening.
    pub fn listens_to_outcomes(&self) -> bool {
        if !self.wants_outcomes() {
            return false;
        }
        let kv = match &self.kv {
            None => None,
            Some(_) => match crate::kv::KvStore::memory().namespace(&self.cfg.name) {
                Ok(ns) => Some(ns),
                Err(_) => return true,
            },
        };
        let sample = crate::wasm::outcome::sample(0);
        self.marker.enter();
        let ignored = match self.instantiate_and_init_with(kv) {
            Ok(mut probe) => {
                let store = &mut probe.store;
                arm(store, self.cfg.fuel, self.cfg.timeout, Instant::now());
                probe.exports.call_outcome(store, &sample).is_ok() && store.data().ignores_outcomes
            }
            Err(_) => false,
        };
        self.marker.exit();
        !ignored
    }

    /// Instantiates and runs `init` with `kv` as the plugin's key-value state.
    fn instantiate_and_init_with(&self, kv: Option<Arc<Namespace>>) -> Result<Live, LoadError> {
        let fault = |fault| LoadError::InitFault {
            plugin: self.cfg.name.clone(),
            path: self.cfg.path.clone(),
            fault,
        };
        let mut state = PluginState::new(
            self.name.clone(),
            self.cfg.memory_bytes,
            self.log.clone(),
            self.determinism.clone(),
        );
        state.kv = kv.map(|ns| (ns, self.cfg.kv));
        state.node = self.sandbox.node.clone();
        let mut store = Store::new(&self.sandbox.engine, state);
        store.limiter(|s| &mut s.memory);
        store.epoch_deadline_trap();
        arm(
            &mut store,
            self.cfg.init_fuel,
            self.cfg.init_timeout,
            Instant::now(),
        );
        let classify = |store: &Store<PluginState>, e: &wasmtime::Error| {
            PluginFault::from_call_error(
                e,
                self.cfg.init_fuel,
                self.cfg.init_timeout,
                store.data().memory.hit,
                self.cfg.memory_bytes,
            )
        };
        // Instantiation runs the guest's start-up code (the Go runtime's, for Go
        // plugins), so it shares init's fuel and deadline.
        let exports = match self.pre.instantiate(&mut store) {
            Ok(b) => b,
            Err(e) => {
                let f = classify(&store, &e);
                // A missing import surfaces here for components whose imports only
                // resolve at instantiation; it is a trap-free error.
                return Err(match f {
                    PluginFault::Trap { message } => LoadError::WrongWorld {
                        plugin: self.cfg.name.clone(),
                        path: self.cfg.path.clone(),
                        reason: message,
                    },
                    f => fault(f),
                });
            }
        };
        match exports.call_init(&mut store, &self.cfg.config) {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                return Err(LoadError::InitRefused {
                    plugin: self.cfg.name.clone(),
                    path: self.cfg.path.clone(),
                    message,
                })
            }
            Err(e) => return Err(fault(classify(&store, &e))),
        }
        Ok(Live { store, exports })
    }

    /// Whether the plugin is quarantined (not called; its `on_fault` applies).
    pub fn is_quarantined(&self) -> bool {
        self.quarantined
    }

    /// The version of the plugin world the component was built for: `"0.2.0"`
    /// or `"0.1.0"`.
    pub fn world_version(&self) -> &'static str {
        self.pre.version()
    }

    /// Whether the component exports `outcome` (a 0.1.0 plugin never does).
    pub fn exports_outcome(&self) -> bool {
        self.pre.exports_outcome()
    }

    /// Whether `outcome` is worth calling: the component exports it and the
    /// plugin has not called `ignore-outcomes` (as every Rust SDK plugin that
    /// keeps the default `Plugin::outcome` does at its first outcome).
    pub fn wants_outcomes(&self) -> bool {
        self.exports_outcome() && !self.ignores_outcomes
    }

    /// Asks the plugin about one HTLC. Never panics and never blocks longer than the
    /// plugin's `timeout_ms` (plus re-instantiation after a trap, bounded by
    /// `init_timeout_ms`).
    pub fn decide(&mut self, input: &Arc<HtlcInput>) -> (Step, Cost) {
        if self.quarantined {
            return (Step::Quarantined, Cost::default());
        }
        let started = Instant::now();
        let (result, fuel_used) = self.call(started, Some(input.clone()), |exports, store| {
            exports.call_decide(store, input)
        });
        let cost = Cost {
            fuel: fuel_used,
            elapsed: started.elapsed(),
        };
        let step = match result {
            // Not a verdict: validate never sees it.
            Ok(Resolution::Hold(ms)) => Step::Hold(Duration::from_millis(u64::from(ms.max(1)))),
            Ok(resolution) => match verdict::validate(&resolution, &input.record.payment_hash) {
                Ok(Some(v)) => Step::Verdict(v),
                Ok(None) => Step::Next,
                Err(invalid) => Step::Fault(PluginFault::InvalidVerdict(invalid)),
            },
            Err(fault) => Step::Fault(fault),
        };
        if let Step::Fault(fault) = &step {
            self.consecutive_faults += 1;
            if fault.poisons_instance() {
                self.live = None;
                self.restart();
            }
            if self.consecutive_faults >= self.cfg.max_faults {
                self.quarantined = true;
                tracing::error!(
                    plugin = &*self.name,
                    faults = self.consecutive_faults,
                    on_fault = ?self.cfg.on_fault,
                    "plugin quarantined after {} consecutive faults: it is no longer called, its on_fault policy applies until its file changes or htlcgate restarts",
                    self.consecutive_faults
                );
            }
        } else {
            self.consecutive_faults = 0;
        }
        (step, cost)
    }

    /// Tells the plugin what happened to a forward (its `outcome` export), under
    /// the same fuel, deadline and memory cap as `decide`. Does nothing (and
    /// costs nothing) for a plugin without the export, 0.1.0 plugins included,
    /// one that called `ignore-outcomes`, and a quarantined plugin.
    ///
    /// A fault is returned for the caller to log and count: it never affects a
    /// verdict and does not count toward quarantine. A trap still replaces the
    /// instance, as in `decide` (the plugin is quarantined only if that fails).
    pub fn outcome(&mut self, outcome: &HtlcOutcome) -> (Result<(), PluginFault>, Cost) {
        if self.quarantined || !self.wants_outcomes() {
            return (Ok(()), Cost::default());
        }
        let started = Instant::now();
        let (result, fuel_used) = self.call(started, None, |exports, store| {
            exports.call_outcome(store, outcome)
        });
        let cost = Cost {
            fuel: fuel_used,
            elapsed: started.elapsed(),
        };
        if let Err(fault) = &result {
            if fault.poisons_instance() {
                self.live = None;
                self.restart();
            }
        }
        (result, cost)
    }

    /// Runs one call into the live instance under the per-call limits (its
    /// deadline counted from `started`), with `current` as the HTLC the
    /// `onion-blob` import reads; returns its result and the fuel it used.
    fn call<T>(
        &mut self,
        started: Instant,
        current: Option<Arc<HtlcInput>>,
        f: impl FnOnce(&Exports, &mut Store<PluginState>) -> wasmtime::Result<T>,
    ) -> (Result<T, PluginFault>, u64) {
        let Some(live) = self.live.as_mut() else {
            return (
                Err(PluginFault::NoInstance {
                    reason: "its instance could not be restarted after a trap".into(),
                }),
                0,
            );
        };
        let store = &mut live.store;
        arm(store, self.cfg.fuel, self.cfg.timeout, started);
        store.data_mut().set_current(current);
        // The deadline only runs while the ticker ticks: marked from before the call.
        self.marker.enter();
        let r = f(&live.exports, store);
        self.marker.exit();
        store.data_mut().set_current(None);
        if store.data().ignores_outcomes && !self.ignores_outcomes {
            self.ignores_outcomes = true;
            tracing::debug!(
                plugin = &*self.name,
                "plugin ignores outcomes: `outcome` is not called any more"
            );
        }
        let used = self.cfg.fuel - store.get_fuel().unwrap_or(0);
        match r {
            Ok(res) => (Ok(res), used),
            Err(e) => (
                Err(PluginFault::from_call_error(
                    &e,
                    self.cfg.fuel,
                    self.cfg.timeout,
                    store.data().memory.hit,
                    self.cfg.memory_bytes,
                )),
                used,
            ),
        }
    }

    /// Rebuilds the instance after a trap. If that fails the plugin is quarantined:
    /// it has nothing left to call.
    fn restart(&mut self) {
        match self.start() {
            Ok(live) => {
                self.ignores_outcomes |= live.store.data().ignores_outcomes;
                self.live = Some(live);
            }
            Err(e) => {
                self.quarantined = true;
                tracing::error!(
                    plugin = &*self.name,
                    "plugin quarantined: cannot restart its instance after a trap: {e}"
                );
            }
        }
    }
}

/// Gives a call into the guest starting at `started` its limits: `fuel`, and
/// `timeout` both as the epoch deadline (wasm code) and as the instant WASI's
/// waits end at (host code, [`crate::wasm::wait`]). `started` is the caller's
/// clock read, so a call reads the clock once.
fn arm(store: &mut Store<PluginState>, fuel: u64, timeout: Duration, started: Instant) {
    store.set_fuel(fuel).expect("fuel is enabled");
    store.set_epoch_deadline(ticks(timeout));
    store.data_mut().deadline = Some(started + timeout);
}
