//! The receiver: accepts connections from the peer list, reads one frame per stream, validates it and hands
//! it to the application on a bounded channel as an [`Inbound`].
//!
//! The sender is named by the key its certificate proved (never by anything inside the frame). A frame
//! that is oversized, malformed or slow is dropped and counted, and the endpoint keeps serving: nothing a
//! peer sends can panic this actor. Best-effort messages that find the channel full are dropped and
//! counted; messages that want an answer wait for room, which pushes back on the sender (its answer is
//! delayed) instead of growing memory. Each peer has at most one incoming connection: a newer one (the peer
//! restarted or redialed) closes the older, so a peer cannot pile up connections either.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use mako_types::AuthorityIndex;
use quinn::{Connection, ReadToEndError, RecvStream, SendStream, VarInt};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::config::NetworkConfig;
use crate::error::NetworkError;
use crate::frame::{decode_aligned, encode_reply, AlignedFrame, Message};
use crate::metrics::{bump, NetworkMetrics};
use crate::peers::Peers;
use crate::tls::peer_key;

/// Stream error codes the receiver resets with; the sender sees them as a failed attempt.
const REJECTED: VarInt = VarInt::from_u32(1);
const MALFORMED: VarInt = VarInt::from_u32(2);
const OVERSIZED: VarInt = VarInt::from_u32(3);
const TOO_SLOW: VarInt = VarInt::from_u32(4);

/// A validated message from an authenticated peer.
#[derive(Debug)]
pub struct Inbound<M> {
    /// Who sent it, from the key its TLS certificate proved.
    pub from: AuthorityIndex,
    pub message: M,
    /// Answers the sender; dropping it acknowledges the message.
    pub responder: Responder<M>,
}

/// The way back to the sender of one message. A reliable sender learns that its message arrived only from
/// this answer, so an application that must persist a message before acknowledging it (a worker storing a
/// batch, DESIGN.md §3) holds the responder until the write is durable.
#[derive(Debug)]
pub struct Responder<M> {
    from: AuthorityIndex,
    stream: Option<SendStream>,
    _message: PhantomData<fn(M)>,
}

impl<M: Message> Responder<M> {
    /// Whether the sender waits for an answer (reliable sends and requests do; best-effort sends do not).
    pub fn expects_answer(&self) -> bool {
        self.stream.is_some()
    }

    /// Acknowledges the message (the same as dropping the responder).
    pub fn ack(self) {}

    /// Answers with `reply`; a no-op for best-effort messages.
    pub async fn reply(mut self, reply: &M) -> Result<(), NetworkError> {
        let Some(mut stream) = self.stream.take() else { return Ok(()) };
        let frame = encode_reply(reply)?;
        let stream_error = |e: &dyn std::fmt::Display| NetworkError::Stream { peer: self.from, reason: e.to_string() };
        stream.write_all(&frame).await.map_err(|e| stream_error(&e))?;
        stream.finish().map_err(|e| stream_error(&e))
    }

    /// Refuses the message: a reliable sender will try again later.
    pub fn reject(mut self) {
        if let Some(mut stream) = self.stream.take() {
            let _ = stream.reset(REJECTED);
        }
    }
}

impl<M> Drop for Responder<M> {
    fn drop(&mut self) {
        // An empty answer is an ack.
        if let Some(mut stream) = self.stream.take() {
            let _ = stream.finish();
        }
    }
}

/// The accept loop and everything it spawns.
pub(crate) struct Receiver<M> {
    endpoint: quinn::Endpoint,
    peers: Arc<Peers>,
    config: Arc<NetworkConfig>,
    metrics: Arc<NetworkMetrics>,
    inbound: mpsc::Sender<Inbound<M>>,
    /// The live incoming connection of each peer.
    connections: Arc<Mutex<BTreeMap<AuthorityIndex, Connection>>>,
}

impl<M> Clone for Receiver<M> {
    fn clone(&self) -> Self {
        Self {
            endpoint: self.endpoint.clone(),
            peers: Arc::clone(&self.peers),
            config: Arc::clone(&self.config),
            metrics: Arc::clone(&self.metrics),
            inbound: self.inbound.clone(),
            connections: Arc::clone(&self.connections),
        }
    }
}

impl<M: Message> Receiver<M> {
    pub(crate) fn spawn(
        endpoint: quinn::Endpoint,
        peers: Arc<Peers>,
        config: Arc<NetworkConfig>,
        metrics: Arc<NetworkMetrics>,
        inbound: mpsc::Sender<Inbound<M>>,
    ) -> JoinHandle<()> {
        let connections = Arc::default();
        tokio::spawn(Self { endpoint, peers, config, metrics, inbound, connections }.run())
    }

