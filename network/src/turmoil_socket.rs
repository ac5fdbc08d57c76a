//! quinn over turmoil: an `AsyncUdpSocket` backed by `turmoil::net::UdpSocket`.
//!
//! This is the only simulation-specific code in the crate: with it, the very QUIC, TLS, framing and
//! delivery code of production runs over turmoil's simulated, seeded network (DESIGN.md §6). Sending maps
//! to `try_send_to` (split into datagrams when quinn asks for segmentation); receiving maps to
//! `try_recv_from`, parking on a boxed `readable()` future when the queue is empty. turmoil's UDP has no
//! back-pressure, so the poller is always writable.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

type Readable = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// A simulated UDP socket quinn can drive.
pub struct TurmoilUdpSocket {
    socket: Arc<turmoil::net::UdpSocket>,
    local: SocketAddr,
    /// The pending `readable()` wait, kept across polls so the waker stays registered.
    readable: Mutex<Option<Readable>>,
}

impl TurmoilUdpSocket {
    /// Binds `address` on the simulated network of the current turmoil host.
    pub async fn bind(address: SocketAddr) -> io::Result<Self> {
        let socket = turmoil::net::UdpSocket::bind(address).await?;
        let local = socket.local_addr()?;
        Ok(Self { socket: Arc::new(socket), local, readable: Mutex::new(None) })
    }
}

impl fmt::Debug for TurmoilUdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurmoilUdpSocket").field("local", &self.local).finish_non_exhaustive()
    }
}

impl AsyncUdpSocket for TurmoilUdpSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        match transmit.segment_size {
            Some(size) if size > 0 && size < transmit.contents.len() => {
                for datagram in transmit.contents.chunks(size) {
                    self.socket.try_send_to(datagram, transmit.destination)?;
                }
            }
            _ => {
                self.socket.try_send_to(transmit.contents, transmit.destination)?;
            }
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        let mut readable =
            self.readable.lock().expect("the readable slot is never poisoned: no code panics holding it");
        loop {
            // `readable()` holds the receive lock while it waits: drop it before reading.
            if readable.is_none() {
                match self.socket.try_recv_from(buf) {
                    Ok((len, addr)) => {
                        *slot = RecvMeta::default();
                        slot.addr = addr;
                        slot.len = len;
                        slot.stride = len;
                        return Poll::Ready(Ok(1));
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Poll::Ready(Err(error)),
                }
            }
            let socket = Arc::clone(&self.socket);
            let wait = readable.get_or_insert_with(|| Box::pin(async move { socket.readable().await }));
            match wait.as_mut().poll(cx) {
                Poll::Ready(Ok(())) => *readable = None,
                Poll::Ready(Err(error)) => {
                    *readable = None;
                    return Poll::Ready(Err(error));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
