//! The TOML configuration (`--config`, default `./htlcgate.toml`) and its validation.
//!
//! Every error names the file, the key and the way out, and all of it is checked
//! before htlcgate connects to LND: a typo must never reach the forwarding path.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::verdict::{FailCode, Verdict};

mod overlap;

/// A configuration problem, naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}; pass --config PATH or create it (see README, Configuration)")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("config file {path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key has a value htlcgate cannot use.
    #[error("config file {path}: `{key}`: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The key, e.g. `plugin[1].fuel` or `plugin "fee-floor".path`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// The whole configuration, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from (plugin paths are relative to its directory).
    pub source: PathBuf,
    /// How to reach LND.
    pub lnd: LndConfig,
    /// Chain-wide behaviour.
    pub chain: ChainConfig,
    /// Engine-wide sandbox settings.
    pub sandbox: SandboxConfig,
    /// The verdict journal.
    pub journal: JournalConfig,
    /// The observability listener (`[metrics]`).
    pub metrics: MetricsConfig,
    /// The decision audit log (`[audit]`); `None` when off (the default).
    pub audit: Option<crate::audit::AuditConfig>,
    /// The plugins, in chain order.
    pub plugins: Vec<PluginConfig>,
}

/// `[lnd]`: where LND's gRPC server is and how to authenticate.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LndConfig {
    /// `host:port` of LND's gRPC server (default `localhost:10009`).
    pub rpcserver: Option<String>,
    /// LND's `tls.cert` (default `~/.lnd/tls.cert`).
    pub tlscertpath: Option<PathBuf>,
    /// A macaroon with `offchain:read offchain:write` (default the network's
    /// `admin.macaroon`).
    pub macaroonpath: Option<PathBuf>,
    /// mainnet | testnet | testnet4 | signet | regtest (default mainnet).
    pub network: Option<String>,
}

/// The networks LND runs on, used for the default macaroon path.
pub const NETWORKS: &[&str] = &["mainnet", "testnet", "testnet4", "signet", "regtest"];

/// What the chain does when no plugin decides, or when it runs out of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultVerdict {
    /// Forward the HTLC.
    Resume,
    /// Fail it back with TEMPORARY_CHANNEL_FAILURE.
    Fail,
}

impl DefaultVerdict {
    /// The verdict sent.
    pub fn verdict(self) -> Verdict {
        match self {
            DefaultVerdict::Resume => Verdict::Resume,
            DefaultVerdict::Fail => Verdict::Fail(FailCode::TemporaryChannelFailure),
        }
    }
}

/// `[chain]`.
#[derive(Clone, Debug)]
pub struct ChainConfig {
    /// Sent when every plugin passes (`default_verdict`, default resume).
    pub default_verdict: DefaultVerdict,
    /// Wall-clock budget for the whole chain per HTLC (`budget_ms`, default 2000).
    pub budget: Duration,
    /// Sent when the budget runs out (`on_budget`, default resume).
    pub on_budget: DefaultVerdict,
    /// Longest a plugin may keep an HTLC held (`hold`), counted from its arrival
    /// (`max_hold_ms`, default 60,000, at most 600,000).
    pub max_hold: Duration,
    /// A hold ends this many blocks before the HTLC's `auto_fail_height`, when the
    /// block height is known (`hold_margin_blocks`, default 3): LND fails the HTLC
    /// itself at that height, and an answer after it would end the stream.
    pub hold_margin_blocks: u32,
}

/// The values `sandbox.max_wasm_stack_kb` may take. Plugins run on threads with
/// 2 MiB native stacks (plugin threads, runtime workers at load): a wasm stack
/// near that would run off the native stack, which aborts the whole daemon,
/// before wasmtime's limit turns the overflow into a plugin fault. 1 MiB leaves
/// the host's own frames a whole MiB.
pub const MAX_WASM_STACK_KB: std::ops::RangeInclusive<usize> = 64..=1024;

/// `[journal]`: where verdicts are recorded before they are sent.
#[derive(Clone, Debug)]
pub struct JournalConfig {
    /// The journal file (`path`, default `htlcgate.journal` beside the config file).
    pub path: PathBuf,
    /// Size and age bounds (`max_entries`, default 1,000,000; `max_age_days`,
    /// default 14).
    pub retention: crate::journal::Retention,
}

/// `[metrics]`: the `/metrics` and `/healthz` listener.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `HOST:PORT` to serve `/metrics` and `/healthz` on (`listen`; off when
    /// absent; `--metrics.listen` overrides it). Suggested: `127.0.0.1:10088`.
    pub listen: Option<String>,
}

/// `[sandbox]`: settings shared by every plugin (one wasmtime engine).
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Maximum wasm stack per call in KiB (`max_wasm_stack_kb`, default 512).
    pub max_wasm_stack_kb: usize,
    /// Compiled-code cache directory (`cache_dir`, default `~/.cache/htlcgate`;
    /// `cache = false` disables it). `None` in [`SandboxConfig::default`].
    pub cache_dir: Option<PathBuf>,
}

