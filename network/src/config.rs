//! `NetworkConfig`: the limits and timers of one endpoint, with defaults sized for a small committee.
//!
//! Every queue has a bound here, so memory per peer is bounded whatever the peers do (DESIGN.md §6).

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Largest frame accepted or sent, in bytes (a batch of 500 KB plus headroom by default).
    pub max_frame_size: usize,
    /// Capacity of the channel of incoming messages to the application.
    pub inbound_capacity: usize,
    /// Capacity of each peer's queue of outgoing frames; best-effort sends are dropped when it is full.
    pub peer_queue_capacity: usize,
    /// Reliable messages pending per peer (queued, in flight or backing off) before `send_reliable` waits.
    pub max_pending_reliable: usize,
    /// Streams open at once to one peer.
    pub max_streams_per_peer: usize,
    /// First retry delay of a reliable message; doubled after each failure up to `retry_max_delay`.
    pub retry_initial_delay: Duration,
    pub retry_max_delay: Duration,
    /// Longest wait for one connection handshake.
    pub connect_timeout: Duration,
    /// Longest wait for an answer on one attempt (a slow but live receiver is then tried again).
    pub attempt_timeout: Duration,
    /// Longest time a peer may take to deliver one frame's bytes.
    pub frame_read_timeout: Duration,
    /// A connection with no traffic for this long is dead (then a reconnect happens).
    pub idle_timeout: Duration,
    /// Keep-alive period, well below `idle_timeout`.
    pub keep_alive_interval: Duration,
    /// Largest UDP payload a QUIC packet may grow to. Packets start at 1,200 bytes and quinn's path-MTU
    /// discovery probes up to this, falling back when a probe is lost, so a high bound is safe on any path; on
    /// loopback (MTU 64 KiB) a batch then crosses in a few packets instead of one per 1,452 bytes, each with
    /// its own encryption, acknowledgement and system-call share (issue 16, item 5). Above 6,550 bytes quinn
    /// sends each packet in its own system call, without segmentation offload (`transport.rs` says why).
    /// Bounded by quinn to 1,200..=65,527.
    pub max_udp_payload: u16,
    /// The UDP socket's kernel receive buffer, in bytes (capped by `net.core.rmem_max`, 4 MiB here). Linux's
    /// default, 208 KiB, overflowed under load: on the 2-core testnet at 35k tx/s, 14% of the datagrams
    /// arriving at the validators were dropped by the kernel (`RcvbufErrors` in `/proc/net/snmp`), each drop a
    /// QUIC loss to detect and resend, and a lost path-MTU probe that kept the busiest links at 1,200-byte
    /// packets.
    pub socket_receive_buffer: usize,
    /// Seed of quinn's randomness (connection ids, packet-number skips). Set it under simulation, derived
    /// from the simulation seed and the node, or same-seed runs differ (DESIGN.md §6).
    pub rng_seed: Option<[u8; 32]>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            max_frame_size: 1 << 20,
            inbound_capacity: 1_000,
            peer_queue_capacity: 1_000,
            max_pending_reliable: 1_000,
            max_streams_per_peer: 64,
            retry_initial_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(30),
            frame_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            keep_alive_interval: Duration::from_secs(1),
            max_udp_payload: 65_527,
            socket_receive_buffer: 4 << 20,
            rng_seed: None,
        }
    }
}
