//! The collaborative scheduler of Block-STM (Gelashvili et al. 2022, Algorithms 4 and 5): threads take
//! execution and validation tasks from two shared counters, `execution_idx` and `validation_idx`, lowest
//! index first. It is pure bookkeeping, independent of what a transaction does.
//!
//! Termination (DESIGN.md §5, trap 3): the block is done when both counters are past the block,
//! no task is in flight (`num_active_tasks == 0`), and no counter was decreased while that was being
//! checked (`decrease_cnt` unchanged across the check). Every task a thread holds is counted in
//! `num_active_tasks` from the moment its index is claimed until the task and any follow-up it returns are
//! finished, so "done" can never be observed while a validation is pending.
//!
//! All atomics are `SeqCst`: the check in `check_done` reads three counters that other threads move, and
//! the paper's argument assumes sequential consistency.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

use super::{unpoisoned, CachePadded, Incarnation, TxnIndex, Version};

/// Work for a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Task {
    Execute(Version),
    Validate(Version),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    ReadyToExecute,
    Executing,
    Executed,
    Aborting,
}

/// What a reader that hit an ESTIMATE of a transaction can expect of it ([`Scheduler::blocker`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Blocker {
    /// A thread holds it and is running it: waiting for it cannot deadlock.
    Executing,
    /// Its latest incarnation finished: read again.
    Executed,
    /// Aborted, ready or parked: nobody may be running it.
    Idle,
}

#[derive(Clone, Copy, Debug)]
struct TxnState {
    incarnation: Incarnation,
    status: Status,
}

pub(crate) struct Scheduler {
    block_size: usize,
    execution_idx: AtomicUsize,
    validation_idx: AtomicUsize,
    decrease_cnt: AtomicUsize,
    num_active_tasks: AtomicUsize,
    done_marker: AtomicBool,
    /// Per transaction: the transactions waiting for it to finish executing. Both per-transaction vectors
    /// are at least `block_size` long; slots past it are left over from a larger block and unused.
    txn_dependency: Vec<CachePadded<Mutex<Vec<TxnIndex>>>>,
    txn_status: Vec<CachePadded<Mutex<TxnState>>>,
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new(0)
    }
}

const POISONED: &str = "scheduler lock poisoned: a worker panicked";

const READY: TxnState = TxnState { incarnation: 0, status: Status::ReadyToExecute };

impl Scheduler {
    pub(crate) fn new(block_size: usize) -> Self {
        let mut scheduler = Self {
            block_size: 0,
            execution_idx: AtomicUsize::new(0),
            validation_idx: AtomicUsize::new(0),
            decrease_cnt: AtomicUsize::new(0),
            num_active_tasks: AtomicUsize::new(0),
            done_marker: AtomicBool::new(false),
            txn_dependency: Vec::new(),
            txn_status: Vec::new(),
        };
        scheduler.reset(block_size);
        scheduler
    }

    /// Readies the scheduler for a block of `block_size` transactions, reusing its slots: writing warm
    /// slots costs microseconds, where allocating fresh ones costs about a millisecond per 10k transactions.
    pub(crate) fn reset(&mut self, block_size: usize) {
        self.block_size = block_size;
        for counter in
            [&mut self.execution_idx, &mut self.validation_idx, &mut self.decrease_cnt, &mut self.num_active_tasks]
        {
            *counter.get_mut() = 0;
        }
        *self.done_marker.get_mut() = false;
        let reused = self.txn_status.len().min(block_size);
        for (status, dependents) in self.txn_status[..reused].iter_mut().zip(&mut self.txn_dependency[..reused]) {
            *unpoisoned(&mut status.0) = READY;
            unpoisoned(&mut dependents.0).clear();
        }
        self.txn_status.resize_with(block_size.max(self.txn_status.len()), || CachePadded(Mutex::new(READY)));
        self.txn_dependency.resize_with(self.txn_status.len(), CachePadded::default);
    }

    pub(crate) fn done(&self) -> bool {
        self.done_marker.load(SeqCst)
    }

    /// The next task, validations first when they lag behind executions; `None` when there is nothing to
    /// claim right now (or the block is done).
    pub(crate) fn next_task(&self) -> Option<Task> {
        if self.validation_idx.load(SeqCst) < self.execution_idx.load(SeqCst) {
            self.next_version_to_validate().map(Task::Validate)
        } else {
            self.next_version_to_execute().map(Task::Execute)
        }
    }

    /// The state of `txn_idx` as seen by a reader blocked on its ESTIMATE. A reader may wait while it is
    /// `Executing`: the thread holding it never waits on a higher transaction, so a chain of waits ends at
    /// a thread that is running its transaction.
    pub(crate) fn blocker(&self, txn_idx: TxnIndex) -> Blocker {
        match self.txn_status[txn_idx].lock().expect(POISONED).status {
            Status::Executing => Blocker::Executing,
            Status::Executed => Blocker::Executed,
            Status::ReadyToExecute | Status::Aborting => Blocker::Idle,
        }
    }