/// What happens to an HTLC when a plugin faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFault {
    /// No opinion: the next plugin decides.
    Skip,
    /// Fail the HTLC back (TEMPORARY_CHANNEL_FAILURE).
    Fail,
    /// Forward the HTLC.
    Resume,
}

/// One `[[plugin]]` entry, validated, with defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginConfig {
    /// Unique name used in logs (`name`).
    pub name: String,
    /// The component file, resolved against the config file's directory (`path`).
    pub path: PathBuf,
    /// Fuel per `decide` call (`fuel`, default 10,000,000).
    pub fuel: u64,
    /// Fuel for instantiation plus `init` (`init_fuel`, default 1,000,000,000).
    pub init_fuel: u64,
    /// Wall-clock limit per `decide` (`timeout_ms`, default 50).
    pub timeout: Duration,
    /// Wall-clock limit for instantiation plus `init` (`init_timeout_ms`, default 1000).
    pub init_timeout: Duration,
    /// Linear-memory cap in bytes (`memory_mb`, default 64).
    pub memory_bytes: usize,
    /// What a fault means for the HTLC (`on_fault`, default skip).
    pub on_fault: OnFault,
    /// The verdict sent when an HTLC this plugin holds reaches the hold cap
    /// (`on_hold_expiry`, `fail` or `resume`, default fail).
    pub on_hold_expiry: DefaultVerdict,
    /// Consecutive faults before quarantine (`max_faults`, default 5).
    pub max_faults: u32,
    /// The `[plugin.config]` table, passed to `init` as strings, sorted by key.
    pub config: Vec<(String, String)>,
    /// Expected sha256 of the file, lowercase hex (`sha256`); a mismatch refuses
    /// the load.
    pub sha256: Option<String>,
    /// Capabilities granted beyond the base world (`grants`, see
    /// [`crate::wasm::grants::CAPABILITIES`]).
    pub grants: Vec<String>,
    /// Bounds on the plugin's key-value namespace (used with the `kv` grant).
    pub kv: KvLimits,
}

/// Bounds on one plugin's key-value namespace (`kv_max_key_bytes`,
/// `kv_max_value_bytes`, `kv_max_keys` in its `[[plugin]]` entry). A write beyond
/// them is refused with an error the plugin sees; nothing is truncated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLimits {
    /// Longest key in bytes (default 256).
    pub max_key_bytes: u32,
    /// Longest value in bytes (default 4096).
    pub max_value_bytes: u32,
    /// Most keys in the namespace (default 10,000).
    pub max_keys: u32,
}

impl Default for KvLimits {
    fn default() -> Self {
        KvLimits {
            max_key_bytes: defaults::KV_MAX_KEY_BYTES,
            max_value_bytes: defaults::KV_MAX_VALUE_BYTES,
            max_keys: defaults::KV_MAX_KEYS,
        }
    }
}

