//! Hot reload: when the config file or a plugin file changes (or on SIGHUP), build
//! the new chain off the decision path and swap it in atomically.
//!
//! Editors, `cp` and `scp` write a file in several steps, so change events are
//! debounced: a reload starts only once the files have been quiet for
//! [`DEBOUNCE`]. The new chain is fully compiled, instantiated and `init`ed before
//! the swap; a file caught half-written fails to load, the running chain keeps
//! deciding, the error names the file and the reason, and the next change retries
//! (to the files the refused config names: a plugin added to the config before
//! its file is copied in loads when the file arrives).
//! HTLCs whose decision started on the old chain finish there; new ones use the new
//! chain ([`Gate::swap`]).
//!
//! Watched are the directories holding the config file and the plugin files (not
//! the files themselves: a rename-over replaces the inode a file watch would hold).
//! Applied on reload: the plugins (order, added, removed, limits, `on_fault`,
//! config, grants, sha256) and `[chain]`. `[lnd]`, `[journal]`, `[sandbox]`,
//! `[metrics]` and `[audit]` need a restart; a change there is logged. A quarantined plugin comes back with a fresh
//! instance when the chain is reloaded.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::chain::Chain;
use crate::config::Config;
use crate::gate::Gate;
use crate::wasm::engine::Sandbox;

/// Quiet time after the last change before a reload starts.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Why a reload was refused (the running chain keeps deciding).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config file is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A plugin failed to load.
    #[error(transparent)]
    Load(#[from] crate::wasm::plugin::LoadError),
}

/// Loads the config at `path` and its chain, off the async threads.
pub async fn build(path: &Path, sandbox: &Sandbox) -> Result<(Config, Chain), ReloadError> {
    let path = path.to_owned();
    let sandbox = sandbox.clone();
    tokio::task::spawn_blocking(move || {
        let cfg = Config::load(&path)?;
        let chain = Chain::load(&sandbox, &cfg.plugins, cfg.chain.default_verdict.verdict())?;
        Ok((cfg, chain))
    })
    .await
    .expect("reload task panicked")
}

/// Reloads once: on success swaps the chain into `gate` and returns the new config.
pub async fn reload_now(
    path: &Path,
    sandbox: &Sandbox,
    gate: &Gate,
    current: &Config,
) -> Result<Config, ReloadError> {
    let (cfg, chain) = match build(path, sandbox).await {
        Ok(built) => built,
        Err(e) => {
            if let Some(m) = gate.metrics() {
                m.reload(false);
            }
            return Err(e);
        }
    };
    let names: Vec<String> = chain.names().iter().map(|n| n.to_string()).collect();
    gate.swap(chain, cfg.chain.clone());
    if let Some(m) = gate.metrics() {
        m.reload(true);
    }
    if format!(
        "{:?}{:?}{:?}{:?}{:?}",
        cfg.lnd, cfg.journal, cfg.sandbox, cfg.metrics, cfg.audit
    ) != format!(
        "{:?}{:?}{:?}{:?}{:?}",
        current.lnd, current.journal, current.sandbox, current.metrics, current.audit
    ) {
        tracing::warn!(
            "[lnd], [journal], [sandbox], [metrics] or [audit] changed: those apply after a restart"
        );
    }
    tracing::info!(plugins = ?names, "reloaded: new HTLCs go to the new chain");
    Ok(cfg)
}

/// The directory holding `p`, canonical.
fn dir_of(p: &Path) -> PathBuf {
    let parent = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf())
}

/// `p` with its directory made canonical (the file itself may be gone mid-rename).
fn norm(p: &Path) -> PathBuf {
    match p.file_name() {
        Some(name) => dir_of(p).join(name),
        None => p.to_path_buf(),
    }
}

/// The config file and the plugin files of `cfg`: what a reload depends on.
fn sources(cfg: &Config) -> Vec<&Path> {
    std::iter::once(cfg.source.as_path())
        .chain(cfg.plugins.iter().map(|p| p.path.as_path()))
        .collect()
}

/// The directories to watch for `sources`.
fn watched_dirs(sources: &[&Path]) -> BTreeSet<PathBuf> {
    sources.iter().map(|p| dir_of(p)).collect()
}

/// The files whose change triggers a reload.
fn watched_files(sources: &[&Path]) -> BTreeSet<PathBuf> {
    sources.iter().map(|p| norm(p)).collect()
}

/// The file names of [`watched_files`]: the watcher's own thread drops every
/// event of another name, so that the other files in the watched directories
/// (the journal's write-ahead log beside the config is written for every HTLC)
/// wake no task and resolve no path.
fn watched_names(files: &BTreeSet<PathBuf>) -> BTreeSet<OsString> {
    files
        .iter()
        .filter_map(|p| p.file_name().map(OsString::from))
        .collect()
}

/// Whether an event about `path` may concern a watched file (same file name).
fn may_concern(names: &BTreeSet<OsString>, path: &Path) -> bool {
    path.file_name().is_some_and(|n| names.contains(n))
}

/// The watcher of one config's files, armed: changes from now on are queued until
/// [`Watch::run`] reloads on them (or on a `hup` signal). Armed when the config is
/// loaded, before the chain compiles, so a change made meanwhile is not lost.
pub struct Watch {
    /// Changed paths (named like a watched file), from the watcher's thread.
    events: mpsc::UnboundedReceiver<PathBuf>,
    /// The watched files' names, read by the watcher's thread to drop the rest.
    names: Arc<RwLock<BTreeSet<OsString>>>,
    /// The watcher (`None`: it could not start; SIGHUP still reloads).
    watcher: Option<RecommendedWatcher>,
    /// The directories watched now.
    dirs: BTreeSet<PathBuf>,
}

