//! The core: owner of the certified DAG. It votes on headers, aggregates votes for ours, accepts certificates
//! once they are causally complete, and feeds the proposer (parents), consensus (certificates in causal order)
//! and the synchronizer (what is missing). DESIGN.md §3; upholds §9.7 by persisting each vote, header and
//! certificate of ours and syncing it to disk before it leaves, and §9.5 by storing each certificate before consensus sees it.
//!
//! Syncs are group commits: votes and headers wait in an outbox, and one sync releases all of them, once the
//! core has no input ready (or after [`MAX_UNSYNCED_STEPS`] steps under a steady stream), so a burst of
//! headers costs one disk flush, not one per vote.
//!
//! Headers that wait for parents or batches are parked (one per author, the latest) and decided again when a
//! certificate is accepted or a batch arrives. Every reliable send is kept under its round and cancelled by
//! garbage collection, so retries to a dead peer stop once they no longer matter.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mako_network::{Delivery, Endpoint, Inbound};
use mako_storage::{Durability, LastVote, Store};
use mako_types::bug::{injected, Bug};
use mako_types::{
    AuthorityIndex, BatchDigest, BlsKeyPair, Certificate, CertificateDigest, CheckpointId, Committee, DagError, Header,
    LeaderTable, Round, Vote, VoteMessages, WorkerId,
};
use rand::SeedableRng;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::aggregator::{Aggregation, VotesAggregator};
use super::certificate_check::{check_together, Verdict};
use super::held_batches::HeldBatches;
use super::leader_wait::{leader_wait_over, proposer_waits_for};
use super::metrics::PrimaryMetrics;
use super::peer_penalties::{FrameDecision, PeerPenalties};
use super::proposer::Parents;
use super::retention::Retention;
use super::state_sync_server::StateSyncServer;
use super::synchronizer::SyncRequest;
use crate::dag::{gc_round, Dag, Insertion};
use crate::messages::{PrimaryMessage, PrimaryToWorker, WorkerToPrimary};
use crate::vote_rules::{decide, VoteContext, VoteDecision};

/// Most certificates in one answer to a sync request (≈0.5 KB each: well inside a 1 MB frame).
pub(crate) const MAX_CERTIFICATES_PER_REPLY: usize = 500;

/// Most loop steps a written vote or header waits for its sync while input keeps arriving.
const MAX_UNSYNCED_STEPS: usize = 16;
/// How long a certificate waits for others to be verified with it when nothing needs it sooner: the proposer
/// (it completes a quorum of its round, or may end the leader wait), a header that names it, or our own
/// certificate, which is checked with whatever waits. Each check ends in a final exponentiation, most of its
/// cost. A round's certificates arrive some milliseconds apart, and the last of them, which nothing needs at
/// once, waits here for the next round's first check: longer than a round at the default header floor (120 ms).
const CERTIFICATE_BATCH_WAIT: std::time::Duration = std::time::Duration::from_millis(150);
/// Certificates waiting to be verified together; past this they are verified at once (a bound on memory and on
/// how long a certificate waits under a steady stream of input).
const MAX_UNVERIFIED_CERTIFICATES: usize = 64;

/// A message that may leave only once a sync has made its record durable.
enum Outgoing {
    Vote(Vote),
    Header(Header),
    Certificate(Certificate),
    /// To our worker: the batch is recorded for proposal, and will be proposed until a certificate of ours
    /// carries it, across crashes too (DESIGN.md §9.3). It asks for no sync of its own: it leaves with the
    /// next vote or header's (within a round), so that acknowledgements cost no extra disk flushes.
    Acknowledgement(BatchDigest, WorkerId),
}

impl Outgoing {
    fn needs_sync(&self) -> bool {
        !matches!(self, Outgoing::Acknowledgement(..))
    }
}

/// The core's channels.
pub struct CoreChannels {
    pub rx_network: mpsc::Receiver<Inbound<PrimaryMessage>>,
    pub rx_own_headers: mpsc::Receiver<Header>,
    pub rx_workers: mpsc::Receiver<WorkerToPrimary>,
    pub rx_synced: mpsc::Receiver<(AuthorityIndex, Vec<Certificate>)>,
    pub rx_committed_round: watch::Receiver<Round>,
    pub rx_skipped_batches: mpsc::UnboundedReceiver<Vec<(BatchDigest, WorkerId)>>,
    pub tx_parents: mpsc::Sender<Parents>,
    /// Who leads each even round, for the leader waits; `None` runs the mempool without them (pure Narwhal).
    pub leader_table: Option<watch::Receiver<LeaderTable>>,
    pub tx_our_batches: mpsc::Sender<(BatchDigest, WorkerId)>,
    pub tx_workers: Vec<mpsc::Sender<PrimaryToWorker>>,
    pub tx_sync: mpsc::Sender<SyncRequest>,
    pub tx_last_rounds: watch::Sender<Vec<Round>>,
    /// The checkpoint each peer published in its latest header.
    pub tx_peer_checkpoints: watch::Sender<Vec<CheckpointId>>,
    pub tx_consensus: mpsc::Sender<Certificate>,
}

