//! A vote: a validator's signature on a header's digest (DESIGN.md §3). Votes for one header are summed
//! into a certificate's aggregate signature, so the signed message is the header digest alone.

use std::collections::BTreeMap;

use crate::committee::{AuthorityIndex, Committee};
use crate::crypto::{BlsKeyPair, BlsSignature, Domain, HashedMessage, SignatureBytes};
use crate::digest::HeaderDigest;
use crate::error::DagError;
use crate::header::Header;
use crate::Round;

#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Vote {
    pub header_digest: HeaderDigest,
    /// The header's round and author: routing information, covered by the digest.
    pub round: Round,
    pub header_author: AuthorityIndex,
    pub voter: AuthorityIndex,
    pub signature: SignatureBytes,
}

impl Vote {
    pub fn new(header: &Header, voter: AuthorityIndex, key: &BlsKeyPair) -> Self {
        Self::new_hashed(header, &Self::message(&header.digest()), voter, key)
    }

    /// What a vote for the header of `digest` signs, hashed.
    pub fn message(digest: &HeaderDigest) -> HashedMessage {
        HashedMessage::new(Domain::Vote, digest.as_bytes())
    }

    /// A vote whose message (the header digest's, [`Self::message`]) is hashed already.
    pub fn new_hashed(header: &Header, message: &HashedMessage, voter: AuthorityIndex, key: &BlsKeyPair) -> Self {
        debug_assert_eq!(message.message(), header.digest().as_bytes());
        Self {
            header_digest: header.digest(),
            round: header.round(),
            header_author: header.author(),
            voter,
            signature: key.sign_hashed(message).to_bytes(),
        }
    }

    /// Checks the voter's signature on the header digest.
    pub fn verify(&self, committee: &Committee) -> Result<(), DagError> {
        let voter = committee.authority(self.voter).ok_or(DagError::UnknownAuthority(self.voter))?;
        let bad = || DagError::BadSignature {
            kind: "vote",
            digest: self.header_digest.to_string(),
            author: self.voter,
            round: self.round,
        };
        let signature = BlsSignature::from_bytes(&self.signature).map_err(|_| bad())?;
        voter.bls_key.verify(Domain::Vote, self.header_digest.as_bytes(), &signature).map_err(|_| bad())
    }
}

/// The vote messages a validator hashed to sign its votes, kept until garbage collection: the certificate of
/// a header we voted for (ours, from our aggregator; anyone's, from the network) is checked against the same
/// hash, so each header's message is hashed to the curve once (DESIGN.md §2). Bounded as our votes are: one
/// header per author and round above the GC round.
#[derive(Default)]
pub struct VoteMessages {
    by_header: BTreeMap<HeaderDigest, (Round, HashedMessage)>,
}

impl VoteMessages {
    /// The message of `header`'s votes, hashed now if it was not before.
    pub fn of(&mut self, header: &Header) -> &HashedMessage {
        let digest = header.digest();
        &self.by_header.entry(digest).or_insert_with(|| (header.round(), Vote::message(&digest))).1
    }

    /// The message of the header of `digest`, if we hashed it.
    pub fn get(&self, digest: &HeaderDigest) -> Option<&HashedMessage> {
        self.by_header.get(digest).map(|(_, message)| message)
    }

    /// Forgets the messages of headers of `round` and below.
    pub fn forget_through(&mut self, round: Round) {
        self.by_header.retain(|_, (r, _)| *r > round);
    }

    pub fn len(&self) -> usize {
        self.by_header.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_header.is_empty()
    }
}
