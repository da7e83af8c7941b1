//! The same fee-floor policy as an out-of-process plugin speaking line-delimited
//! JSON over a pipe, the way Core Lightning plugins work: the host writes one
//! JSON-RPC call per HTLC (every field, the onion as hex, like CLN's
//! `htlc_accepted` hook), the child answers with one line.
//!
//! Two children speak the protocol: this benchmark's own executable started again
//! with `HTLCGATE_BENCH_ROLE=pipe-child` (Rust, serde_json: the fastest a plugin
//! process can be) and `benches/python/pipe_plugin.py` (python3, what most CLN
//! plugins are written in).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{bail, Context};
use htlcgate::lnd::proto::routerrpc::ForwardHtlcInterceptRequest;
use serde::{Deserialize, Serialize};

/// Environment variable that turns the benchmark executable into the pipe child.
const ROLE: &str = "HTLCGATE_BENCH_ROLE";

/// One hook call.
#[derive(Serialize, Deserialize)]
struct Call {
    /// "2.0".
    jsonrpc: String,
    /// Call number, echoed in the reply.
    id: u64,
    /// "htlc_accepted", as Core Lightning's hook.
    method: String,
    /// The HTLC.
    params: Params,
}

/// The hook's parameters.
#[derive(Serialize, Deserialize)]
struct Params {
    /// Every field of LND's request but the onion.
    htlc: HtlcJson,
    /// The onion, as CLN passes it.
    onion: Onion,
}

/// LND's request, field for field, bytes as hex.
#[derive(Serialize, Deserialize)]
struct HtlcJson {
    /// Incoming channel (circuit key).
    chan_id: u64,
    /// HTLC index (circuit key).
    htlc_id: u64,
    /// msat in.
    incoming_amount_msat: u64,
    /// Block height.
    incoming_expiry: u32,
    /// Hex.
    payment_hash: String,
    /// Requested outgoing channel.
    outgoing_requested_chan_id: u64,
    /// msat out.
    outgoing_amount_msat: u64,
    /// Block height.
    outgoing_expiry: u32,
    /// Type (decimal) -> value (hex).
    custom_records: BTreeMap<String, String>,
    /// Block height.
    auto_fail_height: i32,
    /// Type (decimal) -> value (hex).
    in_wire_custom_records: BTreeMap<String, String>,
    /// Hex; empty when unset.
    outgoing_requested_node_id: String,
}

/// The onion part of the call.
#[derive(Serialize, Deserialize)]
struct Onion {
    /// The 1366-byte onion blob, hex.
    payload: String,
}

/// The child's answer.
#[derive(Serialize, Deserialize)]
struct Reply {
    /// "2.0".
    jsonrpc: String,
    /// The call's number.
    id: u64,
    /// The decision.
    result: ReplyResult,
}

/// The hook's answer.
#[derive(Serialize, Deserialize)]
struct ReplyResult {
    /// "continue" or "fail", as CLN's hook answers.
    result: String,
}

/// True when this process was started as the pipe child.
pub fn is_child() -> bool {
    std::env::var_os(ROLE).is_some_and(|v| v == "pipe-child")
}

/// The child: reads calls, decides with the fee floor (base 1000 msat, 100 ppm),
/// answers, until stdin closes.
pub fn child_main() {
    let (base, ppm) = (1_000u128, 100u128);
    let stdin = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    for line in stdin.lines() {
        let Ok(line) = line else { return };
        let call: Call = serde_json::from_str(&line).expect("pipe child: bad call");
        let h = &call.params.htlc;
        let pass = (h.outgoing_requested_chan_id == 0 && h.outgoing_requested_node_id.is_empty())
            || h.incoming_amount_msat
                .checked_sub(h.outgoing_amount_msat)
                .is_some_and(|fee| {
                    u128::from(fee) >= base + ppm * u128::from(h.outgoing_amount_msat) / 1_000_000
                });
        let reply = Reply {
            jsonrpc: "2.0".into(),
            id: call.id,
            result: ReplyResult {
                result: if pass { "continue" } else { "fail" }.into(),
            },
        };
        serde_json::to_writer(&mut out, &reply).expect("pipe child: write");
        out.write_all(b"\n").expect("pipe child: write");
        out.flush().expect("pipe child: flush");
    }
}

