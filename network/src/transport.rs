//! quinn's transport and endpoint settings, from a [`NetworkConfig`]: one place for both sides of every
//! connection, over real UDP and under turmoil alike.
//!
//! Segmentation offload (GSO) lets quinn hand the kernel several packets of one size in one system call. The
//! kernel takes such a send only whole, at most one UDP datagram's worth of bytes ([`MAX_UDP_SEND`]); a
//! larger one fails with `EMSGSIZE`, which quinn-udp takes for a lost path-MTU probe and drops without a
//! word: every packet in it is lost. quinn batches up to [`QUINN_GSO_SEGMENTS`] packets of the path MTU, so
//! once path-MTU discovery reached 64 KiB packets (loopback), two of them in one send were lost together,
//! a few such losses made quinn judge the path a black hole, and the link fell back to 1,200-byte packets
//! for the rest of its life: 55 times the packets, each with its own encryption, acknowledgement and share
//! of a system call. [`segmentation_offload`] keeps GSO only where quinn's largest batch fits one send.

use std::sync::Arc;

use mako_types::NetworkKeyPair;

use crate::config::NetworkConfig;
use crate::error::NetworkError;
use crate::peers::Peers;
use crate::tls::{client_crypto, server_crypto};

/// The largest UDP payload of one send over IPv4: 65,535 bytes less the IPv4 (20) and UDP (8) headers.
pub const MAX_UDP_SEND: usize = 65_507;

/// The most packets quinn puts into one segmentation-offload send (quinn 0.11's `MAX_TRANSMIT_SEGMENTS`).
pub const QUINN_GSO_SEGMENTS: usize = 10;

/// Whether quinn may batch packets into segmentation-offload sends when they may grow to `max_udp_payload`
/// bytes: only where its largest batch of them fits one UDP send. Past that (a path-MTU bound above 6,550
/// bytes), each packet goes in its own system call, which at 64 KiB packets is still one call per 64 KiB.
pub fn segmentation_offload(max_udp_payload: u16) -> bool {
    usize::from(max_udp_payload) * QUINN_GSO_SEGMENTS <= MAX_UDP_SEND
}

/// The settings of the connections we accept and of those we dial: our identity, the keys we pin, and one
/// transport for both.
pub(crate) fn connection_configs(
    config: &NetworkConfig,
    key: &NetworkKeyPair,
    peers: &Arc<Peers>,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), NetworkError> {
    let transport = Arc::new(transport_config(config)?);
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto(key, Arc::clone(peers))?));
    server.transport_config(Arc::clone(&transport));
    let mut client = quinn::ClientConfig::new(Arc::new(client_crypto(key, Arc::clone(peers))?));
    client.transport_config(transport);
    Ok((server, client))
}

/// The transport settings of every connection, dialed or accepted.
fn transport_config(config: &NetworkConfig) -> Result<quinn::TransportConfig, NetworkError> {
    let mut transport = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(config.idle_timeout)
        .map_err(|e| NetworkError::InvalidConfig(format!("idle timeout {:?}: {e}", config.idle_timeout)))?;
    transport.max_idle_timeout(Some(idle));
    transport.keep_alive_interval(Some(config.keep_alive_interval));
    // Room for every stream a peer may keep open, whatever its own configuration says.
    let streams = quinn::VarInt::from_u32(u32::try_from(config.max_streams_per_peer.max(1) * 2).unwrap_or(u32::MAX));
    transport.max_concurrent_bidi_streams(streams);
    transport.max_concurrent_uni_streams(streams);
    let mut mtu_discovery = quinn::MtuDiscoveryConfig::default();
    mtu_discovery.upper_bound(config.max_udp_payload);
    transport.mtu_discovery_config(Some(mtu_discovery));
    transport.enable_segmentation_offload(segmentation_offload(config.max_udp_payload));
    Ok(transport)
}

/// Sizes a UDP socket's kernel receive buffer. Best effort: the kernel caps it at `net.core.rmem_max`, and
/// a smaller buffer only costs drops (at 64 KiB packets, Linux's default of 208 KiB holds three).
pub(crate) fn size_receive_buffer(socket: &std::net::UdpSocket, config: &NetworkConfig) {
    if let Err(error) = socket2::SockRef::from(socket).set_recv_buffer_size(config.socket_receive_buffer) {
        let address = socket.local_addr().ok();
        tracing::warn!(?address, %error, "cannot size the UDP receive buffer");
    }
}

