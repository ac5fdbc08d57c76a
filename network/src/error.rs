//! `NetworkError`: everything the transport can report, each variant naming what went wrong and with whom.
//!
//! Errors caused by a peer's input (a malformed or oversized frame, a refused handshake) are also counted in
//! [`crate::NetworkMetrics`]: the endpoint drops the input and keeps serving, so the error never reaches
//! the protocol code as a panic or a stop.

use std::net::SocketAddr;
use std::time::Duration;

use mako_types::{AuthorityIndex, NetworkPublicKey};

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{0} is not in the peer list")]
    UnknownPeer(AuthorityIndex),

    #[error("our own network key {0} is not in the peer list")]
    NotInPeers(NetworkPublicKey),

    #[error("peer list has network key {key} twice (at {first} and {second})")]
    DuplicateKey { key: NetworkPublicKey, first: AuthorityIndex, second: AuthorityIndex },

    #[error("peer list has {0} twice")]
    DuplicateIndex(AuthorityIndex),

    #[error("worker {worker} of {authority} has no address in the committee")]
    NoWorkerAddress { authority: AuthorityIndex, worker: u32 },

    #[error("cannot bind a UDP socket on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },

    #[error("invalid network configuration: {0}")]
    InvalidConfig(String),

    #[error("TLS setup failed: {0}")]
    Tls(String),

    #[error("cannot encode a {type_name}: {reason}")]
    Encode { type_name: &'static str, reason: String },

    #[error("malformed frame of {len} bytes from {from}: {reason}")]
    Malformed { from: AuthorityIndex, len: usize, reason: String },

    #[error("frame from {from} exceeds the limit of {limit} bytes")]
    Oversized { from: AuthorityIndex, limit: usize },

    #[error("cannot connect to {peer} at {address}: {reason}")]
    Connect { peer: AuthorityIndex, address: SocketAddr, reason: String },

    #[error("{peer} at {address} presented key {presented:?}, expected {expected}")]
    WrongIdentity {
        peer: AuthorityIndex,
        address: SocketAddr,
        presented: Option<NetworkPublicKey>,
        expected: NetworkPublicKey,
    },

    #[error("stream to {peer} failed: {reason}")]
    Stream { peer: AuthorityIndex, reason: String },

    #[error("{peer} rejected the message")]
    Rejected { peer: AuthorityIndex },

    #[error("{peer} acknowledged the request without a reply")]
    NoReply { peer: AuthorityIndex },

    #[error("the queue to {peer} is full ({capacity} messages); message dropped")]
    QueueFull { peer: AuthorityIndex, capacity: usize },

    #[error("no answer from {peer} within {timeout:?}")]
    Timeout { peer: AuthorityIndex, timeout: Duration },

    #[error("the endpoint is shut down")]
    ShutDown,

    #[error("the delivery was cancelled")]
    Cancelled,
}
