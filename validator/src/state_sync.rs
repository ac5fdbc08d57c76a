//! State sync (DESIGN.md §5; issue 17, item 3): a validator whose store is too far behind to replay fetches a
//! checkpoint that f+1 validators vouch for, installs it, and resumes from it.
//!
//! Every validator checkpoints at the same sub-DAG indices (the committee's `checkpoint_interval`) and, once
//! a checkpoint is written, deletes the batches and certificates its *previous* checkpoint covers. So a peer
//! keeps everything after its previous checkpoint, and a validator that executed less than that (its store is
//! empty, or it was down for long) cannot replay from it. Before it starts, a validator asks every peer which
//! checkpoint is its latest (the id it publishes in its headers); [`decide`] picks the highest one that f+1
//! of them name (at least one honest validator vouches for its bytes) and fetches it if it is newer than its
//! own state ([`Lag::Any`]: cheaper than replaying up to it). A running validator that f+1 peers' headers
//! show behind their retained history ([`Lag::BeyondRetained`]) stops, and its caller starts it again on the
//! same store, which state-syncs. The bytes come in parts from the vouching peers, in turn; their
//! digest must be the id's, or the next peer is tried. The checkpoint is then written to the store as if
//! this validator had taken it: the execution state and root, the block record of its index, the progress,
//! and the consensus state after its sub-DAG. Execution recovers from it as from a local checkpoint, and
//! consensus resumes at its horizon, fetching the certificates above from its peers as after any restart.
//!
//! What the jump skips must not lose an acknowledged batch (DESIGN.md §9.3). Our certificates between our
//! consensus's horizon and the checkpoint's were judged by nobody here: consensus after the restart starts at
//! the checkpoint's horizon, below which it never reports a certificate of ours skipped
//! (`Bullshark::take_skipped`), whose batches it would otherwise record to be proposed again. One
//! that never reached the others (we certified it while partitioned from them) was never committed, and its
//! batches must be proposed again; one that was committed must not be (a batch is committed once, §9.2). Only
//! the sub-DAGs we missed can tell: [`uncommitted_own_batches`] asks the peers which of those batches they
//! carry, believes an answer f+1 give alike, and the install records the rest as pending proposals, which the
//! restarted primary proposes again. If the peers cannot tell, the checkpoint is not installed (we try again).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mako_execution::pipeline::checkpoint_digest;
use mako_mempool::dag::gc_round;
use mako_mempool::messages::{PrimaryMessage, BATCHES_PER_QUERY, SUB_DAGS_PER_QUERY};
use mako_network::Endpoint;
use mako_storage::{BlockRecord, Checkpoint, ConsensusState, Durability, ExecutionProgress, Store, StoreError};
use mako_types::{AuthorityIndex, BatchDigest, CheckpointId, Committee, Stake, WorkerId};
use tokio::task::JoinSet;
use tracing::{info, warn};

/// How long a peer has to answer one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Rounds of "which is your latest checkpoint" before a validator gives up and replays what it can.
const ATTEMPTS: usize = 5;
/// The largest checkpoint this validator accepts (memory a peer can make it hold).
pub const MAX_CHECKPOINT_BYTES: u64 = 4 << 30;

/// What to do with the checkpoints peers offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Replay from our own store: we are within what the peers keep (or cannot tell).
    Replay,
    /// Fetch checkpoint `id` from these peers (those that name it), in this order.
    Fetch { id: CheckpointId, from: Vec<AuthorityIndex> },
}

/// How far behind a validator must be for a checkpoint to be worth fetching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lag {
    /// At start: behind the checkpoint at all. One checkpoint (tens of MB) costs less than replaying the
    /// sub-DAGs up to it (a few MB of batches each under load, fetched and executed one by one): measured on
    /// the testnet, a restart 60 s behind took over 30 s to replay and 4 s to state-sync.
    Any,
    /// While running: behind the peers' retained history (the checkpoint before their latest), which replay
    /// can no longer reach; only then is stopping and starting again worth it.
    BeyondRetained,
}