pub struct Core {
    me: AuthorityIndex,
    committee: Committee,
    key: Arc<BlsKeyPair>,
    store: Store,
    network: Endpoint<PrimaryMessage>,
    dag: Dag,
    aggregator: Option<VotesAggregator>,
    /// The vote messages we hashed to sign our votes, for the certificates of the same headers.
    vote_messages: VoteMessages,
    /// Frames of certificates that passed the cheap checks, waiting to be verified together, and how many
    /// certificates they hold.
    unverified: Vec<(AuthorityIndex, Vec<Certificate>)>,
    unverified_count: usize,
    /// When the first of them arrived.
    unverified_since: tokio::time::Instant,
    parked: BTreeMap<AuthorityIndex, Header>,
    /// Votes and headers persisted but not synced yet, and the loop steps they have waited.
    outbox: Vec<Outgoing>,
    unsynced_steps: usize,
    deliveries: BTreeMap<Round, Vec<Delivery<PrimaryMessage>>>,
    /// The round and certificate count of the last parents sent to the proposer.
    parents_sent: (Round, usize),
    /// When each of our batches waiting for a certificate was sealed (for the batch-to-certificate latency).
    batch_sealed: BTreeMap<BatchDigest, tokio::time::Instant>,
    /// The batches our workers reported stored.
    held: HeldBatches,
    /// Peers' pushed batches no certificate carries yet, per sender, and how many bytes.
    retention: Retention,
    /// Peers whose certificate frames failed verification, and for how long theirs are dropped.
    penalties: PeerPenalties,
    /// Our latest checkpoint, for peers that state-sync.
    state_sync: StateSyncServer,
    rng: rand_chacha::ChaCha8Rng,
    metrics: Arc<PrimaryMetrics>,
    channels: CoreChannels,
}

