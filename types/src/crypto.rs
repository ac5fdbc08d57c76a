//! BLS12-381 signatures (DESIGN.md §2), in the minimal-signature-size variant: public keys in G2 (96 bytes),
//! signatures in G1 (96 bytes, uncompressed: see [`SignatureBytes`]), hash-to-curve on G1 (RFC 9380, `bls12_381`
//! 0.9.0) with one domain-separation tag per message kind.
//!
//! Why not keys in G1 and signatures in G2, as DESIGN.md §2 first said: a validator hashes every header's vote
//! message and signs a vote for most of them, every round, while it sums committee keys only per certificate.
//! Measured here (`bls12_381` 0.9.0, release): hash-to-curve 0.42 ms on G2 against 0.11 ms on G1, a signature's
//! constant-time multiply 0.49 ms against 0.19 ms, a checked decode 0.087 against 0.060 ms; a pairing costs the
//! same either way. Keys are summed in G2 instead (a few additions per certificate) and are twice the size.
//!
//! Aggregates are safe from rogue keys because every committee key comes with a proof of possession, checked
//! when the committee loads. A quorum certificate is one aggregate signature: verifying it is summing the
//! signers' keys and two pairings. [`batch_verify`] checks many aggregates in one multi-Miller loop, each
//! weighted by a random 64-bit scalar so that errors cannot cancel out.
//!
//! A process may switch, for good, to the simulation's stand-in ([`stand_in`]): the same API and the same
//! binding, computed with a hash instead of pairings.

pub mod stand_in;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};

use bls12_381::hash_to_curve::{ExpandMsgXmd, HashToCurve};
use bls12_381::{multi_miller_loop, G1Affine, G1Projective, G2Affine, G2Prepared, G2Projective, Scalar};
use group::{Curve, Group};
use rand::RngCore;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::cpu_time::{measure, Component};
use crate::error::{CryptoError, KeyError};
pub use stand_in::use_stand_in_signatures;
use stand_in::StandIn;

/// What a signature is about. Each kind signs under its own hash-to-curve tag, so a signature made for one
/// kind of message never verifies as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Domain {
    ProofOfPossession,
    Vote,
}

impl Domain {
    /// The RFC 9380 domain-separation tag.
    pub fn tag(self) -> &'static [u8] {
        match self {
            Domain::ProofOfPossession => b"MAKO-V01-BLS_POP_BLS12381G1_XMD:SHA-256_SSWU_RO_",
            Domain::Vote => b"MAKO-V01-VOTE_BLS12381G1_XMD:SHA-256_SSWU_RO_",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Domain::ProofOfPossession => "proof-of-possession",
            Domain::Vote => "vote",
        }
    }
}

/// Hashes a message to a point of G1 under the domain's tag.
pub fn hash_to_g1(domain: Domain, message: &[u8]) -> G1Affine {
    measure(Component::Crypto, || {
        <G1Projective as HashToCurve<ExpandMsgXmd<sha2::Sha256>>>::hash_to_curve([message], domain.tag()).to_affine()
    })
}

/// A message with its hash to G1, computed once: hash-to-curve is about a third of a signature's cost
/// (DESIGN.md §2), and a validator signs a header's vote message, then checks the certificate of the same
/// header: one hash serves both.
#[derive(Clone)]
pub struct HashedMessage {
    domain: Domain,
    message: Vec<u8>,
    /// None where the process uses the stand-in, which hashes the bytes its own way.
    point: Option<G1Affine>,
}

impl HashedMessage {
    pub fn new(domain: Domain, message: &[u8]) -> Self {
        let point = (!stand_in::in_use()).then(|| hash_to_g1(domain, message));
        Self { domain, message: message.to_vec(), point }
    }

    pub fn domain(&self) -> Domain {
        self.domain
    }

    pub fn message(&self) -> &[u8] {
        &self.message
    }

    fn point(&self) -> G1Affine {
        self.point.unwrap_or_else(|| hash_to_g1(self.domain, &self.message))
    }
}

