//! Reliable delivery: send a frame again, with exponential back-off, until the receiver answers.
//!
//! Delivery is known only from the receiver's application-level answer, never from a successful write: a
//! write into a connection whose peer restarted succeeds locally until the connection dies (DESIGN.md §6).
//! Each reliable message is a task holding one of its peer's `max_pending_reliable` permits, which is the
//! back-pressure: `send_reliable` waits for a permit. Dropping the [`Delivery`] cancels the task. Delivery is
//! at least once: an answer lost with its connection makes the sender try again, so receivers must treat
//! duplicates as harmless (Narwhal's messages are idempotent by digest).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use mako_types::AuthorityIndex;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::config::NetworkConfig;
use crate::error::NetworkError;
use crate::frame::{decode_response, FrameError, Message, Response};
use crate::metrics::{bump, NetworkMetrics};
use crate::sender::Outgoing;

/// A reliable message on its way. Await it for the receiver's answer; drop it to stop retrying.
#[derive(Debug)]
pub struct Delivery<M> {
    peer: AuthorityIndex,
    task: JoinHandle<Result<Response<M>, NetworkError>>,
}

impl<M> Delivery<M> {
    /// The receiver.
    pub fn peer(&self) -> AuthorityIndex {
        self.peer
    }

    /// Whether the answer has arrived (or the delivery ended otherwise).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl<M> Future for Delivery<M> {
    type Output = Result<Response<M>, NetworkError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.task).poll(cx).map(|joined| match joined {
            Ok(result) => result,
            Err(error) if error.is_cancelled() => Err(NetworkError::Cancelled),
            Err(_) => Err(NetworkError::ShutDown),
        })
    }
}

impl<M> Drop for Delivery<M> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a delivery task needs of its peer.
pub(crate) struct Route {
    pub(crate) peer: AuthorityIndex,
    pub(crate) queue: mpsc::Sender<Outgoing>,
    pub(crate) config: Arc<NetworkConfig>,
    pub(crate) metrics: Arc<NetworkMetrics>,
}

impl Route {
    /// One try: queue the frame for a bidirectional stream (waiting for room) and read the answer.
    pub(crate) async fn attempt<M: Message>(&self, frame: Bytes) -> Result<Response<M>, NetworkError> {
        let (answer, answered) = oneshot::channel();
        self.queue.send(Outgoing { frame, answer: Some(answer) }).await.map_err(|_| NetworkError::ShutDown)?;
        let raw = answered.await.map_err(|_| NetworkError::ShutDown)??;
        decode_response(&raw, self.config.max_frame_size).map_err(|error| {
            let (counter, reason) = match error {
                FrameError::Oversized => (&self.metrics.oversized, "oversized".to_owned()),
                FrameError::Malformed(reason) => (&self.metrics.malformed, reason),
            };
            bump(counter);
            NetworkError::Malformed { from: self.peer, len: raw.len(), reason }
        })
    }

    /// Starts a reliable delivery of `frame`, holding `permit` until it ends.
    pub(crate) fn deliver<M: Message>(self, frame: Bytes, permit: OwnedSemaphorePermit) -> Delivery<M> {
        let peer = self.peer;
        let task = tokio::spawn(async move {
            let _permit = permit;
            let mut delay = self.config.retry_initial_delay;
            loop {
                match self.attempt(frame.clone()).await {
                    Ok(response) => return Ok(response),
                    Err(NetworkError::ShutDown) => return Err(NetworkError::ShutDown),
                    Err(error) => {
                        bump(&self.metrics.retries);
                        debug!(%peer, %error, ?delay, "reliable send failed; will retry");
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(self.config.retry_max_delay);
            }
        });
        Delivery { peer, task }
    }
}