/// The rule: among the checkpoints that peers with f+1 stake name, the highest; fetched if our last executed
/// index lags it by `lag`.
pub fn decide(committee: &Committee, executed: u64, offers: &[(AuthorityIndex, CheckpointId)], lag: Lag) -> Decision {
    let interval = committee.protocol().checkpoint_interval;
    let best = vouched(committee, offers)
        .into_iter()
        .rev()
        .find(|(id, (stake, _))| id.index > 0 && committee.is_valid(*stake));
    let Some((id, (_, from))) = best else { return Decision::Replay };
    let behind = match lag {
        Lag::Any => executed < id.index,
        Lag::BeyondRetained => executed < id.index.saturating_sub(interval),
    };
    if interval > 0 && behind {
        Decision::Fetch { id, from }
    } else {
        Decision::Replay
    }
}

/// Each distinct answer, with the stake of the peers that gave it and who they are (a peer counts once).
fn vouched<T: Ord + Clone>(
    committee: &Committee,
    answers: &[(AuthorityIndex, T)],
) -> BTreeMap<T, (Stake, Vec<AuthorityIndex>)> {
    let mut vouched: BTreeMap<T, (Stake, Vec<AuthorityIndex>)> = BTreeMap::new();
    for (peer, answer) in answers {
        let entry = vouched.entry(answer.clone()).or_default();
        if !entry.1.contains(peer) {
            entry.0 += committee.stake(*peer);
            entry.1.push(*peer);
        }
    }
    vouched
}

/// The answer that peers with f+1 stake gave alike: at least one honest validator's, so the truth where honest
/// validators cannot differ.
pub fn agreed<T: Ord + Clone>(committee: &Committee, answers: &[(AuthorityIndex, T)]) -> Option<T> {
    vouched(committee, answers).into_iter().find(|(_, (stake, _))| committee.is_valid(*stake)).map(|(answer, _)| answer)
}

