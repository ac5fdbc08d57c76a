//! The batch maker (DESIGN.md §3, worker step 2): gathers client transactions and seals them into a
//! [`Batch`] once their bytes reach `batch_size`, or once `max_batch_delay` has passed since the batch's
//! first transaction, whichever comes first. Time is tokio's, so turmoil and paused-time tests control it.
//! It reads transactions only while [`admission`] is open: closed, the open batch still seals on its delay,
//! and the clients wait.

use std::sync::Arc;
use std::time::Duration;

use mako_types::{BatchBuilder, EncodedBatch};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::client::ClientFrames;
use super::client_acks::{ConnectionId, Origins};
use super::metrics::{bump, WorkerMetrics};
use crate::admission::{admission, Admission, Progress};

/// What decides the batch maker's admission: the executor's progress as the primary reports it, and the bound.
pub struct Admitting {
    pub progress: watch::Receiver<Progress>,
    pub max_execution_lag: u64,
}

impl Admitting {
    /// Always open (a worker without a primary that reports progress).
    pub fn always() -> Self {
        Self { progress: watch::channel(Progress::default()).1, max_execution_lag: 0 }
    }

    fn admission(&self) -> Admission {
        admission(*self.progress.borrow(), self.max_execution_lag)
    }
}

/// A batch just sealed, with the moment it was sealed (the start of consensus latency, DESIGN.md §7) and the
/// client connections its transactions came from, run-length (for their acknowledgements).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedBatch {
    pub batch: EncodedBatch,
    pub created: Instant,
    pub origins: Vec<(ConnectionId, u32)>,
}

pub struct BatchMaker {
    batch_size: usize,
    max_batch_delay: Duration,
    admitting: Admitting,
    transactions: mpsc::Receiver<(ConnectionId, ClientFrames)>,
    sealed: mpsc::Sender<SealedBatch>,
    metrics: Arc<WorkerMetrics>,
    /// The batch being filled, in its canonical bytes, where its transactions came from, and when it must be
    /// sealed at the latest.
    current: BatchBuilder,
    origins: Origins,
    deadline: Option<Instant>,
}

impl BatchMaker {
    pub fn spawn(
        batch_size: usize,
        max_batch_delay: Duration,
        admitting: Admitting,
        transactions: mpsc::Receiver<(ConnectionId, ClientFrames)>,
        sealed: mpsc::Sender<SealedBatch>,
        metrics: Arc<WorkerMetrics>,
    ) -> JoinHandle<()> {
        let maker = Self {
            batch_size,
            max_batch_delay,
            admitting,
            transactions,
            sealed,
            metrics,
            // Room for the lengths and the one transaction that takes a batch past its size; each sealed batch
            // leaves the next the same room.
            current: BatchBuilder::with_capacity(batch_size + batch_size / 8),
            origins: Origins::default(),
            deadline: None,
        };
        tokio::spawn(maker.run())
    }

    async fn run(mut self) {
        // One timer, re-armed when a batch opens; its branch is disabled while no batch is open.
        let timer = tokio::time::sleep(self.max_batch_delay);
        tokio::pin!(timer);
        // Whether the primary may still report progress (its sender gone, nothing can close admission).
        let mut reported = true;
        loop {
            let open = self.admitting.admission() == Admission::Open;
            tokio::select! {
                biased;
                // The delay rule first: under a steady trickle the timer must still win.
                () = &mut timer, if self.deadline.is_some() => {
                    if self.seal().await.is_err() {
                        return;
                    }
                }
                changed = self.admitting.progress.changed(), if reported => reported = changed.is_ok(),
                frames = self.transactions.recv(), if open => match frames {
                    Some((connection, frames)) => {
                        for transaction in frames.iter() {
                            if self.current.is_empty() {
                                let deadline = Instant::now() + self.max_batch_delay;
                                self.deadline = Some(deadline);
                                timer.as_mut().reset(deadline);
                            }
                            self.current.push(transaction);
                            self.origins.push(connection);
                            if self.current.payload_bytes() >= self.batch_size && self.seal().await.is_err() {
                                return;
                            }
                        }
                    }
                    // Every client connection and the client port are gone: seal what is left and stop.
                    None => {
                        if !self.current.is_empty() {
                            let _ = self.seal().await;
                        }
                        return;
                    }
                },
            }
        }
    }

    /// Seals the open batch and hands it on; an error means the next actor is gone (shutdown).
    async fn seal(&mut self) -> Result<(), mpsc::error::SendError<SealedBatch>> {
        let batch = self.current.seal();
        self.deadline = None;
        bump(&self.metrics.batches_sealed);
        let origins = self.origins.take();
        self.sealed.send(SealedBatch { batch, created: Instant::now(), origins }).await
    }
}

#[cfg(test)]
mod tests {
    use mako_types::Transaction;

    use super::*;

    struct Harness {
        transactions: mpsc::Sender<(ConnectionId, ClientFrames)>,
        sealed: mpsc::Receiver<SealedBatch>,
        progress: watch::Sender<Progress>,
        _maker: JoinHandle<()>,
    }

    const MAX_LAG: u64 = 3;

    fn harness(batch_size: usize, max_batch_delay: Duration) -> Harness {
        let (transactions, rx_transactions) = mpsc::channel(100);
        let (tx_sealed, sealed) = mpsc::channel(100);
        let (progress, rx_progress) = watch::channel(Progress::default());
        let maker = BatchMaker::spawn(
            batch_size,
            max_batch_delay,
            Admitting { progress: rx_progress, max_execution_lag: MAX_LAG },
            rx_transactions,
            tx_sealed,
            Arc::new(WorkerMetrics::default()),
        );
        Harness { transactions, sealed, progress, _maker: maker }
    }

