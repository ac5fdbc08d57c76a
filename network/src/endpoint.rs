//! `Endpoint<M>`: one node's QUIC endpoint for messages of type `M`, with a peer sender per peer and a
//! receiver, started over a real UDP socket or over turmoil's simulated one.
//!
//! The endpoint dials its peers for what it sends and accepts their connections for what it receives, so
//! each direction of a pair has its own connection and each side owns its half (no tie-breaking between
//! simultaneous dials). Answers travel back on the stream that carried the message. Dropping the last
//! clone of an endpoint, or `shutdown`, closes the QUIC endpoint and stops its tasks.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mako_types::{AuthorityIndex, NetworkKeyPair};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use crate::config::NetworkConfig;
use crate::error::NetworkError;
use crate::frame::{encode, Message, Response};
use crate::metrics::{bump, NetworkMetrics};
use crate::peers::Peers;
use crate::receiver::{Inbound, Receiver};
use crate::reliable::{Delivery, Route};
use crate::sender::{Outgoing, PeerSender};
use crate::transport::{connection_configs, endpoint_config, size_receive_buffer};

/// A node's endpoint; cheap to clone.
pub struct Endpoint<M> {
    inner: Arc<Inner>,
    _message: PhantomData<fn(M)>,
}

impl<M> Clone for Endpoint<M> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner), _message: PhantomData }
    }
}

struct Inner {
    me: AuthorityIndex,
    peers: Arc<Peers>,
    links: BTreeMap<AuthorityIndex, Link>,
    quic: quinn::Endpoint,
    config: Arc<NetworkConfig>,
    metrics: Arc<NetworkMetrics>,
    tasks: Vec<JoinHandle<()>>,
}

/// Our side of one peer: its sender's queue and its reliable permits.
struct Link {
    queue: mpsc::Sender<Outgoing>,
    reliable: Arc<Semaphore>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.quic.close(0u32.into(), b"shut down");
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl<M: Message> Endpoint<M> {
    /// Binds a UDP socket on `address` and starts the endpoint; must run inside a tokio runtime.
    pub fn bind(
        config: NetworkConfig,
        key: &NetworkKeyPair,
        peers: Peers,
        address: SocketAddr,
    ) -> Result<(Self, mpsc::Receiver<Inbound<M>>), NetworkError> {
        let socket = std::net::UdpSocket::bind(address).map_err(|source| NetworkError::Bind { address, source })?;
        Self::from_socket(config, key, peers, socket)
    }

    /// Starts the endpoint on an already bound UDP socket.
    pub fn from_socket(
        config: NetworkConfig,
        key: &NetworkKeyPair,
        peers: Peers,
        socket: std::net::UdpSocket,
    ) -> Result<(Self, mpsc::Receiver<Inbound<M>>), NetworkError> {
        let address = socket
            .local_addr()
            .map_err(|source| NetworkError::Bind { address: SocketAddr::from(([0, 0, 0, 0], 0)), source })?;
        size_receive_buffer(&socket, &config);
        Self::start(config, key, peers, |endpoint_config, server_config| {
            quinn::Endpoint::new(endpoint_config, Some(server_config), socket, Arc::new(quinn::TokioRuntime))
                .map_err(|source| NetworkError::Bind { address, source })
        })
    }

    /// Binds `address` on turmoil's simulated network (inside a turmoil host) and starts the endpoint.
    /// Set `config.rng_seed` from the simulation seed and the node so that runs repeat.
    pub async fn bind_turmoil(
        config: NetworkConfig,
        key: &NetworkKeyPair,
        peers: Peers,
        address: SocketAddr,
    ) -> Result<(Self, mpsc::Receiver<Inbound<M>>), NetworkError> {
        let socket = crate::turmoil_socket::TurmoilUdpSocket::bind(address)
            .await
            .map_err(|source| NetworkError::Bind { address, source })?;
        Self::start(config, key, peers, |endpoint_config, server_config| {
            quinn::Endpoint::new_with_abstract_socket(
                endpoint_config,
                Some(server_config),
                Arc::new(socket),
                Arc::new(quinn::TokioRuntime),
            )
            .map_err(|source| NetworkError::Bind { address, source })
        })
    }

    fn start(
        config: NetworkConfig,
        key: &NetworkKeyPair,
        peers: Peers,
        open: impl FnOnce(quinn::EndpointConfig, quinn::ServerConfig) -> Result<quinn::Endpoint, NetworkError>,
    ) -> Result<(Self, mpsc::Receiver<Inbound<M>>), NetworkError> {
        let me = peers.index_of(&key.public()).ok_or(NetworkError::NotInPeers(key.public()))?;
        let peers = Arc::new(peers);
        let config = Arc::new(config);
        let metrics = Arc::new(NetworkMetrics::default());

        let (server_config, client_config) = connection_configs(&config, key, &peers)?;
        let quic = open(endpoint_config(&config)?, server_config)?;

        let (inbound, inbound_rx) = mpsc::channel(config.inbound_capacity);
        let mut tasks =
            vec![Receiver::spawn(quic.clone(), Arc::clone(&peers), Arc::clone(&config), Arc::clone(&metrics), inbound)];
        let mut links = BTreeMap::new();
        for peer in peers.iter() {
            let (queue, task) = PeerSender::spawn(
                *peer,
                quic.clone(),
                client_config.clone(),
                Arc::clone(&config),
                Arc::clone(&metrics),
            );
            tasks.push(task);
            links.insert(peer.index, Link { queue, reliable: Arc::new(Semaphore::new(config.max_pending_reliable)) });
        }
        let inner = Inner { me, peers, links, quic, config, metrics, tasks };
        Ok((Self { inner: Arc::new(inner), _message: PhantomData }, inbound_rx))
    }
}

impl<M: Message> Endpoint<M> {
    /// Our own index in the peer list.
    pub fn me(&self) -> AuthorityIndex {
        self.inner.me
    }

