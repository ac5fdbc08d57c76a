//! The peer sender: one actor per peer that owns our outgoing QUIC connection to it and turns queued
//! frames into streams.
//!
//! Its queue is bounded (`peer_queue_capacity`) and it opens at most `max_streams_per_peer` streams at
//! once, so a slow or dead peer costs a bounded amount of memory: best-effort frames are dropped at the
//! queue, reliable ones wait for room. While the peer is unreachable the actor redials with exponential
//! back-off and the queue holds. The actor knows only bytes; encoding, decoding and retries live with the
//! caller (`reliable.rs`), so one non-generic actor serves every message type.

use std::sync::Arc;

use bytes::Bytes;
use quinn::{ConnectError, Connection, ReadError, ReadToEndError};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::config::NetworkConfig;
use crate::error::NetworkError;
use crate::metrics::{bump, NetworkMetrics};
use crate::peers::Peer;
use crate::tls::{peer_key, SERVER_NAME};

/// The receiver's raw answer on a bidirectional stream (empty: ack), or why there was none.
pub(crate) type AnswerResult = Result<Vec<u8>, NetworkError>;

/// One frame to send. With `answer`, it goes on a bidirectional stream and the answer is sent back;
/// without, on a unidirectional stream, best-effort.
pub(crate) struct Outgoing {
    pub(crate) frame: Bytes,
    pub(crate) answer: Option<oneshot::Sender<AnswerResult>>,
}

pub(crate) struct PeerSender {
    peer: Peer,
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    config: Arc<NetworkConfig>,
    metrics: Arc<NetworkMetrics>,
    queue: mpsc::Receiver<Outgoing>,
    connection: Option<Connection>,
    streams: Arc<Semaphore>,
}

impl PeerSender {
    pub(crate) fn spawn(
        peer: Peer,
        endpoint: quinn::Endpoint,
        client: quinn::ClientConfig,
        config: Arc<NetworkConfig>,
        metrics: Arc<NetworkMetrics>,
    ) -> (mpsc::Sender<Outgoing>, JoinHandle<()>) {
        let (sender, queue) = mpsc::channel(config.peer_queue_capacity);
        let streams = Arc::new(Semaphore::new(config.max_streams_per_peer));
        let actor = Self { peer, endpoint, client, config, metrics, queue, connection: None, streams };
        (sender, tokio::spawn(actor.run()))
    }

    async fn run(mut self) {
        while let Some(outgoing) = self.queue.recv().await {
            if outgoing.answer.as_ref().is_some_and(|answer| answer.is_closed()) {
                continue; // the caller gave up while the frame waited in the queue
            }
            let Some(connection) = self.connection().await else {
                return; // the endpoint is shutting down
            };
            let permit = Arc::clone(&self.streams).acquire_owned().await.expect("the stream semaphore is never closed");
            let stream = Stream {
                peer: self.peer,
                connection,
                max_frame_size: self.config.max_frame_size,
                attempt_timeout: self.config.attempt_timeout,
                metrics: Arc::clone(&self.metrics),
                _permit: permit,
            };
            tokio::spawn(stream.send(outgoing));
        }
    }

