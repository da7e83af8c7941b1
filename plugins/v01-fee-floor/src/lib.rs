//! `v01-fee-floor`: a fee floor built against the frozen 0.1.0 contract
//! (`wit/v0.1/plugin.wit`) with plain `wit-bindgen`, not the SDK: the fixture
//! that shows htlcgate still loads and runs plugins built before 0.2.0.
//!
//! It fails with TEMPORARY_CHANNEL_FAILURE every forward whose fee (incoming -
//! outgoing) is below `min_fee_msat` (a negative fee never passes), and answers
//! `next` for everything else and for every HTLC addressed to this node (final
//! hop), like `plugins/fee-floor` with `base_msat = min_fee_msat, ppm = 0`.
//!
//! Config (optional, default 0):
//! - `min_fee_msat`: the smallest fee, msat, a forward must pay.
//!
//! ```toml
//! [[plugin]]
//! name = "v01-fee-floor"
//! path = "target/wasm-plugins/v01-fee-floor.wasm"
//! config = { min_fee_msat = "1000" }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

wit_bindgen::generate!({
    path: "../../wit/v0.1",
    world: "decider",
});

/// The configured floor, msat (set by `init`).
static MIN_FEE_MSAT: AtomicU64 = AtomicU64::new(0);

/// Reads the config: only `min_fee_msat`, an unsigned integer.
fn parse_config(config: &[(String, String)]) -> Result<u64, String> {
    let mut min_fee_msat = 0;
    for (key, value) in config {
        match key.as_str() {
            "min_fee_msat" => {
                min_fee_msat = value.parse().map_err(|_| {
                    format!(
                        "config key `min_fee_msat`: expected an unsigned integer, got `{value}`"
                    )
                })?
            }
            other => {
                return Err(format!(
                    "config key `{other}` is not known; known keys: min_fee_msat"
                ))
            }
        }
    }
    Ok(min_fee_msat)
}

/// Whether the HTLC is for this node (no outgoing channel or node requested).
fn is_final_hop(htlc: &Htlc) -> bool {
    htlc.outgoing_requested_chan_id == 0 && htlc.outgoing_requested_node_id.is_none()
}

/// True when forwarding pays at least `min_fee_msat`; a negative fee never does.
fn pays_enough(min_fee_msat: u64, incoming_msat: u64, outgoing_msat: u64) -> bool {
    incoming_msat
        .checked_sub(outgoing_msat)
        .is_some_and(|fee| fee >= min_fee_msat)
}

/// The decision for one HTLC under a floor of `min_fee_msat`.
fn decide_with(min_fee_msat: u64, htlc: &Htlc) -> Resolution {
    if is_final_hop(htlc)
        || pays_enough(
            min_fee_msat,
            htlc.incoming_amount_msat,
            htlc.outgoing_amount_msat,
        )
    {
        Resolution::Next
    } else {
        Resolution::Fail(FailureCode::TemporaryChannelFailure)
    }
}

/// The component.
struct V01FeeFloor;

impl Guest for V01FeeFloor {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        MIN_FEE_MSAT.store(parse_config(&config)?, Ordering::Relaxed);
        Ok(())
    }

    fn decide(htlc: Htlc) -> Resolution {
        let resolution = decide_with(MIN_FEE_MSAT.load(Ordering::Relaxed), &htlc);
        if matches!(resolution, Resolution::Fail(_)) {
            log(
                LogLevel::Debug,
                &format!(
                    "{}:{}: fee below the floor",
                    htlc.incoming_circuit_key.chan_id, htlc.incoming_circuit_key.htlc_id
                ),
            );
        }
        resolution
    }
}

export!(V01FeeFloor);

#[cfg(test)]
mod tests {
    use super::*;

    fn htlc(incoming: u64, outgoing: u64, chan: u64) -> Htlc {
        Htlc {
            incoming_circuit_key: CircuitKey {
                chan_id: 1,
                htlc_id: 2,
            },
            incoming_amount_msat: incoming,
            incoming_expiry: 500,
            payment_hash: vec![0; 32],
            outgoing_requested_chan_id: chan,
            outgoing_amount_msat: outgoing,
            outgoing_expiry: 460,
            custom_records: vec![],
            onion_blob_size: 1366,
            auto_fail_height: 480,
            in_wire_custom_records: vec![],
            outgoing_requested_node_id: None,
        }
    }

    fn fails(r: Resolution) -> bool {
        matches!(r, Resolution::Fail(FailureCode::TemporaryChannelFailure))
    }

    #[test]
    fn fee_at_the_floor_passes_and_one_below_fails() {
        assert!(matches!(
            decide_with(1_000, &htlc(11_000, 10_000, 7)),
            Resolution::Next
        ));
        assert!(fails(decide_with(1_000, &htlc(10_999, 10_000, 7))));
        assert!(fails(decide_with(0, &htlc(0, 1, 7))));
    }

    #[test]
    fn payments_to_this_node_get_next() {
        assert!(matches!(
            decide_with(u64::MAX, &htlc(1, 1, 0)),
            Resolution::Next
        ));
        let mut blinded = htlc(1, 1, u64::MAX);
        blinded.outgoing_requested_node_id = Some(vec![2; 33]);
        assert!(fails(decide_with(1, &blinded)));
    }

    #[test]
    fn config_is_checked() {
        assert_eq!(parse_config(&[]), Ok(0));
        let ok = [("min_fee_msat".to_string(), "25".to_string())];
        assert_eq!(parse_config(&ok), Ok(25));
        let bad = [("min_fee_msat".to_string(), "x".to_string())];
        assert!(parse_config(&bad).unwrap_err().contains("min_fee_msat"));
        let typo = [("base_msat".to_string(), "1".to_string())];
        assert!(parse_config(&typo).unwrap_err().contains("`base_msat`"));
    }
}