impl fmt::Debug for HashedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.domain.name(), hex::encode(&self.message[..self.message.len().min(6)]))
    }
}

/// A compressed public key as it travels and is stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct PublicKeyBytes(pub [u8; 96]);

/// A signature as it travels and is stored: uncompressed, both coordinates of a G1 point. Decoding a compressed
/// point solves for y with a square root, and a validator decodes a vote share or a certificate six to eight
/// times a round; 48 more bytes per vote and certificate cost nothing beside that.
#[derive(Clone, Copy, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SignatureBytes(pub [u8; 96]);

impl SignatureBytes {
    /// A placeholder for messages that carry no signature (genesis certificates).
    pub const EMPTY: SignatureBytes = SignatureBytes([0; 96]);
}

impl fmt::Debug for PublicKeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bls:{}", hex::encode(&self.0[..6]))
    }
}

impl fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sig:{}", hex::encode(&self.0[..6]))
    }
}

/// A validated public key: on the curve, in the prime-order subgroup, not the identity.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BlsPublicKey {
    point: G2Affine,
    bytes: PublicKeyBytes,
}

impl BlsPublicKey {
    fn new(point: G2Affine) -> Self {
        Self { point, bytes: PublicKeyBytes(point.to_compressed()) }
    }

    pub fn from_bytes(bytes: &PublicKeyBytes) -> Result<Self, KeyError> {
        let point: Option<G2Affine> = G2Affine::from_compressed(&bytes.0).into();
        match point {
            Some(p) if !bool::from(p.is_identity()) => Ok(Self { point: p, bytes: *bytes }),
            _ => Err(KeyError::InvalidPoint("BLS12-381 G2 public key")),
        }
    }

    pub fn to_bytes(&self) -> PublicKeyBytes {
        self.bytes
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes.0)
    }

    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        Self::from_bytes(&PublicKeyBytes(crate::hex_array(text)?))
    }

    pub fn point(&self) -> &G2Affine {
        &self.point
    }

    /// Checks a single signature.
    pub fn verify(&self, domain: Domain, message: &[u8], signature: &BlsSignature) -> Result<(), CryptoError> {
        let valid = match signature.0 {
            Signed::Point(point) => pairing_check(&[self], &hash_to_g1(domain, message), &point),
            Signed::StandIn(sum) => sum == StandIn::sign(domain, &self.bytes, message),
        };
        if valid {
            Ok(())
        } else {
            Err(CryptoError::InvalidSignature { domain: domain.name() })
        }
    }

    /// Checks that `proof` is this key's proof of possession: a signature of the key itself.
    pub fn verify_possession(&self, proof: &BlsSignature) -> Result<(), CryptoError> {
        self.verify(Domain::ProofOfPossession, &self.to_bytes().0, proof)
    }
}

impl fmt::Debug for BlsPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_bytes(), f)
    }
}

/// A validated signature: on the curve, in the prime-order subgroup (or, where the process uses the
/// simulation's stand-in, a stand-in signature).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BlsSignature(Signed);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Signed {
    Point(G1Affine),
    StandIn(StandIn),
}

impl Signed {
    /// The stand-in's signature where the process uses it, else the point `decode` makes of the bytes.
    fn decode(
        bytes: &SignatureBytes,
        what: &'static str,
        decode: impl FnOnce(&[u8; 96]) -> Option<G1Affine>,
    ) -> Result<Self, KeyError> {
        if stand_in::in_use() {
            return StandIn::from_bytes(bytes).map(Signed::StandIn).ok_or(KeyError::InvalidPoint("stand-in signature"));
        }
        measure(Component::Crypto, || decode(&bytes.0)).map(Signed::Point).ok_or(KeyError::InvalidPoint(what))
    }
}

impl BlsSignature {
    /// Checked: on the curve and in the prime-order subgroup.
    pub fn from_bytes(bytes: &SignatureBytes) -> Result<Self, KeyError> {
        Signed::decode(bytes, "BLS12-381 G1 signature", |b| G1Affine::from_uncompressed(b).into()).map(Self)
    }

