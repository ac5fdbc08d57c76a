//! The certificate synchronizer (DESIGN.md §3): fetches what the core is missing.
//!
//! Two paths, one mechanism. Missing parents are asked for by digest, first from the peer that showed them to
//! us, then from others. And every `sync_retry_delay` the synchronizer asks `sync_retry_nodes` random peers
//! "what do you have above my last round per author": this is how a node catches up after a partition or a
//! restart. Answers go to the core, which verifies them like any certificate. Requests run as their own tasks
//! so that a slow peer never stalls the loop; at most one request per digest is in flight per retry period.

use std::collections::BTreeMap;
use std::time::Duration;

use mako_network::Endpoint;
use mako_types::{AuthorityIndex, Certificate, CertificateDigest, Committee, Round};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tokio::sync::{mpsc, watch};
use tokio::time::{interval, Instant, MissedTickBehavior};
use tracing::debug;

use super::core::MAX_CERTIFICATES_PER_REPLY;
use crate::config::MempoolParameters;
use crate::messages::PrimaryMessage;

pub enum SyncRequest {
    /// Fetch these certificates, first from `from`.
    Certificates { digests: Vec<CertificateDigest>, from: AuthorityIndex },
}

pub struct Synchronizer {
    me: AuthorityIndex,
    peers: Vec<AuthorityIndex>,
    parameters: MempoolParameters,
    network: Endpoint<PrimaryMessage>,
    requested: BTreeMap<CertificateDigest, Instant>,
    rng: rand_chacha::ChaCha8Rng,
    rx_requests: mpsc::Receiver<SyncRequest>,
    rx_last_rounds: watch::Receiver<Vec<Round>>,
    tx_synced: mpsc::Sender<(AuthorityIndex, Vec<Certificate>)>,
    /// Requests in flight: they end with the synchronizer (each holds the endpoint, whose socket a validator
    /// that starts again binds anew).
    requests: tokio::task::JoinSet<()>,
}

impl Synchronizer {
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        me: AuthorityIndex,
        committee: &Committee,
        parameters: MempoolParameters,
        network: Endpoint<PrimaryMessage>,
        rng_seed: u64,
        rx_requests: mpsc::Receiver<SyncRequest>,
        rx_last_rounds: watch::Receiver<Vec<Round>>,
        tx_synced: mpsc::Sender<(AuthorityIndex, Vec<Certificate>)>,
    ) -> tokio::task::JoinHandle<()> {
        let peers = committee.authorities().map(|(i, _)| i).filter(|&i| i != me).collect();
        let synchronizer = Self {
            me,
            peers,
            parameters,
            network,
            requested: BTreeMap::new(),
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(rng_seed),
            rx_requests,
            rx_last_rounds,
            tx_synced,
            requests: tokio::task::JoinSet::new(),
        };
        tokio::spawn(synchronizer.run())
    }

    async fn run(mut self) {
        let mut catch_up = interval(self.parameters.sync_retry_delay);
        catch_up.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                request = self.rx_requests.recv() => {
                    let Some(SyncRequest::Certificates { digests, from }) = request else { return };
                    self.fetch(digests, from);
                }
                _ = catch_up.tick() => self.catch_up(),
                Some(_) = self.requests.join_next(), if !self.requests.is_empty() => {}
            }
        }
    }

    /// Asks `from` (then random others) for the digests not already asked for in this retry period.
    fn fetch(&mut self, digests: Vec<CertificateDigest>, from: AuthorityIndex) {
        let now = Instant::now();
        let retry = self.parameters.sync_retry_delay;
        self.requested.retain(|_, at| now.duration_since(*at) < retry);
        let wanted: Vec<_> = digests.into_iter().filter(|d| !self.requested.contains_key(d)).collect();
        if wanted.is_empty() {
            return;
        }
        for digest in &wanted {
            self.requested.insert(*digest, now);
        }
        let mut targets = vec![from];
        targets.extend(self.random_peers().into_iter().filter(|p| *p != from));
        debug!(count = wanted.len(), ?targets, "fetching certificates");
        self.spawn_request(targets, PrimaryMessage::CertificatesByDigest(wanted));
    }

    /// "What do you have above my last round per author?", to a few random peers.
    fn catch_up(&mut self) {
        let rounds = self.rx_last_rounds.borrow().clone();
        let request = PrimaryMessage::CertificatesAbove { rounds, limit: MAX_CERTIFICATES_PER_REPLY as u32 };
        for peer in self.random_peers() {
            self.spawn_request(vec![peer], request.clone());
        }
    }

    fn random_peers(&mut self) -> Vec<AuthorityIndex> {
        let mut peers = self.peers.clone();
        peers.shuffle(&mut self.rng);
        peers.truncate(self.parameters.sync_retry_nodes);
        peers
    }

    /// Tries each target in turn; forwards every answer to the core. A catch-up request ends at the first
    /// answer; a request by digest goes on to the next target with the digests still missing, so that a peer
    /// that lacks them (or a Byzantine one that answers with nothing) cannot end the fetch: found by the
    /// Byzantine scenario (seed 20001), where the author of a header that referenced a withheld certificate
    /// was asked first, an honest peer without it second, and the one validator that held it never.
    fn spawn_request(&mut self, targets: Vec<AuthorityIndex>, request: PrimaryMessage) {
        let network = self.network.clone();
        let tx_synced = self.tx_synced.clone();
        let timeout = request_timeout(&self.parameters);
        let me = self.me;
        self.requests.spawn(async move {
            let mut request = request;
            for target in targets.into_iter().filter(|t| *t != me) {
                match network.request(target, &request, timeout).await {
                    Ok(PrimaryMessage::Certificates(certificates)) => {
                        let missing = still_missing(&request, &certificates);
                        if !certificates.is_empty() && tx_synced.send((target, certificates)).await.is_err() {
                            return;
                        }
                        match missing {
                            Some(missing) if !missing.is_empty() => {
                                request = PrimaryMessage::CertificatesByDigest(missing);
                            }
                            _ => return,
                        }
                    }
                    Ok(_) => debug!(%target, "unexpected answer to a certificate request"),
                    Err(error) => debug!(%target, %error, "certificate request failed"),
                }
            }
        });
    }
}

/// For a request by digest, the digests that `answer` does not hold; `None` for a catch-up request.
fn still_missing(request: &PrimaryMessage, answer: &[Certificate]) -> Option<Vec<CertificateDigest>> {
    let PrimaryMessage::CertificatesByDigest(wanted) = request else { return None };
    let found: std::collections::BTreeSet<CertificateDigest> = answer.iter().map(Certificate::digest).collect();
    Some(wanted.iter().filter(|d| !found.contains(d)).copied().collect())
}

fn request_timeout(parameters: &MempoolParameters) -> Duration {
    parameters.sync_retry_delay.min(Duration::from_secs(2))
}
