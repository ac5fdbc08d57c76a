//! One Block-STM run over a block: the shared state of its threads and the loop each of them runs
//! (Gelashvili et al. 2022, Algorithm 1 with `try_execute` and `needs_reexecution` of Algorithm 3).

use super::mv_memory::{MvMemory, MvRead, ReadDescriptor, ReadOrigin, ReadSet};
use super::scheduler::{Blocker, Scheduler, Task};
use super::{TxnIndex, Version};
use crate::contracts::Reads;
use crate::output::ExecutionStats;
use crate::receipt::Receipt;
use crate::state::{StateKey, StateView, Value};
use crate::transaction::BlockTransaction;
use crate::vm::Vm;

/// Spins before a thread with nothing to do yields its core (there may be more threads than cores).
const IDLE_SPINS: u32 = 16;

/// Checks of a blocker that is not running (just aborted, about to be re-incarnated, or parked) before a
/// reader blocked on its ESTIMATE gives up and parks itself.
const IDLE_BLOCKER_CHECKS: u32 = 64;

/// The working memory of Block-STM runs: scheduler slots and multi-version memory, reused from
/// block to block ([`Scratch::reset`]). Allocating it afresh for each block cost 2.7 ms of a 52 ms block of
/// 10k transactions (2 threads, modelled work), all of it on one thread before the workers start.
#[derive(Default)]
pub(crate) struct Scratch {
    scheduler: Scheduler,
    memory: MvMemory,
}

impl Scratch {
    fn reset(&mut self, block_size: usize) {
        self.scheduler.reset(block_size);
        self.memory.reset(block_size);
    }
}

pub(crate) struct Run<'a, S: ?Sized, T> {
    vm: Vm,
    state: &'a S,
    block: &'a [T],
    scheduler: &'a Scheduler,
    memory: &'a MvMemory,
}

impl<'a, S, T> Run<'a, S, T>
where
    S: StateView + Sync + ?Sized,
    T: BlockTransaction,
{
    /// A run over `block`, in `scratch` emptied for it.
    pub(crate) fn new(vm: Vm, state: &'a S, block: &'a [T], scratch: &'a mut Scratch) -> Self {
        scratch.reset(block.len());
        let Scratch { scheduler, memory } = scratch;
        Self { vm, state, block, scheduler, memory }
    }

    /// One thread's loop: run tasks until the scheduler says the block is done, then collect part `part` of
    /// `parts` of the block's final writes (sorted by key). Returns those and this thread's work counters
    /// (kept per thread: shared counters would be one more contended cache line per task).
    pub(crate) fn work(&self, part: usize, parts: usize) -> (ExecutionStats, Vec<(StateKey, Value)>) {
        let mut stats = ExecutionStats::default();
        let mut task = None;
        let mut idle = 0u32;
        loop {
            task = match task {
                Some(Task::Execute(version)) => self.try_execute(version, &mut stats),
                Some(Task::Validate(version)) => self.needs_reexecution(version, &mut stats),
                None => {
                    if self.scheduler.done() {
                        return (stats, self.memory.drain_final_writes(part, parts));
                    }
                    let next = self.scheduler.next_task();
                    if next.is_none() {
                        idle += 1;
                        if idle < IDLE_SPINS {
                            std::hint::spin_loop();
                        } else {
                            std::thread::yield_now();
                        }
                    } else {
                        idle = 0;
                    }
                    next
                }
            };
        }
    }

    /// The final receipt of each transaction, in block order.
    pub(crate) fn receipts(&self) -> Vec<Receipt> {
        self.memory.receipts(self.block.len())
    }

    /// Executes an incarnation; on an ESTIMATE, parks it behind the blocking transaction, or retries at once
    /// if that one already finished.
    fn try_execute(&self, version: Version, stats: &mut ExecutionStats) -> Option<Task> {
        let Version { txn_idx, incarnation } = version;
        let tx = self.block[txn_idx].transaction();
        loop {
            stats.incarnations += 1;
            let mut view = MvView {
                memory: self.memory,
                scheduler: self.scheduler,
                state: self.state,
                txn_idx,
                reads: ReadSet::new(),
            };
            match self.vm.execute(tx, &mut view) {
                Err(Blocked(blocking)) => {
                    if self.scheduler.add_dependency(txn_idx, blocking) {
                        stats.dependency_waits += 1;
                        return None;
                    }
                }
                Ok(outcome) => {
                    let wrote_new_location = self.memory.record(version, view.reads, &outcome.writes, outcome.receipt);
                    return self.scheduler.finish_execution(txn_idx, incarnation, wrote_new_location);
                }
            }
        }
    }

    /// Validates an incarnation's reads; aborts it (its writes become ESTIMATEs) if one changed.
    fn needs_reexecution(&self, version: Version, stats: &mut ExecutionStats) -> Option<Task> {
        let Version { txn_idx, incarnation } = version;
        stats.validations += 1;
        let valid = self.memory.validate_read_set(txn_idx);
        let aborted = !valid && self.scheduler.try_validation_abort(txn_idx, incarnation);
        if aborted {
            stats.aborts += 1;
            self.memory.convert_writes_to_estimates(txn_idx);
        }
        self.scheduler.finish_validation(txn_idx, aborted)
    }
}

/// A read hit an ESTIMATE written by this transaction.
struct Blocked(TxnIndex);

/// One incarnation's reads: multi-version memory first, then the pre-block state, each read recorded with
/// where it came from.
///
/// A read that hits an ESTIMATE waits, inside the incarnation, while the blocking transaction is being
/// executed by another thread, then reads again: parking the incarnation instead would throw away the work
/// it did so far, and under contention the freed thread would claim a higher transaction that hits the
/// same ESTIMATE (a cascade of aborts). It parks only when the blocker stays idle.
struct MvView<'a, S: ?Sized> {
    memory: &'a MvMemory,
    scheduler: &'a Scheduler,
    state: &'a S,
    txn_idx: TxnIndex,
    reads: ReadSet,
}

impl<S: StateView + ?Sized> Reads for MvView<'_, S> {
    type Blocked = Blocked;

    fn read(&mut self, key: &StateKey) -> Result<Option<Value>, Blocked> {
        let (mut idle_checks, mut waits) = (0u32, 0u32);
        loop {
            match self.memory.read(key, self.txn_idx) {
                MvRead::Estimate { blocking } => {
                    match self.scheduler.blocker(blocking) {
                        Blocker::Executed => continue,
                        Blocker::Executing => idle_checks = 0,
                        Blocker::Idle => {
                            idle_checks += 1;
                            if idle_checks > IDLE_BLOCKER_CHECKS {
                                return Err(Blocked(blocking));
                            }
                        }
                    }
                    waits += 1;
                    if waits < IDLE_SPINS {
                        for _ in 0..8 {
                            std::hint::spin_loop();
                        }
                    } else {
                        // More threads than cores: let the blocker's thread run.
                        std::thread::yield_now();
                    }
                }
                MvRead::Data { version, value } => {
                    self.reads.push(ReadDescriptor { key: *key, origin: ReadOrigin::Version(version) });
                    return Ok(Some(value));
                }
                MvRead::Storage => {
                    self.reads.push(ReadDescriptor { key: *key, origin: ReadOrigin::Storage });
                    return Ok(self.state.get(key));
                }
            }
        }
    }
}