    /// Transaction `txn_idx` read an ESTIMATE of `blocking`: park it until `blocking` finishes executing.
    /// Returns false when `blocking` already finished, in which case the caller re-executes at once.
    pub(crate) fn add_dependency(&self, txn_idx: TxnIndex, blocking: TxnIndex) -> bool {
        let mut dependents = self.txn_dependency[blocking].lock().expect(POISONED);
        if self.txn_status[blocking].lock().expect(POISONED).status == Status::Executed {
            return false;
        }
        self.txn_status[txn_idx].lock().expect(POISONED).status = Status::Aborting;
        dependents.push(txn_idx);
        drop(dependents);
        self.num_active_tasks.fetch_sub(1, SeqCst);
        true
    }

    /// An incarnation finished executing and recorded its reads and writes. Returns its validation as the
    /// caller's next task when the validation counter already passed it and nothing new was written.
    pub(crate) fn finish_execution(
        &self,
        txn_idx: TxnIndex,
        incarnation: Incarnation,
        wrote_new_location: bool,
    ) -> Option<Task> {
        self.txn_status[txn_idx].lock().expect(POISONED).status = Status::Executed;
        let dependents = std::mem::take(&mut *self.txn_dependency[txn_idx].lock().expect(POISONED));
        self.resume_dependencies(&dependents);
        if self.validation_idx.load(SeqCst) > txn_idx {
            if !wrote_new_location {
                // Only this transaction needs validating; keep the task (num_active_tasks unchanged).
                return Some(Task::Validate(Version { txn_idx, incarnation }));
            }
            // New locations may invalidate every higher transaction's reads.
            self.decrease_validation_idx(txn_idx);
        }
        self.num_active_tasks.fetch_sub(1, SeqCst);
        None
    }

    /// A validation of `(txn_idx, incarnation)` failed: abort that incarnation unless another validation
    /// already did. Returns whether this caller is the one that aborted it.
    pub(crate) fn try_validation_abort(&self, txn_idx: TxnIndex, incarnation: Incarnation) -> bool {
        let mut state = self.txn_status[txn_idx].lock().expect(POISONED);
        if state.incarnation == incarnation && state.status == Status::Executed {
            state.status = Status::Aborting;
            true
        } else {
            false
        }
    }

    /// A validation finished. After an abort, higher transactions must be revalidated, and the aborted one
    /// re-executes, as the caller's next task when possible.
    pub(crate) fn finish_validation(&self, txn_idx: TxnIndex, aborted: bool) -> Option<Task> {
        if aborted {
            self.set_ready_status(txn_idx);
            self.decrease_validation_idx(txn_idx + 1);
            if self.execution_idx.load(SeqCst) > txn_idx {
                return self.try_incarnate(txn_idx).map(Task::Execute);
            }
        }
        self.num_active_tasks.fetch_sub(1, SeqCst);
        None
    }

    fn decrease_execution_idx(&self, target: TxnIndex) {
        self.execution_idx.fetch_min(target, SeqCst);
        self.decrease_cnt.fetch_add(1, SeqCst);
    }

    fn decrease_validation_idx(&self, target: TxnIndex) {
        self.validation_idx.fetch_min(target, SeqCst);
        self.decrease_cnt.fetch_add(1, SeqCst);
    }

    fn check_done(&self) {
        let observed_cnt = self.decrease_cnt.load(SeqCst);
        let execution_idx = self.execution_idx.load(SeqCst);
        let validation_idx = self.validation_idx.load(SeqCst);
        let active = self.num_active_tasks.load(SeqCst);
        if execution_idx.min(validation_idx) >= self.block_size
            && active == 0
            && observed_cnt == self.decrease_cnt.load(SeqCst)
        {
            self.done_marker.store(true, SeqCst);
        }
    }

    /// Claims `txn_idx` for execution if it is ready. On failure the caller's active task ends.
    fn try_incarnate(&self, txn_idx: TxnIndex) -> Option<Version> {
        if txn_idx < self.block_size {
            let mut state = self.txn_status[txn_idx].lock().expect(POISONED);
            if state.status == Status::ReadyToExecute {
                state.status = Status::Executing;
                return Some(Version { txn_idx, incarnation: state.incarnation });
            }
        }
        self.num_active_tasks.fetch_sub(1, SeqCst);
        None
    }

    fn next_version_to_execute(&self) -> Option<Version> {
        if self.execution_idx.load(SeqCst) >= self.block_size {
            self.check_done();
            return None;
        }
        self.num_active_tasks.fetch_add(1, SeqCst);
        let idx = self.execution_idx.fetch_add(1, SeqCst);
        self.try_incarnate(idx)
    }

    fn next_version_to_validate(&self) -> Option<Version> {
        if self.validation_idx.load(SeqCst) >= self.block_size {
            self.check_done();
            return None;
        }
        self.num_active_tasks.fetch_add(1, SeqCst);
        let idx = self.validation_idx.fetch_add(1, SeqCst);
        if idx < self.block_size {
            let state = *self.txn_status[idx].lock().expect(POISONED);
            if state.status == Status::Executed {
                return Some(Version { txn_idx: idx, incarnation: state.incarnation });
            }
        }
        self.num_active_tasks.fetch_sub(1, SeqCst);
        None
    }