    pub fn to_bytes(&self) -> SignatureBytes {
        match self.0 {
            Signed::Point(point) => SignatureBytes(point.to_uncompressed()),
            Signed::StandIn(sum) => sum.to_bytes(),
        }
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes().0)
    }

    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        Self::from_bytes(&SignatureBytes(crate::hex_array(text)?))
    }

    /// Sums signatures into one aggregate.
    pub fn aggregate<'a>(signatures: impl IntoIterator<Item = &'a BlsSignature>) -> Result<Self, CryptoError> {
        let signatures: Vec<Signed> = signatures.into_iter().map(|s| s.0).collect();
        if signatures.is_empty() {
            return Err(CryptoError::Empty);
        }
        let points: Option<Vec<G1Projective>> = signatures
            .iter()
            .map(|s| if let Signed::Point(p) = s { Some(G1Projective::from(*p)) } else { None })
            .collect();
        if let Some(points) = points {
            let sum = measure(Component::Crypto, || points.into_iter().sum::<G1Projective>().to_affine());
            return Ok(Self(Signed::Point(sum)));
        }
        let stand_ins: Option<Vec<StandIn>> =
            signatures.iter().map(|s| if let Signed::StandIn(t) = s { Some(*t) } else { None }).collect();
        stand_ins.map(|parts| Self(Signed::StandIn(StandIn::sum(parts)))).ok_or(CryptoError::MixedSchemes)
    }
}

/// One voter's part of an aggregate, decoded but not validated: on the curve, but not checked to be in the
/// prime-order subgroup (about 60 µs a point here). Shares are only ever summed ([`SignatureShare::sum`]); a share
/// on its own verifies nothing.
#[derive(Clone, Copy)]
pub struct SignatureShare(Signed);

impl SignatureShare {
    /// On the curve only.
    pub fn from_bytes(bytes: &SignatureBytes) -> Result<Self, KeyError> {
        let on_curve = |b: &[u8; 96]| {
            Option::<G1Affine>::from(G1Affine::from_uncompressed_unchecked(b)).filter(|p| bool::from(p.is_on_curve()))
        };
        Signed::decode(bytes, "BLS12-381 G1 signature share", on_curve).map(Self)
    }

    /// The bytes of the shares' sum, not validated: whoever verifies them decodes them checked
    /// ([`BlsSignature::from_bytes`]), and that one subgroup check of the sum is the only one, since the sum is
    /// the one point a pairing sees. A share off the subgroup only passes it when other shares cancel what lies
    /// outside it, and the sum is then a valid signature in its own right (it verifies under the signers'
    /// summed keys or it does not). Checking each share instead would cost one subgroup check per voter.
    pub fn sum(shares: &[SignatureShare]) -> Result<SignatureBytes, CryptoError> {
        let signatures: Vec<BlsSignature> = shares.iter().map(|share| BlsSignature(share.0)).collect();
        BlsSignature::aggregate(&signatures).map(|sum| sum.to_bytes())
    }
}

impl fmt::Debug for BlsSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_bytes(), f)
    }
}

/// Aggregate keys prepared for the Miller loop, by a hash of their signers' keys in order: most certificates
/// are signed by one of a few signer sets (at n = 4, the five quorums), and summing the keys and preparing the
/// sum costs about 0.1 ms a check. Cleared when it holds [`AGGREGATE_KEYS_HELD`] sums.
static AGGREGATE_KEYS: LazyLock<Mutex<HashMap<[u8; 32], Arc<G2Prepared>>>> = LazyLock::new(Mutex::default);

/// How many signer sets' aggregate keys stay prepared.
const AGGREGATE_KEYS_HELD: usize = 1024;

