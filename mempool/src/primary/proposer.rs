//! The proposer: makes this validator's header for each round (DESIGN.md §3).
//!
//! It moves to round r+1 once the core hands it a quorum of round-r certificates (the parents) and the
//! Bullshark leader wait is over (DESIGN.md §4): in an even round the leader's certificate is among them, in an
//! odd round f+1 of them vote for the previous leader or a quorum does not, or `leader_timeout` has passed since
//! the quorum arrived, so a crashed or slow leader costs at most that. Then it proposes when
//! `header_num_batches` digests of our batches wait or `max_header_delay` has passed, but not sooner than
//! `min_header_delay` after its previous header (a floor on the round's CPU cost). It owns the round counter
//! and the queue of our batch digests; the core owns everything else. After a restart it starts above the last
//! header it proposed, so it never makes a second header for one round. A proposer that falls behind jumps to
//! the newest round it has parents for, except past the round it leads: there it proposes first ([`Advance`]).

use std::collections::VecDeque;

use mako_types::{
    AuthorityIndex, BatchDigest, CertificateDigest, ExecutedState, Header, HeaderContent, Round, WorkerId,
};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tracing::debug;

use crate::config::MempoolParameters;

/// A quorum (or more) of one round's certificates, from the core: the parents of the next header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parents {
    pub round: Round,
    pub digests: Vec<CertificateDigest>,
    /// Older certificates nothing references yet: our header's weak parents.
    pub weak: Vec<(Round, CertificateDigest)>,
    /// The leader wait of DESIGN.md §4 is satisfied (the core judges it over the DAG).
    pub leader_ready: bool,
    /// We are the leader of `round` (the core reads the schedule).
    pub we_lead: bool,
}

/// What a new quorum of certificates does to the header we are about to propose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Advance {
    /// Older than the parents we hold: nothing.
    Stale,
    /// Parents for the round we are about to propose: they replace what we held, or we move ahead to it.
    Take,
    /// The others made a quorum of the round we lead without our header. Every one of them waits up to
    /// `leader_timeout` for our certificate there (Bullshark's leader wait, DESIGN.md §4), so moving past it
    /// would stall the whole committee for that long: propose there now, with the parents we hold (a header
    /// late but valid; votes are cast for it as for any other), then take the new parents.
    ProposeLedRoundFirst,
}

/// The rule behind [`Advance`]: `round` is the round of our next header, `held` the round of the parents we
/// hold for it (`round - 1`), if any.
fn advance(round: Round, held: Option<Round>, parents: &Parents) -> Advance {
    if parents.round + 1 < round {
        Advance::Stale
    } else if parents.round == round && parents.we_lead && held == Some(round - 1) {
        Advance::ProposeLedRoundFirst
    } else {
        Advance::Take
    }
}

pub struct Proposer {
    authority: AuthorityIndex,
    parameters: MempoolParameters,
    /// The round of the next header.
    round: Round,
    /// A quorum of certificates of `round - 1`, or none while we wait for them.
    parents: Option<Parents>,
    /// When the parents of this round arrived: the leader wait ends `leader_timeout` later.
    parents_since: Instant,
    digests: VecDeque<(BatchDigest, WorkerId)>,
    rx_parents: mpsc::Receiver<Parents>,
    rx_batches: mpsc::Receiver<(BatchDigest, WorkerId)>,
    tx_headers: mpsc::Sender<Header>,
    /// Our latest executed sub-DAG and state root, published in each header (none when we do not execute).
    executed: Option<watch::Receiver<ExecutedState>>,
}