/// Defaults for `[[plugin]]` keys.
pub mod defaults {
    /// Fuel per decide.
    pub const FUEL: u64 = 10_000_000;
    /// Fuel for instantiation + init.
    pub const INIT_FUEL: u64 = 1_000_000_000;
    /// Milliseconds per decide.
    pub const TIMEOUT_MS: u64 = 50;
    /// Milliseconds for instantiation + init.
    pub const INIT_TIMEOUT_MS: u64 = 1000;
    /// Memory cap in MiB.
    pub const MEMORY_MB: u64 = 64;
    /// Consecutive faults before quarantine.
    pub const MAX_FAULTS: u32 = 5;
    /// Chain budget in milliseconds.
    pub const BUDGET_MS: u64 = 2000;
    /// Journal entries kept.
    pub const JOURNAL_MAX_ENTRIES: u64 = 1_000_000;
    /// Journal entries' maximum age in days.
    pub const JOURNAL_MAX_AGE_DAYS: u64 = 14;
    /// Wasm stack in KiB.
    pub const MAX_WASM_STACK_KB: usize = 512;
    /// Longest hold, ms.
    pub const MAX_HOLD_MS: u64 = 60_000;
    /// Blocks before `auto_fail_height` at which a hold ends.
    pub const HOLD_MARGIN_BLOCKS: u32 = 3;
    /// Longest key-value key in bytes.
    pub const KV_MAX_KEY_BYTES: u32 = 256;
    /// Longest key-value value in bytes.
    pub const KV_MAX_VALUE_BYTES: u32 = 4096;
    /// Most keys in one plugin's namespace.
    pub const KV_MAX_KEYS: u32 = 10_000;
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    lnd: LndConfig,
    #[serde(default)]
    chain: RawChain,
    #[serde(default)]
    sandbox: RawSandbox,
    #[serde(default)]
    journal: RawJournal,
    #[serde(default)]
    metrics: MetricsConfig,
    audit: Option<RawAudit>,
    #[serde(default, rename = "plugin")]
    plugins: Vec<RawPlugin>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawChain {
    default_verdict: Option<DefaultVerdict>,
    budget_ms: Option<u64>,
    on_budget: Option<DefaultVerdict>,
    max_hold_ms: Option<u64>,
    hold_margin_blocks: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJournal {
    path: Option<PathBuf>,
    max_entries: Option<u64>,
    max_age_days: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: Option<PathBuf>,
    max_bytes: Option<u64>,
    keep: Option<u32>,
    queue: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSandbox {
    max_wasm_stack_kb: Option<usize>,
    cache: Option<bool>,
    cache_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    name: String,
    path: PathBuf,
    fuel: Option<u64>,
    init_fuel: Option<u64>,
    timeout_ms: Option<u64>,
    init_timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
    on_fault: Option<OnFault>,
    on_hold_expiry: Option<DefaultVerdict>,
    max_faults: Option<u32>,
    sha256: Option<String>,
    #[serde(default)]
    grants: Vec<String>,
    kv_max_key_bytes: Option<u32>,
    kv_max_value_bytes: Option<u32>,
    kv_max_keys: Option<u32>,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::parse(&read(path)?, path)
    }

    /// The plugin files a config file names, resolved as [`Config::load`] does,
    /// without validating anything else or requiring the files to exist (for the
    /// reload watcher, after a refused reload).
    pub fn plugin_paths(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
        let raw = parse_raw(&read(path)?, path)?;
        let base = config_dir(path);
        Ok(raw
            .plugins
            .iter()
            .map(|p| resolve_plugin_path(base, &p.path))
            .collect())
    }

    /// Validates config text as if read from `path` (plugin paths are resolved
    /// against its directory).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw = parse_raw(text, path)?;
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        if let Some(net) = &raw.lnd.network {
            if !NETWORKS.contains(&net.as_str()) {
                return Err(invalid(
                    "lnd.network".into(),
                    format!(
                        "unknown network `{net}`; use one of {}",
                        NETWORKS.join(", ")
                    ),
                ));
            }
        }
        let budget_ms = raw.chain.budget_ms.unwrap_or(defaults::BUDGET_MS);
        if !(1..=60_000).contains(&budget_ms) {
            return Err(invalid(
                "chain.budget_ms".into(),
                format!(
                    "{budget_ms} is out of range; use 1..=60000 (LND holds the HTLC meanwhile)"
                ),
            ));
        }
        let max_hold_ms = raw.chain.max_hold_ms.unwrap_or(defaults::MAX_HOLD_MS);
        if !(1..=600_000).contains(&max_hold_ms) {
            return Err(invalid(
                "chain.max_hold_ms".into(),
                format!("{max_hold_ms} is out of range; use 1..=600000 (the sender's payment waits while an HTLC is held)"),
            ));
        }
        let hold_margin_blocks = raw
            .chain
            .hold_margin_blocks
            .unwrap_or(defaults::HOLD_MARGIN_BLOCKS);
        if !(1..=144).contains(&hold_margin_blocks) {
            return Err(invalid(
                "chain.hold_margin_blocks".into(),
                format!("{hold_margin_blocks} is out of range; use 1..=144 (blocks before auto_fail_height at which a hold ends)"),
            ));
        }
        let max_entries = raw
            .journal
            .max_entries
            .unwrap_or(defaults::JOURNAL_MAX_ENTRIES);
        if max_entries < 1000 {
            return Err(invalid(
                "journal.max_entries".into(),
                format!("{max_entries} is too small; use at least 1000 (replayed HTLCs must find their verdict)"),
            ));
        }
        let max_age_days = raw
            .journal
            .max_age_days
            .unwrap_or(defaults::JOURNAL_MAX_AGE_DAYS);
        if !(14..=3650).contains(&max_age_days) {
            return Err(invalid(
                "journal.max_age_days".into(),
                format!("{max_age_days} is out of range; use 14..=3650 (LND can hold an HTLC for up to 2016 blocks, about 14 days)"),
            ));
        }
        let stack = raw
            .sandbox
            .max_wasm_stack_kb
            .unwrap_or(defaults::MAX_WASM_STACK_KB);
        if !MAX_WASM_STACK_KB.contains(&stack) {
            return Err(invalid(
                "sandbox.max_wasm_stack_kb".into(),
                format!(
                    "{stack} is out of range; use {}..={}",
                    MAX_WASM_STACK_KB.start(),
                    MAX_WASM_STACK_KB.end()
                ),
            ));
        }
        let base = config_dir(path);
        if let Some(listen) = &raw.metrics.listen {
            check_listen(listen).map_err(|m| invalid("metrics.listen".into(), m))?;
        }
        let audit = match raw.audit {
            None => None,
            Some(a) => {
                let Some(p) = a.path else {
                    return Err(invalid(
                        "audit.path".into(),
                        "[audit] needs `path` (e.g. path = \"htlcgate-audit.jsonl\"); remove [audit] to turn the log off".into(),
                    ));
                };
                let max_bytes = a.max_bytes.unwrap_or(crate::audit::defaults::MAX_BYTES);
                if max_bytes < 1024 {
                    return Err(invalid(
                        "audit.max_bytes".into(),
                        format!("{max_bytes} is too small; use at least 1024 (a line is ~1 KB)"),
                    ));
                }
                let keep = a.keep.unwrap_or(crate::audit::defaults::KEEP);
                if keep > 1000 {
                    return Err(invalid(
                        "audit.keep".into(),
                        format!("{keep} is out of range; use 0..=1000 rotated files"),
                    ));
                }
                let queue = a.queue.unwrap_or(crate::audit::defaults::QUEUE);
                // Slots are allocated at start (1,000,000 is ~16 MB); what the
                // queued lines hold is bounded apart (audit::defaults::
                // MAX_QUEUED_BYTES).
                if !(1..=1_000_000).contains(&queue) {
                    return Err(invalid(
                        "audit.queue".into(),
                        format!("{queue} is out of range; use 1..=1000000 lines (the queue's slots are allocated at start)"),
                    ));
                }
                let p = expand_home(&p);
                Some(crate::audit::AuditConfig {
                    path: if p.is_absolute() { p } else { base.join(p) },
                    max_bytes,
                    keep,
                    queue,
                })
            }
        };
        let mut names = HashSet::new();
        let mut plugins = Vec::new();
        for (i, p) in raw.plugins.into_iter().enumerate() {
            let key = |k: &str| format!("plugin[{i}] ({}).{k}", p.name);
            if p.name.is_empty()
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    format!("plugin[{i}].name"),
                    format!(
                        "`{}` is not a valid name; use letters, digits, `-` and `_`",
                        p.name
                    ),
                ));
            }
            if !names.insert(p.name.clone()) {
                return Err(invalid(
                    key("name"),
                    format!(
                        "duplicate plugin name `{}`; each [[plugin]] needs its own name",
                        p.name
                    ),
                ));
            }
            let resolved = resolve_plugin_path(base, &p.path);
            if !resolved.is_file() {
                return Err(invalid(
                    key("path"),
                    format!(
                        "plugin file {} not found; build the plugin (scripts/build-plugins) or fix `path` (relative paths are resolved against the config file's directory)",
                        resolved.display()
                    ),
                ));
            }
            let fuel = p.fuel.unwrap_or(defaults::FUEL);
            let init_fuel = p.init_fuel.unwrap_or(defaults::INIT_FUEL);
            if fuel == 0 || init_fuel == 0 {
                return Err(invalid(
                    key(if fuel == 0 { "fuel" } else { "init_fuel" }),
                    "must be greater than 0".into(),
                ));
            }
            let timeout_ms = p.timeout_ms.unwrap_or(defaults::TIMEOUT_MS);
            if timeout_ms == 0 || timeout_ms > budget_ms {
                return Err(invalid(
                    key("timeout_ms"),
                    format!(
                        "{timeout_ms} is out of range; use 1..={budget_ms} (at most chain.budget_ms)"
                    ),
                ));
            }
            let init_timeout_ms = p.init_timeout_ms.unwrap_or(defaults::INIT_TIMEOUT_MS);
            if !(1..=60_000).contains(&init_timeout_ms) {
                return Err(invalid(
                    key("init_timeout_ms"),
                    format!("{init_timeout_ms} is out of range; use 1..=60000"),
                ));
            }
            let memory_mb = p.memory_mb.unwrap_or(defaults::MEMORY_MB);
            if !(1..=4096).contains(&memory_mb) {
                return Err(invalid(
                    key("memory_mb"),
                    format!("{memory_mb} is out of range; use 1..=4096"),
                ));
            }
            let max_faults = p.max_faults.unwrap_or(defaults::MAX_FAULTS);
            if max_faults == 0 {
                return Err(invalid(key("max_faults"), "must be at least 1".into()));
            }
            let sha256 = match p.sha256 {
                None => None,
                Some(h) => {
                    let h = h.trim().to_ascii_lowercase();
                    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(invalid(
                            key("sha256"),
                            format!("`{h}` is not a sha256 in hex (64 hex digits); compute it with `sha256sum {}`", resolved.display()),
                        ));
                    }
                    Some(h)
                }
            };
            for g in &p.grants {
                if crate::wasm::grants::capability(g).is_none() {
                    return Err(invalid(
                        key("grants"),
                        format!(
                            "unknown capability `{g}`; known: {}",
                            crate::wasm::grants::CAPABILITIES
                                .iter()
                                .map(|c| c.name)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            let kv = KvLimits {
                max_key_bytes: p.kv_max_key_bytes.unwrap_or(defaults::KV_MAX_KEY_BYTES),
                max_value_bytes: p.kv_max_value_bytes.unwrap_or(defaults::KV_MAX_VALUE_BYTES),
                max_keys: p.kv_max_keys.unwrap_or(defaults::KV_MAX_KEYS),
            };
            for (name, value, range) in [
                ("kv_max_key_bytes", kv.max_key_bytes, 1..=65_536),
                ("kv_max_value_bytes", kv.max_value_bytes, 1..=1_048_576),
                ("kv_max_keys", kv.max_keys, 1..=1_000_000),
            ] {
                if !range.contains(&value) {
                    return Err(invalid(
                        key(name),
                        format!(
                            "{value} is out of range; use {}..={} (the namespace is kept in memory and in the journal file)",
                            range.start(),
                            range.end()
                        ),
                    ));
                }
            }
            let mut config = Vec::with_capacity(p.config.len());
            for (k, v) in p.config {
                flatten_config(k, v, &mut config).map_err(|(k, what)| {
                    invalid(
                        key(&format!("config.{k}")),
                        format!(
                            "a {what} cannot be passed to a plugin; use a string, number or boolean (e.g. a comma-separated list)"
                        ),
                    )
                })?;
            }
            config.sort();
            if let Some(w) = config.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(invalid(
                    key(&format!("config.{}", w[0].0)),
                    "is given twice (once as a dotted key, once in a nested table); keep one"
                        .into(),
                ));
            }
            plugins.push(PluginConfig {
                name: p.name,
                path: resolved,
                fuel,
                init_fuel,
                timeout: Duration::from_millis(timeout_ms),
                init_timeout: Duration::from_millis(init_timeout_ms),
                memory_bytes: (memory_mb as usize) << 20,
                on_fault: p.on_fault.unwrap_or(OnFault::Skip),
                on_hold_expiry: p.on_hold_expiry.unwrap_or(DefaultVerdict::Fail),
                max_faults,
                config,
                sha256,
                grants: p.grants,
                kv,
            });
        }
        let config = Config {
            source: path.to_owned(),
            lnd: raw.lnd,
            chain: ChainConfig {
                default_verdict: raw.chain.default_verdict.unwrap_or(DefaultVerdict::Resume),
                budget: Duration::from_millis(budget_ms),
                on_budget: raw.chain.on_budget.unwrap_or(DefaultVerdict::Resume),
                max_hold: Duration::from_millis(max_hold_ms),
                hold_margin_blocks,
            },
            journal: JournalConfig {
                path: match raw.journal.path {
                    Some(p) => {
                        let p = expand_home(&p);
                        if p.is_absolute() {
                            p
                        } else {
                            base.join(p)
                        }
                    }
                    None => base.join("htlcgate.journal"),
                },
                retention: crate::journal::Retention {
                    max_entries,
                    max_age: Duration::from_secs(max_age_days * 24 * 3600),
                },
            },
            sandbox: SandboxConfig {
                max_wasm_stack_kb: stack,
                cache_dir: if raw.sandbox.cache.unwrap_or(true) {
                    Some(match raw.sandbox.cache_dir {
                        Some(d) => {
                            let d = expand_home(&d);
                            if d.is_absolute() {
                                d
                            } else {
                                base.join(d)
                            }
                        }
                        None => default_cache_dir(),
                    })
                } else {
                    None
                },
            },
            metrics: raw.metrics,
            audit,
            plugins,
        };
        overlap::check(&config).map_err(|(key, message)| invalid(key, message))?;
        Ok(config)
    }
}

/// Turns one `[plugin.config]` entry into the strings `init` gets. A nested
/// table becomes dotted keys (`[plugin.config.peer.02ab]` `mode = "block"` is
/// `peer.02ab.mode = "block"`); an array or a date is refused: `Err((key, type))`.
fn flatten_config(
    key: String,
    value: toml::Value,
    out: &mut Vec<(String, String)>,
) -> Result<(), (String, &'static str)> {
    let s = match value {
        toml::Value::String(s) => s,
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Table(t) => {
            for (k, v) in t {
                flatten_config(format!("{key}.{k}"), v, out)?;
            }
            return Ok(());
        }
        other => return Err((key, other.type_str())),
    };
    out.push((key, s));
    Ok(())
}

/// Checks that `addr` looks like `HOST:PORT` (whether it can be bound is only known
/// when binding).
pub fn check_listen(addr: &str) -> Result<(), String> {
    let port = addr
        .rsplit_once(':')
        .filter(|(host, _)| !host.is_empty())
        .map(|(_, port)| port.parse::<u16>());
    match port {
        Some(Ok(_)) => Ok(()),
        _ => Err(format!(
            "`{addr}` is not HOST:PORT; use e.g. {}",
            crate::http::SUGGESTED_LISTEN
        )),
    }
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            default_verdict: DefaultVerdict::Resume,
            budget: Duration::from_millis(defaults::BUDGET_MS),
            on_budget: DefaultVerdict::Resume,
            max_hold: Duration::from_millis(defaults::MAX_HOLD_MS),
            hold_margin_blocks: defaults::HOLD_MARGIN_BLOCKS,
        }
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            max_wasm_stack_kb: defaults::MAX_WASM_STACK_KB,
            cache_dir: None,
        }
    }
}

