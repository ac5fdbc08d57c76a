//! CPU time by component: the thread CPU time a process spent in signatures and pairings, in its store, and
//! executing blocks. `mako bench` divides each by the transactions executed, beside the process's total from
//! `/proc`, so that a figure of µs per transaction says where it went (issue 16); the rest is the network,
//! consensus and the runtime.
//!
//! A measured section reads the thread's CPU clock before and after (a system call, about a microsecond):
//! only sections of tens of microseconds or more are measured, a signature, a store commit, a block. A
//! section inside another of the same thread counts toward the outer one only, so nothing counts twice.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// BLS: hashing to the curve, signing, decompressing, aggregating, pairings.
    Crypto,
    /// The store's reads, writes, commits and syncs on the calling thread (not fjall's own threads).
    Storage,
    /// Executing blocks, on every executor thread.
    Execution,
}

impl Component {
    pub const ALL: [Component; 3] = [Component::Crypto, Component::Storage, Component::Execution];

    pub fn name(self) -> &'static str {
        match self {
            Component::Crypto => "crypto",
            Component::Storage => "storage",
            Component::Execution => "execution",
        }
    }
}

static SPENT_NANOS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, counting the calling thread's CPU time in it toward `component`.
pub fn measure<R>(component: Component, f: impl FnOnce() -> R) -> R {
    if MEASURING.with(|m| m.replace(true)) {
        return f();
    }
    let start = thread_nanos();
    let result = f();
    let spent = thread_nanos().saturating_sub(start);
    SPENT_NANOS[component as usize].fetch_add(spent, Relaxed);
    MEASURING.with(|m| m.set(false));
    result
}

/// CPU seconds this process has spent in `component` so far.
pub fn spent_seconds(component: Component) -> f64 {
    SPENT_NANOS[component as usize].load(Relaxed) as f64 / 1e9
}

/// CPU seconds the calling thread has used so far (0 where the system has no thread clock).
pub fn thread_seconds() -> f64 {
    thread_nanos() as f64 / 1e9
}

/// The calling thread's CPU clock; 0 where the system has none (nothing is counted then).
fn thread_nanos() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(0, |t| (t.tv_sec() as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(millis: u64) -> u64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(millis);
        let mut n = 0u64;
        while std::time::Instant::now() < deadline {
            n = std::hint::black_box(n.wrapping_add(1));
        }
        n
    }

    /// Work inside a section is counted once, toward the outer component, and a nested section adds nothing.
    #[test]
    fn a_section_counts_its_cpu_once() {
        let before: Vec<f64> = Component::ALL.iter().map(|c| spent_seconds(*c)).collect();
        measure(Component::Execution, || {
            spin(30);
            measure(Component::Storage, || spin(30));
        });
        let after: Vec<f64> = Component::ALL.iter().map(|c| spent_seconds(*c)).collect();
        let execution = after[2] - before[2];
        assert!(execution >= 0.05, "60 ms of spinning counted: {execution}");
        // Other tests of this process may measure storage concurrently, but never 30 ms of it.
        assert!(after[1] - before[1] < 0.025, "the nested section is the outer one's");
    }
}
