//! mako-types: the vocabulary every other mako crate speaks.
//!
//! Identifiers and rounds, the committee (stake, quorum and validity thresholds), BLS12-381 signatures
//! with proofs of possession and aggregate certificates, the network identity keys, and the wire messages
//! of the Narwhal mempool (Transaction, Batch, Header, Vote, Certificate) in their canonical rkyv form, each
//! with a domain-separated blake3 digest. No async and no I/O here (STYLE.md): only values and pure checks.

pub mod batch;
pub mod bug;
pub mod certificate;
pub mod committee;
pub mod cpu_time;
pub mod crypto;
pub mod digest;
pub mod error;
pub mod header;
pub mod histogram;
pub mod keys;
pub mod leader;
pub mod network_key;
pub mod protocol;
pub mod vote;

pub use batch::{Batch, BatchBuilder, EncodedBatch, Transaction};
pub use certificate::{Certificate, SignerBitmap};
pub use committee::{Authority, AuthorityIndex, Committee, Stake, WorkerId};
pub use crypto::{
    use_stand_in_signatures, BlsKeyPair, BlsPublicKey, BlsSignature, Domain, HashedMessage, PublicKeyBytes,
    SignatureBytes, SignatureShare,
};
pub use digest::{BatchDigest, CertificateDigest, Digest, HeaderDigest};
pub use error::{CommitteeError, CryptoError, DagError, KeyError, WireError};
pub use header::{CheckpointId, ExecutedState, Header, HeaderContent};
pub use histogram::{HistogramSnapshot, LatencyHistogram};
pub use keys::ValidatorKeys;
pub use leader::LeaderTable;
pub use network_key::{NetworkKeyPair, NetworkPublicKey};
pub use protocol::{ProtocolParameters, ScheduleKind};
pub use vote::{Vote, VoteMessages};

/// A DAG round. Round 0 holds the genesis certificates.
pub type Round = u64;

/// Encodes a value in its canonical rkyv form.
pub fn encode<T>(value: &T) -> rkyv::util::AlignedVec
where
    T: for<'a> rkyv::Serialize<
        rkyv::api::high::HighSerializer<
            rkyv::util::AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rkyv::rancor::Error,
        >,
    >,
{
    encode_in(value, rkyv::util::AlignedVec::new())
}

/// [`encode`] into `buffer`, cleared first: a caller that writes values of tens of MB (a checkpoint) reserves
/// room once and hands the same buffer back each time, instead of growing a new one by doubling onto fresh
/// pages that the kernel must zero.
pub fn encode_in<T>(value: &T, mut buffer: rkyv::util::AlignedVec) -> rkyv::util::AlignedVec
where
    T: for<'a> rkyv::Serialize<
        rkyv::api::high::HighSerializer<
            rkyv::util::AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rkyv::rancor::Error,
        >,
    >,
{
    buffer.clear();
    rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(value, buffer).expect("serializing into memory cannot fail")
}

/// Decodes a value from untrusted bytes: the archive is validated (bytecheck) before anything is read.
pub fn decode<T>(bytes: &[u8]) -> Result<T, WireError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    // rkyv needs the archive aligned; bytes from a socket or a store may not be.
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rkyv::rancor::Error>(&aligned).map_err(|e| WireError::Malformed {
        type_name: std::any::type_name::<T>(),
        len: bytes.len(),
        reason: e.to_string(),
    })
}

/// Parses a fixed-size hex string, as keys appear in committee and key files.
pub(crate) fn hex_array<const N: usize>(text: &str) -> Result<[u8; N], KeyError> {
    let bytes = hex::decode(text.trim()).map_err(|e| KeyError::Hex(e.to_string()))?;
    bytes.try_into().map_err(|b: Vec<u8>| KeyError::Length { expected: N, got: b.len() })
}