impl PluginConfig {
    /// A plugin entry with every default, for tests, `check` and the demo.
    pub fn with_defaults(name: &str, path: impl Into<PathBuf>) -> PluginConfig {
        PluginConfig {
            name: name.to_owned(),
            path: path.into(),
            fuel: defaults::FUEL,
            init_fuel: defaults::INIT_FUEL,
            timeout: Duration::from_millis(defaults::TIMEOUT_MS),
            init_timeout: Duration::from_millis(defaults::INIT_TIMEOUT_MS),
            memory_bytes: (defaults::MEMORY_MB as usize) << 20,
            on_fault: OnFault::Skip,
            on_hold_expiry: DefaultVerdict::Fail,
            max_faults: defaults::MAX_FAULTS,
            config: Vec::new(),
            sha256: None,
            grants: Vec::new(),
            kv: KvLimits::default(),
        }
    }
}

/// `$XDG_CACHE_HOME/htlcgate`, else `~/.cache/htlcgate`.
pub fn default_cache_dir() -> PathBuf {
    match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x).join("htlcgate"),
        None => expand_home(Path::new("~/.cache/htlcgate")),
    }
}

/// Expands a leading `~/` to `$HOME/`.
/// The text of the config file at `path`.
fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Config text as TOML into the raw structure, unvalidated.
fn parse_raw(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().replace('\n', " | "),
    })
}