    fn set_ready_status(&self, txn_idx: TxnIndex) {
        let mut state = self.txn_status[txn_idx].lock().expect(POISONED);
        state.incarnation += 1;
        state.status = Status::ReadyToExecute;
    }

    fn resume_dependencies(&self, dependents: &[TxnIndex]) {
        for &dependent in dependents {
            self.set_ready_status(dependent);
        }
        if let Some(&min) = dependents.iter().min() {
            self.decrease_execution_idx(min);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(txn_idx: TxnIndex, incarnation: Incarnation) -> Version {
        Version { txn_idx, incarnation }
    }

    /// The next task, skipping the claims that find nothing (a validation of a transaction still executing).
    fn claim(s: &Scheduler) -> Option<Task> {
        (0..4).find_map(|_| s.next_task())
    }

    #[test]
    fn empty_block_is_done_at_once() {
        let s = Scheduler::new(0);
        assert_eq!(s.next_task(), None);
        assert!(s.done());
    }

    #[test]
    fn one_thread_runs_execute_then_validate() {
        let s = Scheduler::new(2);
        assert_eq!(s.next_task(), Some(Task::Execute(v(0, 0))));
        assert_eq!(s.finish_execution(0, 0, true), None);
        assert_eq!(s.next_task(), Some(Task::Validate(v(0, 0))));
        assert_eq!(s.finish_validation(0, false), None);
        assert_eq!(s.next_task(), Some(Task::Execute(v(1, 0))));
        assert_eq!(s.finish_execution(1, 0, true), None);
        assert_eq!(s.next_task(), Some(Task::Validate(v(1, 0))));
        assert!(!s.done());
        assert_eq!(s.finish_validation(1, false), None);
        assert_eq!(s.next_task(), None);
        assert!(s.done());
    }

    #[test]
    fn abort_reexecutes_and_revalidates_higher() {
        let s = Scheduler::new(2);
        assert_eq!(claim(&s), Some(Task::Execute(v(0, 0))));
        assert_eq!(claim(&s), Some(Task::Execute(v(1, 0))));
        assert_eq!(s.finish_execution(1, 0, true), None);
        assert_eq!(s.finish_execution(0, 0, true), None);
        assert_eq!(claim(&s), Some(Task::Validate(v(0, 0))));
        assert_eq!(s.finish_validation(0, false), None);
        assert_eq!(claim(&s), Some(Task::Validate(v(1, 0))));
        assert!(s.try_validation_abort(1, 0));
        assert!(!s.try_validation_abort(1, 0), "only one validation aborts an incarnation");
        assert_eq!(s.finish_validation(1, true), Some(Task::Execute(v(1, 1))));
        // validation_idx was lowered to 2 (nothing above 1), so the new incarnation's validation comes back.
        assert_eq!(s.finish_execution(1, 1, false), Some(Task::Validate(v(1, 1))));
        assert_eq!(s.finish_validation(1, false), None);
        assert_eq!(s.next_task(), None);
        assert!(s.done());
    }

    #[test]
    fn dependency_parks_until_the_blocker_finishes() {
        let s = Scheduler::new(2);
        assert_eq!(claim(&s), Some(Task::Execute(v(0, 0))));
        assert_eq!(claim(&s), Some(Task::Execute(v(1, 0))));
        assert!(s.add_dependency(1, 0));
        // Nothing to do while 0 runs and 1 waits.
        assert_eq!(s.next_task(), None);
        assert!(!s.done());
        assert_eq!(s.finish_execution(0, 0, true), None);
        assert_eq!(claim(&s), Some(Task::Validate(v(0, 0))));
        assert_eq!(s.finish_validation(0, false), None);
        assert_eq!(claim(&s), Some(Task::Execute(v(1, 1))));
        assert!(!s.add_dependency(1, 0), "0 already executed: re-execute at once");
    }

    #[test]
    fn blocker_waits_only_on_a_running_transaction() {
        let s = Scheduler::new(3);
        assert_eq!(s.blocker(0), Blocker::Idle, "not claimed yet");
        assert_eq!(claim(&s), Some(Task::Execute(v(0, 0))));
        assert_eq!(s.blocker(0), Blocker::Executing);
        assert_eq!(claim(&s), Some(Task::Execute(v(1, 0))));
        assert!(s.add_dependency(1, 0));
        assert_eq!(s.blocker(1), Blocker::Idle, "parked: nobody runs it");
        assert_eq!(s.finish_execution(0, 0, true), None);
        assert_eq!(s.blocker(0), Blocker::Executed);
        assert!(s.try_validation_abort(0, 0));
        assert_eq!(s.blocker(0), Blocker::Idle, "aborted: not running until re-incarnated");
    }
}
