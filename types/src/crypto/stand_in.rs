//! The simulation's stand-in for BLS signatures: a keyed hash with the same binding, at a thousandth of the cost.
//!
//! In the deterministic simulation BLS arithmetic took over 85% of a run's CPU (pairings for every vote, header
//! and certificate of four validators on one core), which bounds how many seeds a night can sweep. What the
//! protocol relies on is only that a signature binds: it verifies for the key, domain and message it was made
//! for and nothing else, and an aggregate verifies for exactly the signers that made it. The stand-in keeps
//! that: a signature is `blake3(domain, public key, message)` (256 bits) and an aggregate is the limb-wise
//! wrapping sum of its parts, checked against the sum recomputed for the claimed signers.
//!
//! It is not a signature scheme (anyone who knows a public key can compute it), so it is off unless a process
//! switches it on, once, for good: the simulation harness does, the `mako` binary never does. Under it a BLS
//! signature does not parse, and the other way round, so the two can never be mixed.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{Domain, PublicKeyBytes, SignatureBytes};

static IN_USE: AtomicBool = AtomicBool::new(false);

/// Switches this process, for good, from BLS to the stand-in. For the deterministic simulation only.
pub fn use_stand_in_signatures() {
    IN_USE.store(true, Ordering::SeqCst);
}

pub(super) fn in_use() -> bool {
    IN_USE.load(Ordering::Relaxed)
}

/// A stand-in signature or aggregate: four 64-bit limbs, added with wrapping like the points of a group.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StandIn([u64; 4]);

impl StandIn {
    pub(super) fn sign(domain: Domain, key: &PublicKeyBytes, message: &[u8]) -> Self {
        let hash = blake3::Hasher::new_derive_key("mako 2026 simulation stand-in signature v1")
            .update(domain.tag())
            .update(&key.0)
            .update(message)
            .finalize();
        let mut limbs = [0u64; 4];
        for (limb, chunk) in limbs.iter_mut().zip(hash.as_bytes().chunks_exact(8)) {
            *limb = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        }
        Self(limbs)
    }

    pub(super) fn sum(parts: impl IntoIterator<Item = StandIn>) -> Self {
        parts.into_iter().fold(Self([0; 4]), |mut acc, part| {
            for (a, p) in acc.0.iter_mut().zip(part.0) {
                *a = a.wrapping_add(p);
            }
            acc
        })
    }

    /// The first 32 bytes; the others must be zero.
    pub(super) fn from_bytes(bytes: &SignatureBytes) -> Option<Self> {
        if bytes.0[32..].iter().any(|b| *b != 0) {
            return None;
        }
        let mut limbs = [0u64; 4];
        for (limb, chunk) in limbs.iter_mut().zip(bytes.0[..32].chunks_exact(8)) {
            *limb = u64::from_le_bytes(chunk.try_into().ok()?);
        }
        Some(Self(limbs))
    }

    pub(super) fn to_bytes(self) -> SignatureBytes {
        let mut bytes = [0u8; 96];
        for (chunk, limb) in bytes[..32].chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        SignatureBytes(bytes)
    }
}