    /// The live connection to the peer, dialing (with back-off) until there is one; `None` once the
    /// endpoint stops.
    async fn connection(&mut self) -> Option<Connection> {
        if let Some(connection) = &self.connection {
            if connection.close_reason().is_none() {
                return Some(connection.clone());
            }
        }
        self.connection = None;
        let mut delay = self.config.retry_initial_delay;
        loop {
            match self.dial().await {
                Ok(connection) => {
                    self.metrics.track_dialed(self.peer.index, &connection);
                    self.connection = Some(connection.clone());
                    return Some(connection);
                }
                Err(NetworkError::ShutDown) => return None,
                Err(error) => {
                    bump(&self.metrics.dial_failures);
                    debug!(peer = %self.peer.index, %error, ?delay, "dial failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.config.retry_max_delay);
                }
            }
        }
    }

    async fn dial(&self) -> Result<Connection, NetworkError> {
        let Peer { index: peer, address, key: expected } = self.peer;
        let connect_error = |reason: String| NetworkError::Connect { peer, address, reason };
        let connecting = match self.endpoint.connect_with(self.client.clone(), address, SERVER_NAME) {
            Ok(connecting) => connecting,
            Err(ConnectError::EndpointStopping) => return Err(NetworkError::ShutDown),
            Err(error) => return Err(connect_error(error.to_string())),
        };
        let connection = tokio::time::timeout(self.config.connect_timeout, connecting)
            .await
            .map_err(|_| connect_error(format!("no handshake within {:?}", self.config.connect_timeout)))?
            .map_err(|error| connect_error(error.to_string()))?;
        // The verifier accepted a key of the list; make sure it is the key of the peer we dialed.
        match peer_key(&connection) {
            Some(presented) if presented == expected => Ok(connection),
            presented => {
                connection.close(0u32.into(), b"wrong identity");
                Err(NetworkError::WrongIdentity { peer, address, presented, expected })
            }
        }
    }
}

/// One frame's trip on one stream.
struct Stream {
    peer: Peer,
    connection: Connection,
    max_frame_size: usize,
    attempt_timeout: std::time::Duration,
    metrics: Arc<NetworkMetrics>,
    _permit: OwnedSemaphorePermit,
}

impl Stream {
    async fn send(self, outgoing: Outgoing) {
        let Outgoing { frame, answer } = outgoing;
        match answer {
            None => match self.send_uni(frame).await {
                Ok(()) => bump(&self.metrics.sent),
                Err(error) => {
                    bump(&self.metrics.send_failures);
                    debug!(peer = %self.peer.index, %error, "best-effort send failed");
                }
            },
            Some(mut answer) => {
                let result = tokio::select! {
                    biased;
                    () = answer.closed() => return, // cancelled: dropping the stream resets it
                    result = tokio::time::timeout(self.attempt_timeout, self.exchange(frame)) => result
                        .unwrap_or(Err(NetworkError::Timeout { peer: self.peer.index, timeout: self.attempt_timeout })),
                };
                match &result {
                    Ok(_) => bump(&self.metrics.acked),
                    Err(_) => bump(&self.metrics.send_failures),
                }
                let _ = answer.send(result);
            }
        }
    }

    /// The frame's bytes are handed to quinn as they are (`write_chunk`), not copied into its send buffer: the
    /// same frame goes to every peer.
    async fn send_uni(&self, frame: Bytes) -> Result<(), NetworkError> {
        let mut send = self.connection.open_uni().await.map_err(|e| self.stream_error(e))?;
        send.write_chunk(frame).await.map_err(|e| self.stream_error(e))?;
        send.finish().map_err(|e| self.stream_error(e))
    }

    async fn exchange(&self, frame: Bytes) -> AnswerResult {
        let (mut send, mut recv) = self.connection.open_bi().await.map_err(|e| self.stream_error(e))?;
        send.write_chunk(frame).await.map_err(|e| self.stream_error(e))?;
        send.finish().map_err(|e| self.stream_error(e))?;
        bump(&self.metrics.sent);
        // An answer is at most a tag byte and one frame.
        match recv.read_to_end(self.max_frame_size + 1).await {
            Ok(answer) => Ok(answer),
            Err(ReadToEndError::TooLong) => {
                bump(&self.metrics.oversized);
                Err(NetworkError::Oversized { from: self.peer.index, limit: self.max_frame_size })
            }
            Err(ReadToEndError::Read(ReadError::Reset(_))) => Err(NetworkError::Rejected { peer: self.peer.index }),
            Err(error) => Err(self.stream_error(error)),
        }
    }

    fn stream_error(&self, error: impl std::fmt::Display) -> NetworkError {
        NetworkError::Stream { peer: self.peer.index, reason: error.to_string() }
    }
}