    fn tx(byte: u8, size: usize) -> Transaction {
        Transaction(vec![byte; size])
    }

    /// Transactions as one read of a client connection.
    fn read(transactions: &[Transaction]) -> ClientFrames {
        let mut frames = ClientFrames::default();
        for transaction in transactions {
            frames.push(&transaction.0);
        }
        frames
    }

    #[tokio::test(start_paused = true)]
    async fn seals_when_the_size_is_reached() {
        let mut h = harness(100, Duration::from_secs(60));
        let start = Instant::now();
        for i in 0..4 {
            h.transactions.send((0, read(&[tx(i, 30)]))).await.unwrap();
        }
        let sealed = h.sealed.recv().await.unwrap();
        assert_eq!(sealed.batch.decode().unwrap().transactions, (0..4).map(|i| tx(i, 30)).collect::<Vec<_>>());
        assert_eq!(sealed.created, start, "sealed by size, without waiting for the delay");
        // The next transaction opens a new batch.
        h.transactions.send((0, read(&[tx(9, 100)]))).await.unwrap();
        assert_eq!(h.sealed.recv().await.unwrap().batch.decode().unwrap().transactions, vec![tx(9, 100)]);
    }

    /// One read that carries more than a batch: the batch seals at the transaction that reaches the size, as if
    /// they had come one by one (a receiver refuses a batch that goes on past its size), and the rest open the
    /// next batch, with the connection's count split the same way.
    #[tokio::test(start_paused = true)]
    async fn a_read_larger_than_a_batch_seals_where_the_size_is_reached() {
        let mut h = harness(100, Duration::from_millis(100));
        let all: Vec<Transaction> = (0..7).map(|i| tx(i, 30)).collect();
        h.transactions.send((5, read(&all))).await.unwrap();
        let first = h.sealed.recv().await.unwrap();
        assert_eq!(first.batch.decode().unwrap().transactions, all[..4]);
        assert_eq!(first.origins, vec![(5, 4)]);
        let parameters = crate::config::MempoolParameters { batch_size: 100, ..Default::default() };
        crate::worker::handler::check_batch(&first.batch.transaction_sizes().unwrap(), &parameters).unwrap();
        let rest = h.sealed.recv().await.unwrap();
        assert_eq!(rest.batch.decode().unwrap().transactions, all[4..]);
        assert_eq!(rest.origins, vec![(5, 3)]);
    }

    #[tokio::test(start_paused = true)]
    async fn seals_after_the_delay_since_the_first_transaction() {
        let mut h = harness(1_000, Duration::from_millis(100));
        let start = Instant::now();
        h.transactions.send((0, read(&[tx(1, 10)]))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        h.transactions.send((0, read(&[tx(2, 10)]))).await.unwrap();
        let sealed = h.sealed.recv().await.unwrap();
        assert_eq!(sealed.batch.decode().unwrap().transactions, vec![tx(1, 10), tx(2, 10)]);
        assert_eq!(sealed.created - start, Duration::from_millis(100), "delay counts from the first transaction");
        // Nothing is sealed while no transaction waits.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(h.sealed.try_recv().is_err());
        let reopened = Instant::now();
        h.transactions.send((0, read(&[tx(3, 10)]))).await.unwrap();
        let sealed = h.sealed.recv().await.unwrap();
        assert_eq!(sealed.batch.decode().unwrap().transactions, vec![tx(3, 10)]);
        assert_eq!(sealed.created - reopened, Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn seals_the_rest_when_clients_are_gone() {
        let mut h = harness(1_000, Duration::from_secs(60));
        h.transactions.send((0, read(&[tx(1, 10)]))).await.unwrap();
        drop(h.transactions);
        assert_eq!(h.sealed.recv().await.unwrap().batch.decode().unwrap().transactions, vec![tx(1, 10)]);
        assert!(h.sealed.recv().await.is_none());
    }

    /// The executor falls behind (a report of lag 4 > 3): the open batch still seals on its delay, but no
    /// transaction is read, so the channel fills and the clients wait; once it catches up, reading resumes.
    #[tokio::test(start_paused = true)]
    async fn reads_nothing_while_the_executor_is_too_far_behind() {
        let mut h = harness(1_000, Duration::from_millis(100));
        h.transactions.send((0, read(&[tx(1, 10)]))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        h.progress.send_replace(Progress { committed: 14, executed: 10 });
        for i in 2..102 {
            h.transactions.send((0, read(&[tx(i, 10)]))).await.unwrap();
        }
        assert_eq!(
            h.sealed.recv().await.unwrap().batch.decode().unwrap().transactions,
            vec![tx(1, 10)],
            "sealed on its delay"
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(h.sealed.try_recv().is_err(), "nothing read while closed");
        assert!(h.transactions.try_send((0, read(&[tx(0, 10)]))).is_err(), "the channel is full: the clients wait");
        h.progress.send_replace(Progress { committed: 14, executed: 11 });
        let resumed = h.sealed.recv().await.unwrap();
        assert_eq!(
            resumed.batch.decode().unwrap().transactions.first(),
            Some(&tx(2, 10)),
            "reading resumes where it stopped"
        );
    }
}
