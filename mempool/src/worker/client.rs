//! The client port (DESIGN.md §3, worker step 1): clients stream transactions over long-lived TCP
//! connections, each transaction one frame `u32 little-endian length ‖ bytes`.
//!
//! The worker writes frames back in the same framing. Once a batch carrying some of a connection's
//! transactions is acknowledged ([`super::client_acks`]), an ack frame: `ack:` ‖ the batch digest (32 bytes) ‖
//! how many of this connection's transactions it carries (`u32` little-endian). A transaction of zero bytes or
//! above `max_transaction_size` is refused clearly: one error frame (UTF-8 text starting with `rejected:`),
//! then the worker closes that connection, without disturbing any other. Accepted transactions go to the batch
//! maker over a bounded channel, as many at a time as the connection's read buffer holds whole
//! ([`ClientFrames`]); when the channel is full the connection stops reading, which pushes back on the client
//! through TCP flow control. The per-connection code is generic over the stream, so production (tokio) and
//! simulation (turmoil) share it and differ only in the accept call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, warn};

use super::client_acks::{Ack, ClientAcks, ConnectionId};
use super::metrics::{bump, WorkerMetrics};
use super::WorkerError;

/// The tag that starts an ack frame's payload.
pub const ACK_TAG: &[u8; 4] = b"ack:";
/// An ack frame's payload: the tag, the digest, the count.
pub const ACK_PAYLOAD: usize = 4 + 32 + 4;

/// Client connections served at once; further clients wait in the listener's backlog.
const MAX_CLIENT_CONNECTIONS: usize = 1_024;
/// The kernel's receive buffer for a client connection. Left to itself, Linux grows it up to
/// `net.ipv4.tcp_rmem`'s maximum (32 MB here, 60k transactions of 512 B): while admission is closed
/// (`crate::admission`) that much would wait unseen in the kernel, seconds of latency that no bound of ours
/// covers. Half a megabyte (the kernel doubles it for its bookkeeping) still outruns what a worker reads.
const CLIENT_RECEIVE_BUFFER: u32 = 512 * 1024;
/// Pause after a failed accept (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);
/// A connection's read buffer: the whole transactions it holds after a read go to the batch maker as one
/// [`ClientFrames`] (about 127 of 512 bytes).
const READ_BUFFER: usize = 64 * 1024;

/// Whole transactions from one client connection, in the client's framing (each a `u32` little-endian length
/// and its bytes), sent to the batch maker together. One transaction a message cost an allocation and a
/// channel send each: 3-4% of a loaded validator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientFrames {
    bytes: Vec<u8>,
    count: usize,
}

impl ClientFrames {
    /// Appends a transaction (its size already checked).
    pub fn push(&mut self, transaction: &[u8]) {
        self.bytes.extend_from_slice(&(transaction.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(transaction);
        self.count += 1;
    }

    /// How many transactions.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The transactions, in the order they came.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut rest = self.bytes.as_slice();
        std::iter::from_fn(move || {
            let (length, after) = rest.split_first_chunk::<4>()?;
            let (transaction, after) = after.split_at(u32::from_le_bytes(*length) as usize);
            rest = after;
            Some(transaction)
        })
    }

    /// Reads one transaction of `size` bytes (its length prefix already read), waiting for it.
    async fn read_one<R: AsyncRead + Unpin>(&mut self, reader: &mut R, size: usize) -> std::io::Result<()> {
        self.bytes.extend_from_slice(&(size as u32).to_le_bytes());
        let start = self.bytes.len();
        self.bytes.resize(start + size, 0);
        reader.read_exact(&mut self.bytes[start..]).await?;
        self.count += 1;
        Ok(())
    }

    /// Takes every whole transaction at the front of `buffered` (a reader's buffer, never waiting for more),
    /// and returns how many bytes they took; stops at a transaction cut by the buffer's end, and at one whose
    /// size is refused, with the refusal.
    fn take_whole(&mut self, buffered: &[u8], limit: usize) -> (usize, Result<(), WorkerError>) {
        let mut taken = 0;
        while let Some((length, after)) = buffered[taken..].split_first_chunk::<4>() {
            let size = u32::from_le_bytes(*length) as usize;
            if let Err(rejection) = check_size(size, limit) {
                return (taken, Err(rejection));
            }
            let Some(transaction) = after.get(..size) else { break };
            self.push(transaction);
            taken += 4 + size;
        }
        (taken, Ok(()))
    }
}

/// Where clients connect: a real TCP listener, or turmoil's simulated one.
pub enum ClientListener {
    Tokio(tokio::net::TcpListener),
    Turmoil(turmoil::net::TcpListener),
}

/// One accepted client connection.
enum ClientStream {
    Tokio(tokio::net::TcpStream),
    Turmoil(turmoil::net::TcpStream),
}

impl ClientListener {
    /// Listens on a real TCP port; accepted connections inherit [`CLIENT_RECEIVE_BUFFER`].
    pub async fn bind(address: SocketAddr) -> Result<Self, WorkerError> {
        let listen = || {
            let socket =
                if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
            socket.set_reuseaddr(true)?;
            socket.set_recv_buffer_size(CLIENT_RECEIVE_BUFFER)?;
            socket.bind(address)?;
            socket.listen(1_024)
        };
        let listener = listen().map_err(|source| WorkerError::ClientBind { address, source })?;
        Ok(Self::Tokio(listener))
    }

