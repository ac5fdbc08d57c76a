//! The handler of what the same-index workers of other validators send (DESIGN.md §3, worker steps 3–5).
//!
//! A peer's batch is stored *before* it is acknowledged: the [`Responder`] is held until the write returns,
//! and a failed write rejects the message so that the sender tries again. Then the batch is reported to our
//! primary as [`WorkerToPrimary::PeerBatch`] (which decides how long it is kept). Delivery is at least once, so a batch we already hold is
//! acknowledged again and nothing else happens. A batch request is answered with the requested batches we
//! hold, as many as fit in one frame; answers are written by at most [`MAX_CONCURRENT_REPLIES`] tasks, so a
//! peer that reads slowly cannot stall this loop or grow memory.

use std::sync::Arc;
use std::time::Duration;

use mako_network::{Endpoint, Inbound, Responder};
use mako_storage::Store;
use mako_types::{AuthorityIndex, BatchDigest, EncodedBatch, WorkerId};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, warn};

use super::metrics::{bump, WorkerMetrics};
use super::store_batch;
use crate::config::MempoolParameters;
use crate::messages::{WorkerMessage, WorkerToPrimary};

/// Answers to batch requests being written at once; requests beyond this are acknowledged without a reply,
/// and the requester asks another peer.
pub const MAX_CONCURRENT_REPLIES: usize = 16;
/// Digests served from one request at most.
pub const MAX_DIGESTS_PER_REQUEST: usize = 1_000;
/// Longest time one answer may take to write.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Room in a reply frame for the reply tag and the archive's own structure, beyond the batches' bytes.
const REPLY_FRAME_SLACK: usize = 4_096;
const PER_BATCH_SLACK: usize = 64;

pub struct Handler {
    id: WorkerId,
    parameters: MempoolParameters,
    store: Store,
    endpoint: Endpoint<WorkerMessage>,
    inbound: mpsc::Receiver<Inbound<WorkerMessage>>,
    to_primary: mpsc::Sender<WorkerToPrimary>,
    metrics: Arc<WorkerMetrics>,
    replies: JoinSet<()>,
}

impl Handler {
    pub fn spawn(
        id: WorkerId,
        parameters: MempoolParameters,
        store: Store,
        endpoint: Endpoint<WorkerMessage>,
        inbound: mpsc::Receiver<Inbound<WorkerMessage>>,
        to_primary: mpsc::Sender<WorkerToPrimary>,
        metrics: Arc<WorkerMetrics>,
    ) -> JoinHandle<()> {
        let handler = Self { id, parameters, store, endpoint, inbound, to_primary, metrics, replies: JoinSet::new() };
        tokio::spawn(handler.run())
    }

    async fn run(mut self) {
        loop {
            tokio::select! {
                biased;
                Some(_) = self.replies.join_next() => {}
                inbound = self.inbound.recv() => {
                    let Some(Inbound { from, message, responder }) = inbound else { return };
                    let result = match message {
                        WorkerMessage::Batch(batch) => self.receive_batch(from, batch, responder).await,
                        WorkerMessage::BatchRequest(digests) => {
                            self.serve_request(from, digests, responder);
                            Ok(())
                        }
                        // Only ever an answer to our requests, which arrive on their own stream.
                        WorkerMessage::Batches(_) => {
                            debug!(%from, "unsolicited batches ignored");
                            Ok(())
                        }
                    };
                    if result.is_err() {
                        // Our primary is gone: the validator is shutting down.
                        return;
                    }
                }
            }
        }
    }

