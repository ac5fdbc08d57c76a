//! A primary's proposal for a round (DESIGN.md §3): the batches it includes, the quorum of previous-round
//! certificates it builds on (strong parents), and older certificates that nothing references yet (weak
//! parents, Bullshark's weak links: they bring a certificate that arrived too late for the next round into
//! some anchor's history, so its batches are committed; DESIGN.md §9.3), signed by its author.

use crate::committee::{AuthorityIndex, Committee, WorkerId};
use crate::crypto::{BlsKeyPair, BlsSignature, Domain, SignatureBytes};
use crate::digest::{context, BatchDigest, CertificateDigest, Digest, HeaderDigest};
use crate::error::DagError;
use crate::Round;

/// Most batch digests one header carries: the proposer's bound, and the voters' (a longer payload is refused
/// before any cryptography).
pub const MAX_HEADER_PAYLOAD: usize = 1_000;

/// The author's latest executed sub-DAG and the state root after it (DESIGN.md §5): published in headers so
/// that a node whose root disagrees with a quorum's finds out.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ExecutedState {
    pub index: u64,
    pub root: Digest,
}

/// What a header's author signs and what its digest covers: everything but the signature.
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
    pub signature: SignatureBytes,
}

impl Header {
    /// Builds and signs a header that reports no execution yet (tests, and validators that do not execute).
    pub fn new(
        author: AuthorityIndex,
        round: Round,
        payload: Vec<(BatchDigest, WorkerId)>,
        parents: Vec<CertificateDigest>,
        key: &BlsKeyPair,
    ) -> Self {
        let content = HeaderContent {
            author,
            round,
            payload,
            parents,
            weak_parents: Vec::new(),
            executed: ExecutedState::default(),
        };
        Self::sign(content, key)
    }

    /// Signs `content`. Parents are sorted first so that a header has one canonical form.
    pub fn sign(mut content: HeaderContent, key: &BlsKeyPair) -> Self {
        content.parents.sort();
        content.weak_parents.sort();
        let digest = content.digest();
        let signature = key.sign(Domain::Header, digest.as_bytes()).to_bytes();
        Self { content, signature }
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

    /// Checks the author's signature against its committee key.
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

    pub fn verify_signature(&self, committee: &Committee) -> Result<(), DagError> {
        let author = committee.authority(self.author()).ok_or(DagError::UnknownAuthority(self.author()))?;
        let digest = self.digest();
        let bad = || DagError::BadSignature {
            kind: "header",
            digest: digest.to_string(),
            author: self.author(),
            round: self.round(),
        };
        let signature = BlsSignature::from_bytes(&self.signature).map_err(|_| bad())?;
        author.bls_key.verify(Domain::Header, digest.as_bytes(), &signature).map_err(|_| bad())
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
    use crate::ValidatorKeys;

    #[test]
    fn signature_covers_every_field() {
        let keys: Vec<_> = (0..4).map(ValidatorKeys::from_seed).collect();
        let committee = Committee::local(&keys, 9000, 1).unwrap();
        let header = Header::new(AuthorityIndex(1), 3, vec![(BatchDigest::default(), 0)], vec![], &keys[1].bls);
        header.verify_signature(&committee).unwrap();

        let mut moved = header.clone();
        moved.content.round = 4;
        assert!(matches!(moved.verify_signature(&committee), Err(DagError::BadSignature { .. })));
        let mut stolen = header.clone();
        stolen.content.author = AuthorityIndex(2);
        assert!(stolen.verify_signature(&committee).is_err());
        let mut unknown = header.clone();
        unknown.content.author = AuthorityIndex(9);
        assert_eq!(unknown.verify_signature(&committee), Err(DagError::UnknownAuthority(AuthorityIndex(9))));
        let mut garbage = header;
        garbage.signature = SignatureBytes([7; 96]);
        assert!(garbage.verify_signature(&committee).is_err());
    }
}
