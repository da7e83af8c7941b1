//! WASI waits end at the call's deadline.
//!
//! `std::thread::sleep`, Go's `time.Sleep` and any `wasi:io/poll` wait run in host
//! code, where neither fuel nor the epoch deadline counts: without this, a plugin
//! that sleeps an hour holds its stage for an hour (every HTLC meanwhile runs out
//! of the chain's budget) and an `init` that sleeps holds up start-up or a reload
//! for as long. The two waiting functions of `wasi:io/poll` (`poll` and
//! `pollable.block`; everything else in WASI this sandbox grants answers at once)
//! are replaced by the same waits bounded by [`PluginState::deadline`]; a wait
//! that reaches it traps as the epoch deadline does, so the call is a
//! [`crate::wasm::fault::PluginFault::Deadline`] like any other that overran.

use std::future::Future;
use std::time::Instant;

use wasmtime::component::{Linker, Resource};
use wasmtime::{StoreContextMut, Trap};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::WasiView;
use wasmtime_wasi_io::bindings::wasi::io::poll::{Host, HostPollable};

use super::imports::PluginState;

/// The `wasi:io/poll` version `wasmtime_wasi::p2::add_to_linker_sync` defines
/// (components importing any 0.2.x are linked to it). A wrong version would add
/// a second instance instead of replacing the waits: the sleep tests in
/// tests/adversarial.rs would hang.
const POLL: &str = "wasi:io/poll@0.2.12";

/// Replaces `poll` and `[method]pollable.block` in `linker` (which has WASI
/// already) with waits that end at the call's deadline.
pub fn bound_waits(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(POLL)?;
    poll.func_wrap(
        "poll",
        |mut store: StoreContextMut<'_, PluginState>, (list,): (Vec<Resource<DynPollable>>,)| {
            let deadline = store.data().deadline;
            let table = store.data_mut().ctx().table;
            let ready = until(deadline, Host::poll(table, list))??;
            Ok((ready,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store: StoreContextMut<'_, PluginState>, (p,): (Resource<DynPollable>,)| {
            let deadline = store.data().deadline;
            let table = store.data_mut().ctx().table;
            until(deadline, HostPollable::block(table, p))??;
            Ok(())
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Runs `wait` (as wasmtime-wasi's own sync functions do) until `deadline`;
/// reaching it is the epoch's trap.
fn until<F: Future>(deadline: Option<Instant>, wait: F) -> wasmtime::Result<F::Output> {
    let Some(deadline) = deadline else {
        return Ok(wasmtime_wasi::runtime::in_tokio(wait));
    };
    wasmtime_wasi::runtime::in_tokio(
        async move { tokio::time::timeout_at(deadline.into(), wait).await },
    )
    .map_err(|_| Trap::Interrupt.into())
}