impl Proposer {
    /// Starts proposing at `round`, once the core sends the parents.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        authority: AuthorityIndex,
        parameters: MempoolParameters,
        round: Round,
        rx_parents: mpsc::Receiver<Parents>,
        rx_batches: mpsc::Receiver<(BatchDigest, WorkerId)>,
        tx_headers: mpsc::Sender<Header>,
        executed: Option<watch::Receiver<ExecutedState>>,
    ) -> tokio::task::JoinHandle<()> {
        let proposer = Self {
            authority,
            parameters,
            round,
            parents: None,
            parents_since: Instant::now(),
            digests: VecDeque::new(),
            rx_parents,
            rx_batches,
            tx_headers,
            executed,
        };
        tokio::spawn(proposer.run())
    }

    async fn run(mut self) {
        let mut header_deadline = Instant::now() + self.parameters.max_header_delay;
        let mut header_floor = Instant::now();
        loop {
            let now = Instant::now();
            let leader_deadline = self.parents_since + self.parameters.leader_timeout;
            let leader_ready = self.parents.as_ref().is_some_and(|p| p.leader_ready) || now >= leader_deadline;
            let enough_batches = self.digests.len() >= self.parameters.header_num_batches;
            let header_timer_expired = now >= header_deadline;
            let ready = self.parents.is_some() && leader_ready && (enough_batches || header_timer_expired);
            if ready && now >= header_floor {
                if self.propose().await.is_err() {
                    return; // the core is gone: the primary is shutting down
                }
                (header_deadline, header_floor) = self.header_timers();
                continue;
            }
            // Wake for whichever wait can end by itself.
            let mut wake = None::<Instant>;
            let mut wake_at = |at: Instant| wake = Some(wake.map_or(at, |w: Instant| w.min(at)));
            if ready {
                wake_at(header_floor);
            }
            if !header_timer_expired {
                wake_at(header_deadline);
            }
            if self.parents.is_some() && !leader_ready {
                wake_at(leader_deadline);
            }
            tokio::select! {
                biased;
                parents = self.rx_parents.recv() => {
                    let Some(parents) = parents else { return };
                    match advance(self.round, self.parents.as_ref().map(|p| p.round), &parents) {
                        Advance::Stale => continue,
                        Advance::ProposeLedRoundFirst => {
                            debug!(round = self.round, "proposing the round we lead before moving past it");
                            if self.propose().await.is_err() {
                                return;
                            }
                            (header_deadline, header_floor) = self.header_timers();
                        }
                        Advance::Take => {}
                    }
                    self.on_parents(parents);
                }
                batch = self.rx_batches.recv() => {
                    let Some(batch) = batch else { return };
                    self.digests.push_back(batch);
                }
                () = sleep_until(wake.unwrap_or(now)), if wake.is_some() => {}
            }
        }
    }

    /// After a header: the latest and the earliest time for the next one.
    fn header_timers(&self) -> (Instant, Instant) {
        let now = Instant::now();
        (now + self.parameters.max_header_delay, now + self.parameters.min_header_delay)
    }

    /// Certificates of round r (not stale): the parents of our round r+1 header. More of the current round
    /// replace what we had (the leader may be among them now); parents from a later round mean we fell
    /// behind, and we jump ahead.
    fn on_parents(&mut self, parents: Parents) {
        let next = parents.round + 1;
        if next > self.round {
            debug!(from = self.round, to = next, "proposer catches up");
            self.round = next;
        }
        if self.parents.as_ref().map(|p| p.round) != Some(parents.round) {
            self.parents_since = Instant::now();
        }
        self.parents = Some(parents);
    }

    async fn propose(&mut self) -> Result<(), mpsc::error::SendError<Header>> {
        let take = self.digests.len().min(mako_types::header::MAX_HEADER_PAYLOAD);
        let payload: Vec<_> = self.digests.drain(..take).collect();
        let (parents, weak_parents) = self.parents.take().map(|p| (p.digests, p.weak)).unwrap_or_default();
        let executed = self.executed.as_ref().map(|e| *e.borrow()).unwrap_or_default();
        let content =
            HeaderContent { author: self.authority, round: self.round, payload, parents, weak_parents, executed };
        let header = Header::from_content(content);
        debug!(round = self.round, batches = header.payload().len(), "proposing");
        self.round += 1;
        self.tx_headers.send(header).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parents(round: Round) -> Parents {
        Parents { round, digests: vec![], weak: vec![], leader_ready: true, we_lead: false }
    }

    #[test]
    fn advance_proposes_first_only_in_the_round_we_lead_and_hold_parents_for() {
        let led = |round| Parents { we_lead: true, ..parents(round) };
        assert_eq!(advance(5, Some(4), &parents(3)), Advance::Stale);
        assert_eq!(advance(5, Some(4), &parents(4)), Advance::Take, "more of the same round");
        assert_eq!(advance(5, Some(4), &parents(5)), Advance::Take, "a round we do not lead: jump");
        assert_eq!(advance(4, Some(3), &led(4)), Advance::ProposeLedRoundFirst);
        assert_eq!(advance(4, None, &led(4)), Advance::Take, "no parents to propose with");
        assert_eq!(advance(4, Some(3), &led(6)), Advance::Take, "two rounds behind: the others moved on");
    }

    /// The adversary: we lead round 2 but are slow to propose there (the header floor, a busy core), and the
    /// other three make a quorum of round 2 without us. Jumping to round 3 would leave round 2 without its
    /// leader, and every validator waits `leader_timeout` for it; we propose round 2 at once instead.
    #[tokio::test(start_paused = true)]
    async fn a_lagging_leader_proposes_its_round_before_moving_past_it() {
        for we_lead in [true, false] {
            let parameters = MempoolParameters::default();
            let max_header_delay = parameters.max_header_delay;
            let (tx_parents, rx_parents) = mpsc::channel(16);
            let (_tx_batches, rx_batches) = mpsc::channel(16);
            let (tx_headers, mut rx_headers) = mpsc::channel(16);
            let _proposer = Proposer::spawn(AuthorityIndex(0), parameters, 1, rx_parents, rx_batches, tx_headers, None);
            tx_parents.send(parents(0)).await.unwrap();
            tokio::time::sleep(max_header_delay).await;
            assert_eq!(rx_headers.recv().await.unwrap().round(), 1);
            let start = Instant::now();
            // Round 1's quorum arrives inside our header floor; round 2's follows before the floor ends.
            tx_parents.send(parents(1)).await.unwrap();
            tx_parents.send(Parents { we_lead, ..parents(2) }).await.unwrap();
            let next = rx_headers.recv().await.unwrap();
            if we_lead {
                assert_eq!(next.round(), 2, "the led round is proposed");
                assert_eq!(Instant::now(), start, "at once: the committee is waiting for it");
                assert_eq!(rx_headers.recv().await.unwrap().round(), 3);
            } else {
                assert_eq!(next.round(), 3, "a round we do not lead is jumped over");
            }
        }
    }

    /// Parents and batches are always there at once (a fast network under load): headers still leave no
    /// sooner than `min_header_delay` apart, each carrying every batch that waited, and never later than
    /// needed.
    #[tokio::test(start_paused = true)]
    async fn under_load_rounds_wait_for_the_header_floor_and_carry_more_batches() {
        let floor = Duration::from_millis(150);
        let parameters = MempoolParameters { min_header_delay: floor, ..MempoolParameters::default() };
        let (tx_parents, rx_parents) = mpsc::channel(16);
        let (tx_batches, rx_batches) = mpsc::channel(1000);
        let (tx_headers, mut rx_headers) = mpsc::channel(16);
        let _proposer = Proposer::spawn(AuthorityIndex(0), parameters, 1, rx_parents, rx_batches, tx_headers, None);
        let start = Instant::now();
        let mut times = Vec::new();
        for round in 0..4u64 {
            tx_parents.send(parents(round)).await.unwrap();
            for i in 0..10u8 {
                tx_batches.send((BatchDigest(mako_types::Digest([i; 32])), 0)).await.unwrap();
            }
            let header = rx_headers.recv().await.unwrap();
            assert_eq!(header.round(), round + 1);
            assert!(!header.payload().is_empty());
            times.push(Instant::now() - start);
        }
        assert_eq!(times[0], Duration::ZERO, "the first header need not wait");
        for pair in times.windows(2) {
            assert_eq!(pair[1] - pair[0], floor, "rounds are {floor:?} apart, no more, no less: {times:?}");
        }

        // Without the floor, the same arrivals make a header at once each time.
        let parameters = MempoolParameters { min_header_delay: Duration::ZERO, ..MempoolParameters::default() };
        let (tx_parents, rx_parents) = mpsc::channel(16);
        let (tx_batches, rx_batches) = mpsc::channel(1000);
        let (tx_headers, mut rx_headers) = mpsc::channel(16);
        let _proposer = Proposer::spawn(AuthorityIndex(0), parameters, 1, rx_parents, rx_batches, tx_headers, None);
        let start = Instant::now();
        for round in 0..4u64 {
            tx_parents.send(parents(round)).await.unwrap();
            tx_batches.send((BatchDigest(mako_types::Digest([round as u8; 32])), 0)).await.unwrap();
            rx_headers.recv().await.unwrap();
        }
        assert_eq!(Instant::now() - start, Duration::ZERO);
    }
}
