//! Capabilities a plugin must be granted in its `[[plugin]]` entry (`grants = [...]`)
//! before it may import them.
//!
//! The base world (`log`, `now-unix-ms`, and in 0.2.0 `block-height`) and WASI with
//! nothing in it (no preopened directory, no environment, no sockets allowed) are
//! given to every plugin. Both world versions name their imports alike, so one
//! table covers 0.1.0 and 0.2.0 plugins. Anything
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
    Capability {
        name: "node",
        imports: &["channel"],
        gives:
            "which peer is behind a channel, its capacity, balances, active/private, who opened it",
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

    #[test]
    fn channel_needs_the_node_grant_and_block_height_none() {
        let node = covering("channel").unwrap();
        assert_eq!(node.name, "node");
        assert!(node.gives.contains("peer"));
        assert!(std::ptr::eq(node, capability("node").unwrap()));
        assert!(covering("block-height").is_none());
        assert!(covering("now-unix-ms").is_none());
    }

    #[test]
    fn every_import_is_covered_by_at_most_one_capability() {
        let mut seen = std::collections::HashSet::new();
        for cap in CAPABILITIES {
            for import in cap.imports {
                assert!(seen.insert(*import), "{import} covered twice");
            }
        }
    }
}