impl Watch {
    /// Starts watching the files `cfg` names (the config and every plugin file).
    pub fn arm(cfg: &Config) -> Watch {
        let (tx, events) = mpsc::unbounded_channel::<PathBuf>();
        let names = Arc::new(RwLock::new(watched_names(&watched_files(&sources(cfg)))));
        let names_seen = names.clone();
        let watcher = match RecommendedWatcher::new(
            move |res: notify::Result<notify::Event>| {
                // Opening or reading a file is no change. (inotify reports opens: without
                // this, the reload's own reading of the config and plugin files would
                // trigger the next reload, every DEBOUNCE, forever.)
                if let Some(ev) = res.ok().filter(|ev| changes_content(&ev.kind)) {
                    let names = names_seen.read().unwrap_or_else(|p| p.into_inner());
                    for p in ev.paths.into_iter().filter(|p| may_concern(&names, p)) {
                        let _ = tx.send(p);
                    }
                }
            },
            notify::Config::default(),
        ) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!("cannot watch files for hot reload: {e}; SIGHUP still reloads");
                None
            }
        };
        let mut w = Watch {
            events,
            names,
            watcher,
            dirs: BTreeSet::new(),
        };
        rewatch(&mut w.watcher, &mut w.dirs, watched_dirs(&sources(cfg)));
        w
    }

    /// Reloads on every change since [`Watch::arm`] and on `hup`, until `stop`
    /// turns true. `cfg` is the config the running chain was built from.
    pub async fn run(
        self,
        mut cfg: Config,
        sandbox: Sandbox,
        gate: Arc<Gate>,
        mut hup: mpsc::UnboundedReceiver<()>,
        mut stop: watch::Receiver<bool>,
    ) {
        let Watch {
            mut events,
            names,
            mut watcher,
            mut dirs,
        } = self;
        let mut files = watched_files(&sources(&cfg));
        loop {
            let mut due = false;
            tokio::select! {
                _ = stop.changed() => return,
                Some(()) = hup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    due = true;
                }
                Some(path) = events.recv() => {
                    if files.contains(&norm(&path)) {
                        // Debounce: wait until the watched files have been quiet for a
                        // while. Other files in the same directories (the journal or a
                        // log beside the config, written with every HTLC) do not count,
                        // or steady traffic would postpone the reload indefinitely.
                        let mut quiet_until = tokio::time::Instant::now() + DEBOUNCE;
                        loop {
                            tokio::select! {
                                _ = tokio::time::sleep_until(quiet_until) => break,
                                Some(p) = events.recv() => {
                                    if files.contains(&norm(&p)) {
                                        quiet_until = tokio::time::Instant::now() + DEBOUNCE;
                                    }
                                }
                            }
                        }
                        due = true;
                    }
                }
            }
            if !due {
                continue;
            }
            match reload_now(&cfg.source.clone(), &sandbox, &gate, &cfg).await {
                Ok(new) => {
                    cfg = new;
                    files = watched_files(&sources(&cfg));
                    *names.write().unwrap_or_else(|p| p.into_inner()) = watched_names(&files);
                    rewatch(&mut watcher, &mut dirs, watched_dirs(&sources(&cfg)));
                }
                Err(e) => {
                    // The running chain keeps deciding; the next change retries.
                    tracing::error!("reload refused, the running chain keeps deciding: {e}");
                    // The next change may be to a file only the refused config names
                    // (a plugin added before its file was copied in): watch those.
                    if let Ok(plugins) = Config::plugin_paths(&cfg.source) {
                        let tried: Vec<&Path> = std::iter::once(cfg.source.as_path())
                            .chain(plugins.iter().map(PathBuf::as_path))
                            .collect();
                        files = watched_files(&tried);
                        *names.write().unwrap_or_else(|p| p.into_inner()) = watched_names(&files);
                        rewatch(&mut watcher, &mut dirs, watched_dirs(&tried));
                    }
                }
            }
        }
    }
}

/// False for events that only tell of a file being opened or read (an open, a read,
/// a close after reading); a close after writing counts as a change.
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        _ => true,
    }
}

fn rewatch(
    watcher: &mut Option<RecommendedWatcher>,
    dirs: &mut BTreeSet<PathBuf>,
    want: BTreeSet<PathBuf>,
) {
    let Some(w) = watcher.as_mut() else { return };
    for d in dirs.difference(&want) {
        let _ = w.unwatch(d);
    }
    for d in want.difference(dirs) {
        if let Err(e) = w.watch(d, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %d.display(), "cannot watch for hot reload: {e}");
        }
    }
    *dirs = want;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_events_named_like_a_watched_file_leave_the_watcher_thread() {
        let names: BTreeSet<OsString> = ["htlcgate.toml", "fee-floor.wasm"]
            .into_iter()
            .map(OsString::from)
            .collect();
        for (path, wanted) in [
            ("/etc/htlcgate/htlcgate.toml", true),
            ("/srv/plugins/fee-floor.wasm", true),
            // Beside the config, written for every HTLC.
            ("/etc/htlcgate/htlcgate.journal.wal", false),
            ("/etc/htlcgate/htlcgate.journal.wal.old", false),
            ("/etc/htlcgate/htlcgate.journal", false),
            // An editor's temporary file: its rename to the real name is the event.
            ("/etc/htlcgate/.htlcgate.toml.swp", false),
            ("/", false),
        ] {
            assert_eq!(may_concern(&names, Path::new(path)), wanted, "{path}");
        }
    }
}
