//! The peer list an endpoint talks to: who may connect, at which address, under which network key.
//!
//! Identity is pinned (DESIGN.md §2): a connection is accepted only when the Ed25519 key in the peer's TLS
//! certificate is one of these keys, and the receiver names the sender by the [`AuthorityIndex`] found here.
//! Primaries talk to primaries, and worker `i` to the workers `i` of the other validators; both lists come
//! from the committee, but tests can build one by hand without BLS keys.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use mako_types::{AuthorityIndex, Committee, NetworkPublicKey, WorkerId};

use crate::error::NetworkError;

/// One reachable peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub index: AuthorityIndex,
    pub address: SocketAddr,
    pub key: NetworkPublicKey,
}

/// The peers of one endpoint, by index and by key. Ordered maps only: iteration order is part of
/// determinism under simulation (DESIGN.md §6).
#[derive(Clone, Debug, Default)]
pub struct Peers {
    by_index: BTreeMap<AuthorityIndex, Peer>,
    by_key: BTreeMap<NetworkPublicKey, AuthorityIndex>,
}

impl Peers {
    /// A peer list from explicit entries; two entries with the same key are an error.
    pub fn new(peers: impl IntoIterator<Item = Peer>) -> Result<Self, NetworkError> {
        let mut list = Self::default();
        for peer in peers {
            if let Some(&first) = list.by_key.get(&peer.key) {
                return Err(NetworkError::DuplicateKey { key: peer.key, first, second: peer.index });
            }
            if list.by_index.contains_key(&peer.index) {
                return Err(NetworkError::DuplicateIndex(peer.index));
            }
            list.by_key.insert(peer.key, peer.index);
            list.by_index.insert(peer.index, peer);
        }
        Ok(list)
    }

    /// The committee's primaries.
    pub fn primaries(committee: &Committee) -> Result<Self, NetworkError> {
        Self::new(committee.authorities().map(|(index, authority)| Peer {
            index,
            address: authority.primary_address,
            key: authority.network_key,
        }))
    }

    /// Worker `worker` of every validator (a validator's workers share its network key).
    pub fn workers(committee: &Committee, worker: WorkerId) -> Result<Self, NetworkError> {
        let mut peers = Vec::new();
        for (index, authority) in committee.authorities() {
            let address = *authority
                .worker_addresses
                .get(worker as usize)
                .ok_or(NetworkError::NoWorkerAddress { authority: index, worker })?;
            peers.push(Peer { index, address, key: authority.network_key });
        }
        Self::new(peers)
    }

    pub fn get(&self, index: AuthorityIndex) -> Option<&Peer> {
        self.by_index.get(&index)
    }

    /// Who holds `key`, if anyone in the list does.
    pub fn index_of(&self, key: &NetworkPublicKey) -> Option<AuthorityIndex> {
        self.by_key.get(key).copied()
    }

    pub fn contains_key(&self, key: &NetworkPublicKey) -> bool {
        self.by_key.contains_key(key)
    }

    /// All peers in index order.
    pub fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.by_index.values()
    }

    pub fn len(&self) -> usize {
        self.by_index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(index: u16, key: u8) -> Peer {
        Peer {
            index: AuthorityIndex(index),
            address: SocketAddr::from(([127, 0, 0, 1], 4000 + index)),
            key: NetworkPublicKey([key; 32]),
        }
    }

    #[test]
    fn lookup_by_key_and_index() {
        let peers = Peers::new([peer(0, 1), peer(1, 2)]).unwrap();
        assert_eq!(peers.index_of(&NetworkPublicKey([2; 32])), Some(AuthorityIndex(1)));
        assert_eq!(peers.index_of(&NetworkPublicKey([3; 32])), None);
        assert_eq!(peers.get(AuthorityIndex(0)).unwrap().key, NetworkPublicKey([1; 32]));
        assert_eq!(peers.iter().map(|p| p.index.0).collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn duplicate_key_is_rejected() {
        assert!(matches!(Peers::new([peer(0, 1), peer(1, 1)]), Err(NetworkError::DuplicateKey { .. })));
    }
}