impl Core {
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        me: AuthorityIndex,
        committee: Committee,
        key: Arc<BlsKeyPair>,
        store: Store,
        network: Endpoint<PrimaryMessage>,
        dag: Dag,
        rng_seed: u64,
        max_unreferenced_bytes_per_peer: usize,
        state_sync: StateSyncServer,
        metrics: Arc<PrimaryMetrics>,
        channels: CoreChannels,
    ) -> tokio::task::JoinHandle<()> {
        let core = Self {
            me,
            committee,
            key,
            store,
            network,
            dag,
            aggregator: None,
            vote_messages: VoteMessages::default(),
            unverified: Vec::new(),
            unverified_count: 0,
            unverified_since: tokio::time::Instant::now(),
            parked: BTreeMap::new(),
            outbox: Vec::new(),
            unsynced_steps: 0,
            deliveries: BTreeMap::new(),
            parents_sent: (0, 0),
            batch_sealed: BTreeMap::new(),
            held: HeldBatches::default(),
            retention: Retention::new(max_unreferenced_bytes_per_peer),
            penalties: PeerPenalties::default(),
            state_sync,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(rng_seed),
            metrics,
            channels,
        };
        tokio::spawn(core.run())
    }

    async fn run(mut self) {
        self.resend_last_header().await;
        if !injected(Bug::ForgetAcknowledged) {
            self.propose_pending_again().await;
        }
        // The proposer starts on the highest round that holds a quorum (genesis for a fresh validator).
        let highest = self.dag.highest_round();
        for round in (self.dag.gc_round()..=highest).rev() {
            if self.send_parents(round).await {
                break;
            }
        }
        loop {
            let sync_due = self.outbox.iter().any(Outgoing::needs_sync);
            if sync_due {
                self.unsynced_steps += 1;
                if self.unsynced_steps >= MAX_UNSYNCED_STEPS {
                    self.flush_outbox().await;
                }
            }
            tokio::select! {
                biased;
                changed = self.channels.rx_committed_round.changed() => {
                    if changed.is_err() { return }
                    let committed = *self.channels.rx_committed_round.borrow_and_update();
                    self.metrics.committed_round.store(committed, std::sync::atomic::Ordering::Relaxed);
                    self.garbage_collect(committed).await;
                }
                Some(batches) = self.channels.rx_skipped_batches.recv() => {
                    debug!(batches = batches.len(), "re-proposing the batches of our certificates consensus skipped");
                    self.propose_again(&batches).await;
                }
                header = self.channels.rx_own_headers.recv() => {
                    let Some(header) = header else { return };
                    self.propose(header).await;
                }
                // Workers and the synchronizer may stop (a validator without local workers): not a reason to.
                Some(report) = self.channels.rx_workers.recv() => self.on_worker_report(report).await,
                Some((from, certificates)) = self.channels.rx_synced.recv() => {
                    self.process_certificates(from, certificates).await;
                }
                inbound = self.channels.rx_network.recv() => {
                    let Some(inbound) = inbound else { return };
                    self.on_message(inbound).await;
                }
                () = tokio::time::sleep_until(self.unverified_since + CERTIFICATE_BATCH_WAIT),
                    if !self.unverified.is_empty() => self.verify_unverified(None).await,
                // Last: only when no input is ready, so that one sync covers a whole burst.
                () = std::future::ready(()), if sync_due => self.flush_outbox().await,
            }
        }
    }

    /// After a restart: if our last header has no certificate yet, send it again (never a new one).
    async fn resend_last_header(&mut self) {
        let header = match self.store.state.last_header() {
            Ok(Some(header)) => header,
            Ok(None) => return,
            Err(error) => return self.storage_error(&error),
        };
        if header.round() > self.dag.gc_round() && self.dag.get_at(header.round(), self.me).is_none() {
            debug!(round = header.round(), "re-sending our last header after restart");
            self.aggregator = Some(VotesAggregator::new(header.clone()));
            self.vote_for_own(&header).await;
            self.outbox.push(Outgoing::Header(header));
        }
    }

    /// After a restart: our batches that a quorum holds and no certificate of ours carries go back to the
    /// proposer, except those of the header we just sent again.
    async fn propose_pending_again(&mut self) {
        let pending = match self.store.state.pending_proposals() {
            Ok(pending) => pending,
            Err(error) => return self.storage_error(&error),
        };
        let resent: Vec<BatchDigest> = self
            .aggregator
            .as_ref()
            .map(|a| a.header().payload().iter().map(|(d, _)| *d).collect())
            .unwrap_or_default();
        for (digest, worker) in pending.into_iter().filter(|(digest, _)| !resent.contains(digest)) {
            self.held.insert(digest);
            PrimaryMetrics::bump(&self.metrics.batches_requeued);
            let _ = self.channels.tx_our_batches.send((digest, worker)).await;
        }
    }

    async fn propose(&mut self, header: Header) {
        let mut writes = self.store.write_set();
        writes.put_last_header(&header);
        if let Err(error) = writes.commit(Durability::Buffered) {
            return self.storage_error(&error);
        }
        PrimaryMetrics::bump(&self.metrics.headers_proposed);
        self.metrics.observe_round(header.round());
        if let Some(abandoned) = self.aggregator.replace(VotesAggregator::new(header.clone())) {
            self.requeue_payload(abandoned.header()).await;
        }
        self.vote_for_own(&header).await;
        self.outbox.push(Outgoing::Header(header));
    }

    /// Syncs the store once for every vote and header in the outbox, then sends them: nothing leaves that a
    /// power loss could make us forget, so a restarted validator never votes or proposes twice (§9.7).
    async fn flush_outbox(&mut self) {
        self.unsynced_steps = 0;
        let started = std::time::Instant::now(); // a measurement only: protocol time is tokio's
        let synced = if injected(Bug::SendBeforeSync) { Ok(()) } else { self.store.sync() };
        if let Err(error) = synced {
            return self.storage_error(&error); // they stay, and the next step tries again
        }
        let took = started.elapsed().as_micros() as u64;
        self.metrics.sync_micros.fetch_add(took, std::sync::atomic::Ordering::Relaxed);
        PrimaryMetrics::bump(&self.metrics.syncs);
        for outgoing in std::mem::take(&mut self.outbox) {
            match outgoing {
                Outgoing::Vote(vote) => self.send_vote(vote).await,
                Outgoing::Header(header) => {
                    let round = header.round();
                    let deliveries = self.network.broadcast_reliable(&PrimaryMessage::Header(header)).await;
                    self.keep(round, deliveries);
                }
                Outgoing::Certificate(certificate) => {
                    let round = certificate.round();
                    let deliveries = self.network.broadcast_reliable(&PrimaryMessage::Certificate(certificate)).await;
                    self.keep(round, deliveries);
                }
                Outgoing::Acknowledgement(digest, worker) => {
                    if let Some(tx) = self.channels.tx_workers.get(worker as usize) {
                        let _ = tx.send(PrimaryToWorker::Acknowledged { digest }).await;
                    }
                }
            }
        }
    }

    /// The batches of our header `header` will never be committed through it: it will never be certified (we
    /// moved on to a new one, or it fell below the GC round, and only we aggregate its votes). They go back to
    /// the proposer for a later header, so that a batch a quorum holds is not lost (DESIGN.md §9.3); the old
    /// header can never commit them too. (A certificate of ours that can no longer be committed is consensus's
    /// to tell: `rx_skipped_batches`.)
    async fn requeue_payload(&mut self, header: &Header) {
        debug!(
            round = header.round(),
            batches = header.payload().len(),
            "re-proposing the batches of an uncertified header"
        );
        self.propose_again(header.payload()).await;
    }

    async fn propose_again(&mut self, batches: &[(BatchDigest, WorkerId)]) {
        for (digest, worker) in batches {
            PrimaryMetrics::bump(&self.metrics.batches_requeued);
            let _ = self.channels.tx_our_batches.send((*digest, *worker)).await;
        }
    }

    /// We vote for our own header like anyone else's: the vote is persisted first.
    async fn vote_for_own(&mut self, header: &Header) {
        if let Some(vote) = self.persist_vote(header) {
            self.on_vote(vote).await;
        }
    }

    async fn on_message(&mut self, inbound: Inbound<PrimaryMessage>) {
        let Inbound { from, message, responder } = inbound;
        match message {
            PrimaryMessage::Header(header) => {
                drop(responder); // ack receipt; the vote travels as its own message
                if header.author() != from {
                    self.metrics.reject("relayed_header");
                    return;
                }
                // What the author says it checkpointed (its own claim, over its authenticated channel).
                let published = header.executed().checkpoint;
                self.channels.tx_peer_checkpoints.send_if_modified(|ids| {
                    let slot = ids.get_mut(from.as_usize()).filter(|id| **id != published);
                    slot.map(|id| *id = published).is_some()
                });
                // Parents it names that the DAG lacks may be among the certificates waiting for verification.
                if !self.unverified.is_empty() && header.parents().iter().any(|parent| !self.dag.contains(parent)) {
                    self.verify_unverified(None).await;
                }
                self.on_header(header).await;
            }
            PrimaryMessage::Vote(vote) => {
                drop(responder);
                if vote.voter != from {
                    self.metrics.reject("relayed_vote");
                    return;
                }
                self.on_vote(vote).await;
            }
            PrimaryMessage::Certificate(certificate) => {
                drop(responder);
                self.process_certificates(from, vec![certificate]).await;
            }
            PrimaryMessage::CertificatesAbove { rounds, limit } => {
                let limit = (limit as usize).min(MAX_CERTIFICATES_PER_REPLY);
                // A peer that fell behind our garbage collection catches up from our store: it must replay
                // the whole history to commit and execute what we did (there is no state sync). (Its round
                // for an author that never proposed, such as a crashed one, stays 0: judge by the highest.)
                let behind = rounds.iter().max().is_some_and(|r| *r < self.dag.gc_round());
                let certificates = if behind {
                    match self.store.certificates.above(&rounds, limit) {
                        Ok(certificates) => certificates,
                        Err(error) => return self.storage_error(&error),
                    }
                } else {
                    self.dag.above(&rounds).into_iter().take(limit).cloned().collect()
                };
                let _ = responder.reply(&PrimaryMessage::Certificates(certificates)).await;
            }
            PrimaryMessage::CertificatesByDigest(digests) => {
                let mut certificates = Vec::new();
                for digest in digests.iter().take(MAX_CERTIFICATES_PER_REPLY) {
                    match self.dag.get(digest) {
                        Some(certificate) => certificates.push(certificate.clone()),
                        None => match self.store.certificates.get(digest) {
                            Ok(stored) => certificates.extend(stored),
                            Err(error) => return self.storage_error(&error),
                        },
                    }
                }
                let _ = responder.reply(&PrimaryMessage::Certificates(certificates)).await;
            }
            PrimaryMessage::Certificates(certificates) => {
                drop(responder);
                self.process_certificates(from, certificates).await;
            }
            PrimaryMessage::CheckpointRequest { index, offset } => match self.state_sync.answer(index, offset) {
                Ok(answer) => {
                    let _ = responder.reply(&answer).await;
                }
                Err(error) => self.storage_error(&error),
            },
            PrimaryMessage::CommittedRequest { from, through, batches } => {
                match self.state_sync.committed_among(from, through, &batches) {
                    Ok(answer) => {
                        let _ = responder.reply(&answer).await;
                    }
                    Err(error) => self.storage_error(&error),
                }
            }
            PrimaryMessage::CheckpointPart { .. } => self.metrics.reject("unasked_checkpoint_part"),
            PrimaryMessage::CommittedBatches { .. } => self.metrics.reject("unasked_committed_batches"),
        }
    }

    /// Applies the vote rules; parks the header if it waits for parents or batches.
    async fn on_header(&mut self, header: Header) {
        let last_vote = match self.store.state.last_vote(header.author()) {
            Ok(last_vote) => last_vote,
            Err(error) => return self.storage_error(&error),
        };
        let decision = {
            let held = &self.held;
            let has_batch = |digest: &BatchDigest, _: WorkerId| held.contains(digest);
            let context = VoteContext { committee: &self.committee, dag: &self.dag, last_vote, has_batch: &has_batch };
            decide(&header, &context)
        };
        debug!(author = %header.author(), round = header.round(), ?decision, "header decided");
        match decision {
            Ok(VoteDecision::Vote) => {
                self.unpark(&header);
                if let Some(vote) = self.persist_vote(&header) {
                    self.outbox.push(Outgoing::Vote(vote));
                }
            }
            Ok(VoteDecision::Revote) => {
                // Through the outbox too: the first vote's record may not be synced yet.
                self.unpark(&header);
                let message = self.vote_messages.of(&header);
                self.outbox.push(Outgoing::Vote(Vote::new_hashed(&header, message, self.me, &self.key)));
            }
            Ok(VoteDecision::FetchParents(missing)) => {
                let _ = self
                    .channels
                    .tx_sync
                    .send(SyncRequest::Certificates { digests: missing, from: header.author() })
                    .await;
                self.park(header);
            }
            Ok(VoteDecision::FetchBatches(missing)) => {
                self.fetch_batches(header.author(), missing).await;
                self.park(header);
            }
            Err(error) => self.reject(&error),
        }
    }

    /// Drops the parked header of `header`'s author if it is this one or older. A newer one stays: a late
    /// header of round r must not cost the author its parked round-r+1 header (found by the Byzantine
    /// scenario, seed 11: that header was never decided again, and the round stalled).
    fn unpark(&mut self, header: &Header) {
        if self.parked.get(&header.author()).is_some_and(|parked| parked.round() <= header.round()) {
            self.parked.remove(&header.author());
        }
    }

    fn park(&mut self, header: Header) {
        let newer = self.parked.get(&header.author()).is_none_or(|parked| parked.round() <= header.round());
        if newer {
            self.parked.insert(header.author(), header);
        }
    }

    /// Decides again every parked header.
    async fn retry_parked(&mut self) {
        let parked: Vec<Header> = std::mem::take(&mut self.parked).into_values().collect();
        for header in parked {
            self.on_header(header).await;
        }
    }

    /// Records our vote for (author, round); it leaves once a sync covers the record (DESIGN.md §9.7).
    fn persist_vote(&mut self, header: &Header) -> Option<Vote> {
        let mut writes = self.store.write_set();
        writes.put_last_vote(header.author(), &LastVote { round: header.round(), header_digest: header.digest() });
        match writes.commit(Durability::Buffered) {
            Ok(()) => Some(Vote::new_hashed(header, self.vote_messages.of(header), self.me, &self.key)),
            Err(error) => {
                self.storage_error(&error);
                None
            }
        }
    }

    async fn send_vote(&mut self, vote: Vote) {
        PrimaryMetrics::bump(&self.metrics.votes_sent);
        let round = vote.round;
        let delivery = self.network.send_reliable(vote.header_author, &PrimaryMessage::Vote(vote)).await;
        self.keep(round, delivery.map(|d| vec![d]));
    }

    async fn on_vote(&mut self, vote: Vote) {
        let Some(aggregator) = self.aggregator.as_mut() else { return };
        let outcome = aggregator.add(vote, &self.committee);
        self.on_aggregation(outcome).await;
    }

    async fn on_aggregation(&mut self, mut outcome: Aggregation) {
        if let Some(candidate) = outcome.candidate.take() {
            // Checked at once, with the peers' certificates that wait: one multi-pairing for all of them.
            self.verify_unverified(Some(candidate)).await;
        }
        self.on_checked_votes(outcome).await;
    }

    /// The bad votes are counted; the certificate of the good ones, if they hold a quorum, is ours.
    async fn on_checked_votes(&mut self, outcome: Aggregation) {
        for (voter, error) in &outcome.bad_voters {
            warn!(%voter, %error, "bad vote");
            self.metrics.reject(error.reason());
        }
        if let Some(certificate) = outcome.certificate {
            self.accept_own(certificate).await;
        }
    }

    /// Our header is certified.
    async fn accept_own(&mut self, certificate: Certificate) {
        PrimaryMetrics::bump(&self.metrics.certificates_formed);
        self.aggregator = None;
        for (digest, _) in certificate.header.payload() {
            if let Some(sealed) = self.batch_sealed.remove(digest) {
                self.metrics.observe_batch_latency(sealed.elapsed());
            }
        }
        // Stored by `accept_verified`, it leaves only once synced: after a power loss we must still know
        // that our header was certified, or we would take its batches back for a later header and commit
        // them twice (found by the crash-restart scenario's machine crash, seed 1).
        self.accept_verified(self.me, vec![certificate.clone()]).await;
        self.outbox.push(Outgoing::Certificate(certificate));
    }

    /// Checks the certificates of one frame from `from` cheaply (round window, list bounds) and queues them for
    /// verification. The queue is verified as one batch, with our own certificate when it forms, or
    /// [`CERTIFICATE_BATCH_WAIT`] after its first frame, or sooner, when something waits for it: the proposer
    /// ([`Self::unblocks_proposer`]), a header that names a parent the DAG lacks (arriving, or parked and
    /// waiting), or the bound of [`MAX_UNVERIFIED_CERTIFICATES`]. One multi-pairing for several certificates
    /// costs little more than one for one (DESIGN.md §2).
    async fn process_certificates(&mut self, from: AuthorityIndex, certificates: Vec<Certificate>) {
        if self.penalties.decide(from, tokio::time::Instant::now()) == FrameDecision::Drop {
            return self.metrics.reject("penalized_peer");
        }
        let gc_round = self.dag.gc_round();
        let mut fresh = Vec::with_capacity(certificates.len());
        for certificate in certificates {
            if certificate.round() <= gc_round || self.dag.contains(&certificate.digest()) {
                continue;
            }
            match certificate.header.check_bounds(&self.committee) {
                Ok(()) => fresh.push(certificate),
                Err(error) => self.reject(&error),
            }
        }
        if fresh.is_empty() {
            return;
        }
        if self.unverified.is_empty() {
            self.unverified_since = tokio::time::Instant::now();
        }
        let rounds: BTreeSet<Round> = fresh.iter().map(Certificate::round).collect();
        let fresh_digests: BTreeSet<CertificateDigest> = fresh.iter().map(Certificate::digest).collect();
        let lacks_batches =
            fresh.iter().any(|c| c.header.payload().iter().any(|(digest, _)| !self.held.contains(digest)));
        self.unverified_count += fresh.len();
        self.unverified.push((from, fresh));
        let needed = lacks_batches
            || rounds.into_iter().any(|r| self.unblocks_proposer(r))
            || self.parked_header_needs(&fresh_digests);
        if self.unverified_count >= MAX_UNVERIFIED_CERTIFICATES || needed {
            self.verify_unverified(None).await;
        }
    }

    /// Whether the proposer may be waiting for the certificates of `round` that wait for verification.
    fn unblocks_proposer(&self, round: Round) -> bool {
        let table = self.channels.leader_table.as_ref().map(|table| table.borrow());
        let waiting = self.unverified.iter().flat_map(|(_, certificates)| certificates);
        proposer_waits_for(&self.dag, &self.committee, table.as_deref(), self.parents_sent.0, waiting, round)
    }

    /// Whether a parked header names a parent that the DAG lacks and that waits for verification.
    fn parked_header_waits_for_unverified(&self) -> bool {
        let waiting: BTreeSet<CertificateDigest> =
            self.unverified.iter().flat_map(|(_, certificates)| certificates).map(Certificate::digest).collect();
        !waiting.is_empty() && self.parked_header_needs(&waiting)
    }

    /// Whether a parked header waits for one of `digests` as a parent (one a synchronizer fetched for it).
    fn parked_header_needs(&self, digests: &BTreeSet<CertificateDigest>) -> bool {
        self.parked.values().any(|header| header.parents().iter().any(|parent| digests.contains(parent)))
    }

    /// Verifies the queued frames, with our candidate certificate if one is given, in one batch, and acts on the
    /// verdicts of [`check_together`]: a frame that fails is dropped whole and costs its sender a penalty,
    /// during which its frames are not verified at all ([`PeerPenalties`], DESIGN.md §9.9); a candidate of ours
    /// that fails sends the aggregator to check the votes one by one. An honest peer only sends certificates it
    /// verified, and whatever good ones a dropped frame held come again from other peers through the
    /// synchronizer, so a Byzantine peer's junk costs a few multi-pairings per penalty.
    async fn verify_unverified(&mut self, own: Option<Certificate>) {
        let mut frames = std::mem::take(&mut self.unverified);
        self.unverified_count = 0;
        // A certificate several peers sent (its author, and a synchronizer's answer) is verified once.
        let mut seen: BTreeSet<_> = own.iter().map(Certificate::digest).collect();
        for (_, certificates) in &mut frames {
            certificates.retain(|certificate| seen.insert(certificate.digest()));
        }
        frames.retain(|(_, certificates)| !certificates.is_empty());
        if own.is_none() && frames.is_empty() {
            return;
        }
        let peers_certificates: usize = frames.iter().map(|(_, certificates)| certificates.len()).sum();
        let verdicts = check_together(own.as_ref(), frames, &self.committee, &self.vote_messages, &mut self.rng);
        self.metrics.certificate_verifications.fetch_add(verdicts.checks as u64, std::sync::atomic::Ordering::Relaxed);
        self.metrics.certificates_verified.fetch_add(peers_certificates as u64, std::sync::atomic::Ordering::Relaxed);
        match (own, verdicts.own) {
            (Some(certificate), Some(Verdict::Accept)) => self.accept_own(certificate).await,
            (Some(_), Some(Verdict::Reject(_))) => {
                if let Some(aggregator) = self.aggregator.as_mut() {
                    let outcome = aggregator.reject_candidate(&self.committee);
                    self.on_checked_votes(outcome).await;
                }
            }
            _ => {}
        }
        for ((from, certificates), verdict) in verdicts.frames {
            match verdict {
                Verdict::Accept => self.accept_verified(from, certificates).await,
                Verdict::Reject(error) => self.penalize(from, certificates.len(), &error),
            }
        }
    }

    fn penalize(&mut self, from: AuthorityIndex, certificates: usize, error: &DagError) {
        warn!(%from, certificates, %error, "a frame of certificates failed verification; dropped");
        self.penalties.failed(from, tokio::time::Instant::now());
        self.reject(error);
    }

    async fn accept_verified(&mut self, from: AuthorityIndex, certificates: Vec<Certificate>) {
        let mut accepted = Vec::new();
        let mut missing = Vec::new();
        for certificate in certificates {
            match self.dag.insert(certificate) {
                Ok(Insertion::Accepted(list)) => accepted.extend(list),
                Ok(Insertion::Pending { missing: parents }) => {
                    PrimaryMetrics::bump(&self.metrics.certificates_pending);
                    missing.extend(parents);
                }
                Ok(Insertion::Duplicate | Insertion::BelowGc) => {}
                Err(error) => self.reject(&error),
            }
        }
        self.observe_dag_size();
        if !missing.is_empty() {
            missing.sort();
            missing.dedup();
            let _ = self.channels.tx_sync.send(SyncRequest::Certificates { digests: missing, from }).await;
        }
        self.deliver_accepted(accepted).await;
    }

    /// Stores newly accepted certificates, then hands them on: to consensus in causal order, to the proposer
    /// as parents, to the workers for any batch we lack.
    async fn deliver_accepted(&mut self, accepted: Vec<Certificate>) {
        if accepted.is_empty() {
            return;
        }
        let mut writes = self.store.write_set();
        for certificate in &accepted {
            let carried: Vec<BatchDigest> = certificate.header.payload().iter().map(|(d, _)| *d).collect();
            self.retention.referenced(&carried);
            writes.put_certificate(certificate);
            if certificate.author() == self.me {
                for (digest, _) in certificate.header.payload() {
                    writes.remove_pending_proposal(digest);
                }
            }
        }
        if let Err(error) = writes.commit(Durability::Buffered) {
            // Not stored means not accepted: forget them, a later sync brings them again.
            self.storage_error(&error);
            return;
        }
        let mut rounds = Vec::new();
        for certificate in accepted {
            PrimaryMetrics::bump(&self.metrics.certificates_accepted);
            self.metrics.observe_round(certificate.round());
            rounds.push(certificate.round());
            if certificate.author() != self.me {
                let missing: Vec<_> = certificate
                    .header
                    .payload()
                    .iter()
                    .filter(|(digest, _)| !self.held.contains(digest))
                    .copied()
                    .collect();
                self.fetch_batches(certificate.author(), missing).await;
            }
            if self.channels.tx_consensus.send(certificate).await.is_err() {
                debug!("consensus is gone");
            }
            let queued = self.channels.tx_consensus.max_capacity() - self.channels.tx_consensus.capacity();
            self.metrics.consensus_queue.store(queued as u64, std::sync::atomic::Ordering::Relaxed);
        }
        rounds.sort();
        rounds.dedup();
        for round in rounds {
            self.send_parents(round).await;
        }
        let _ = self.channels.tx_last_rounds.send(self.dag.last_round_per_author(self.committee.size()));
        self.retry_parked().await;
    }

    /// When round `round` holds a quorum, its certificates are the parents of the next header: sent to the
    /// proposer, and sent again as more arrive (the leader's may be among them). Returns whether it sent them.
    async fn send_parents(&mut self, round: Round) -> bool {
        let count = self.dag.round(round).count();
        let (sent_round, sent_count) = self.parents_sent;
        if round < sent_round || (round == sent_round && count <= sent_count && round != 0) {
            return false;
        }
        let stake: u64 = self.dag.round(round).map(|c| self.committee.stake(c.author())).sum();
        if !self.committee.is_quorum(stake) {
            return false;
        }
        self.parents_sent = (round, count);
        let parents = Parents {
            round,
            digests: self.dag.round(round).map(Certificate::digest).collect(),
            weak: self.dag.orphans(round, self.committee.size()),
            leader_ready: self.leader_ready(round),
            we_lead: self.leads(round),
        };
        let _ = self.channels.tx_parents.send(parents).await;
        true
    }

    /// We are `round`'s leader (an even round, under the current schedule).
    fn leads(&self, round: Round) -> bool {
        let Some(table) = &self.channels.leader_table else { return false };
        round.is_multiple_of(2) && table.borrow().leader(round) == self.me
    }

    /// Bullshark's wait (DESIGN.md §4) for moving on from `round`.
    fn leader_ready(&self, round: Round) -> bool {
        let table = self.channels.leader_table.as_ref().map(|table| table.borrow());
        leader_wait_over(&self.dag, &self.committee, table.as_deref(), round)
    }

    async fn on_worker_report(&mut self, report: WorkerToPrimary) {
        match report {
            WorkerToPrimary::OurBatch { digest, worker, created } => {
                let mut writes = self.store.write_set();
                writes.put_pending_proposal(&digest, worker);
                if let Err(error) = writes.commit(Durability::Buffered) {
                    // Not recorded, not acknowledged: the worker's client sends the transactions again.
                    return self.storage_error(&error);
                }
                self.held.insert(digest);
                self.batch_sealed.insert(digest, created);
                self.outbox.push(Outgoing::Acknowledgement(digest, worker));
                let _ = self.channels.tx_our_batches.send((digest, worker)).await;
            }
            WorkerToPrimary::OthersBatch { digest, .. } => self.hold(digest).await,
            WorkerToPrimary::PeerBatch { digest, worker, from, size } => {
                let evicted = self.retention.admit(from, digest, size as usize);
                if !evicted.is_empty() {
                    self.metrics.batches_evicted.fetch_add(evicted.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    for digest in &evicted {
                        self.held.remove(digest);
                    }
                    if let Some(tx) = self.channels.tx_workers.get(worker as usize) {
                        let _ = tx.send(PrimaryToWorker::Delete { digests: evicted }).await;
                    }
                }
                self.hold(digest).await;
            }
        }
    }

    /// A worker holds a peer's batch now: headers parked for it may get our vote.
    async fn hold(&mut self, digest: BatchDigest) {
        self.held.insert(digest);
        if !self.parked.is_empty() {
            if self.parked_header_waits_for_unverified() {
                self.verify_unverified(None).await;
            }
            self.retry_parked().await;
        }
    }

    async fn fetch_batches(&mut self, target: AuthorityIndex, missing: Vec<(BatchDigest, WorkerId)>) {
        let mut by_worker: BTreeMap<WorkerId, Vec<BatchDigest>> = BTreeMap::new();
        for (digest, worker) in missing {
            by_worker.entry(worker).or_default().push(digest);
        }
        for (worker, digests) in by_worker {
            if let Some(tx) = self.channels.tx_workers.get(worker as usize) {
                let _ = tx.send(PrimaryToWorker::Synchronize { digests, target }).await;
            }
        }
    }

    async fn garbage_collect(&mut self, committed_round: Round) {
        let gc_round = gc_round(committed_round, self.committee.protocol().gc_depth);
        if gc_round <= self.dag.gc_round() {
            return;
        }
        let completed = self.dag.garbage_collect(gc_round);
        self.vote_messages.forget_through(gc_round);
        self.metrics.gc_round.store(gc_round, std::sync::atomic::Ordering::Relaxed);
        self.observe_dag_size();
        self.deliveries = self.deliveries.split_off(&(gc_round + 1)); // dropping a delivery cancels it
        self.parked.retain(|_, header| header.round() > gc_round);
        if self.aggregator.as_ref().is_some_and(|a| a.header().round() <= gc_round) {
            let abandoned = self.aggregator.take().expect("checked just above");
            self.requeue_payload(abandoned.header()).await;
        }
        self.deliver_accepted(completed).await;
    }

    fn keep(&mut self, round: Round, deliveries: Result<Vec<Delivery<PrimaryMessage>>, mako_network::NetworkError>) {
        match deliveries {
            Ok(deliveries) => self.deliveries.entry(round).or_default().extend(deliveries),
            Err(error) => debug!(%error, "send failed"),
        }
    }

    fn observe_dag_size(&self) {
        let size = (self.dag.len() + self.dag.pending_len()) as u64;
        self.metrics.dag_certificates.store(size, std::sync::atomic::Ordering::Relaxed);
    }

    fn reject(&self, error: &DagError) {
        debug!(%error, "rejected");
        self.metrics.reject(error.reason());
    }

    fn storage_error(&self, error: &mako_storage::StoreError) {
        warn!(%error, "storage error");
        PrimaryMetrics::bump(&self.metrics.storage_errors);
    }
}
