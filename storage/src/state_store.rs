//! Small state records: the last vote per author (so a restarted validator never votes twice in one round,
//! DESIGN.md §9.7), the consensus state written with every commit (§4), and the execution progress (§5).

use fjall::Keyspace;
use mako_types::{AuthorityIndex, BatchDigest, CertificateDigest, Digest, Header, HeaderDigest, Round, WorkerId};

use crate::{decode_value, StoreError};

/// The header this validator last voted for, per author.
#[derive(Clone, Copy, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct LastVote {
    pub round: Round,
    pub header_digest: HeaderDigest,
}

/// What consensus needs to resume, written with every commit.
#[derive(Clone, PartialEq, Eq, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ConsensusState {
    pub last_sub_dag_index: u64,
    pub last_leader_round: Round,
    /// The committed certificates above the GC round, as (round, author): committed means never again.
    pub committed: Vec<(Round, AuthorityIndex)>,
    /// The leader schedule's own state (a reputation schedule's scores and table).
    pub schedule: Vec<u64>,
    /// The delivered batches above the GC round, with the round of the certificate that delivered each.
    pub committed_batches: Vec<(BatchDigest, Round)>,
}

/// One committed sub-DAG, by digests: enough to emit it again after a restart.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SubDagRecord {
    pub index: u64,
    pub leader: CertificateDigest,
    pub certificates: Vec<CertificateDigest>,
    /// The batches it delivers: (digest, worker id, author of the certificate that carried it).
    pub batches: Vec<(BatchDigest, WorkerId, AuthorityIndex)>,
}

/// One executed block in the block log: the state root after it. A restart executes the blocks after the latest
/// checkpoint again, and each must give the root logged here (`mako_execution::pipeline`).
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BlockRecord {
    pub index: u64,
    pub root: Digest,
}

/// The whole execution state after block `index`, whose root is `root` (encoded by execution), and the
/// consensus state after sub-DAG `index`: a restart loads it and executes again only the blocks after it, and a
/// validator too far behind to replay fetches a peer's and resumes from it (state sync). Every honest validator takes the same checkpoint at the same index: its encoding is canonical,
/// and the blake3 digest of that encoding is the id validators publish in their headers.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Checkpoint {
    pub index: u64,
    pub root: Digest,
    pub state: Vec<u8>,
    pub consensus: ConsensusState,
}

/// The last executed sub-DAG index and the state root after it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ExecutionProgress {
    pub last_executed_index: u64,
    pub state_root: Digest,
}

pub(crate) const CONSENSUS_KEY: &[u8] = b"consensus";
pub(crate) const LAST_HEADER_KEY: &[u8] = b"last_header";
pub(crate) const EXECUTION_KEY: &[u8] = b"execution";
pub(crate) const CHECKPOINT_KEY: &[u8] = b"checkpoint";

/// `consensus_at ‖ index`: the consensus state right after sub-DAG `index`, kept for checkpoint indices
/// until the checkpoint is taken.
pub(crate) fn consensus_snapshot_key(index: u64) -> [u8; 20] {
    let mut key = *b"consensus_at\0\0\0\0\0\0\0\0";
    key[12..].copy_from_slice(&index.to_be_bytes());
    key
}

pub(crate) fn sub_dag_key(index: u64) -> [u8; 15] {
    let mut key = *b"sub_dag\0\0\0\0\0\0\0\0";
    key[7..].copy_from_slice(&index.to_be_bytes());
    key
}

pub(crate) fn block_key(index: u64) -> [u8; 13] {
    let mut key = *b"block\0\0\0\0\0\0\0\0";
    key[5..].copy_from_slice(&index.to_be_bytes());
    key
}

const PROPOSAL_PREFIX: &[u8] = b"proposal";

/// `proposal ‖ batch digest`: one of our batches a quorum holds, not yet in a certificate of ours.
pub(crate) fn proposal_key(digest: &BatchDigest) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..8].copy_from_slice(PROPOSAL_PREFIX);
    key[8..].copy_from_slice(digest.as_bytes());
    key
}

pub(crate) fn last_vote_key(author: AuthorityIndex) -> [u8; 11] {
    let mut key = *b"last_vote\0\0";
    key[9..].copy_from_slice(&author.0.to_be_bytes());
    key
}

#[derive(Clone)]
pub struct StateStore {
    keyspace: Keyspace,
}

impl StateStore {
    pub(crate) fn new(keyspace: Keyspace) -> Self {
        Self { keyspace }
    }