#[derive(Debug, thiserror::Error)]
pub enum StateSyncError {
    #[error("cannot read or write the store: {0}")]
    Store(#[from] StoreError),
}

/// Brings `store` within replay distance of the peers, fetching a checkpoint if it is not. Returns the
/// checkpoint installed, if one was. Gives up (and leaves the store as it was) when fewer than f+1 peers
/// answer or no vouching peer serves the bytes, after [`ATTEMPTS`] tries.
pub async fn sync_state(
    network: &Endpoint<PrimaryMessage>,
    me: AuthorityIndex,
    committee: &Committee,
    store: &Store,
) -> Result<Option<CheckpointId>, StateSyncError> {
    if committee.protocol().checkpoint_interval == 0 {
        return Ok(None);
    }
    let executed = store.state.execution_progress()?.map_or(0, |p| p.last_executed_index);
    for attempt in 1..=ATTEMPTS {
        let offers = ask_latest(network, me, committee).await;
        let Decision::Fetch { id, from } = decide(committee, executed, &offers, Lag::Any) else { return Ok(None) };
        info!(executed, checkpoint = id.index, digest = %id.digest, ?from, attempt, "state sync: fetching a checkpoint");
        for peer in from {
            let (checkpoint, bytes) = match fetch(network, peer, id).await.and_then(|bytes| decode(id, bytes)) {
                Ok(decoded) => decoded,
                Err(reason) => {
                    warn!(%peer, reason, "state sync: no valid checkpoint");
                    continue;
                }
            };
            let Some(lost) = uncommitted_own_batches(network, me, committee, store, &checkpoint.consensus).await?
            else {
                warn!(checkpoint = id.index, "state sync: the peers cannot tell which of our batches the sub-DAGs we missed committed; not installing it");
                return Ok(None);
            };
            install(store, &checkpoint, &bytes, &lost)?;
            info!(checkpoint = id.index, bytes = bytes.len(), %peer, proposed_again = lost.len(), "state sync: checkpoint installed");
            return Ok(Some(id));
        }
    }
    warn!(executed, "state sync: no checkpoint could be fetched; replaying from the store");
    Ok(None)
}

/// Every peer's latest checkpoint id, from those that answer in time.
async fn ask_latest(
    network: &Endpoint<PrimaryMessage>,
    me: AuthorityIndex,
    committee: &Committee,
) -> Vec<(AuthorityIndex, CheckpointId)> {
    let request = PrimaryMessage::CheckpointRequest { index: 0, offset: 0 };
    ask_everyone(network, me, committee, request, |answer| match answer {
        PrimaryMessage::CheckpointPart { latest, .. } => Some(latest),
        _ => None,
    })
    .await
}

/// `request` to every peer at once; the answers that `read` takes, from those that answer in time, in peer
/// order (answers arrive in any order; a decision must not depend on it).
async fn ask_everyone<T: Send + 'static>(
    network: &Endpoint<PrimaryMessage>,
    me: AuthorityIndex,
    committee: &Committee,
    request: PrimaryMessage,
    read: fn(PrimaryMessage) -> Option<T>,
) -> Vec<(AuthorityIndex, T)> {
    let mut requests = JoinSet::new();
    for (peer, _) in committee.authorities().filter(|(peer, _)| *peer != me) {
        let (network, request) = (network.clone(), request.clone());
        requests.spawn(async move {
            let answer = network.request(peer, &request, REQUEST_TIMEOUT).await.ok()?;
            read(answer).map(|answer| (peer, answer))
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = requests.join_next().await {
        answers.extend(answer.ok().flatten());
    }
    answers.sort_by_key(|(peer, _)| *peer);
    answers
}

/// Our batches that the sub-DAGs up to the checkpoint (whose consensus state is `checkpoint`) never committed
/// and never will, to propose again once it is installed: those of our [`uncertain_batches`] that no sub-DAG
/// we missed carries, as peers with f+1 stake agree. None when they could not tell after [`ATTEMPTS`] tries.
async fn uncommitted_own_batches(
    network: &Endpoint<PrimaryMessage>,
    me: AuthorityIndex,
    committee: &Committee,
    store: &Store,
    checkpoint: &ConsensusState,
) -> Result<Option<Vec<(BatchDigest, WorkerId)>>, StoreError> {
    let uncertain = uncertain_batches(store, me, committee.protocol().gc_depth, checkpoint)?;
    let first_missed = store.state.consensus_state()?.unwrap_or_default().last_sub_dag_index + 1;
    let mut committed = BTreeSet::new();
    for chunk in uncertain.chunks(BATCHES_PER_QUERY) {
        let batches: Vec<BatchDigest> = chunk.iter().map(|(digest, _)| *digest).collect();
        let mut from = first_missed;
        while from <= checkpoint.last_sub_dag_index {
            let through = checkpoint.last_sub_dag_index.min(from + SUB_DAGS_PER_QUERY - 1);
            let Some(found) = ask_committed(network, me, committee, from, through, &batches).await else {
                return Ok(None);
            };
            committed.extend(found);
            from = through + 1;
        }
    }
    Ok(Some(uncertain.into_iter().filter(|(digest, _)| !committed.contains(digest)).collect()))
}

/// Which of `batches` sub-DAGs `from..=through` commit, as peers with f+1 stake that read them all say alike.
async fn ask_committed(
    network: &Endpoint<PrimaryMessage>,
    me: AuthorityIndex,
    committee: &Committee,
    from: u64,
    through: u64,
    batches: &[BatchDigest],
) -> Option<Vec<BatchDigest>> {
    for attempt in 1..=ATTEMPTS {
        let request = PrimaryMessage::CommittedRequest { from, through, batches: batches.to_vec() };
        let answers = ask_everyone(network, me, committee, request, |answer| match answer {
            PrimaryMessage::CommittedBatches { from, through, batches } => Some(((from, through), batches)),
            _ => None,
        })
        .await;
        // Only a peer that read the whole range knows; each answers about what we asked alone.
        let asked: BTreeSet<&BatchDigest> = batches.iter().collect();
        let complete: Vec<(AuthorityIndex, Vec<BatchDigest>)> = answers
            .into_iter()
            .filter(|(_, (range, _))| *range == (from, through))
            .map(|(peer, (_, found))| (peer, found.into_iter().filter(|d| asked.contains(d)).collect()))
            .collect();
        if let Some(found) = agreed(committee, &complete) {
            return Some(found);
        }
        warn!(
            from,
            through,
            answers = complete.len(),
            attempt,
            "state sync: no f+1 peers agree on the sub-DAGs we missed"
        );
    }
    None
}

/// The batches of our certificates that nobody here judged: those between our consensus's horizon and the
/// checkpoint's that our consensus had not committed (and not in a pending proposal already). Whether the
/// sub-DAGs we missed committed them only the peers can tell. Our certificates above the checkpoint's
/// horizon are left to consensus after the restart, which reports those it skips.
fn uncertain_batches(
    store: &Store,
    me: AuthorityIndex,
    gc_depth: u64,
    checkpoint: &ConsensusState,
) -> Result<Vec<(BatchDigest, WorkerId)>, StoreError> {
    let ours = store.state.consensus_state()?.unwrap_or_default();
    if checkpoint.last_sub_dag_index <= ours.last_sub_dag_index {
        return Ok(Vec::new());
    }
    let committed: BTreeSet<_> = ours.committed.iter().copied().collect();
    let mut known: BTreeSet<BatchDigest> = ours.committed_batches.iter().map(|(digest, _)| *digest).collect();
    known.extend(store.state.pending_proposals()?.into_iter().map(|(digest, _)| digest));
    let top = gc_round(checkpoint.last_leader_round, gc_depth).min(store.certificates.highest_round()?);
    let mut uncertain = Vec::new();
    for round in gc_round(ours.last_leader_round, gc_depth) + 1..=top {
        if committed.contains(&(round, me)) {
            continue;
        }
        if let Some(certificate) = store.certificates.get_by_round_author(round, me)? {
            uncertain.extend(certificate.header.payload().iter().filter(|(digest, _)| known.insert(*digest)).copied());
        }
    }
    Ok(uncertain)
}

/// Checkpoint `id`'s bytes from `peer`, part by part, checked against the id's digest.
async fn fetch(network: &Endpoint<PrimaryMessage>, peer: AuthorityIndex, id: CheckpointId) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    loop {
        let request = PrimaryMessage::CheckpointRequest { index: id.index, offset: bytes.len() as u64 };
        let answer = network.request(peer, &request, REQUEST_TIMEOUT).await.map_err(|e| e.to_string())?;
        let PrimaryMessage::CheckpointPart { latest, total, offset, bytes: part } = answer else {
            return Err("answered with another message".into());
        };
        if latest != id {
            return Err(format!("now serves checkpoint {} instead", latest.index));
        }
        if total > MAX_CHECKPOINT_BYTES {
            return Err(format!("claims a checkpoint of {total} bytes"));
        }
        if offset != bytes.len() as u64 || part.is_empty() || offset + part.len() as u64 > total {
            return Err(format!("sent a part that does not fit ({} bytes at {offset} of {total})", part.len()));
        }
        bytes.extend_from_slice(&part);
        if bytes.len() as u64 == total {
            break;
        }
    }
    if checkpoint_digest(&bytes) != id.digest {
        return Err("the bytes do not match the digest f+1 validators published".into());
    }
    Ok(bytes)
}

/// The checkpoint that `bytes` encode, if it is checkpoint `id`.
fn decode(id: CheckpointId, bytes: Vec<u8>) -> Result<(Checkpoint, Vec<u8>), String> {
    let checkpoint: Checkpoint = mako_types::decode(&bytes).map_err(|e| format!("undecodable: {e}"))?;
    if checkpoint.index != id.index || checkpoint.consensus.last_sub_dag_index != id.index {
        return Err(format!(
            "checkpoint {} (consensus at {}) named {}",
            checkpoint.index, checkpoint.consensus.last_sub_dag_index, id.index
        ));
    }
    Ok((checkpoint, bytes))
}

/// Writes `checkpoint` (encoded as `bytes`) into the store, in one synced write, as if this validator had taken
/// it, with `lost`, our batches it never committed, as pending proposals.
fn install(
    store: &Store,
    checkpoint: &Checkpoint,
    bytes: &[u8],
    lost: &[(BatchDigest, WorkerId)],
) -> Result<(), StoreError> {
    let mut writes = store.write_set();
    writes.put_checkpoint_bytes(bytes);
    writes.put_block(&BlockRecord { index: checkpoint.index, root: checkpoint.root });
    writes.put_execution_progress(&ExecutionProgress {
        last_executed_index: checkpoint.index,
        state_root: checkpoint.root,
    });
    writes.put_consensus_state(&checkpoint.consensus);
    for (digest, worker) in lost {
        writes.put_pending_proposal(digest, *worker);
    }
    writes.commit(Durability::Synced)
}

#[cfg(test)]
mod tests {
    use mako_types::{Digest, ProtocolParameters};

    use super::*;

    fn committee(interval: u64) -> Committee {
        let protocol = ProtocolParameters { checkpoint_interval: interval, ..Default::default() };
        mako_mempool::test_dag::committee(4).with_protocol(protocol).unwrap()
    }

    fn id(index: u64, digest: u8) -> CheckpointId {
        CheckpointId { index, digest: Digest([digest; 32]) }
    }

    /// The adversary is one Byzantine peer naming a far-ahead checkpoint of its own, and two honest peers that
    /// have moved on at different times: only an id f+1 name is fetched, the highest such, and while running
    /// only when we are behind what the peers keep.
    #[test]
    fn a_checkpoint_is_fetched_only_when_f_plus_1_name_it_and_replay_cannot_reach() {
        let committee = committee(10);
        let decide =
            |committee: &Committee, executed, offers: &[_]| decide(committee, executed, offers, Lag::BeyondRetained);
        let (a, b, c) = (AuthorityIndex(1), AuthorityIndex(2), AuthorityIndex(3));
        // One peer alone, however far ahead, is never believed.
        assert_eq!(decide(&committee, 0, &[(a, id(90, 1)), (b, id(30, 2)), (c, id(20, 3))]), Decision::Replay);
        // The same id twice from one peer counts once.
        assert_eq!(decide(&committee, 0, &[(a, id(90, 1)), (a, id(90, 1))]), Decision::Replay);
        // Two honest peers agree on 30: fetched from them, not from the Byzantine one.
        let offers = [(a, id(90, 1)), (b, id(30, 2)), (c, id(30, 2))];
        assert_eq!(decide(&committee, 0, &offers), Decision::Fetch { id: id(30, 2), from: vec![b, c] });
        // Behind their previous checkpoint (20), replay would miss what they deleted; at it, it finds it all.
        assert_eq!(decide(&committee, 19, &offers), Decision::Fetch { id: id(30, 2), from: vec![b, c] });
        assert_eq!(decide(&committee, 20, &offers), Decision::Replay);
        // Two ids with f+1 each (honest peers at different checkpoints): the highest.
        let offers = [(a, id(40, 4)), (b, id(40, 4)), (c, id(30, 2)), (AuthorityIndex(0), id(30, 2))];
        assert_eq!(decide(&committee, 0, &offers), Decision::Fetch { id: id(40, 4), from: vec![a, b] });
        // A digest that differs splits the vote: no f+1 for either.
        assert_eq!(decide(&committee, 0, &[(b, id(30, 2)), (c, id(30, 9))]), Decision::Replay);
        // Without checkpoints there is nothing to fetch.
        assert_eq!(decide(&self::committee(0), 0, &[(b, id(30, 2)), (c, id(30, 2))]), Decision::Replay);
    }

    /// At start any newer checkpoint that f+1 name is fetched; one we reached is not.
    #[test]
    fn at_start_a_newer_checkpoint_is_fetched_rather_than_replayed() {
        let committee = committee(10);
        let (b, c) = (AuthorityIndex(2), AuthorityIndex(3));
        let offers = [(b, id(30, 2)), (c, id(30, 2))];
        assert_eq!(decide(&committee, 25, &offers, Lag::Any), Decision::Fetch { id: id(30, 2), from: vec![b, c] });
        assert_eq!(decide(&committee, 25, &offers, Lag::BeyondRetained), Decision::Replay);
        assert_eq!(decide(&committee, 30, &offers, Lag::Any), Decision::Replay);
    }

    fn batch(byte: u8) -> (BatchDigest, WorkerId) {
        (BatchDigest(mako_types::Digest([byte; 32])), 0)
    }

    /// The adversary is a validator that was partitioned, certified headers nobody else received, and jumps
    /// to a checkpoint far ahead: which of its batches must the peers be asked about? Those of its own
    /// certificates between its consensus's horizon (GC depth 5 below its last leader, round 10) and the
    /// checkpoint's (round 40 - 5), which its consensus had not committed, and which no pending proposal holds.
    #[test]
    fn the_peers_are_asked_about_our_certificates_that_nobody_here_judged() {
        let mut figure = mako_mempool::test_dag::HandDag::new(4);
        let me = 1;
        let everyone = [0, 1, 2, 3];
        for round in 1..=40 {
            for author in everyone {
                let payload = if author == me { vec![batch(round as u8)] } else { vec![] };
                figure.add_with_payload(round, author, &everyone, payload);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut writes = store.write_set();
        // We stored our certificates up to round 37 (we were partitioned after that).
        for certificate in figure.certificates.iter().filter(|c| c.round() <= 37) {
            writes.put_certificate(certificate);
        }
        let ours = ConsensusState {
            last_sub_dag_index: 4,
            last_leader_round: 10,
            committed: vec![(6, AuthorityIndex(me)), (7, AuthorityIndex(0))],
            committed_batches: vec![(batch(6).0, 6)],
            ..Default::default()
        };
        writes.put_consensus_state(&ours);
        writes.put_pending_proposal(&batch(9).0, 0); // requeued already: proposed again anyway
        writes.commit(Durability::Synced).unwrap();

        let checkpoint = ConsensusState { last_sub_dag_index: 20, last_leader_round: 40, ..Default::default() };
        let uncertain = uncertain_batches(&store, AuthorityIndex(me), 5, &checkpoint).unwrap();
        // Rounds 6..=35: not 6 (committed), not 9 (pending); 36 and 37 stay in the DAG after the restart.
        let expected: Vec<_> = (6..=35).filter(|r| ![6, 9].contains(r)).map(batch).collect();
        assert_eq!(uncertain, expected);

        // A checkpoint we had already reached leaves nothing to ask.
        let behind = ConsensusState { last_sub_dag_index: 4, last_leader_round: 10, ..Default::default() };
        assert_eq!(uncertain_batches(&store, AuthorityIndex(me), 5, &behind).unwrap(), vec![]);
    }

    /// A Byzantine peer that says "all committed" (we would drop batches we must propose again) or "none" (we
    /// would commit a batch twice) is one voice: only an answer f+1 give alike is believed.
    #[test]
    fn an_answer_is_believed_only_when_f_plus_1_give_it_alike() {
        let committee = committee(10);
        let (a, b, c) = (AuthorityIndex(1), AuthorityIndex(2), AuthorityIndex(3));
        let (all, some) = (vec![batch(1).0, batch(2).0], vec![batch(2).0]);
        assert_eq!(agreed(&committee, &[(a, all.clone())]), None);
        assert_eq!(agreed(&committee, &[(a, all.clone()), (a, all.clone())]), None, "one peer counts once");
        assert_eq!(agreed(&committee, &[(a, all.clone()), (b, some.clone())]), None);
        assert_eq!(agreed(&committee, &[(a, all), (b, some.clone()), (c, some.clone())]), Some(some));
    }
}