    async fn run(self) {
        while let Some(incoming) = self.endpoint.accept().await {
            tokio::spawn(self.clone().serve_connection(incoming));
        }
    }

    async fn serve_connection(self, incoming: quinn::Incoming) {
        let connection = match incoming.await {
            Ok(connection) => connection,
            Err(error) => {
                // Among others: a certificate whose key is not in the peer list.
                bump(&self.metrics.refused_connections);
                debug!(%error, "refused an incoming connection");
                return;
            }
        };
        let Some(from) = peer_key(&connection).and_then(|key| self.peers.index_of(&key)) else {
            bump(&self.metrics.refused_connections);
            connection.close(0u32.into(), b"unknown peer");
            return;
        };
        bump(&self.metrics.accepted_connections);
        if let Some(older) = self.connections().insert(from, connection.clone()) {
            older.close(0u32.into(), b"replaced by a newer connection");
        }
        loop {
            tokio::select! {
                biased;
                stream = connection.accept_bi() => match stream {
                    Ok((send, recv)) => { tokio::spawn(self.clone().serve_stream(from, recv, Some(send))); }
                    Err(_) => break,
                },
                stream = connection.accept_uni() => match stream {
                    Ok(recv) => { tokio::spawn(self.clone().serve_stream(from, recv, None)); }
                    Err(_) => break,
                },
            }
        }
        let mut connections = self.connections();
        if connections.get(&from).is_some_and(|live| live.stable_id() == connection.stable_id()) {
            connections.remove(&from);
        }
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, BTreeMap<AuthorityIndex, Connection>> {
        self.connections.lock().expect("the connection table is never poisoned: no code panics holding it")
    }

    /// Reads, checks and delivers the one frame of a stream; `send` is the way back when there is one.
    async fn serve_stream(self, from: AuthorityIndex, mut recv: RecvStream, mut send: Option<SendStream>) {
        let max = self.config.max_frame_size;
        let read = tokio::time::timeout(self.config.frame_read_timeout, read_frame(&mut recv, max)).await;
        let refuse = |recv: &mut RecvStream, send: &mut Option<SendStream>, code: VarInt| {
            let _ = recv.stop(code);
            if let Some(send) = send {
                let _ = send.reset(code);
            }
        };
        let frame = match read {
            Ok(Ok(frame)) => frame,
            Ok(Err(ReadToEndError::TooLong)) => {
                bump(&self.metrics.oversized);
                debug!(%from, limit = max, "oversized frame");
                return refuse(&mut recv, &mut send, OVERSIZED);
            }
            Ok(Err(error)) => {
                debug!(%from, %error, "stream failed before its frame was complete");
                return;
            }
            Err(_) => {
                debug!(%from, timeout = ?self.config.frame_read_timeout, "frame too slow");
                return refuse(&mut recv, &mut send, TOO_SLOW);
            }
        };
        let message = match decode_aligned::<M>(&frame) {
            Ok(message) => message,
            Err(reason) => {
                bump(&self.metrics.malformed);
                debug!(%from, len = frame.len(), %reason, "malformed frame");
                return refuse(&mut recv, &mut send, MALFORMED);
            }
        };
        let wants_answer = send.is_some();
        let inbound = Inbound { from, message, responder: Responder { from, stream: send, _message: PhantomData } };
        if wants_answer {
            match self.inbound.send(inbound).await {
                Ok(()) => bump(&self.metrics.received),
                // The application is gone: refuse rather than acknowledge.
                Err(mpsc::error::SendError(inbound)) => inbound.responder.reject(),
            }
        } else {
            match self.inbound.try_send(inbound) {
                Ok(()) => bump(&self.metrics.received),
                Err(TrySendError::Full(_)) => bump(&self.metrics.dropped_queue_full),
                Err(TrySendError::Closed(_)) => {}
            }
        }
    }
}

/// Reads the whole frame of a stream into one aligned buffer, as rkyv reads it: the chunks quinn holds are
/// copied once, into a buffer of the frame's size. (`read_to_end` zeroed a buffer and copied into it, and
/// decoding then copied it again to align it: three passes over every batch a peer sent.)
async fn read_frame(recv: &mut RecvStream, max: usize) -> Result<AlignedFrame, ReadToEndError> {
    let mut chunks = Vec::new();
    let mut len = 0;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
        len += chunk.bytes.len();
        if len > max {
            return Err(ReadToEndError::TooLong);
        }
        chunks.push(chunk.bytes);
    }
    let mut frame = AlignedFrame::with_capacity(len);
    for chunk in &chunks {
        frame.extend_from_slice(chunk);
    }
    Ok(frame)
}
