//! The errors of mako-types, one enum per concern. Each names what was wrong and with what.

use crate::{AuthorityIndex, Round};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("invalid hex: {0}")]
    Hex(String),
    #[error("expected {expected} bytes, got {got}")]
    Length { expected: usize, got: usize },
    #[error("bytes are not a valid {0}")]
    InvalidPoint(&'static str),
    #[error("key file {path}: {reason}")]
    File { path: String, reason: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("invalid signature under domain {domain}")]
    InvalidSignature { domain: &'static str },
    #[error("invalid aggregate signature under domain {domain} ({signers} signers)")]
    InvalidAggregate { domain: &'static str, signers: usize },
    #[error("batch verification of {items} items failed")]
    InvalidBatch { items: usize },
    #[error("nothing to aggregate")]
    Empty,
    #[error("BLS and stand-in signatures mixed in one aggregate")]
    MixedSchemes,
    #[error(transparent)]
    Key(#[from] KeyError),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommitteeError {
    #[error("committee is empty")]
    Empty,
    #[error("committee has {0} validators; at most {max} are supported", max = u16::MAX)]
    TooLarge(usize),
    #[error("validator {validator}: {field} is zero")]
    ZeroStake { validator: usize, field: &'static str },
    #[error("validator {validator}: {field} duplicates validator {other}'s")]
    Duplicate { validator: usize, other: usize, field: &'static str },
    #[error("validator {validator}: proof_of_possession does not verify for bls_public_key")]
    BadProofOfPossession { validator: usize },
    #[error("validator {validator}: {field}: {source}")]
    BadKey { validator: usize, field: &'static str, source: KeyError },
    #[error("validator {validator}: {field}: total stake overflows")]
    StakeOverflow { validator: usize, field: &'static str },
    #[error("committee file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("protocol parameter {field} {reason}")]
    Protocol { field: &'static str, reason: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("malformed {type_name} ({len} bytes): {reason}")]
    Malformed { type_name: &'static str, len: usize, reason: String },
}

/// Why a header, vote or certificate was rejected. Each variant is a counted reason in the mempool.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DagError {
    #[error("unknown authority {0}")]
    UnknownAuthority(AuthorityIndex),
    #[error("{kind} {digest} from {author} round {round} has a bad signature")]
    BadSignature { kind: &'static str, digest: String, author: AuthorityIndex, round: Round },
    #[error("certificate {digest} from {author} round {round} has {stake} stake, needs {quorum}")]
    BelowQuorum { digest: String, author: AuthorityIndex, round: Round, stake: u64, quorum: u64 },
    #[error("certificate {digest} signer bitmap has {bits} bits for a committee of {size}")]
    BadBitmap { digest: String, bits: usize, size: usize },
    #[error("genesis certificate {digest} from {author} is not this committee's genesis")]
    BadGenesis { digest: String, author: AuthorityIndex },
    #[error("{author} round {round}: conflicting certificates {first} and {second}")]
    Equivocation { author: AuthorityIndex, round: Round, first: String, second: String },
    #[error("{kind} from {author} round {round} is at or below the GC round {gc_round}")]
    BelowGc { kind: &'static str, author: AuthorityIndex, round: Round, gc_round: Round },
    #[error("header from {author} round {round}: parent {parent} is from round {parent_round}, expected {expected}")]
    ParentWrongRound { author: AuthorityIndex, round: Round, parent: String, parent_round: Round, expected: Round },
    #[error("header from {author} round {round}: parents carry {stake} stake, need {quorum}")]
    ParentsBelowQuorum { author: AuthorityIndex, round: Round, stake: u64, quorum: u64 },
    #[error("header from {author} round {round}: weak parent {parent}: {problem}")]
    BadWeakParent { author: AuthorityIndex, round: Round, parent: String, problem: String },
    #[error("header from {author} round {round}: two parents from {parent_author}")]
    DuplicateParent { author: AuthorityIndex, round: Round, parent_author: AuthorityIndex },
    #[error("header from {author} round {round}: already voted for {voted} at round {voted_round}")]
    AlreadyVoted { author: AuthorityIndex, round: Round, voted_round: Round, voted: String },
    #[error("header from {author} round {round}: payload names worker {worker}, which does not exist")]
    UnknownWorker { author: AuthorityIndex, round: Round, worker: u32 },
    #[error("header from {author} round {round}: round 0 is genesis, never proposed")]
    GenesisRound { author: AuthorityIndex, round: Round },
    #[error("header from {author} round {round}: {len} {field}, at most {max}")]
    OversizedHeader { author: AuthorityIndex, round: Round, field: &'static str, len: usize, max: usize },
    #[error("header from {author} round {round}: batch {digest} twice in its payload")]
    DuplicateBatch { author: AuthorityIndex, round: Round, digest: String },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl DagError {
    /// A short stable label, for counting rejections by reason.
    pub fn reason(&self) -> &'static str {
        match self {
            DagError::UnknownAuthority(_) => "unknown_authority",
            DagError::BadSignature { .. } => "bad_signature",
            DagError::BelowQuorum { .. } => "below_quorum",
            DagError::BadBitmap { .. } => "bad_bitmap",
            DagError::BadGenesis { .. } => "bad_genesis",
            DagError::Equivocation { .. } => "equivocation",
            DagError::BelowGc { .. } => "below_gc",
            DagError::ParentWrongRound { .. } => "parent_wrong_round",
            DagError::ParentsBelowQuorum { .. } => "parents_below_quorum",
            DagError::DuplicateParent { .. } => "duplicate_parent",
            DagError::BadWeakParent { .. } => "bad_weak_parent",
            DagError::AlreadyVoted { .. } => "already_voted",
            DagError::UnknownWorker { .. } => "unknown_worker",
            DagError::GenesisRound { .. } => "genesis_round",
            DagError::OversizedHeader { .. } => "oversized_header",
            DagError::DuplicateBatch { .. } => "duplicate_batch",
            DagError::Crypto(_) => "crypto",
        }
    }
}
