//! A process's resident memory, from /proc: the whole (`VmRSS`) and the part that
//! is WebAssembly linear memory (the plugins' own heaps).
//!
//! wasmtime reserves each linear memory as one large address range and makes only
//! its current size accessible, so in `/proc/PID/smaps` a linear memory is a run
//! of contiguous read-write mappings (anonymous, or the module's data image mapped
//! copy-on-write from `memfd:wasm-memory-image`) followed directly by a large
//! (>= 1 GiB) inaccessible one (the rest of the reservation and the guard). Their
//! resident sizes add up to the plugins' heaps; everything else is the host's.

use anyhow::Context;

/// Resident memory of one process, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rss {
    /// `VmRSS` from /proc/PID/status.
    pub total_kib: u64,
    /// Resident linear memory (the plugins' own heaps).
    pub linear_kib: u64,
}

/// Reads the resident memory of process `pid`.
pub fn rss(pid: u32) -> anyhow::Result<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let total_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/PID/status")?;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))
        .with_context(|| format!("reading /proc/{pid}/smaps"))?;
    Ok(Rss {
        total_kib,
        linear_kib: linear_memory_kib(&smaps),
    })
}

/// One mapping of smaps: its range, permissions, whether it maps a file, its Rss.
struct Mapping {
    /// First address.
    start: u64,
    /// One past the last address.
    end: u64,
    /// `rw-p`, `---p`, ...
    perms: String,
    /// Anonymous memory or wasmtime's memory image (what linear memory is made of).
    wasm_backed: bool,
    /// Resident KiB.
    rss_kib: u64,
}

fn parse(smaps: &str) -> Vec<Mapping> {
    let mut maps: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                let perms = parts.next().unwrap_or("").to_owned();
                // offset, dev, inode, then the path (absent for anonymous memory).
                let path = parts.nth(3);
                maps.push(Mapping {
                    start,
                    end,
                    perms,
                    wasm_backed: path.is_none_or(|p| p.starts_with("/memfd:wasm-memory-image")),
                    rss_kib: 0,
                });
                continue;
            }
        }
        if let (Some("Rss:"), Some(m)) = (Some(first), maps.last_mut()) {
            m.rss_kib = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    maps
}

/// Resident KiB of the mappings that look like linear memories.
fn linear_memory_kib(smaps: &str) -> u64 {
    const RESERVATION: u64 = 1 << 30;
    let maps = parse(smaps);
    let mut total = 0;
    for (i, rest) in maps.iter().enumerate() {
        if !(rest.perms.starts_with("---") && rest.end - rest.start >= RESERVATION) {
            continue;
        }
        // Walk back over the accessible part of this reservation.
        let mut next_start = rest.start;
        for heap in maps[..i].iter().rev() {
            if heap.end != next_start || !heap.perms.starts_with("rw") || !heap.wasm_backed {
                break;
            }
            total += heap.rss_kib;
            next_start = heap.start;
        }
    }
    total
}
