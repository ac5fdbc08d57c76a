//! The proposer: makes this validator's header for each round (DESIGN.md §3).
//!
//! It moves to round r+1 once the core hands it a quorum of round-r certificates (the parents), and proposes
//! when `header_num_batches` digests of our batches wait or `max_header_delay` has passed. It owns the round
//! counter and the queue of our batch digests; the core owns everything else. After a restart it starts
//! above the last header it proposed, so it never makes a second header for one round.

use std::collections::VecDeque;
use std::sync::Arc;

use mako_types::{AuthorityIndex, BatchDigest, BlsKeyPair, CertificateDigest, Header, Round, WorkerId};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tracing::debug;

use crate::config::MempoolParameters;

/// Most digests one header carries; the rest wait for the next round.
const MAX_HEADER_PAYLOAD: usize = 1_000;

pub struct Proposer {
    authority: AuthorityIndex,
    key: Arc<BlsKeyPair>,
    parameters: MempoolParameters,
    /// The round of the next header.
    round: Round,
    /// A quorum of certificates of `round - 1`, or empty while we wait for them.
    parents: Vec<CertificateDigest>,
    digests: VecDeque<(BatchDigest, WorkerId)>,
    rx_parents: mpsc::Receiver<(Round, Vec<CertificateDigest>)>,
    rx_batches: mpsc::Receiver<(BatchDigest, WorkerId)>,
    tx_headers: mpsc::Sender<Header>,
}

impl Proposer {
    /// Starts proposing at `round` on `parents` (genesis for a fresh validator).
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        authority: AuthorityIndex,
        key: Arc<BlsKeyPair>,
        parameters: MempoolParameters,
        round: Round,
        parents: Vec<CertificateDigest>,
        rx_parents: mpsc::Receiver<(Round, Vec<CertificateDigest>)>,
        rx_batches: mpsc::Receiver<(BatchDigest, WorkerId)>,
        tx_headers: mpsc::Sender<Header>,
    ) -> tokio::task::JoinHandle<()> {
        let proposer = Self {
            authority,
            key,
            parameters,
            round,
            parents,
            digests: VecDeque::new(),
            rx_parents,
            rx_batches,
            tx_headers,
        };
        tokio::spawn(proposer.run())
    }

    async fn run(mut self) {
        let mut deadline = Instant::now() + self.parameters.max_header_delay;
        loop {
            let enough_batches = self.digests.len() >= self.parameters.header_num_batches;
            let timer_expired = Instant::now() >= deadline;
            if !self.parents.is_empty() && (enough_batches || timer_expired) {
                if self.propose().await.is_err() {
                    return; // the core is gone: the primary is shutting down
                }
                deadline = Instant::now() + self.parameters.max_header_delay;
                continue;
            }
            tokio::select! {
                biased;
                parents = self.rx_parents.recv() => {
                    let Some((round, parents)) = parents else { return };
                    self.on_parents(round, parents);
                }
                batch = self.rx_batches.recv() => {
                    let Some(batch) = batch else { return };
                    self.digests.push_back(batch);
                }
                () = sleep_until(deadline), if !timer_expired => {}
            }
        }
    }

    /// A quorum of round-`round` certificates: the parents of our round `round + 1` header. Parents from an
    /// older round are stale; parents from a later one mean we fell behind, and we jump ahead.
    fn on_parents(&mut self, round: Round, parents: Vec<CertificateDigest>) {
        if round + 1 < self.round {
            return;
        }
        if round + 1 > self.round {
            debug!(from = self.round, to = round + 1, "proposer catches up");
        }
        self.round = round + 1;
        self.parents = parents;
    }

    async fn propose(&mut self) -> Result<(), mpsc::error::SendError<Header>> {
        let take = self.digests.len().min(MAX_HEADER_PAYLOAD);
        let payload: Vec<_> = self.digests.drain(..take).collect();
        let parents = std::mem::take(&mut self.parents);
        let header = Header::new(self.authority, self.round, payload, parents, &self.key);
        debug!(round = self.round, batches = header.payload().len(), "proposing");
        self.round += 1;
        self.tx_headers.send(header).await
    }
}
