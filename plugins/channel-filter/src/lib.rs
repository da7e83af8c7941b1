//! `channel-filter`: fails HTLCs by the channel they arrive on or leave by.
//!
//! Four optional lists of short channel ids (`BLOCKxTXxOUT` or decimal,
//! comma-separated):
//! - `deny_in` / `deny_out`: HTLCs arriving on / asked to leave by one of these
//!   channels fail.
//! - `allow_in` / `allow_out`: when set, only HTLCs arriving on / leaving by one
//!   of these channels pass the list.
//!
//! Deny wins over allow. A failing HTLC gets TEMPORARY_CHANNEL_FAILURE; every
//! other one gets `next`, so later plugins still decide.
//!
//! The outgoing lists judge forwards only: an HTLC for this node (final hop) has
//! no outgoing channel and is judged by the incoming lists alone. A
//! node-addressed (blinded) forward names a node, not a channel: it passes
//! `deny_out`, and fails `allow_out` because it cannot be shown to use an
//! allowed channel.
//!
//! Ids are compared as LND sends them: a sender paying through a route hint of a
//! private channel may name its alias (`scid-alias`, zero-conf) as the outgoing
//! channel, which matches only if the list names the alias too. List a private
//! channel's aliases beside its id (`lncli listchannels` shows them). The plugin
//! does not resolve aliases itself: that needs the node context (`node` grant),
//! which a plain filter should not ask for.
//!
//! A bad id refuses the load, naming the key and the entry; so does an allow
//! list with no entry (it would fail everything; remove the key instead).
//!
//! ```toml
//! [[plugin]]
//! name = "channel-filter"
//! path = "target/wasm-plugins/channel-filter.wasm"
//! config = { deny_in = "800000x1x0, 812345x7x1", allow_out = "879609302220865536" }
//! ```

use htlcgate_sdk::{export_plugin, Config, Htlc, Plugin, Scid, Verdict};

/// Where an HTLC is asked to go, as far as the outgoing lists care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    /// The HTLC is for this node.
    Final,
    /// Forward over this channel.
    Chan(Scid),
    /// Forward to a node (blinded route); the channel is LND's choice.
    Node,
}

impl Hop {
    /// Where `htlc` is asked to go.
    pub fn of(htlc: &Htlc) -> Hop {
        if htlc.is_final_hop() {
            Hop::Final
        } else if htlc.outgoing_node_id().is_some() {
            Hop::Node
        } else {
            Hop::Chan(htlc.outgoing_chan())
        }
    }
}

/// One channel list, sorted for binary search (no allocation per HTLC).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Channels(Vec<Scid>);

impl Channels {
    /// Reads list `key`; `None` when absent.
    fn read(config: &Config, key: &str) -> Result<Option<Channels>, String> {
        Ok(config.list::<Scid>(key)?.map(|mut ids| {
            ids.sort_unstable();
            ids.dedup();
            Channels(ids)
        }))
    }

    /// True when `scid` is listed.
    fn contains(&self, scid: Scid) -> bool {
        self.0.binary_search(&scid).is_ok()
    }
}

/// The configured lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelFilter {
    /// Only these incoming channels pass, when set.
    allow_in: Option<Channels>,
    /// These incoming channels fail.
    deny_in: Channels,
    /// Only these outgoing channels pass, when set.
    allow_out: Option<Channels>,
    /// These outgoing channels fail.
    deny_out: Channels,
}

impl ChannelFilter {
    /// The rule that fails an HTLC arriving on `incoming` and going to `hop`, or
    /// `None` when it passes every list.
    pub fn blocked_by(&self, incoming: Scid, hop: Hop) -> Option<&'static str> {
        if self.deny_in.contains(incoming) {
            return Some("deny_in");
        }
        if self
            .allow_in
            .as_ref()
            .is_some_and(|allow| !allow.contains(incoming))
        {
            return Some("allow_in");
        }
        match hop {
            Hop::Final => None,
            Hop::Chan(outgoing) if self.deny_out.contains(outgoing) => Some("deny_out"),
            Hop::Chan(outgoing) => match &self.allow_out {
                Some(allow) if !allow.contains(outgoing) => Some("allow_out"),
                _ => None,
            },
            Hop::Node => self.allow_out.as_ref().map(|_| "allow_out"),
        }
    }
}

impl Plugin for ChannelFilter {
    fn init(config: &Config) -> Result<Self, String> {
        const KEYS: [&str; 4] = ["allow_in", "deny_in", "allow_out", "deny_out"];
        config.deny_unknown(&KEYS)?;
        let allow = |key: &str| -> Result<Option<Channels>, String> {
            match Channels::read(config, key)? {
                Some(list) if list.0.is_empty() => Err(format!(
                    "config key `{key}` lists no channel, so every HTLC would fail; remove the key to allow every channel"
                )),
                list => Ok(list),
            }
        };
        Ok(ChannelFilter {
            allow_in: allow("allow_in")?,
            deny_in: Channels::read(config, "deny_in")?.unwrap_or_default(),
            allow_out: allow("allow_out")?,
            deny_out: Channels::read(config, "deny_out")?.unwrap_or_default(),
        })
    }

    fn decide(&mut self, htlc: &Htlc) -> Verdict {
        let Some(rule) = self.blocked_by(htlc.incoming_chan(), Hop::of(htlc)) else {
            return Verdict::next();
        };
        htlcgate_sdk::debug!(
            "{}: {} -> {} failed by `{}`",
            htlc.circuit_key(),
            htlc.incoming_chan(),
            htlc.outgoing_chan(),
            rule
        );
        // Failing back is always safe for funds: the sender gets the HTLC back.
        Verdict::fail_temporary()
    }
}

