//! The compiled-code cache: wasmtime's serialized form of each plugin, keyed by the
//! component's content hash and the engine's configuration, so that a restart or a
//! reload of an unchanged plugin skips compilation (tens of milliseconds per plugin,
//! seconds for a Go one) and only deserializes (well under a millisecond).
//!
//! Deserializing trusts the bytes to be wasmtime's own output, so an entry is never
//! trusted blindly: each file carries a magic, the sha256 of its payload, and the key
//! it was written for; a corrupt, truncated or foreign entry fails these checks (or
//! wasmtime's own version and configuration checks) and is ignored, recompiled and
//! rewritten. Entries are written to a temporary file and renamed into place, so a
//! crash mid-write never leaves a half entry under a real name.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Magic at the start of every entry (format 1).
const MAGIC: &[u8; 16] = b"htlcgate-cwasm-1";

/// A directory of compiled plugins.
#[derive(Clone, Debug)]
pub struct CompileCache {
    /// Where entries live.
    dir: PathBuf,
    /// Hash of the engine's settings and wasmtime's version: part of every key.
    engine_key: String,
}

/// How a component was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a valid cache entry.
    Hit,
    /// Compiled (no entry); the entry was written.
    Miss,
    /// An entry existed but failed its checks: compiled again and rewritten.
    Rebuilt,
}

impl CompileCache {
    /// A cache in `dir` for components compiled by `engine` (created if missing).
    pub fn new(dir: &Path, engine: &Engine) -> std::io::Result<CompileCache> {
        std::fs::create_dir_all(dir)?;
        let mut h = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = format!("{:016x}", h.finish());
        Ok(CompileCache {
            dir: dir.to_owned(),
            engine_key,
        })
    }

    /// The entry file for a component whose bytes hash to `digest`.
    pub fn entry_path(&self, bytes: &[u8]) -> PathBuf {
        let digest = hex::encode(Sha256::digest(bytes));
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The component for `bytes`: from a valid entry, or compiled (and cached).
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.entry_path(bytes);
        let mut outcome = CacheOutcome::Miss;
        if let Ok(entry) = std::fs::read(&path) {
            match self.check(&path, &entry) {
                Some(payload) => {
                    // SAFETY: the payload is byte-for-byte what `Component::serialize`
                    // wrote for this engine configuration (its sha256 matches the one
                    // stored beside it, under a key naming this component and this
                    // engine); wasmtime additionally checks its own version and
                    // configuration header before using it.
                    match unsafe { Component::deserialize(engine, payload) } {
                        Ok(c) => return Ok((c, CacheOutcome::Hit)),
                        Err(e) => {
                            tracing::warn!(entry = %path.display(), "compile cache entry refused by wasmtime ({e}); recompiling")
                        }
                    }
                }
                None => {
                    tracing::warn!(entry = %path.display(), "compile cache entry is corrupt or foreign; recompiling")
                }
            }
            outcome = CacheOutcome::Rebuilt;
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(entry = %path.display(), "cannot write compile cache entry: {e}");
        }
        Ok((component, outcome))
    }

    /// The payload of a well-formed entry written for `path`, or `None`.
    fn check<'a>(&self, path: &Path, entry: &'a [u8]) -> Option<&'a [u8]> {
        let name = path.file_name()?.to_str()?.as_bytes();
        let rest = entry.strip_prefix(MAGIC.as_slice())?;
        let (len, rest) = rest.split_first_chunk::<2>()?;
        let (stored_name, rest) = rest.split_at_checked(u16::from_le_bytes(*len) as usize)?;
        if stored_name != name {
            return None;
        }
        let (sum, payload) = rest.split_first_chunk::<32>()?;
        (Sha256::digest(payload).as_slice() == sum).then_some(payload)
    }

    fn store(&self, path: &Path, component: &Component) -> anyhow::Result<()> {
        let payload = component.serialize()?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .as_bytes();
        let mut entry = Vec::with_capacity(payload.len() + 64 + name.len());
        entry.extend_from_slice(MAGIC);
        entry.extend_from_slice(&(name.len() as u16).to_le_bytes());
        entry.extend_from_slice(name);
        entry.extend_from_slice(&Sha256::digest(&payload));
        entry.extend_from_slice(&payload);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &entry)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}
