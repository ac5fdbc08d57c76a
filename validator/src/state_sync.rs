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

use std::collections::BTreeMap;
use std::time::Duration;

use mako_execution::pipeline::checkpoint_digest;
use mako_mempool::messages::PrimaryMessage;
use mako_network::Endpoint;
use mako_storage::{BlockRecord, Checkpoint, Durability, ExecutionProgress, Store, StoreError};
use mako_types::{AuthorityIndex, CheckpointId, Committee, Stake};
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
    let mut vouched: BTreeMap<CheckpointId, (Stake, Vec<AuthorityIndex>)> = BTreeMap::new();
    for (peer, id) in offers {
        let entry = vouched.entry(*id).or_default();
        if !entry.1.contains(peer) {
            entry.0 += committee.stake(*peer);
            entry.1.push(*peer);
        }
    }
    let best = vouched.into_iter().rev().find(|(id, (stake, _))| id.index > 0 && committee.is_valid(*stake));
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
            match fetch(network, peer, id).await {
                Ok(bytes) => match install(store, id, &bytes) {
                    Ok(()) => {
                        info!(checkpoint = id.index, bytes = bytes.len(), %peer, "state sync: checkpoint installed");
                        return Ok(Some(id));
                    }
                    Err(InstallError::Store(error)) => return Err(error.into()),
                    Err(InstallError::Invalid(reason)) => warn!(%peer, reason, "state sync: bad checkpoint"),
                },
                Err(reason) => warn!(%peer, reason, "state sync: fetch failed"),
            }
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
    let mut requests = JoinSet::new();
    for (peer, _) in committee.authorities().filter(|(peer, _)| *peer != me) {
        let network = network.clone();
        requests.spawn(async move {
            let request = PrimaryMessage::CheckpointRequest { index: 0, offset: 0 };
            match network.request(peer, &request, REQUEST_TIMEOUT).await {
                Ok(PrimaryMessage::CheckpointPart { latest, .. }) => Some((peer, latest)),
                _ => None,
            }
        });
    }
    let mut offers = Vec::new();
    while let Some(answer) = requests.join_next().await {
        offers.extend(answer.ok().flatten());
    }
    offers.sort(); // answers arrive in any order; the decision must not depend on it
    offers
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

enum InstallError {
    Store(StoreError),
    Invalid(String),
}

/// Writes checkpoint `id` into the store, in one synced write, as if this validator had taken it.
fn install(store: &Store, id: CheckpointId, bytes: &[u8]) -> Result<(), InstallError> {
    let checkpoint: Checkpoint =
        mako_types::decode(bytes).map_err(|e| InstallError::Invalid(format!("undecodable: {e}")))?;
    if checkpoint.index != id.index || checkpoint.consensus.last_sub_dag_index != id.index {
        return Err(InstallError::Invalid(format!(
            "checkpoint {} (consensus at {}) named {}",
            checkpoint.index, checkpoint.consensus.last_sub_dag_index, id.index
        )));
    }
    let mut writes = store.write_set();
    writes.put_checkpoint_bytes(bytes);
    writes.put_block(&BlockRecord { index: checkpoint.index, root: checkpoint.root, write_set: Vec::new() });
    writes.put_execution_progress(&ExecutionProgress {
        last_executed_index: checkpoint.index,
        state_root: checkpoint.root,
    });
    writes.put_consensus_state(&checkpoint.consensus);
    writes.commit(Durability::Synced).map_err(InstallError::Store)
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
}