    pub fn peers(&self) -> &Peers {
        &self.inner.peers
    }

    pub fn metrics(&self) -> &Arc<NetworkMetrics> {
        &self.inner.metrics
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.inner.config
    }

    /// The socket address the endpoint listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.quic.local_addr().ok()
    }

    /// Sends `message` once, without an answer; dropped (and counted) if `to`'s queue is full.
    pub fn send(&self, to: AuthorityIndex, message: &M) -> Result<(), NetworkError> {
        self.send_raw(to, encode(message)?)
    }

    /// `send` to every peer but ourselves; full queues drop their copy and are counted.
    pub fn broadcast(&self, message: &M) -> Result<(), NetworkError> {
        let frame = encode(message)?;
        for &to in self.inner.links.keys().filter(|&&to| to != self.inner.me) {
            let _ = self.send_raw(to, frame.clone());
        }
        Ok(())
    }

    /// Sends `frame` as it is, unchecked, best-effort: for fault-injection tests that play a faulty peer.
    pub fn send_raw(&self, to: AuthorityIndex, frame: Bytes) -> Result<(), NetworkError> {
        let link = self.link(to)?;
        link.queue.try_send(Outgoing { frame, answer: None }).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => {
                bump(&self.inner.metrics.dropped_queue_full);
                NetworkError::QueueFull { peer: to, capacity: self.inner.config.peer_queue_capacity }
            }
            mpsc::error::TrySendError::Closed(_) => NetworkError::ShutDown,
        })
    }

    /// Sends `message` until `to` answers. Waits while `to` already has `max_pending_reliable` messages
    /// pending (back-pressure); the returned [`Delivery`] resolves to the answer, and dropping it cancels.
    pub async fn send_reliable(&self, to: AuthorityIndex, message: &M) -> Result<Delivery<M>, NetworkError> {
        let frame = encode(message)?;
        self.deliver(to, frame).await
    }

    /// `send_reliable` to every peer but ourselves, in index order.
    pub async fn broadcast_reliable(&self, message: &M) -> Result<Vec<Delivery<M>>, NetworkError> {
        let frame = encode(message)?;
        let mut deliveries = Vec::new();
        for &to in self.inner.links.keys().filter(|&&to| to != self.inner.me) {
            deliveries.push(self.deliver(to, frame.clone()).await?);
        }
        Ok(deliveries)
    }

    /// Asks `to` once and waits at most `timeout` for its reply (e.g. "give me batch X"); the caller picks
    /// another peer on failure. An ack without a reply is [`NetworkError::NoReply`].
    pub async fn request(&self, to: AuthorityIndex, message: &M, timeout: Duration) -> Result<M, NetworkError> {
        let frame = encode(message)?;
        let route = self.route(to)?;
        match tokio::time::timeout(timeout, route.attempt::<M>(frame)).await {
            Err(_) => Err(NetworkError::Timeout { peer: to, timeout }),
            Ok(Err(error)) => Err(error),
            Ok(Ok(Response::Reply(reply))) => Ok(reply),
            Ok(Ok(Response::Ack)) => Err(NetworkError::NoReply { peer: to }),
        }
    }

    /// Closes every connection now and stops the endpoint's tasks; pending deliveries end with `ShutDown`.
    pub fn shutdown(&self) {
        self.inner.quic.close(0u32.into(), b"shut down");
        for task in &self.inner.tasks {
            task.abort();
        }
    }

    async fn deliver(&self, to: AuthorityIndex, frame: Bytes) -> Result<Delivery<M>, NetworkError> {
        let permit = Arc::clone(&self.link(to)?.reliable).acquire_owned().await.map_err(|_| NetworkError::ShutDown)?;
        Ok(self.route(to)?.deliver(frame, permit))
    }

    fn link(&self, to: AuthorityIndex) -> Result<&Link, NetworkError> {
        self.inner.links.get(&to).ok_or(NetworkError::UnknownPeer(to))
    }

    fn route(&self, to: AuthorityIndex) -> Result<Route, NetworkError> {
        Ok(Route {
            peer: to,
            queue: self.link(to)?.queue.clone(),
            config: Arc::clone(&self.inner.config),
            metrics: Arc::clone(&self.inner.metrics),
        })
    }
}