export_plugin!(ChannelFilter);

#[cfg(test)]
mod tests {
    use super::*;

    const A: Scid = Scid(879_609_302_220_865_536); // 800000x1x0
    const B: Scid = Scid(42);
    const C: Scid = Scid(u64::MAX - 1);

    fn filter(pairs: &[(&str, &str)]) -> ChannelFilter {
        ChannelFilter::init(&Config::from_pairs(pairs.iter().copied())).unwrap()
    }

    fn init_error(pairs: &[(&str, &str)]) -> String {
        ChannelFilter::init(&Config::from_pairs(pairs.iter().copied())).unwrap_err()
    }

    #[test]
    fn empty_config_passes_everything() {
        let f = filter(&[]);
        for hop in [Hop::Final, Hop::Node, Hop::Chan(A), Hop::Chan(Scid(0))] {
            assert_eq!(f.blocked_by(A, hop), None);
        }
    }

    #[test]
    fn deny_lists_fail_their_channels() {
        let f = filter(&[("deny_in", "800000x1x0"), ("deny_out", "42")]);
        assert_eq!(f.blocked_by(A, Hop::Chan(C)), Some("deny_in"));
        assert_eq!(f.blocked_by(C, Hop::Chan(B)), Some("deny_out"));
        assert_eq!(f.blocked_by(C, Hop::Chan(C)), None);
        assert_eq!(f.blocked_by(B, Hop::Chan(A)), None);
    }

    #[test]
    fn allow_lists_pass_only_their_channels() {
        let f = filter(&[
            ("allow_in", "42, 800000x1x0"),
            ("allow_out", "18446744073709551614"),
        ]);
        assert_eq!(f.blocked_by(A, Hop::Chan(C)), None);
        assert_eq!(f.blocked_by(B, Hop::Chan(C)), None);
        assert_eq!(f.blocked_by(C, Hop::Chan(C)), Some("allow_in"));
        assert_eq!(f.blocked_by(A, Hop::Chan(B)), Some("allow_out"));
    }

    #[test]
    fn deny_wins_over_allow() {
        let f = filter(&[
            ("allow_in", "42"),
            ("deny_in", "42"),
            ("allow_out", "42"),
            ("deny_out", "42"),
        ]);
        assert_eq!(f.blocked_by(B, Hop::Chan(A)), Some("deny_in"));
        let f = filter(&[("allow_out", "42"), ("deny_out", "0x0x42")]);
        assert_eq!(f.blocked_by(A, Hop::Chan(B)), Some("deny_out"));
    }

    #[test]
    fn payments_to_this_node_skip_the_outgoing_lists() {
        let f = filter(&[("allow_out", "42"), ("deny_out", "0")]);
        assert_eq!(f.blocked_by(A, Hop::Final), None);
        let f = filter(&[("allow_in", "42")]);
        assert_eq!(f.blocked_by(A, Hop::Final), Some("allow_in"));
    }

    #[test]
    fn node_addressed_forwards_pass_deny_out_and_fail_allow_out() {
        assert_eq!(filter(&[("deny_out", "42")]).blocked_by(A, Hop::Node), None);
        assert_eq!(
            filter(&[("allow_out", "42")]).blocked_by(A, Hop::Node),
            Some("allow_out")
        );
    }

    #[test]
    fn decide_reads_the_htlc_channels() {
        let mut f = filter(&[("deny_out", "800000x1x0")]);
        let to_a = Htlc::builder().incoming_chan(B).outgoing_chan(A).build();
        assert_eq!(f.decide(&to_a), Verdict::fail_temporary());
        let to_c = Htlc::builder().incoming_chan(B).outgoing_chan(C).build();
        assert_eq!(f.decide(&to_c), Verdict::next());
        let receive = Htlc::builder().incoming_chan(B).final_hop().build();
        assert_eq!(Hop::of(&receive), Hop::Final);
        assert_eq!(f.decide(&receive), Verdict::next());
        let blinded = Htlc::builder().outgoing_node_id([3; 33]).build();
        assert_eq!(Hop::of(&blinded), Hop::Node);
    }

    #[test]
    fn extreme_ids_parse_and_match() {
        let f = filter(&[("deny_in", "0, 18446744073709551615")]);
        assert_eq!(f.blocked_by(Scid(0), Hop::Final), Some("deny_in"));
        assert_eq!(f.blocked_by(Scid(u64::MAX), Hop::Final), Some("deny_in"));
        assert_eq!(f.blocked_by(Scid(1), Hop::Final), None);
    }

    #[test]
    fn bad_entry_refuses_init_naming_key_and_entry() {
        let err = init_error(&[("deny_out", "42, 800000x1, 7")]);
        assert!(err.starts_with("config key `deny_out`:"), "{err}");
        assert!(err.contains("`800000x1`"), "{err}");
        let err = init_error(&[("allow_in", "16777216x0x0")]);
        assert!(
            err.contains("`allow_in`") && err.contains("`16777216x0x0`"),
            "{err}"
        );
    }

    #[test]
    fn empty_allow_list_refuses_init() {
        let err = init_error(&[("allow_out", " , ")]);
        assert!(err.contains("`allow_out` lists no channel"), "{err}");
        // An empty deny list denies nothing, which is harmless.
        assert_eq!(filter(&[("deny_in", "")]), filter(&[]));
    }

    #[test]
    fn unknown_key_refuses_init() {
        assert!(init_error(&[("allow", "42")]).contains("`allow` is not known"));
    }
}
