//! Capabilities a plugin must be granted in its `[[plugin]]` entry (`grants = [...]`)
//! before it may import them.
//!
//! The base world (`log`, `now-unix-ms`) and WASI with nothing in it (no preopened
//! directory, no environment, no sockets allowed) are given to every plugin. Anything
//! that exposes more is a capability: a component that imports it without the grant
//! is refused at load, with a message naming the import and the grant, so an
//! operator always sees what a third-party plugin can reach.

/// One grantable capability.
#[derive(Debug)]
pub struct Capability {
    /// The name used in `grants = [...]`.
    pub name: &'static str,
    /// The component imports it covers.
    pub imports: &'static [&'static str],
    /// What it gives the plugin, for error messages and docs.
    pub gives: &'static str,
}

/// Every capability htlcgate knows.
pub const CAPABILITIES: &[Capability] = &[
    Capability {
        name: "onion-blob",
        imports: &["onion-blob"],
        gives: "the raw onion packet for the next hop",
    },
    Capability {
        name: "kv",
        imports: &["kv-get", "kv-set", "kv-delete"],
        gives: "a key-value namespace of its own, kept on disk across reloads and restarts",
    },
];

/// The capability named `name`.
pub fn capability(name: &str) -> Option<&'static Capability> {
    CAPABILITIES.iter().find(|c| c.name == name)
}

/// The capability covering component import `import`, if it is grantable.
pub fn covering(import: &str) -> Option<&'static Capability> {
    CAPABILITIES.iter().find(|c| c.imports.contains(&import))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_onion_blob_import_needs_a_grant() {
        assert_eq!(covering("onion-blob").unwrap().name, "onion-blob");
        assert_eq!(covering("kv-set").unwrap().name, "kv");
        assert_eq!(covering("kv-get").unwrap().name, "kv");
        assert!(covering("log").is_none());
        assert!(capability("network").is_none());
    }
}