    async fn receive_batch(
        &mut self,
        from: AuthorityIndex,
        batch: EncodedBatch,
        responder: Responder<WorkerMessage>,
    ) -> Result<(), mpsc::error::SendError<WorkerToPrimary>> {
        let checked = batch.transaction_sizes().map_err(|e| e.to_string());
        if let Err(reason) = checked.and_then(|sizes| check_batch(&sizes, &self.parameters)) {
            bump(&self.metrics.invalid_batches);
            warn!(%from, %reason, "refused a batch");
            responder.reject();
            return Ok(());
        }
        let digest = batch.digest();
        match self.store.batches.contains(&digest) {
            // A duplicate (a retry whose ack was lost): acknowledge again, report nothing new.
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error) => {
                bump(&self.metrics.storage_errors);
                warn!(%digest, %error, "cannot read the batch store");
                responder.reject();
                return Ok(());
            }
        }
        if let Err(error) = store_batch(&self.store, &digest, &batch.0) {
            bump(&self.metrics.storage_errors);
            warn!(%from, %digest, %error, "cannot store a peer's batch; the sender will retry");
            responder.reject();
            return Ok(());
        }
        // Stored: only now may the sender count us toward its quorum.
        responder.ack();
        bump(&self.metrics.batches_received);
        let size = batch.0.len() as u64;
        self.store.batches.keep_recent(digest, batch.0);
        self.to_primary.send(WorkerToPrimary::PeerBatch { digest, worker: self.id, from, size }).await
    }

    fn serve_request(&mut self, from: AuthorityIndex, digests: Vec<BatchDigest>, responder: Responder<WorkerMessage>) {
        if self.replies.len() >= MAX_CONCURRENT_REPLIES {
            debug!(%from, "too many replies in flight; request acknowledged without a reply");
            return;
        }
        let budget = self.endpoint.config().max_frame_size.saturating_sub(REPLY_FRAME_SLACK);
        let mut batches = Vec::new();
        let mut size = 0;
        for digest in digests.iter().take(MAX_DIGESTS_PER_REQUEST) {
            let encoded = match self.store.batches.get_encoded(digest) {
                Ok(Some(encoded)) => encoded,
                Ok(None) => continue,
                Err(error) => {
                    bump(&self.metrics.storage_errors);
                    warn!(%digest, %error, "cannot read the batch store");
                    continue;
                }
            };
            if size + encoded.len() + PER_BATCH_SLACK > budget {
                // The rest does not fit this frame; the requester asks again for what is missing.
                continue;
            }
            // Served as stored: the requester checks the digest and the bytes.
            size += encoded.len() + PER_BATCH_SLACK;
            batches.push(EncodedBatch(encoded));
        }
        bump(&self.metrics.batch_requests_served);
        let reply = WorkerMessage::Batches(batches);
        self.replies.spawn(async move {
            match tokio::time::timeout(REPLY_TIMEOUT, responder.reply(&reply)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => debug!(%from, %error, "cannot answer a batch request"),
                Err(_) => debug!(%from, "answering a batch request timed out"),
            }
        });
    }
}

/// What an honest worker can have sealed with these parameters, given the sizes of the batch's transactions:
/// no transaction empty or above `max_transaction_size`, and at most `batch_size` bytes before the last one.
pub(crate) fn check_batch(sizes: &[usize], parameters: &MempoolParameters) -> Result<(), String> {
    let mut bytes = 0usize;
    for (i, &size) in sizes.iter().enumerate() {
        if size == 0 || size > parameters.max_transaction_size {
            return Err(format!("transaction {i} has {size} bytes, outside 1..={}", parameters.max_transaction_size));
        }
        if bytes >= parameters.batch_size {
            return Err(format!("batch goes on past batch_size {} at transaction {i}", parameters.batch_size));
        }
        bytes += size;
    }
    if sizes.is_empty() {
        return Err("batch is empty".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use mako_types::{Batch, Transaction};

    use super::*;

    #[test]
    fn only_batches_an_honest_worker_could_seal_pass() {
        let parameters = MempoolParameters { batch_size: 100, max_transaction_size: 60, ..Default::default() };
        let batch = |sizes: &[usize]| Batch::new(sizes.iter().map(|&s| Transaction(vec![1; s])).collect());
        let check =
            |sizes: &[usize]| check_batch(&EncodedBatch::new(&batch(sizes)).transaction_sizes().unwrap(), &parameters);
        assert!(check(&[60, 39, 60]).is_ok());
        assert!(check(&[60, 40, 1]).is_err(), "past batch_size");
        assert!(check(&[61]).is_err(), "oversized transaction");
        assert!(check(&[5, 0]).is_err(), "empty transaction");
        assert!(check(&[]).is_err(), "empty batch");
    }
}
