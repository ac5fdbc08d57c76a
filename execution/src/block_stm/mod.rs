//! Block-STM (Gelashvili et al., "Block-STM: Scaling Blockchain Execution by Turning Ordering Curse to a
//! Performance Blessing", PPoPP 2023): optimistic parallel execution of an ordered block whose result equals
//! executing it sequentially, for any number of threads.
//!
//! Threads take tasks from the [`scheduler`]: execute an incarnation of a transaction against
//! [`mv_memory`], or validate that an executed incarnation's reads are still current. A failed validation
//! aborts the incarnation (its writes become ESTIMATEs) and re-executes it; a read of an ESTIMATE parks the
//! reader until the writer re-executes. Gas fees are not in multi-version memory at all: each incarnation
//! reports its fee and the fees of the final incarnations are summed at commit (DESIGN.md §5, trap 1).
//!
//! The pool is a fixed set of `std::thread::scope` threads per block (STYLE.md: the one place mako uses
//! OS threads); with one thread the worker runs on the caller's thread. The working memory of a run (one
//! slot per transaction in the scheduler and multi-version memory) is kept by the calling thread and reused
//! by its next block: fresh, it cost more to fault in than the whole merge of the write set.

mod mv_memory;
mod scheduler;
mod worker;

use mako_types::cpu_time::{measure, Component};

use crate::output::{assemble, BlockOutput, ExecutionStats};
use crate::state::StateView;
use crate::transaction::BlockTransaction;
use crate::vm::Vm;

/// A transaction's position in the block.
pub(crate) type TxnIndex = usize;

/// How many times a transaction has been re-executed (0 for its first execution). An `Incarnation` number
/// and its transaction index form a [`Version`].
pub type Incarnation = u32;

/// One incarnation of one transaction: the tag of every value it wrote to multi-version memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Version {
    pub txn_idx: TxnIndex,
    pub incarnation: Incarnation,
}

/// Aligns per-transaction slots to their own cache lines, so that threads working on neighbouring
/// transactions do not contend on one line (false sharing).
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct CachePadded<T>(pub T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

thread_local! {
    /// The working memory of the blocks this thread executes (a few hundred bytes per transaction of the
    /// largest block so far).
    static SCRATCH: std::cell::RefCell<worker::Scratch> = std::cell::RefCell::default();
}

/// The content of a slot's lock, for emptying the slot before a reused run: its poison (left by a worker that
/// panicked in an earlier block) is cleared with it.
pub(crate) fn unpoisoned<T>(mutex: &mut std::sync::Mutex<T>) -> &mut T {
    mutex.clear_poison();
    mutex.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The parallel executor.
#[derive(Clone, Copy, Debug)]
pub struct BlockStm {
    threads: usize,
    vm: Vm,
}

impl BlockStm {
    /// An executor with `threads` worker threads (at least one).
    pub fn new(threads: usize) -> Self {
        Self { threads: threads.max(1), vm: Vm::default() }
    }

    pub fn with_vm(self, vm: Vm) -> Self {
        Self { vm, ..self }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn vm(&self) -> Vm {
        self.vm
    }

    /// Executes a block with Block-STM, whatever its size or contention ([`crate::execute_block`] picks the
    /// faster executor); the output equals [`crate::execute_sequential`]'s except for `stats`.
    pub fn execute<S, T>(&self, state: &S, block: &[T]) -> BlockOutput
    where
        S: StateView + Sync + ?Sized,
        T: BlockTransaction,
    {
        if block.len() > mv_memory::MAX_BLOCK {
            // Multi-version memory indexes transactions by u32: a block of four billion runs in order.
            return crate::execute_sequential_with(self.vm, state, block);
        }
        SCRATCH.with_borrow_mut(|scratch| self.execute_in(scratch, state, block))
    }

    fn execute_in<S, T>(&self, scratch: &mut worker::Scratch, state: &S, block: &[T]) -> BlockOutput
    where
        S: StateView + Sync + ?Sized,
        T: BlockTransaction,
    {
        let run = worker::Run::new(self.vm, state, block, scratch);
        let mut stats = ExecutionStats { transactions: block.len(), ..ExecutionStats::default() };
        // Each thread returns its share of the final writes, sorted; `assemble` merges the sorted runs.
        let mut writes = Vec::new();
        if self.threads == 1 || block.len() <= 1 {
            let (counters, part) = run.work(0, 1);
            stats.add(&counters);
            writes = part;
        } else {
            std::thread::scope(|scope| {
                let (run, parts) = (&run, self.threads);
                let workers: Vec<_> = (0..parts)
                    .map(|part| scope.spawn(move || measure(Component::Execution, || run.work(part, parts))))
                    .collect();
                for worker in workers {
                    // A worker only panics on a broken invariant; surface it rather than return a wrong block.
                    let (counters, part) = worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                    stats.add(&counters);
                    writes.extend(part);
                }
            });
        }
        assemble(state, writes, run.receipts(), stats)
    }
}