/// Sums public keys into the key that verifies their aggregate signature on a common message, prepared for the
/// Miller loop. Safe only for keys whose proof of possession was checked (the committee's). None for keys that
/// sum to the identity: none at all, or keys that cancel out.
fn aggregate_key(keys: &[&BlsPublicKey]) -> Option<Arc<G2Prepared>> {
    let mut hasher = blake3::Hasher::new_derive_key("mako 2026 bls aggregate key cache v1");
    keys.iter().for_each(|key| {
        hasher.update(&key.bytes.0);
    });
    let id: [u8; 32] = hasher.finalize().into();
    let mut cache = AGGREGATE_KEYS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(prepared) = cache.get(&id) {
        return Some(Arc::clone(prepared));
    }
    let sum = keys.iter().map(|k| G2Projective::from(k.point)).sum::<G2Projective>().to_affine();
    if bool::from(sum.is_identity()) {
        return None;
    }
    if cache.len() >= AGGREGATE_KEYS_HELD {
        cache.clear();
    }
    let prepared = Arc::new(G2Prepared::from(sum));
    cache.insert(id, Arc::clone(&prepared));
    Some(prepared)
}

/// Checks an aggregate signature of one message by the signers whose (possession-checked) keys are given.
pub fn verify_aggregate<'a>(
    keys: impl IntoIterator<Item = &'a BlsPublicKey>,
    domain: Domain,
    message: &[u8],
    signature: &BlsSignature,
) -> Result<(), CryptoError> {
    verify_aggregate_hashed(keys, &HashedMessage::new(domain, message), signature)
}

/// [`verify_aggregate`] of a message already hashed.
pub fn verify_aggregate_hashed<'a>(
    keys: impl IntoIterator<Item = &'a BlsPublicKey>,
    message: &HashedMessage,
    signature: &BlsSignature,
) -> Result<(), CryptoError> {
    let keys: Vec<&BlsPublicKey> = keys.into_iter().collect();
    if keys.is_empty() {
        return Err(CryptoError::Empty);
    }
    let domain = message.domain;
    let valid = match signature.0 {
        Signed::Point(point) => pairing_check(&keys, &message.point(), &point),
        Signed::StandIn(sum) => {
            sum == StandIn::sum(keys.iter().map(|k| StandIn::sign(domain, &k.bytes, &message.message)))
        }
    };
    if valid {
        Ok(())
    } else {
        Err(CryptoError::InvalidAggregate { domain: domain.name(), signers: keys.len() })
    }
}

/// −g2, prepared for the Miller loop once per process: every check pairs the signature with it.
static MINUS_G2: LazyLock<G2Prepared> = LazyLock::new(|| G2Prepared::from(-G2Affine::generator()));

/// e(σ, −g2) · e(H(m), pk) == 1 for pk the sum of `keys`, as one multi-Miller loop and one final exponentiation.
fn pairing_check(keys: &[&BlsPublicKey], hashed: &G1Affine, signature: &G1Affine) -> bool {
    measure(Component::Crypto, || {
        let Some(public) = aggregate_key(keys) else { return false };
        multi_miller_loop(&[(signature, &MINUS_G2), (hashed, &public)]).final_exponentiation().is_identity().into()
    })
}

/// One aggregate to check in a [`batch_verify`].
pub struct BatchItem<'a> {
    /// The signers' (possession-checked) keys.
    pub keys: Vec<&'a BlsPublicKey>,
    pub message: &'a HashedMessage,
    pub signature: BlsSignature,
}