    pub(crate) fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }

    pub fn last_vote(&self, author: AuthorityIndex) -> Result<Option<LastVote>, StoreError> {
        self.read(&last_vote_key(author))
    }

    /// Our batches that a quorum holds and no certificate of ours carries yet (DESIGN.md §9.3): what a
    /// restarted primary proposes again, in digest order.
    pub fn pending_proposals(&self) -> Result<Vec<(BatchDigest, WorkerId)>, StoreError> {
        let mut proposals = Vec::new();
        for guard in self.keyspace.prefix(PROPOSAL_PREFIX) {
            let (key, value) = guard.into_inner().map_err(StoreError::fjall("scan pending proposals"))?;
            let corrupt = || StoreError::Corrupt {
                store: "state",
                key: key.to_vec(),
                reason: "a pending proposal is not a 32-byte digest and a 4-byte worker id".into(),
            };
            let digest: [u8; 32] =
                key.get(PROPOSAL_PREFIX.len()..).and_then(|d| d.try_into().ok()).ok_or_else(corrupt)?;
            let worker: [u8; 4] = (*value).try_into().map_err(|_| corrupt())?;
            proposals.push((BatchDigest(Digest(digest)), WorkerId::from_le_bytes(worker)));
        }
        Ok(proposals)
    }

    /// The last header this validator proposed, so that after a restart it re-sends that header instead
    /// of proposing a different one for the same round.
    pub fn last_header(&self) -> Result<Option<Header>, StoreError> {
        self.read(LAST_HEADER_KEY)
    }

    pub fn consensus_state(&self) -> Result<Option<ConsensusState>, StoreError> {
        self.read(CONSENSUS_KEY)
    }

    /// The record of committed sub-DAG `index`.
    pub fn sub_dag(&self, index: u64) -> Result<Option<SubDagRecord>, StoreError> {
        self.read(&sub_dag_key(index))
    }

    /// Executed block `index` from the block log.
    pub fn block(&self, index: u64) -> Result<Option<BlockRecord>, StoreError> {
        self.read(&block_key(index))
    }

    pub fn execution_progress(&self) -> Result<Option<ExecutionProgress>, StoreError> {
        self.read(EXECUTION_KEY)
    }

    /// The latest checkpoint of the execution state.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.read(CHECKPOINT_KEY)
    }

    /// The latest checkpoint as stored: the canonical bytes its id digests, which state sync serves.
    pub fn checkpoint_bytes(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self.keyspace.get(CHECKPOINT_KEY).map_err(StoreError::fjall("read state"))?;
        Ok(value.map(|bytes| bytes.to_vec()))
    }

    /// The consensus state right after sub-DAG `index`, where `index` is a checkpoint index.
    pub fn consensus_snapshot(&self, index: u64) -> Result<Option<ConsensusState>, StoreError> {
        self.read(&consensus_snapshot_key(index))
    }

    fn read<T>(&self, key: &[u8]) -> Result<Option<T>, StoreError>
    where
        T: rkyv::Archive,
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
            + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        let value = self.keyspace.get(key).map_err(StoreError::fjall("read state"))?;
        value.map(|bytes| decode_value("state", key, &bytes)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use crate::{Durability, Store};

    use super::*;

    #[test]
    fn records_survive_reopen_and_commit_together() {
        let dir = tempfile::tempdir().unwrap();
        let vote = LastVote { round: 7, header_digest: HeaderDigest(Digest([3; 32])) };
        let consensus = ConsensusState {
            last_sub_dag_index: 3,
            last_leader_round: 6,
            committed: vec![(5, AuthorityIndex(1)), (6, AuthorityIndex(2))],
            schedule: vec![1, 2],
            committed_batches: vec![(BatchDigest(Digest([4; 32])), 5)],
        };
        let batches = vec![(BatchDigest(Digest([4; 32])), 0, AuthorityIndex(1))];
        let record = SubDagRecord { index: 3, leader: CertificateDigest::default(), certificates: vec![], batches };
        let execution = ExecutionProgress { last_executed_index: 2, state_root: Digest([9; 32]) };
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.state.consensus_state().unwrap(), None);
            let mut set = store.write_set();
            set.put_last_vote(AuthorityIndex(2), &vote);
            set.put_consensus_state(&consensus);
            set.put_sub_dag(&record);
            set.put_block(&BlockRecord { index: 2, root: Digest([7; 32]) });
            set.put_execution_progress(&execution);
            set.commit(Durability::Synced).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.state.last_vote(AuthorityIndex(2)).unwrap(), Some(vote));
        assert_eq!(store.state.last_vote(AuthorityIndex(1)).unwrap(), None);
        assert_eq!(store.state.consensus_state().unwrap(), Some(consensus));
        assert_eq!(store.state.sub_dag(3).unwrap(), Some(record));
        assert_eq!(store.state.sub_dag(2).unwrap(), None);
        assert_eq!(store.state.block(2).unwrap().unwrap().root, Digest([7; 32]));
        assert_eq!(store.state.execution_progress().unwrap(), Some(execution));
    }

    #[test]
    fn undecodable_record_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.state.keyspace().insert(CONSENSUS_KEY, &[0xffu8; 3][..]).unwrap();
        let err = store.state.consensus_state().unwrap_err();
        assert!(err.to_string().contains("corrupt value in state"), "{err}");
    }

    #[test]
    fn pending_proposals_survive_reopen_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let digest = |b: u8| BatchDigest(Digest([b; 32]));
        {
            let store = Store::open(dir.path()).unwrap();
            let mut writes = store.write_set();
            writes.put_pending_proposal(&digest(9), 1);
            writes.put_pending_proposal(&digest(3), 0);
            writes.put_pending_proposal(&digest(5), 2);
            writes.commit(Durability::Buffered).unwrap();
            let mut writes = store.write_set();
            writes.remove_pending_proposal(&digest(5));
            writes.commit(Durability::Buffered).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.state.pending_proposals().unwrap(), vec![(digest(3), 0), (digest(9), 1)]);
        store.state.keyspace().insert(proposal_key(&digest(7)), &[1u8][..]).unwrap();
        assert!(store.state.pending_proposals().is_err(), "a 1-byte worker id is corrupt");
    }
}
