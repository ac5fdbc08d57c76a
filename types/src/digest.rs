//! Digests: blake3, 32 bytes, over a value's canonical rkyv bytes, with one derive-key context per type so
//! that the same bytes read as two different types never share a digest (DESIGN.md §2).

use std::fmt;

/// A 32-byte blake3 digest.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(PartialEq, Eq, Hash, Debug))]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Hashes `parts` under a domain context: `blake3::derive_key` mode keyed by the context string.
    pub fn of(context: &str, parts: &[&[u8]]) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(context);
        for part in parts {
            hasher.update(part);
        }
        Self(*hasher.finalize().as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0[..6]))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

macro_rules! typed_digest {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
            rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
        )]
        #[rkyv(derive(PartialEq, Eq, Hash, Debug))]
        pub struct $name(pub Digest);

        impl $name {
            pub fn as_bytes(&self) -> &[u8; 32] {
                self.0.as_bytes()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
    };
}

typed_digest!(
    /// Digest of a [`crate::Batch`].
    BatchDigest
);
typed_digest!(
    /// Digest of a [`crate::Header`]'s content: what its voters sign.
    HeaderDigest
);
typed_digest!(
    /// Digest of a [`crate::Certificate`]: derived from its header alone, so two certificates of one header
    /// (different signer sets) are the same DAG vertex.
    CertificateDigest
);

/// Derive-key contexts, one per digested type.
pub(crate) mod context {
    pub const BATCH: &str = "mako 2026 batch digest v1";
    pub const HEADER: &str = "mako 2026 header digest v1";
    pub const CERTIFICATE: &str = "mako 2026 certificate digest v1";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_separate_domains() {
        let a = Digest::of(context::BATCH, &[b"same bytes"]);
        let b = Digest::of(context::HEADER, &[b"same bytes"]);
        assert_ne!(a, b);
        assert_eq!(a, Digest::of(context::BATCH, &[b"same ", b"bytes"]));
    }
}
