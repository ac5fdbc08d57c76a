//! Helpers shared by the integration tests: a small message type and a committee of loopback endpoints.

#![allow(dead_code)]

use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use mako_network::{Endpoint, Inbound, NetworkConfig, Peer, Peers};
use mako_types::{AuthorityIndex, NetworkKeyPair};
use tokio::sync::mpsc;

#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Note {
    pub seq: u64,
    pub body: Vec<u8>,
}

pub fn note(seq: u64) -> Note {
    Note { seq, body: vec![seq as u8; 32] }
}

pub fn key(index: u16) -> NetworkKeyPair {
    let mut seed = [0u8; 32];
    seed[..2].copy_from_slice(&index.to_le_bytes());
    seed[31] = 0xaa;
    NetworkKeyPair::from_seed(seed)
}

/// A loopback UDP socket on a free port.
pub fn loopback_socket() -> UdpSocket {
    UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind a loopback port")
}

pub fn peer(index: u16, address: SocketAddr) -> Peer {
    Peer { index: AuthorityIndex(index), address, key: key(index).public() }
}

/// Timers short enough for tests.
pub fn fast_config() -> NetworkConfig {
    NetworkConfig {
        retry_initial_delay: Duration::from_millis(20),
        retry_max_delay: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(2),
        keep_alive_interval: Duration::from_millis(500),
        ..NetworkConfig::default()
    }
}

pub type Node = (Endpoint<Note>, mpsc::Receiver<Inbound<Note>>);

/// `n` endpoints on loopback that all know each other.
pub fn committee(n: u16, config: &NetworkConfig) -> Vec<Node> {
    let sockets: Vec<UdpSocket> = (0..n).map(|_| loopback_socket()).collect();
    let peers = Peers::new(sockets.iter().enumerate().map(|(i, s)| peer(i as u16, s.local_addr().unwrap()))).unwrap();
    sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| Endpoint::from_socket(config.clone(), &key(i as u16), peers.clone(), socket).unwrap())
        .collect()
}

/// Fails the test instead of hanging it.
pub async fn within<T>(seconds: u64, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(seconds), future).await.expect("test step timed out")
}

/// Waits until `condition` holds, checking every 10 ms, for at most 10 s.
pub async fn eventually(mut condition: impl FnMut() -> bool) {
    within(10, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