/// The directory relative plugin paths of the config at `path` start from.
fn config_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A plugin's `path` as written in the config at `base`: `~` expanded, relative
/// paths taken from the config's directory.
fn resolve_plugin_path(base: &Path, path: &Path) -> PathBuf {
    let resolved = expand_home(path);
    if resolved.is_absolute() {
        resolved
    } else {
        base.join(resolved)
    }
}

pub fn expand_home(p: &Path) -> PathBuf {
    match p.strip_prefix("~") {
        Ok(rest) => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(rest),
            None => p.to_owned(),
        },
        Err(_) => p.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/nonexistent/htlcgate.toml"))
    }

    fn with_plugin_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("htlcgate.toml");
        std::fs::write(dir.path().join("p.wasm"), b"x").unwrap();
        (dir, cfg)
    }

    #[test]
    fn empty_config_is_valid_with_defaults() {
        let c = parse("").unwrap();
        assert!(c.plugins.is_empty());
        assert_eq!(c.chain.default_verdict, DefaultVerdict::Resume);
        assert_eq!(c.chain.budget, Duration::from_secs(2));
    }

    #[test]
    fn kv_limits_out_of_range_are_named_with_their_range() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = dir.path().join("p.wasm");
        std::fs::write(&wasm, b"").unwrap();
        let cfg = dir.path().join("htlcgate.toml");
        for (key, value, range) in [
            ("kv_max_key_bytes", "0", "1..=65536"),
            ("kv_max_value_bytes", "2000000", "1..=1048576"),
            ("kv_max_keys", "0", "1..=1000000"),
        ] {
            let text = format!(
                "[[plugin]]\nname = \"p\"\npath = \"p.wasm\"\ngrants = [\"kv\"]\n{key} = {value}\n"
            );
            let msg = Config::parse(&text, &cfg).unwrap_err().to_string();
            assert!(msg.contains(&format!("plugin[0] (p).{key}")), "{msg}");
            assert!(msg.contains(range), "{msg}");
        }
        let ok = "[[plugin]]\nname = \"p\"\npath = \"p.wasm\"\nkv_max_keys = 5\n";
        let c = Config::parse(ok, &cfg).unwrap();
        assert_eq!(c.plugins[0].kv.max_keys, 5);
        assert_eq!(
            c.plugins[0].kv.max_value_bytes,
            defaults::KV_MAX_VALUE_BYTES
        );
    }

    /// Found by fuzzing (fuzz/regressions/config/journal-max-age-overflow.toml):
    /// days * 86400 overflowed (a panic, or a wrap to 0 s that prunes everything).
    #[test]
    fn a_journal_age_too_large_to_count_in_seconds_is_refused() {
        for days in ["144115188075855872", "18446744073709551615", "3651"] {
            let e = parse(&format!("[journal]\nmax_age_days = {days}\n")).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("journal.max_age_days"), "{msg}");
            assert!(msg.contains("14..=3650"), "{msg}");
        }
        let c = parse("[journal]\nmax_age_days = 3650\n").unwrap();
        assert_eq!(
            c.journal.retention.max_age,
            Duration::from_secs(3650 * 24 * 3600)
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("[chain]\ndefault_verdit = \"fail\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("default_verdit"), "{msg}");
        assert!(msg.contains("/nonexistent/htlcgate.toml"), "{msg}");
    }

    #[test]
    fn missing_plugin_file_names_the_plugin_and_the_fix() {
        let e = parse("[[plugin]]\nname = \"fee\"\npath = \"nope.wasm\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("plugin[0] (fee).path"), "{msg}");
        assert!(msg.contains("nope.wasm not found"), "{msg}");
        assert!(msg.contains("scripts/build-plugins"), "{msg}");
    }

    #[test]
    fn duplicate_names_are_refused() {
        let (_d, cfg) = with_plugin_file();
        let text = "[[plugin]]\nname = \"a\"\npath = \"p.wasm\"\n[[plugin]]\nname = \"a\"\npath = \"p.wasm\"\n";
        let msg = Config::parse(text, &cfg).unwrap_err().to_string();
        assert!(msg.contains("duplicate plugin name `a`"), "{msg}");
    }

    #[test]
    fn bad_on_fault_value_is_named() {
        let (_d, cfg) = with_plugin_file();
        let text = "[[plugin]]\nname = \"a\"\npath = \"p.wasm\"\non_fault = \"explode\"\n";
        let msg = Config::parse(text, &cfg).unwrap_err().to_string();
        assert!(msg.contains("explode"), "{msg}");
        assert!(msg.contains("skip"), "{msg}");
    }

    #[test]
    fn plugin_config_table_is_passed_as_strings() {
        let (_d, cfg) = with_plugin_file();
        let text = "[[plugin]]\nname = \"a\"\npath = \"p.wasm\"\nfuel = 5\n[plugin.config]\nbase_msat = 1000\nname = \"x\"\nstrict = true\n";
        let c = Config::parse(text, &cfg).unwrap();
        let p = &c.plugins[0];
        assert_eq!(p.fuel, 5);
        assert_eq!(p.timeout, Duration::from_millis(50));
        assert_eq!(
            p.config,
            vec![
                ("base_msat".to_string(), "1000".to_string()),
                ("name".to_string(), "x".to_string()),
                ("strict".to_string(), "true".to_string()),
            ]
        );
        assert!(p.path.is_absolute());
    }

    #[test]
    fn nested_plugin_config_tables_become_dotted_keys() {
        let (_d, cfg) = with_plugin_file();
        let text = "[[plugin]]\nname = \"a\"\npath = \"p.wasm\"\n[plugin.config]\nmode = \"fail\"\n[plugin.config.peer.02ab]\nmode = \"block\"\nmax_pending = 3\n";
        let c = Config::parse(text, &cfg).unwrap();
        assert_eq!(
            c.plugins[0].config,
            vec![
                ("mode".to_string(), "fail".to_string()),
                ("peer.02ab.max_pending".to_string(), "3".to_string()),
                ("peer.02ab.mode".to_string(), "block".to_string()),
            ]
        );
        let bad =
            "[[plugin]]\nname = \"a\"\npath = \"p.wasm\"\n[plugin.config.peer.02ab]\nlist = [1]\n";
        let msg = Config::parse(bad, &cfg).unwrap_err().to_string();
        assert!(msg.contains("config.peer.02ab.list"), "{msg}");
    }

    /// Found in review: a quoted dotted key and a nested table can name the same
    /// key; both were passed and the plugin saw whichever value sorted first.
    #[test]
    fn one_plugin_config_key_given_twice_is_refused() {
        let (_d, cfg) = with_plugin_file();
        let text = "[[plugin]]\nname = \"a\"\npath = \"p.wasm\"\n[plugin.config]\n\"peer.02ab.mode\" = \"allow\"\n[plugin.config.peer.02ab]\nmode = \"block\"\n";
        let msg = Config::parse(text, &cfg).unwrap_err().to_string();
        assert!(
            msg.contains("plugin[0] (a).config.peer.02ab.mode") && msg.contains("twice"),
            "{msg}"
        );
    }

    #[test]
    fn nested_plugin_config_values_are_refused() {
        let (_d, cfg) = with_plugin_file();
        let text = "[[plugin]]\nname = \"a\"\npath = \"p.wasm\"\n[plugin.config]\nlist = [1, 2]\n";
        let msg = Config::parse(text, &cfg).unwrap_err().to_string();
        assert!(msg.contains("config.list"), "{msg}");
    }

    #[test]
    fn hold_bounds_and_on_hold_expiry_are_checked_naming_key_and_range() {
        let (_d, cfg) = with_plugin_file();
        let c = Config::parse(
            "[chain]\nmax_hold_ms = 5000\nhold_margin_blocks = 6\n",
            &cfg,
        )
        .unwrap();
        assert_eq!(c.chain.max_hold, Duration::from_millis(5000));
        assert_eq!(c.chain.hold_margin_blocks, 6);
        for (text, key, range) in [
            (
                "[chain]\nmax_hold_ms = 0\n",
                "chain.max_hold_ms",
                "1..=600000",
            ),
            (
                "[chain]\nmax_hold_ms = 600001\n",
                "chain.max_hold_ms",
                "1..=600000",
            ),
            (
                "[chain]\nhold_margin_blocks = 0\n",
                "chain.hold_margin_blocks",
                "1..=144",
            ),
        ] {
            let msg = Config::parse(text, &cfg).unwrap_err().to_string();
            assert!(msg.contains(key) && msg.contains(range), "{msg}");
        }
        let text = "[[plugin]]\nname = \"a\"\npath = \"p.wasm\"\non_hold_expiry = \"settle\"\n";
        let msg = Config::parse(text, &cfg).unwrap_err().to_string();
        assert!(
            msg.contains("on_hold_expiry") || msg.contains("settle"),
            "{msg}"
        );
        let text = "[[plugin]]\nname = \"a\"\npath = \"p.wasm\"\non_hold_expiry = \"resume\"\n";
        let c = Config::parse(text, &cfg).unwrap();
        assert_eq!(c.plugins[0].on_hold_expiry, DefaultVerdict::Resume);
    }

    #[test]
    fn timeout_longer_than_the_budget_is_refused() {
        let (_d, cfg) = with_plugin_file();
        let text = "[chain]\nbudget_ms = 100\n[[plugin]]\nname = \"a\"\npath = \"p.wasm\"\ntimeout_ms = 200\n";
        let msg = Config::parse(text, &cfg).unwrap_err().to_string();
        assert!(msg.contains("timeout_ms"), "{msg}");
    }

    #[test]
    fn metrics_and_audit_are_off_by_default() {
        let c = parse("").unwrap();
        assert_eq!(c.metrics.listen, None);
        assert_eq!(c.audit, None);
    }

    #[test]
    fn audit_settings_are_read_with_defaults_and_paths_resolved() {
        let c = parse(
            "[metrics]\nlisten = \"127.0.0.1:10088\"\n[audit]\npath = \"audit.jsonl\"\nkeep = 2\n",
        )
        .unwrap();
        assert_eq!(c.metrics.listen.as_deref(), Some("127.0.0.1:10088"));
        let a = c.audit.unwrap();
        assert_eq!(a.path, PathBuf::from("/nonexistent/audit.jsonl"));
        assert_eq!(a.keep, 2);
        assert_eq!(a.max_bytes, crate::audit::defaults::MAX_BYTES);
        assert_eq!(a.queue, crate::audit::defaults::QUEUE);
    }

    #[test]
    fn bad_metrics_and_audit_values_name_the_key() {
        for (text, key) in [
            ("[metrics]\nlisten = \"10088\"\n", "metrics.listen"),
            (
                "[metrics]\nlisten = \"127.0.0.1:99999\"\n",
                "metrics.listen",
            ),
            ("[audit]\nmax_bytes = 5000\n", "audit.path"),
            ("[audit]\npath = \"a\"\nmax_bytes = 10\n", "audit.max_bytes"),
            ("[audit]\npath = \"a\"\nkeep = 5000\n", "audit.keep"),
            ("[audit]\npath = \"a\"\nqueue = 0\n", "audit.queue"),
            // Found in review: the queue's slots are allocated at start (16 B
            // each) and a full queue holds each HTLC (~2 KB with its onion):
            // 10,000,000 was ~160 MB at start and ~20 GB full.
            ("[audit]\npath = \"a\"\nqueue = 1000001\n", "1..=1000000"),
            ("[audit]\npath = \"a\"\nmax_files = 1\n", "max_files"),
        ] {
            let msg = parse(text).unwrap_err().to_string();
            assert!(msg.contains(key), "{text}: {msg}");
        }
    }

    /// Found in review: `[audit] path = "htlcgate.journal"` (the default journal
    /// beside the config) had the audit log append to the journal and, at
    /// rotation, rename or delete it: verdicts and plugin state gone at the next
    /// start. Every file htlcgate writes must differ from every file it keeps.
    #[test]
    fn files_htlcgate_writes_may_not_be_files_it_keeps() {
        let (_dir, cfg) = with_plugin_file();
        let plugin = "[[plugin]]\nname = \"p\"\npath = \"p.wasm\"\n";
        for (text, key, clash) in [
            (
                "[audit]\npath = \"htlcgate.journal\"\n",
                "audit.path",
                "journal",
            ),
            (
                "[audit]\npath = \"htlcgate.journal.wal\"\n",
                "audit.path",
                "journal",
            ),
            (
                "[audit]\npath = \"./htlcgate.toml\"\n",
                "audit.path",
                "config",
            ),
            ("[audit]\npath = \"p.wasm\"\n", "audit.path", "plugin `p`"),
            (
                "[journal]\npath = \"a.jsonl.2\"\n[audit]\npath = \"a.jsonl\"\nkeep = 2\n",
                "audit.path",
                "journal",
            ),
            (
                "[journal]\npath = \"sub/../htlcgate.toml\"\n",
                "journal.path",
                "config",
            ),
            (
                "[journal]\npath = \"p.wasm\"\n",
                "journal.path",
                "plugin `p`",
            ),
        ] {
            let msg = Config::parse(&format!("{plugin}{text}"), &cfg)
                .unwrap_err()
                .to_string();
            assert!(msg.contains(key) && msg.contains(clash), "{text}: {msg}");
        }
        // Rotated files beyond `keep` are never written: no clash.
        Config::parse(
            &format!(
                "{plugin}[journal]\npath = \"a.jsonl.3\"\n[audit]\npath = \"a.jsonl\"\nkeep = 2\n"
            ),
            &cfg,
        )
        .unwrap();
        Config::parse(&format!("{plugin}[audit]\npath = \"audit.jsonl\"\n"), &cfg).unwrap();
    }

    #[test]
    fn unknown_network_is_refused() {
        let msg = parse("[lnd]\nnetwork = \"moon\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("lnd.network") && msg.contains("regtest"),
            "{msg}"
        );
    }
}
