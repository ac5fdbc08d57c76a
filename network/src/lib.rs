//! mako-network: the QUIC transport between validators (DESIGN.md §6).
//!
//! An [`Endpoint`] carries messages of one rkyv type `M` between the peers of a [`Peers`] list (a
//! committee's primaries, or its workers of one id). Identities are pinned: each node presents a
//! self-signed Ed25519 certificate for its committee network key, and both sides of every handshake refuse
//! a key outside the list ([`tls`]). One message is one QUIC stream; its frame is checked (size limit, then
//! bytecheck) before use, and bad input is dropped and counted in [`NetworkMetrics`], never a panic
//! ([`frame`], [`receiver`]). Delivery is best-effort ([`Endpoint::send`], [`Endpoint::broadcast`]),
//! reliable (retried with back-off until the receiver's application answers, [`Endpoint::send_reliable`]),
//! or a request with a reply ([`Endpoint::request`]); every queue is bounded.
//!
//! **Simulation.** The same code runs under turmoil: [`Endpoint::bind_turmoil`] runs quinn itself over
//! turmoil's simulated UDP ([`turmoil_socket`]) rather than hiding the network behind a transport trait
//! with a second, simulated implementation. That way the simulation exercises the real QUIC, TLS, framing,
//! retry and back-pressure code, and there is no second transport whose behaviour could drift from the
//! real one. DESIGN.md §6 measured that it works and repeats: identical traces for one seed, when quinn's
//! RNG is seeded ([`NetworkConfig::rng_seed`]), every `select!` is `biased;`, and no decision depends on
//! `HashMap` order. turmoil is a small dependency (tokio, rand, indexmap), so it is always compiled in:
//! no feature flag, and the simulated path is built and tested with the crate.

pub mod config;
pub mod endpoint;
pub mod error;
pub mod frame;
pub mod metrics;
pub mod peers;
pub mod receiver;
pub mod reliable;
mod sender;
pub mod tls;
pub mod transport;
pub mod turmoil_socket;

pub use config::NetworkConfig;
pub use endpoint::Endpoint;
pub use error::NetworkError;
pub use frame::{encode, Message, Response};
pub use metrics::{MetricsSnapshot, NetworkMetrics};
pub use peers::{Peer, Peers};
pub use receiver::{Inbound, Responder};
pub use reliable::Delivery;
pub use turmoil_socket::TurmoilUdpSocket;