/// Checks many (aggregate key, message, signature) triples at once:
/// e(Σ rᵢσᵢ, −g2) · Π e(rᵢ·H(mᵢ), pkᵢ) == 1 with random nonzero 64-bit rᵢ. One multi-Miller loop and one
/// final exponentiation; a forged item passes with probability about 2⁻⁶⁴. On failure the caller falls
/// back to checking items one by one to find the bad one. A lone item needs no weight: it is checked as it is.
pub fn batch_verify(items: &[BatchItem<'_>], rng: &mut impl RngCore) -> Result<(), CryptoError> {
    measure(Component::Crypto, || batch_verify_measured(items, rng))
}

fn batch_verify_measured(items: &[BatchItem<'_>], rng: &mut impl RngCore) -> Result<(), CryptoError> {
    if items.is_empty() {
        return Ok(());
    }
    let invalid = || CryptoError::InvalidBatch { items: items.len() };
    let mut points = Vec::with_capacity(items.len());
    for item in items {
        match item.signature.0 {
            Signed::Point(point) => points.push(point),
            Signed::StandIn(_) => {
                // The stand-in has nothing to batch: each item costs a few hashes.
                return items.iter().try_for_each(|item| {
                    verify_aggregate_hashed(item.keys.iter().copied(), item.message, &item.signature)
                        .map_err(|_| invalid())
                });
            }
        }
    }
    if let ([item], [point]) = (items, points.as_slice()) {
        return pairing_check(&item.keys, &item.message.point(), point).then_some(()).ok_or_else(invalid);
    }
    let scalars: Vec<u64> = items.iter().map(|_| rng.next_u64() | 1).collect();
    let mut signature_sum = G1Projective::identity();
    let mut weighted_hashes = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for ((item, point), &r) in items.iter().zip(&points).zip(&scalars) {
        signature_sum += mul_u64(G1Projective::from(*point), r);
        weighted_hashes.push(mul_u64(G1Projective::from(item.message.point()), r));
        keys.push(aggregate_key(&item.keys).ok_or_else(invalid)?);
    }
    weighted_hashes.push(signature_sum);
    let mut affine = vec![G1Affine::identity(); weighted_hashes.len()];
    G1Projective::batch_normalize(&weighted_hashes, &mut affine);
    let (sum, hashes) = affine.split_last().expect("the sum was pushed last");
    let mut terms: Vec<(&G1Affine, &G2Prepared)> = Vec::with_capacity(items.len() + 1);
    terms.push((sum, &MINUS_G2));
    terms.extend(hashes.iter().zip(keys.iter().map(|key| &**key)));
    if bool::from(multi_miller_loop(&terms).final_exponentiation().is_identity()) {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// Multiplies by a 64-bit scalar with 64 doublings instead of the full-width 255-bit ladder: the random
/// weights of a batch check are public-coin, so no constant-time multiply is needed (DESIGN.md §2: ≈2× cheaper).
fn mul_u64<G: Group>(point: G, scalar: u64) -> G {
    let mut acc = G::identity();
    for bit in (0..64).rev() {
        acc = acc.double();
        if (scalar >> bit) & 1 == 1 {
            acc += point;
        }
    }
    acc
}

/// `scalar · point` for a secret scalar, in constant time, with a fixed 4-bit window: 256 doublings and 64
/// additions of a table entry chosen by a full scan of the table, where the crate's `*` does 255 doublings and
/// 255 additions (every bit's addition is computed and kept or not). The signature is the same point; signing
/// is the one scalar multiplication a validator does per vote (`cargo bench -p mako-types --bench crypto`,
/// case `sign`).
fn mul_secret(point: &G1Affine, scalar: &Scalar) -> G1Projective {
    let mut table = [G1Projective::identity(); 16];
    let base = G1Projective::from(point);
    for i in 1..table.len() {
        table[i] = table[i - 1] + base;
    }
    let mut acc = G1Projective::identity();
    for byte in scalar.to_bytes().iter().rev() {
        for nibble in [byte >> 4, byte & 0x0f] {
            acc = acc.double().double().double().double();
            let mut entry = G1Projective::identity();
            for (i, candidate) in table.iter().enumerate() {
                entry.conditional_assign(candidate, (i as u8).ct_eq(&nibble));
            }
            acc += entry;
        }
    }
    acc
}

/// What a Byzantine voter can send, for tests of the rules that must refuse it.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// A point on the curve outside the prime-order subgroup.
    pub fn off_subgroup_point() -> G1Projective {
        (1..=255u8)
            .find_map(|x| {
                let mut bytes = [0u8; 48];
                bytes[0] = 0x80; // compressed, not the identity
                bytes[47] = x;
                Option::<G1Affine>::from(G1Affine::from_compressed_unchecked(&bytes))
                    .filter(|p| !bool::from(p.is_torsion_free()))
            })
            .map(G1Projective::from)
            .expect("about half of all x are on the curve, almost none of them in the subgroup")
    }

    /// `signature` (a BLS point) plus [`off_subgroup_point`]: still on the curve, no longer a signature.
    pub fn with_off_subgroup_component(signature: &SignatureBytes) -> SignatureBytes {
        let point = Option::<G1Affine>::from(G1Affine::from_uncompressed(&signature.0)).expect("a BLS signature");
        SignatureBytes((G1Projective::from(point) + off_subgroup_point()).to_affine().to_uncompressed())
    }
}

/// A BLS secret key with its public key.
#[derive(Clone)]
pub struct BlsKeyPair {
    secret: Scalar,
    public: BlsPublicKey,
}

impl BlsKeyPair {
    /// Derives a key pair from a 32-byte seed: the secret is a 64-byte blake3 XOF output reduced mod r.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let mut wide = [0u8; 64];
        blake3::Hasher::new_derive_key("mako 2026 bls12-381 secret key v1")
            .update(&seed)
            .finalize_xof()
            .fill(&mut wide);
        let mut secret = Scalar::from_bytes_wide(&wide);
        if secret == Scalar::zero() {
            secret = Scalar::one(); // probability 2⁻²⁵⁵; keeps the function total
        }
        let public = BlsPublicKey::new((G2Affine::generator() * secret).to_affine());
        Self { secret, public }
    }

    /// A fresh key pair from the operating system's randomness.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    /// Restores a key pair from its secret scalar (little-endian, as written by [`Self::secret_bytes`]).
    pub fn from_secret_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let secret: Scalar =
            Option::from(Scalar::from_bytes(bytes)).ok_or(KeyError::InvalidPoint("BLS12-381 scalar"))?;
        if secret == Scalar::zero() {
            return Err(KeyError::InvalidPoint("BLS12-381 scalar"));
        }
        let public = BlsPublicKey::new((G2Affine::generator() * secret).to_affine());
        Ok(Self { secret, public })
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    pub fn public(&self) -> BlsPublicKey {
        self.public
    }

    pub fn sign(&self, domain: Domain, message: &[u8]) -> BlsSignature {
        self.sign_hashed(&HashedMessage::new(domain, message))
    }

    /// Signs a message already hashed.
    pub fn sign_hashed(&self, message: &HashedMessage) -> BlsSignature {
        if stand_in::in_use() {
            return BlsSignature(Signed::StandIn(StandIn::sign(message.domain, &self.public.bytes, &message.message)));
        }
        BlsSignature(Signed::Point(measure(Component::Crypto, || {
            mul_secret(&message.point(), &self.secret).to_affine()
        })))
    }

    /// Signs this key itself: the proof that whoever lists the key holds its secret.
    pub fn proof_of_possession(&self) -> BlsSignature {
        self.sign(Domain::ProofOfPossession, &self.public.to_bytes().0)
    }
}

impl fmt::Debug for BlsKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlsKeyPair").field("public", &self.public).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn keys(n: u8) -> Vec<BlsKeyPair> {
        (0..n).map(|i| BlsKeyPair::from_seed([i; 32])).collect()
    }

    #[test]
    fn sign_and_verify() {
        let key = BlsKeyPair::from_seed([1; 32]);
        let sig = key.sign(Domain::Vote, b"header digest");
        key.public().verify(Domain::Vote, b"header digest", &sig).unwrap();
        assert!(key.public().verify(Domain::Vote, b"other message", &sig).is_err());
        let other = BlsKeyPair::from_seed([2; 32]);
        assert!(other.public().verify(Domain::Vote, b"header digest", &sig).is_err());
    }

    #[test]
    fn windowed_signing_multiplies_as_the_crate_does() {
        let point = hash_to_g1(Domain::Vote, b"header digest");
        for seed in 0..8u8 {
            let key = BlsKeyPair::from_seed([seed; 32]);
            assert_eq!(mul_secret(&point, &key.secret).to_affine(), (point * key.secret).to_affine());
        }
        for scalar in [Scalar::zero(), Scalar::one(), -Scalar::one(), Scalar::from(15u64), Scalar::from(16u64)] {
            assert_eq!(mul_secret(&point, &scalar).to_affine(), (point * scalar).to_affine());
        }
    }

    #[test]
    fn wrong_domain_tag_is_rejected() {
        let key = BlsKeyPair::from_seed([1; 32]);
        let sig = key.sign(Domain::Vote, b"m");
        assert!(key.public().verify(Domain::ProofOfPossession, b"m", &sig).is_err());
        let sig = key.sign(Domain::ProofOfPossession, b"m");
        assert!(key.public().verify(Domain::Vote, b"m", &sig).is_err());
        // A proof of possession is a signature of the key under its own tag, not a vote.
        let fake_pop = key.sign(Domain::Vote, &key.public().to_bytes().0);
        assert!(key.public().verify_possession(&fake_pop).is_err());
        key.public().verify_possession(&key.proof_of_possession()).unwrap();
    }

    #[test]
    fn aggregate_verifies_and_forgery_fails() {
        let keys = keys(4);
        let sigs: Vec<_> = keys.iter().map(|k| k.sign(Domain::Vote, b"m")).collect();
        let agg = BlsSignature::aggregate(&sigs).unwrap();
        let publics: Vec<_> = keys.iter().map(|k| k.public()).collect();
        verify_aggregate(&publics, Domain::Vote, b"m", &agg).unwrap();
        // Claiming a signer who did not sign fails.
        let three = BlsSignature::aggregate(&sigs[..3]).unwrap();
        assert!(verify_aggregate(&publics, Domain::Vote, b"m", &three).is_err());
        // One signature on another message spoils the aggregate.
        let mut forged = sigs.clone();
        forged[2] = keys[2].sign(Domain::Vote, b"x");
        let forged = BlsSignature::aggregate(&forged).unwrap();
        assert!(verify_aggregate(&publics, Domain::Vote, b"m", &forged).is_err());
    }

    /// The adversary: a certificate that claims other signers than those who signed, checked after the real
    /// signers' aggregate key was cached. The cache is keyed by the keys themselves, so the claim still fails,
    /// in a single check and in a batch.
    #[test]
    fn a_cached_aggregate_key_serves_only_its_own_signers() {
        let keys = keys(4);
        let publics: Vec<_> = keys.iter().map(|k| k.public()).collect();
        let message = HashedMessage::new(Domain::Vote, b"cached");
        let signed =
            BlsSignature::aggregate(&keys[..3].iter().map(|k| k.sign_hashed(&message)).collect::<Vec<_>>()).unwrap();
        let signers: Vec<&BlsPublicKey> = publics[..3].iter().collect();
        verify_aggregate_hashed(signers.iter().copied(), &message, &signed).unwrap();
        verify_aggregate_hashed(signers.iter().copied(), &message, &signed).unwrap();
        let claimed = [&publics[0], &publics[1], &publics[3]];
        assert!(verify_aggregate_hashed(claimed, &message, &signed).is_err());
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let honest = BatchItem { keys: signers.clone(), message: &message, signature: signed };
        let forged = BatchItem { keys: claimed.to_vec(), message: &message, signature: signed };
        batch_verify(std::slice::from_ref(&honest), &mut rng).unwrap();
        assert!(batch_verify(&[honest, forged], &mut rng).is_err());
        // The same signers in another order sum to the same key.
        verify_aggregate_hashed([&publics[2], &publics[0], &publics[1]], &message, &signed).unwrap();
    }

    #[test]
    fn rogue_key_aggregate_forges_without_proof_of_possession() {
        // The rogue-key attack: the attacker publishes pk_r = x·g2 − pk_honest, so the aggregate key of
        // {honest, rogue} is x·g2 and x·H(m) "verifies" for both without the honest signer. This is why the
        // committee requires proofs of possession (see committee tests): the attacker cannot produce one.
        let honest = BlsKeyPair::from_seed([1; 32]);
        let x = Scalar::from(424242u64);
        let rogue_point = (G2Projective::generator() * x - G2Projective::from(*honest.public().point())).to_affine();
        let rogue = BlsPublicKey::from_bytes(&PublicKeyBytes(rogue_point.to_compressed())).unwrap();
        let forged = BlsSignature(Signed::Point((hash_to_g1(Domain::Vote, b"m") * x).to_affine()));
        assert!(verify_aggregate([&honest.public(), &rogue], Domain::Vote, b"m", &forged).is_ok());
        // Without the secret of pk_r, any proof of possession the attacker offers fails.
        let attempt =
            BlsSignature(Signed::Point((hash_to_g1(Domain::ProofOfPossession, &rogue.to_bytes().0) * x).to_affine()));
        assert!(rogue.verify_possession(&attempt).is_err());
    }

    #[test]
    fn batch_verify_accepts_valid_and_rejects_one_bad_item() {
        let keys = keys(4);
        let publics: Vec<_> = keys.iter().map(|k| k.public()).collect();
        let messages: Vec<HashedMessage> = (0..5u8).map(|i| HashedMessage::new(Domain::Vote, &[i; 32])).collect();
        let mut items: Vec<BatchItem> = messages
            .iter()
            .map(|m| BatchItem {
                keys: publics.iter().collect(),
                message: m,
                signature: BlsSignature::aggregate(&keys.iter().map(|k| k.sign_hashed(m)).collect::<Vec<_>>()).unwrap(),
            })
            .collect();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        batch_verify(&items, &mut rng).unwrap();
        items[3].signature = items[1].signature;
        assert!(batch_verify(&items, &mut rng).is_err());
    }

    #[test]
    fn key_bytes_round_trip_and_reject_garbage() {
        let key = BlsKeyPair::from_seed([3; 32]);
        assert_eq!(BlsPublicKey::from_bytes(&key.public().to_bytes()).unwrap(), key.public());
        assert!(BlsPublicKey::from_bytes(&PublicKeyBytes([0xff; 96])).is_err());
        assert!(BlsSignature::from_bytes(&SignatureBytes([0x13; 96])).is_err());
        let restored = BlsKeyPair::from_secret_bytes(&key.secret_bytes()).unwrap();
        assert_eq!(restored.public(), key.public());
    }

    fn share_bytes(point: G1Projective) -> SignatureBytes {
        SignatureBytes(point.to_affine().to_uncompressed())
    }

    /// The adversary: a voter whose share carries a component outside the prime-order subgroup. The share
    /// decodes (it is on the curve), the sum with honest shares is refused, and only a sum whose outside
    /// components cancel is accepted, which is then a valid aggregate of the two signatures.
    #[test]
    fn shares_are_checked_once_as_a_sum() {
        let keys = keys(2);
        let message = HashedMessage::new(Domain::Vote, b"header digest");
        let signed = |k: &BlsKeyPair| match k.sign_hashed(&message).0 {
            Signed::Point(p) => G1Projective::from(p),
            Signed::StandIn(_) => unreachable!("no stand-in in this test"),
        };
        let (one, two) = (signed(&keys[0]), signed(&keys[1]));
        let outside = testing::off_subgroup_point();
        let share = |p| SignatureShare::from_bytes(&share_bytes(p)).unwrap();

        let checked_sum = |shares: &[SignatureShare]| BlsSignature::from_bytes(&SignatureShare::sum(shares).unwrap());
        assert!(BlsSignature::from_bytes(&share_bytes(one + outside)).is_err(), "a checked decode refuses it");
        assert!(checked_sum(&[share(one + outside), share(two)]).is_err());
        let publics = [keys[0].public(), keys[1].public()];
        let cancelled = checked_sum(&[share(one + outside), share(two - outside)]).unwrap();
        verify_aggregate_hashed(&publics, &message, &cancelled).unwrap();
        let honest = checked_sum(&[share(one), share(two)]).unwrap();
        assert_eq!(honest, cancelled);
        assert!(SignatureShare::from_bytes(&SignatureBytes([0x13; 96])).is_err(), "off the curve");
    }
}
