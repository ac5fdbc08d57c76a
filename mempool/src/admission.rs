//! Admission: whether a worker takes in client transactions now (DESIGN.md §3, worker step 1).
//!
//! Every stage of a validator is bounded except one that the mempool cannot see: committed sub-DAGs waiting
//! for the executor. Offered more than the machine executes, the workers would go on sealing, storing and
//! replicating batches at the offered rate, consensus would go on committing them, and the executor would fall
//! further behind with every round: latency grows without bound, and the CPU spent on batches that wait steals
//! from the executor, so fewer transactions per second are executed than at the peak (issue 16: 45k executed at
//! 100k offered against 60k at 60k offered). So a worker admits client transactions only while its own
//! executor is at most `max_execution_lag` committed sub-DAGs behind consensus. Closed, the batch maker stops
//! reading, its bounded channel fills, the client connections stop reading, and TCP pushes back on the clients:
//! they see their writes slow down, and nothing they wrote is dropped.
//!
//! The primary side sends the facts ([`Progress`]), not the decision: each worker keeps the highest committed
//! and executed indices it heard, so messages that arrive out of order (a link delivers each in its own task)
//! can never leave it closed on stale news, and the rule lives in one place, [`admission`].

/// How far a validator's execution is: the last sub-DAG index consensus committed, and the last one executed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub committed: u64,
    pub executed: u64,
}

impl Progress {
    /// The newest of two reports: both indices only grow.
    pub fn merge(self, other: Progress) -> Progress {
        Progress { committed: self.committed.max(other.committed), executed: self.executed.max(other.executed) }
    }

    /// Committed sub-DAGs the executor has not executed yet.
    pub fn lag(self) -> u64 {
        self.committed.saturating_sub(self.executed)
    }
}

/// Whether a worker reads client transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Open,
    Closed,
}

/// The rule: open while the executor is at most `max_execution_lag` committed sub-DAGs behind. Zero turns
/// admission control off (always open).
pub fn admission(progress: Progress, max_execution_lag: u64) -> Admission {
    if max_execution_lag == 0 || progress.lag() <= max_execution_lag {
        Admission::Open
    } else {
        Admission::Closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_only_while_execution_is_further_behind_than_the_bound() {
        let at = |committed, executed| Progress { committed, executed };
        assert_eq!(admission(at(10, 10), 3), Admission::Open);
        assert_eq!(admission(at(13, 10), 3), Admission::Open);
        assert_eq!(admission(at(14, 10), 3), Admission::Closed);
        assert_eq!(admission(at(14, 11), 3), Admission::Open);
        assert_eq!(admission(at(1_000, 0), 0), Admission::Open, "zero turns it off");
        // A restarted executor may report an index consensus has not re-published yet.
        assert_eq!(admission(at(5, 7), 3), Admission::Open);
    }

    #[test]
    fn reports_out_of_order_never_go_back() {
        let newer = Progress { committed: 20, executed: 19 };
        let older = Progress { committed: 20, executed: 10 };
        assert_eq!(newer.merge(older), newer);
        assert_eq!(older.merge(newer), newer);
        assert_eq!(admission(Progress::default().merge(newer).merge(older), 3), Admission::Open);
    }
}