    /// Listens on turmoil's simulated network (inside a turmoil host).
    pub async fn bind_turmoil(address: SocketAddr) -> Result<Self, WorkerError> {
        let listener = turmoil::net::TcpListener::bind(address)
            .await
            .map_err(|source| WorkerError::ClientBind { address, source })?;
        Ok(Self::Turmoil(listener))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Self::Tokio(listener) => listener.local_addr(),
            Self::Turmoil(listener) => listener.local_addr(),
        }
    }

    async fn accept(&self) -> std::io::Result<ClientStream> {
        match self {
            Self::Tokio(listener) => listener.accept().await.map(|(stream, _)| ClientStream::Tokio(stream)),
            Self::Turmoil(listener) => listener.accept().await.map(|(stream, _)| ClientStream::Turmoil(stream)),
        }
    }
}

/// The accept loop; owns the connection tasks (at most [`MAX_CLIENT_CONNECTIONS`]).
pub struct ClientPort {
    listener: ClientListener,
    max_transaction_size: usize,
    transactions: mpsc::Sender<(ConnectionId, ClientFrames)>,
    acks: ClientAcks,
    metrics: Arc<WorkerMetrics>,
    connections: JoinSet<()>,
}

impl ClientPort {
    pub fn spawn(
        listener: ClientListener,
        max_transaction_size: usize,
        transactions: mpsc::Sender<(ConnectionId, ClientFrames)>,
        acks: ClientAcks,
        metrics: Arc<WorkerMetrics>,
    ) -> JoinHandle<()> {
        let port = Self { listener, max_transaction_size, transactions, acks, metrics, connections: JoinSet::new() };
        tokio::spawn(port.run())
    }

    async fn run(mut self) {
        loop {
            tokio::select! {
                biased;
                Some(_) = self.connections.join_next() => {}
                accepted = self.listener.accept(), if self.connections.len() < MAX_CLIENT_CONNECTIONS => {
                    match accepted {
                        Ok(ClientStream::Tokio(stream)) => self.serve(stream),
                        Ok(ClientStream::Turmoil(stream)) => self.serve(stream),
                        Err(error) => {
                            warn!(%error, "cannot accept a client connection");
                            tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                        }
                    }
                }
            }
        }
    }

    fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(&mut self, stream: S) {
        let (limit, transactions, metrics) =
            (self.max_transaction_size, self.transactions.clone(), Arc::clone(&self.metrics));
        let connection = self.acks.connect();
        self.connections.spawn(async move {
            if let Err(error) = serve_connection(stream, limit, &transactions, connection, &metrics).await {
                debug!(%error, "client connection closed");
            }
        });
    }
}

