//! The epoch ticker behind every wall-clock deadline, which sleeps while no plugin
//! runs.
//!
//! A call sets its deadline in epoch ticks ([`TICK`]); the ticker thread advances
//! the engine's epoch. Ticking 1,000 times a second while nothing runs would wake
//! an idle node's CPU for nothing, so after [`PARK_AFTER`] ticks in which no call
//! ran or started the ticker parks, and the next call wakes it. (Counting starts,
//! not only calls running at the tick, keeps a steadily used ticker awake: short
//! calls between ticks would otherwise park it and pay a wake-up each.)
//!
//! A wake-up is never lost (a looping plugin must always be interrupted): a call
//! marks itself running and then reads `parked`; the ticker sets `parked` and then
//! reads every call's mark before it parks. Both with sequentially consistent
//! ordering, so at least one of them sees the other: either the call wakes the
//! ticker or the ticker does not park. As a second line, a parked ticker still
//! looks every [`PARKED_LOOK`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::Engine;

/// One epoch tick: the granularity of every wall-clock deadline.
pub const TICK: Duration = Duration::from_millis(1);

/// Ticks without a running call before the ticker parks (100 ms).
pub const PARK_AFTER: u32 = 100;

/// How often a parked ticker looks for running calls by itself.
pub const PARKED_LOOK: Duration = Duration::from_millis(100);

/// Deadline in ticks for a wall-clock limit (at least one tick).
pub fn ticks(limit: Duration) -> u64 {
    (limit.as_micros() / TICK.as_micros()).max(1) as u64
}

/// One plugin's "a call is running" mark and its count of calls started, on their
/// own cache line (only the plugin's thread writes them).
#[repr(align(64))]
#[derive(Default)]
struct Mark {
    running: AtomicBool,
    started: AtomicU64,
}

/// The ticker's state, shared with every plugin's [`CallMarker`].
pub struct EpochClock {
    /// The ticker is parked or about to park: a starting call must wake it.
    parked: AtomicBool,
    /// Set when the last sandbox is dropped: the ticker thread ends.
    stop: AtomicBool,
    /// Every live plugin's mark.
    marks: Mutex<Vec<Weak<Mark>>>,
    /// The ticker thread, to wake it.
    thread: OnceLock<Thread>,
    /// How often a parked ticker looks by itself.
    look: Duration,
    /// Times the ticker parked (for tests and debugging).
    parks: AtomicU64,
}

impl EpochClock {
    /// Starts the ticker thread for `engine`, parking after [`PARK_AFTER`] idle ticks
    /// and looking every `look` while parked.
    pub fn start(engine: &Engine, look: Duration) -> std::io::Result<Arc<EpochClock>> {
        let clock = Arc::new(EpochClock {
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            marks: Mutex::new(Vec::new()),
            thread: OnceLock::new(),
            look,
            parks: AtomicU64::new(0),
        });
        let weak = engine.weak();
        let ticker = clock.clone();
        let handle = std::thread::Builder::new()
            .name("htlcgate-epoch".into())
            .spawn(move || ticker.run(weak))?;
        let _ = clock.thread.set(handle.thread().clone());
        Ok(clock)
    }

    /// A marker for one plugin's calls.
    pub fn marker(self: &Arc<Self>) -> CallMarker {
        let mark = Arc::new(Mark::default());
        self.lock().push(Arc::downgrade(&mark));
        CallMarker {
            mark,
            clock: self.clone(),
        }
    }

    /// Stops the ticker thread.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// How many times the ticker has parked.
    pub fn parks(&self) -> u64 {
        self.parks.load(Ordering::Relaxed)
    }

