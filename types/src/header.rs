//! A primary's proposal for a round (DESIGN.md §3): the batches it includes, the quorum of previous-round
//! certificates it builds on (strong parents), and older certificates that nothing references yet (weak
//! parents, Bullshark's weak links: they bring a certificate that arrived too late for the next round into
//! some anchor's history, so its batches are committed; DESIGN.md §9.3).
//!
//! A header carries no signature of its own. It reaches a voter only from its author, over a connection
//! authenticated by the author's pinned network key (a header whose author is not the sender is refused as
//! relayed), and what third parties check is the certificate: the quorum's aggregate signature over the
//! header's digest, which covers every field. A header signature would cost the author a signing and every
//! voter a verification per round (about 9 ms of a validator's CPU per round at n = 4) and prove nothing the
//! channel and the certificate do not.

use crate::committee::{AuthorityIndex, Committee, WorkerId};
use crate::digest::{context, BatchDigest, CertificateDigest, Digest, HeaderDigest};
use crate::error::DagError;
use crate::Round;

/// Most batch digests one header carries: the proposer's bound, and the voters' (a longer payload is refused
/// before any cryptography).
pub const MAX_HEADER_PAYLOAD: usize = 1_000;

/// The author's latest executed sub-DAG and the state root after it (DESIGN.md §5), and its latest checkpoint:
/// published in headers so that a node whose root disagrees with a quorum's finds out, and so that a node too
/// far behind to replay knows which checkpoint to fetch (state sync, DESIGN.md §5).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ExecutedState {
    pub index: u64,
    pub root: Digest,
    pub checkpoint: CheckpointId,
}

/// A checkpoint of the execution and consensus state after sub-DAG `index`, named by the blake3 digest of its
/// canonical bytes. Every honest validator takes the same checkpoint at the same index (the interval is a
/// protocol parameter), so f+1 validators naming the same id vouch for its bytes. Index 0: none yet.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct CheckpointId {
    pub index: u64,
    pub digest: Digest,
}

/// What a header's digest covers, and what its voters sign (through the digest).
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct HeaderContent {
    pub author: AuthorityIndex,
    pub round: Round,
    pub payload: Vec<(BatchDigest, WorkerId)>,
    /// Strong parents: certificates of round `round - 1`, a quorum of stake.
    pub parents: Vec<CertificateDigest>,
    /// Weak parents: certificates of rounds below `round - 1`, each with its round (a receiver beyond that
    /// round's garbage collection can then tell it need not fetch them).
    pub weak_parents: Vec<(Round, CertificateDigest)>,
    pub executed: ExecutedState,
}

#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Header {
    pub content: HeaderContent,
}

impl Header {
    /// Builds a header that reports no execution yet (tests, and validators that do not execute).
    pub fn new(
        author: AuthorityIndex,
        round: Round,
        payload: Vec<(BatchDigest, WorkerId)>,
        parents: Vec<CertificateDigest>,
    ) -> Self {
        let content = HeaderContent {
            author,
            round,
            payload,
            parents,
            weak_parents: Vec::new(),
            executed: ExecutedState::default(),
        };
        Self::from_content(content)
    }

    /// The header of `content`, parents sorted so that a header has one canonical form.
    pub fn from_content(mut content: HeaderContent) -> Self {
        content.parents.sort();
        content.weak_parents.sort();
        Self { content }
    }

    pub fn executed(&self) -> ExecutedState {
        self.content.executed
    }

    pub fn author(&self) -> AuthorityIndex {
        self.content.author
    }

    pub fn round(&self) -> Round {
        self.content.round
    }

    pub fn payload(&self) -> &[(BatchDigest, WorkerId)] {
        &self.content.payload
    }

    /// The strong parents (round - 1).
    pub fn parents(&self) -> &[CertificateDigest] {
        &self.content.parents
    }

    /// The weak parents (older rounds), with their rounds.
    pub fn weak_parents(&self) -> &[(Round, CertificateDigest)] {
        &self.content.weak_parents
    }

    /// Strong and weak parents: every certificate this header's causal history goes through.
    pub fn all_parents(&self) -> impl Iterator<Item = &CertificateDigest> {
        self.content.parents.iter().chain(self.content.weak_parents.iter().map(|(_, digest)| digest))
    }

    pub fn digest(&self) -> HeaderDigest {
        self.content.digest()
    }

    /// The header's lists within their bounds, checked before any cryptography (DESIGN.md §9.9): at most
    /// [`MAX_HEADER_PAYLOAD`] batches and none twice (a batch is committed once, §9.2); at most one strong and
    /// one weak parent per validator.
    pub fn check_bounds(&self, committee: &Committee) -> Result<(), DagError> {
        let (author, round) = (self.author(), self.round());
        let oversized = |field, len, max| DagError::OversizedHeader { author, round, field, len, max };
        let content = &self.content;
        if content.payload.len() > MAX_HEADER_PAYLOAD {
            return Err(oversized("batches", content.payload.len(), MAX_HEADER_PAYLOAD));
        }
        if content.parents.len() > committee.size() {
            return Err(oversized("parents", content.parents.len(), committee.size()));
        }
        if content.weak_parents.len() > committee.size() {
            return Err(oversized("weak parents", content.weak_parents.len(), committee.size()));
        }
        let mut digests: Vec<&BatchDigest> = content.payload.iter().map(|(digest, _)| digest).collect();
        digests.sort_unstable();
        if let Some(pair) = digests.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(DagError::DuplicateBatch { author, round, digest: pair[0].to_string() });
        }
        Ok(())
    }
}

impl HeaderContent {
    pub fn digest(&self) -> HeaderDigest {
        HeaderDigest(Digest::of(context::HEADER, &[&crate::encode(self)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_covers_every_field_and_parent_order_does_not_matter() {
        let parents = vec![CertificateDigest(Digest([2; 32])), CertificateDigest(Digest([1; 32]))];
        let header = Header::new(AuthorityIndex(1), 3, vec![(BatchDigest::default(), 0)], parents.clone());
        let reversed =
            Header::new(AuthorityIndex(1), 3, vec![(BatchDigest::default(), 0)], parents.into_iter().rev().collect());
        assert_eq!(header.digest(), reversed.digest());
        let changed: [fn(&mut HeaderContent); 6] = [
            |c| c.author = AuthorityIndex(2),
            |c| c.round = 4,
            |c| c.payload.push((BatchDigest(Digest([9; 32])), 0)),
            |c| c.parents.truncate(1),
            |c| c.weak_parents.push((1, CertificateDigest(Digest([3; 32])))),
            |c| c.executed.index = 1,
        ];
        for change in changed {
            let mut content = header.content.clone();
            change(&mut content);
            assert_ne!(content.digest(), header.digest());
        }
    }
}