/// Reads transactions from one client until it disconnects, sends a bad transaction, or the worker stops,
/// writing back the acks of its transactions meanwhile.
pub(crate) async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    max_transaction_size: usize,
    transactions: &mpsc::Sender<(ConnectionId, ClientFrames)>,
    mut connection: super::client_acks::Connection,
    metrics: &WorkerMetrics,
) -> Result<(), WorkerError> {
    let (reader, mut writer) = tokio::io::split(stream);
    let reading = read_transactions(reader, max_transaction_size, transactions, connection.id, metrics);
    // Biased, as every `select!` here: an unbiased one polls its branches in a random order, and a simulation
    // must replay from its seed (DESIGN.md §6).
    let outcome = tokio::select! {
        biased;
        outcome = reading => outcome,
        // Ends only when the worker stops acknowledging (shutdown) or the client stops reading for good.
        () = write_acks(&mut writer, &mut connection.acks) => Ok(()),
    };
    if let Err(rejection @ (WorkerError::EmptyTransaction | WorkerError::TransactionTooLarge { .. })) = &outcome {
        // Best effort: the client may already be gone.
        let _ = write_error_frame(&mut writer, &format!("rejected: {rejection}")).await;
    }
    outcome
}

/// Writes each ack as a frame until the channel closes or a write fails.
async fn write_acks<W: AsyncWrite + Unpin>(writer: &mut W, acks: &mut mpsc::Receiver<Ack>) {
    while let Some(ack) = acks.recv().await {
        let mut frame = [0u8; 4 + ACK_PAYLOAD];
        frame[..4].copy_from_slice(&(ACK_PAYLOAD as u32).to_le_bytes());
        frame[4..8].copy_from_slice(ACK_TAG);
        frame[8..40].copy_from_slice(ack.digest.as_bytes());
        frame[40..].copy_from_slice(&ack.count.to_le_bytes());
        if writer.write_all(&frame).await.is_err() {
            return;
        }
    }
}

async fn read_transactions<R: AsyncRead + Unpin>(
    reader: R,
    max_transaction_size: usize,
    transactions: &mpsc::Sender<(ConnectionId, ClientFrames)>,
    connection: ConnectionId,
    metrics: &WorkerMetrics,
) -> Result<(), WorkerError> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    loop {
        // One transaction, waiting as long as it takes...
        let mut length = [0u8; 4];
        match reader.read_exact(&mut length).await {
            Ok(_) => {}
            // The client closed the connection (between frames, or within a length prefix it never finished).
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error.into()),
        }
        let size = u32::from_le_bytes(length) as usize;
        if let Err(rejection) = check_size(size, max_transaction_size) {
            bump(&metrics.transactions_rejected);
            return Err(rejection);
        }
        let mut frames = ClientFrames::default();
        frames.read_one(&mut reader, size).await?;
        // ...then every whole one that the buffer holds already, without waiting. The ones before a refused
        // transaction are accepted, as if they had come one by one.
        let (taken, checked) = frames.take_whole(reader.buffer(), max_transaction_size);
        reader.consume(taken);
        let count = frames.len() as u64;
        if transactions.send((connection, frames)).await.is_err() {
            // The batch maker is gone: the worker is shutting down.
            return Ok(());
        }
        metrics.transactions_accepted.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        if let Err(rejection) = checked {
            bump(&metrics.transactions_rejected);
            return Err(rejection);
        }
    }
}

/// A transaction's size must be in `1..=limit`.
fn check_size(size: usize, limit: usize) -> Result<(), WorkerError> {
    match size {
        0 => Err(WorkerError::EmptyTransaction),
        size if size > limit => Err(WorkerError::TransactionTooLarge { size, limit }),
        _ => Ok(()),
    }
}

async fn write_error_frame<W: AsyncWrite + Unpin>(writer: &mut W, text: &str) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(4 + text.len());
    frame.extend_from_slice(&(text.len() as u32).to_le_bytes());
    frame.extend_from_slice(text.as_bytes());
    writer.write_all(&frame).await?;
    writer.shutdown().await
}

#[cfg(test)]
mod tests {
    use mako_types::Transaction;

    use super::*;