    /// Whether the ticker is parked (or about to park) now.
    pub fn is_parked(&self) -> bool {
        self.parked.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Mark>>> {
        self.marks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    /// Whether any plugin's call is running, and the sum of calls started (it
    /// changes when a call started); forgets dropped plugins.
    fn activity(&self) -> (bool, u64) {
        let mut marks = self.lock();
        marks.retain(|m| m.strong_count() > 0);
        let (mut running, mut started) = (false, 0u64);
        for m in marks.iter().filter_map(Weak::upgrade) {
            running |= m.running.load(Ordering::SeqCst);
            started = started.wrapping_add(m.started.load(Ordering::Relaxed));
        }
        (running, started)
    }

    fn run(&self, engine: wasmtime::EngineWeak) {
        let mut idle = 0u32;
        let mut last_started = 0u64;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            if idle >= PARK_AFTER {
                // Announce first, then look (see the module doc): a call that
                // starts after the look sees `parked` and wakes us.
                self.parked.store(true, Ordering::SeqCst);
                let (running, started) = self.activity();
                if !running && started == last_started && !self.stop.load(Ordering::SeqCst) {
                    self.parks.fetch_add(1, Ordering::Relaxed);
                    std::thread::park_timeout(self.look);
                }
                self.parked.store(false, Ordering::SeqCst);
                let (running, started) = self.activity();
                if !running && started == last_started {
                    // Nothing started meanwhile (a timeout, or a spurious wake-up).
                    continue;
                }
                // A call started (it may be over already): tick, and stay awake
                // for the next PARK_AFTER ticks.
                last_started = started;
                idle = 0;
            }
            std::thread::sleep(TICK);
            match engine.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
            let (running, started) = self.activity();
            if running || started != last_started {
                idle = 0;
            } else {
                idle = idle.saturating_add(1);
            }
            last_started = started;
        }
    }
}

/// Marks one plugin's calls as running, so the ticker ticks through them. Used by
/// one thread at a time (the plugin's).
pub struct CallMarker {
    mark: Arc<Mark>,
    clock: Arc<EpochClock>,
}

impl CallMarker {
    /// A call starts: from here until [`CallMarker::exit`] the epoch advances.
    pub fn enter(&self) {
        let started = self.mark.started.load(Ordering::Relaxed);
        self.mark
            .started
            .store(started.wrapping_add(1), Ordering::Relaxed);
        self.mark.running.store(true, Ordering::SeqCst);
        if self.clock.parked.load(Ordering::SeqCst) {
            self.clock.wake();
        }
    }

    /// The call is over.
    pub fn exit(&self) {
        self.mark.running.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use wasmtime::{Config, Instance, Module, Store};

    /// An engine with epochs, its ticker and one plugin's marker. The ticker looks
    /// by itself only once an hour: every wake-up in these tests is a real one.
    fn ticking() -> (Engine, Arc<EpochClock>, CallMarker) {
        let mut c = Config::new();
        c.epoch_interruption(true);
        let engine = Engine::new(&c).unwrap();
        let clock = EpochClock::start(&engine, Duration::from_secs(3600)).unwrap();
        let marker = clock.marker();
        (engine, clock, marker)
    }

    /// Waits (up to 10 s) for the ticker to park.
    fn until_parked(clock: &EpochClock) {
        let start = Instant::now();
        while !(clock.is_parked() && clock.parks() > 0) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the ticker never parked while idle"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn an_idle_ticker_parks_and_the_epoch_stands_still() {
        let (_engine, clock, _marker) = ticking();
        until_parked(&clock);
        let parks = clock.parks();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(clock.parks(), parks, "woke up with nothing running");
        clock.stop();
    }

    #[test]
    fn short_calls_a_few_milliseconds_apart_keep_the_ticker_awake() {
        let (_engine, clock, marker) = ticking();
        until_parked(&clock);
        let before = clock.parks();
        // ~300 calls, each over long before the next tick, 2 ms apart: no tick
        // sees one running, yet the ticker must not park (and be woken) per call.
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(600) {
            marker.enter();
            marker.exit();
            std::thread::sleep(Duration::from_millis(2));
        }
        let parked = clock.parks() - before;
        // One is allowed: this thread may be descheduled for 100 ms on a busy host.
        assert!(parked <= 1, "parked {parked} times between calls");
        clock.stop();
    }

    #[test]
    fn a_looping_call_started_while_the_ticker_is_parked_is_interrupted() {
        let (engine, clock, mut marker) = ticking();
        let module =
            Module::new(&engine, r#"(module (func (export "spin") (loop br 0)))"#).unwrap();
        for _ in 0..3 {
            until_parked(&clock);
            let mut store = Store::new(&engine, ());
            store.set_epoch_deadline(ticks(Duration::from_millis(20)));
            store.epoch_deadline_trap();
            let instance = Instance::new(&mut store, &module, &[]).unwrap();
            let spin = instance
                .get_typed_func::<(), ()>(&mut store, "spin")
                .unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let caller = std::thread::spawn(move || {
                marker.enter();
                let result = spin.call(&mut store, ());
                marker.exit();
                let _ = tx.send(result.err().and_then(|e| e.downcast_ref().copied()));
                marker
            });
            // Without the wake-up the call loops for the hour the ticker sleeps.
            let trap = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("a looping call was not interrupted: the ticker missed its wake-up");
            assert_eq!(trap, Some(wasmtime::Trap::Interrupt));
            marker = caller.join().unwrap();
        }
        clock.stop();
    }
}
