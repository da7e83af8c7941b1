//! The ways a plugin can misbehave while deciding, in plain words.
//!
//! A fault never reaches LND: the chain applies the plugin's `on_fault` policy
//! instead, and counts it towards quarantine.

use std::time::Duration;

use wasmtime::Trap;

use crate::verdict::InvalidVerdict;

/// A plugin fault during one call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PluginFault {
    /// The call used all its fuel.
    #[error("fuel exhausted after {fuel} units; raise `fuel` in [[plugin]] or fix the loop")]
    FuelExhausted {
        /// The fuel it was given.
        fuel: u64,
    },
    /// The call ran past its wall-clock deadline.
    #[error("did not finish within {} ms; raise `timeout_ms` in [[plugin]] or make decide faster", .timeout.as_millis())]
    Deadline {
        /// The deadline.
        timeout: Duration,
    },
    /// The plugin tried to grow its memory past the cap.
    #[error("tried to grow its memory past the {} MiB cap; raise `memory_mb` in [[plugin]] or stop holding memory across calls", .limit_bytes >> 20)]
    MemoryCap {
        /// The cap in bytes.
        limit_bytes: usize,
    },
    /// The wasm stack overflowed (deep or endless recursion).
    #[error("overflowed the wasm stack (deep recursion); raise `sandbox.max_wasm_stack_kb` or recurse less")]
    StackOverflow,
    /// Any other trap (a panic, `unreachable`, an out-of-bounds access).
    #[error("trapped: {message}")]
    Trap {
        /// The trap and its backtrace summary.
        message: String,
    },
    /// The plugin answered something that cannot be sent to LND.
    #[error("returned an invalid verdict: {0}")]
    InvalidVerdict(#[from] InvalidVerdict),
    /// The plugin's instance could not be rebuilt after an earlier trap.
    #[error("has no working instance: {reason}")]
    NoInstance {
        /// Why re-instantiation failed.
        reason: String,
    },
}

impl PluginFault {
    /// A short machine-friendly reason, for metrics labels and summaries.
    pub fn reason(&self) -> &'static str {
        match self {
            PluginFault::FuelExhausted { .. } => "fuel",
            PluginFault::Deadline { .. } => "deadline",
            PluginFault::MemoryCap { .. } => "memory",
            PluginFault::StackOverflow => "stack",
            PluginFault::Trap { .. } => "trap",
            PluginFault::InvalidVerdict(_) => "invalid-verdict",
            PluginFault::NoInstance { .. } => "no-instance",
        }
    }

    /// Whether the instance must be replaced (its state may be inconsistent and
    /// wasmtime refuses to re-enter a component instance after a trap).
    pub fn poisons_instance(&self) -> bool {
        !matches!(
            self,
            PluginFault::InvalidVerdict(_) | PluginFault::NoInstance { .. }
        )
    }

    /// Classifies an error from a call into the guest.
    pub fn from_call_error(
        err: &wasmtime::Error,
        fuel: u64,
        timeout: Duration,
        memory_cap_hit: bool,
        limit_bytes: usize,
    ) -> PluginFault {
        if memory_cap_hit {
            return PluginFault::MemoryCap { limit_bytes };
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => PluginFault::FuelExhausted { fuel },
            Some(Trap::Interrupt) => PluginFault::Deadline { timeout },
            Some(Trap::StackOverflow) => PluginFault::StackOverflow,
            // The trap's kind (e.g. "wasm trap: out of bounds memory access") or the
            // root cause, not the backtrace that `{err:#}` starts with.
            Some(trap) => PluginFault::Trap {
                message: first_lines(&trap.to_string(), 1),
            },
            None => PluginFault::Trap {
                message: first_lines(&err.root_cause().to_string(), 3),
            },
        }
    }
}

fn first_lines(s: &str, n: usize) -> String {
    let mut out: String = s.lines().take(n).collect::<Vec<_>>().join(" | ");
    if out.len() > 300 {
        let mut cut = 300;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}