    fn frame(bytes: &[u8]) -> Vec<u8> {
        let mut frame = (bytes.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(bytes);
        frame
    }

    /// Runs one connection over an in-memory duplex pipe: the client writes `input` then reads to the end.
    async fn converse(input: Vec<u8>, limit: usize) -> (Result<(), WorkerError>, Vec<Transaction>, Vec<u8>, u64) {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (tx, mut rx) = mpsc::channel(16);
        let metrics = WorkerMetrics::default();
        let serve = serve_connection(server, limit, &tx, ClientAcks::default().connect(), &metrics);
        let talk = async {
            client.write_all(&input).await.unwrap();
            client.shutdown().await.unwrap();
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await.unwrap();
            answer
        };
        let (result, answer) = tokio::join!(serve, talk);
        drop(tx);
        let mut received = Vec::new();
        while let Some((_, frames)) = rx.recv().await {
            received.extend(transactions(&frames));
        }
        (result, received, answer, metrics.snapshot().transactions_rejected)
    }

    fn transactions(frames: &ClientFrames) -> Vec<Transaction> {
        frames.iter().map(|transaction| Transaction(transaction.to_vec())).collect()
    }

    fn error_text(answer: &[u8]) -> String {
        let length = u32::from_le_bytes(answer[..4].try_into().unwrap()) as usize;
        assert_eq!(answer.len(), 4 + length, "one error frame");
        String::from_utf8(answer[4..].to_vec()).unwrap()
    }

    #[tokio::test]
    async fn valid_transactions_are_forwarded_in_order() {
        let input = [frame(b"first"), frame(&[7; 100]), frame(b"x")].concat();
        let (result, received, answer, rejected) = converse(input, 100).await;
        assert!(result.is_ok(), "{result:?}");
        let expected = vec![Transaction(b"first".to_vec()), Transaction(vec![7; 100]), Transaction(b"x".to_vec())];
        assert_eq!(received, expected);
        assert!(answer.is_empty());
        assert_eq!(rejected, 0);
    }

    /// More than a read buffer of transactions of every size, so that buffers end inside length prefixes and
    /// inside transactions: each arrives once, whole, in order, and most share a message with others.
    #[tokio::test]
    async fn transactions_cut_by_the_read_buffer_arrive_whole_and_in_order() {
        let sent: Vec<Transaction> = (0..2_000).map(|i| Transaction(vec![i as u8; 1 + i % 300])).collect();
        let input = sent.iter().map(|t| frame(&t.0)).collect::<Vec<_>>().concat();
        assert!(input.len() > 4 * READ_BUFFER);
        let (client, server) = tokio::io::duplex(1 << 16);
        let (tx, mut rx) = mpsc::channel(16);
        let metrics = WorkerMetrics::default();
        let serve = serve_connection(server, 300, &tx, ClientAcks::default().connect(), &metrics);
        let talk = async move {
            let (mut reading, mut writing) = tokio::io::split(client);
            writing.write_all(&input).await.unwrap();
            writing.shutdown().await.unwrap();
            let mut answer = Vec::new();
            reading.read_to_end(&mut answer).await.unwrap();
        };
        let receive = async {
            let (mut received, mut messages) = (Vec::new(), 0);
            while received.len() < sent.len() {
                let (_, frames) = rx.recv().await.unwrap();
                received.extend(transactions(&frames));
                messages += 1;
            }
            (received, messages)
        };
        let (result, (), (received, messages)) = tokio::join!(serve, talk, receive);
        assert!(result.is_ok(), "{result:?}");
        assert!(received == sent, "every transaction once, whole, in order");
        assert!(messages < sent.len() / 10, "{messages} messages for {} transactions", sent.len());
        assert_eq!(metrics.snapshot().transactions_accepted, sent.len() as u64);
    }

    #[tokio::test]
    async fn oversized_transaction_is_rejected_with_an_error_frame() {
        let input = [frame(b"ok"), frame(&[1; 101]), frame(b"never read")].concat();
        let (result, received, answer, rejected) = converse(input, 100).await;
        assert!(matches!(result, Err(WorkerError::TransactionTooLarge { size: 101, limit: 100 })), "{result:?}");
        assert_eq!(received, vec![Transaction(b"ok".to_vec())]);
        assert_eq!(error_text(&answer), "rejected: transaction of 101 bytes exceeds the limit of 100");
        assert_eq!(rejected, 1);
    }

    #[tokio::test]
    async fn empty_transaction_is_rejected_with_an_error_frame() {
        let input = [frame(b"ok"), frame(b"")].concat();
        let (result, received, answer, rejected) = converse(input, 100).await;
        assert!(matches!(result, Err(WorkerError::EmptyTransaction)), "{result:?}");
        assert_eq!(received, vec![Transaction(b"ok".to_vec())]);
        assert_eq!(error_text(&answer), "rejected: transaction of 0 bytes is empty");
        assert_eq!(rejected, 1);
    }

    /// Two connections send; once the batch that carries their transactions is acknowledged, each reads one
    /// ack frame with the batch's digest and its own count, while it goes on sending.
    #[tokio::test]
    async fn each_connection_reads_the_acks_of_its_own_transactions() {
        let listener = ClientListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let address = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let acks = ClientAcks::default();
        let _port = ClientPort::spawn(listener, 100, tx, acks.clone(), Arc::new(WorkerMetrics::default()));
        let mut first = tokio::net::TcpStream::connect(address).await.unwrap();
        first.write_all(&[frame(b"a"), frame(b"b")].concat()).await.unwrap();
        let mut second = tokio::net::TcpStream::connect(address).await.unwrap();
        second.write_all(&frame(b"c")).await.unwrap();
        let mut origins = super::super::client_acks::Origins::default();
        let mut received = 0;
        while received < 3 {
            let (connection, frames) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
            for _ in frames.iter() {
                origins.push(connection);
            }
            received += frames.len();
        }
        let digest = mako_types::BatchDigest(mako_types::Digest([9; 32]));
        acks.sealed(digest, origins.take());
        acks.acknowledged(&digest);
        for (stream, count) in [(&mut first, 2u32), (&mut second, 1)] {
            let mut answer = [0u8; 4 + ACK_PAYLOAD];
            tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut answer)).await.unwrap().unwrap();
            assert_eq!(answer[..4], (ACK_PAYLOAD as u32).to_le_bytes());
            assert_eq!(&answer[4..8], ACK_TAG);
            assert_eq!(answer[8..40], [9; 32]);
            assert_eq!(answer[40..], count.to_le_bytes());
        }
    }

    #[tokio::test]
    async fn a_truncated_transaction_is_dropped_not_forwarded() {
        let mut input = frame(&[3; 50]);
        input.truncate(20);
        let (result, received, _, _) = converse([frame(b"ok"), input].concat(), 100).await;
        assert!(matches!(result, Err(WorkerError::ClientIo(_))), "{result:?}");
        assert_eq!(received, vec![Transaction(b"ok".to_vec())]);
    }

    #[tokio::test]
    async fn tcp_listener_serves_clients_independently() {
        let listener = ClientListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let address = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let _port = ClientPort::spawn(listener, 10, tx, ClientAcks::default(), Arc::new(WorkerMetrics::default()));
        let mut bad = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut good = tokio::net::TcpStream::connect(address).await.unwrap();
        bad.write_all(&frame(&[0; 11])).await.unwrap();
        let mut answer = Vec::new();
        bad.read_to_end(&mut answer).await.unwrap();
        assert!(error_text(&answer).starts_with("rejected: transaction of 11 bytes"));
        good.write_all(&[frame(b"a"), frame(b"b")].concat()).await.unwrap();
        let mut received = Vec::new();
        while received.len() < 2 {
            let (_, frames) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
            received.extend(transactions(&frames));
        }
        assert_eq!(received, [Transaction(b"a".to_vec()), Transaction(b"b".to_vec())]);
    }

    #[test]
    fn turmoil_listener_serves_clients() -> turmoil::Result {
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut sim = turmoil::Builder::new().build();
        let sink = Arc::clone(&received);
        sim.host("worker", move || {
            let sink = Arc::clone(&sink);
            async move {
                let listener = ClientListener::bind_turmoil(SocketAddr::from(([0, 0, 0, 0], 7000))).await?;
                let (tx, mut rx) = mpsc::channel(16);
                let _port =
                    ClientPort::spawn(listener, 10, tx, ClientAcks::default(), Arc::new(WorkerMetrics::default()));
                while let Some((_, frames)) = rx.recv().await {
                    sink.lock().unwrap().extend(transactions(&frames));
                }
                Ok(())
            }
        });
        sim.client("client", async {
            let mut stream = turmoil::net::TcpStream::connect(("worker", 7000)).await?;
            stream.write_all(&[frame(b"a"), frame(b"b"), frame(&[0; 11])].concat()).await?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            assert_eq!(error_text(&answer), "rejected: transaction of 11 bytes exceeds the limit of 10");
            // Simulated time: lets the worker host drain its channel before the simulation ends.
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(())
        });
        sim.run()?;
        assert_eq!(*received.lock().unwrap(), vec![Transaction(b"a".to_vec()), Transaction(b"b".to_vec())]);
        Ok(())
    }
}