/// Which child to start.
#[derive(Clone, Copy, Debug)]
pub enum ChildKind {
    /// This executable, as a Rust plugin process.
    Rust,
    /// `python3 benches/python/pipe_plugin.py`.
    Python,
}

/// The host's end of one plugin process.
pub struct PipePlugin {
    /// The process.
    child: Child,
    /// Its stdin.
    to: BufWriter<ChildStdin>,
    /// Its stdout.
    from: BufReader<ChildStdout>,
    /// The next call's number.
    next_id: u64,
    /// The reply buffer.
    line: String,
}

impl PipePlugin {
    /// Starts the child.
    pub fn start(kind: ChildKind) -> anyhow::Result<PipePlugin> {
        let mut cmd = match kind {
            ChildKind::Rust => {
                let mut c = Command::new(std::env::current_exe()?);
                c.env(ROLE, "pipe-child");
                c
            }
            ChildKind::Python => {
                let script = crate::common::repo().join("benches/python/pipe_plugin.py");
                let mut c = Command::new("python3");
                c.arg(script);
                c
            }
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| match kind {
                ChildKind::Rust => "cannot start the benchmark executable as the pipe child".into(),
                ChildKind::Python => {
                    "cannot start python3 for benches/python/pipe_plugin.py: install Python 3 \
                     (apt-get install python3) or put it on PATH"
                        .to_string()
                }
            })?;
        let to = BufWriter::new(child.stdin.take().expect("piped"));
        let from = BufReader::new(child.stdout.take().expect("piped"));
        let mut p = PipePlugin {
            child,
            to,
            from,
            next_id: 1,
            line: String::new(),
        };
        // One call proves the child speaks the protocol.
        p.call(&crate::common::passing_forward(0))
            .with_context(|| format!("the {kind:?} pipe child does not answer"))?;
        Ok(p)
    }

    /// One round trip: serialize the HTLC, write, read the reply, parse it.
    /// Returns whether the child said `continue`.
    pub fn call(&mut self, req: &ForwardHtlcInterceptRequest) -> anyhow::Result<bool> {
        let key = req.incoming_circuit_key.unwrap_or_default();
        let hexmap = |m: &std::collections::HashMap<u64, Vec<u8>>| {
            m.iter()
                .map(|(k, v)| (k.to_string(), hex::encode(v)))
                .collect()
        };
        let id = self.next_id;
        self.next_id += 1;
        let call = Call {
            jsonrpc: "2.0".into(),
            id,
            method: "htlc_accepted".into(),
            params: Params {
                htlc: HtlcJson {
                    chan_id: key.chan_id,
                    htlc_id: key.htlc_id,
                    incoming_amount_msat: req.incoming_amount_msat,
                    incoming_expiry: req.incoming_expiry,
                    payment_hash: hex::encode(&req.payment_hash),
                    outgoing_requested_chan_id: req.outgoing_requested_chan_id,
                    outgoing_amount_msat: req.outgoing_amount_msat,
                    outgoing_expiry: req.outgoing_expiry,
                    custom_records: hexmap(&req.custom_records),
                    auto_fail_height: req.auto_fail_height,
                    in_wire_custom_records: hexmap(&req.in_wire_custom_records),
                    outgoing_requested_node_id: hex::encode(&req.outgoing_requested_node_id),
                },
                onion: Onion {
                    payload: hex::encode(&req.onion_blob),
                },
            },
        };
        serde_json::to_writer(&mut self.to, &call)?;
        self.to.write_all(b"\n")?;
        self.to.flush()?;
        self.line.clear();
        if self.from.read_line(&mut self.line)? == 0 {
            bail!("the pipe child closed its stdout");
        }
        let reply: Reply = serde_json::from_str(&self.line)
            .with_context(|| format!("the pipe child answered {:?}", self.line))?;
        if reply.id != id {
            bail!("the pipe child answered call {} for call {id}", reply.id);
        }
        Ok(reply.result.result == "continue")
    }
}

impl Drop for PipePlugin {
    fn drop(&mut self) {
        // Closing stdin ends the child's loop.
        let _ = self.to.flush();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