/// The endpoint's own settings: quinn's seeded randomness and the largest datagram it accepts.
pub(crate) fn endpoint_config(config: &NetworkConfig) -> Result<quinn::EndpointConfig, NetworkError> {
    let mut endpoint_config = quinn::EndpointConfig::default();
    endpoint_config.rng_seed(config.rng_seed);
    endpoint_config
        .max_udp_payload_size(config.max_udp_payload)
        .map_err(|e| NetworkError::InvalidConfig(format!("max_udp_payload {}: {e}", config.max_udp_payload)))?;
    Ok(endpoint_config)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use mako_types::AuthorityIndex;

    use super::*;
    use crate::peers::Peer;
    use crate::tls::SERVER_NAME;

    /// How long a test may wait for a transfer, or for path-MTU discovery, on loopback.
    const PATIENCE: Duration = Duration::from_secs(60);

    #[test]
    fn offload_only_where_a_full_batch_fits_one_send() {
        assert!(segmentation_offload(1_452), "a WAN path keeps GSO");
        assert!(segmentation_offload(6_550));
        assert!(!segmentation_offload(6_551));
        assert!(!segmentation_offload(NetworkConfig::default().max_udp_payload), "64 KiB packets go one by one");
    }

    fn key(index: u8) -> NetworkKeyPair {
        NetworkKeyPair::from_seed([index; 32])
    }

    fn endpoint(config: &NetworkConfig, index: u8, peers: &Arc<Peers>, socket: std::net::UdpSocket) -> quinn::Endpoint {
        size_receive_buffer(&socket, config);
        let (server, client) = connection_configs(config, &key(index), peers).unwrap();
        let config = endpoint_config(config).unwrap();
        let mut endpoint = quinn::Endpoint::new(config, Some(server), socket, Arc::new(quinn::TokioRuntime)).unwrap();
        endpoint.set_default_client_config(client);
        endpoint
    }

    /// Sends `bytes` in `messages` streams over one loopback connection with the transport of `config`, and
    /// returns the sender's path statistics once the receiver read everything.
    async fn transfer(config: &NetworkConfig, messages: usize, bytes: usize) -> quinn::PathStats {
        let sockets = [0, 1].map(|_| std::net::UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap());
        let peers = Arc::new(
            Peers::new([0u8, 1].map(|i| Peer {
                index: AuthorityIndex(i.into()),
                address: sockets[usize::from(i)].local_addr().unwrap(),
                key: key(i).public(),
            }))
            .unwrap(),
        );
        let receiver_address = sockets[1].local_addr().unwrap();
        let [sender_socket, receiver_socket] = sockets;
        let sender = endpoint(config, 0, &peers, sender_socket);
        let receiver = endpoint(config, 1, &peers, receiver_socket);
        let reading = tokio::spawn(async move {
            let connection = receiver.accept().await.unwrap().await.unwrap();
            for _ in 0..messages {
                let mut stream = connection.accept_uni().await.unwrap();
                assert_eq!(stream.read_to_end(bytes).await.unwrap().len(), bytes);
            }
            connection
        });
        let connection = sender.connect(receiver_address, SERVER_NAME).unwrap().await.unwrap();
        // Path-MTU discovery first: the loss this guards against needs packets past 6.5 KiB.
        tokio::time::timeout(PATIENCE, async {
            while connection.stats().path.current_mtu < 16_000 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("path-MTU discovery reaches 16 KB on loopback");
        let payload = vec![7u8; bytes];
        for _ in 0..messages {
            let mut stream = connection.open_uni().await.unwrap();
            stream.write_all(&payload).await.unwrap();
            stream.finish().unwrap();
        }
        let _receiving_side = tokio::time::timeout(PATIENCE, reading).await.unwrap().unwrap();
        connection.stats().path
    }

    /// The adversary is the kernel's limit on one send: with 64 KiB packets, a segmentation-offload batch of
    /// two or more is refused, quinn-udp drops it as a failed probe, and enough such losses make quinn take
    /// the path for a black hole and fall back to 1,200-byte packets. Bulk batches over loopback must keep
    /// their large packets (with GSO left on, this run loses ~20 packets and falls to 1,200).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_transfer_on_loopback_keeps_its_large_packets() {
        let stats = transfer(&NetworkConfig::default(), 40, 500_000).await;
        // Not `lost_packets == 0`: where `net.core.rmem_max` keeps the receive buffer small, a burst of large
        // packets may overflow it, which is congestion, not this bug (and never a black hole by itself).
        assert_eq!(stats.black_holes_detected, 0, "{stats:?}");
        assert!(stats.current_mtu > 16_000, "{stats:?}");
    }
}
