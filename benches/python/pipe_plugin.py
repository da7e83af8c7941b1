#!/usr/bin/env python3
"""The fee-floor policy as an out-of-process plugin, the way Core Lightning plugins
work: one JSON-RPC request per line on stdin (an `htlc_accepted`-style hook call
carrying every field of the HTLC and the onion as hex), one JSON reply per line on
stdout. Same protocol as the Rust child in benches/decide/pipe.rs.

Run by `cargo bench --bench decide` (no arguments; config in the environment).
"""
import json
import os
import sys

BASE_MSAT = int(os.environ.get("FEE_FLOOR_BASE_MSAT", "1000"))
PPM = int(os.environ.get("FEE_FLOOR_PPM", "100"))


def decide(htlc):
    if htlc["outgoing_requested_chan_id"] == 0 and not htlc["outgoing_requested_node_id"]:
        return "continue"
    fee = htlc["incoming_amount_msat"] - htlc["outgoing_amount_msat"]
    floor = BASE_MSAT + PPM * htlc["outgoing_amount_msat"] // 1_000_000
    return "continue" if fee >= floor else "fail"


def main():
    out = sys.stdout
    for line in sys.stdin:
        call = json.loads(line)
        result = decide(call["params"]["htlc"])
        out.write(json.dumps({"jsonrpc": "2.0", "id": call["id"], "result": {"result": result}}))
        out.write("\n")
        out.flush()


if __name__ == "__main__":
    main()
