//! A vote: a validator's signature on a header's digest (DESIGN.md §3). Votes for one header are summed
//! into a certificate's aggregate signature, so the signed message is the header digest alone.

use crate::committee::{AuthorityIndex, Committee};
use crate::crypto::{BlsKeyPair, BlsSignature, Domain, SignatureBytes};
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
        let header_digest = header.digest();
        Self {
            header_digest,
            round: header.round(),
            header_author: header.author(),
            voter,
            signature: key.sign(Domain::Vote, header_digest.as_bytes()).to_bytes(),
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
