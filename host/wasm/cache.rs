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
    /// A cache in `dir` for components compiled by `engine` (created if missing,
    /// readable and writable by its owner only).
    ///
    /// Entries are checksummed, not authenticated: whoever can write the
    /// directory can plant native code that htlcgate runs with LND's macaroon.
    /// A directory another user owns, or that group or others can write, is
    /// refused (the caller turns the cache off and says why).
    pub fn new(dir: &Path, engine: &Engine) -> std::io::Result<CompileCache> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let meta = std::fs::metadata(dir)?;
        // The owner of `/proc/self` is this process's effective user.
        let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
        if me.is_some_and(|me| meta.uid() != me) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} belongs to another user (uid {}), who could plant compiled code htlcgate would run; \
                     use a directory of htlcgate's own user ([sandbox] cache_dir)",
                    dir.display(),
                    meta.uid()
                ),
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} can be written by other users (mode {:o}), who could plant compiled code htlcgate would run; \
                     run `chmod 700 {}` or set another [sandbox] cache_dir",
                    dir.display(),
                    meta.mode() & 0o777,
                    dir.display()
                ),
            ));
        }
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
        // A fresh file of our own (never through a link left at that name).
        let _ = std::fs::remove_file(&tmp);
        let written = {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .and_then(|mut f| f.write_all(&entry))
        };
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn engine() -> Engine {
        Engine::default()
    }

    /// Found in review: entries are checksummed, not authenticated, so whoever
    /// can write the directory can plant native code that htlcgate runs. The
    /// directory must be the daemon's alone.
    #[test]
    fn a_directory_others_can_write_is_refused_naming_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = CompileCache::new(&shared, &engine())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&shared.display().to_string()) && err.contains("chmod 700"),
            "{err}"
        );
    }

    #[test]
    fn a_directory_it_creates_is_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("a/b");
        CompileCache::new(&made, &engine()).unwrap();
        let mode = std::fs::metadata(&made).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
