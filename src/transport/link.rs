//! The write side of a client's connection, whatever carries it: a plain
//! TCP socket (the fast path: one `writev` for a batch of shared frames), any
//! byte stream such as TLS, or a channel into an HTTP response body (SSE).
//!
//! The session's writer only ever asks a link to take frames, to end
//! cleanly after whole frames (FIN, or TLS close_notify), or to reset.

use bytes::Bytes;
use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::net::tcp::OwnedWriteHalf;

/// Most iovecs handed to one `writev` (Linux IOV_MAX is 1024).
pub const MAX_IOV: usize = 256;

/// Where a client's frames go.
pub trait Link: Send + 'static {
    /// Takes as much of the front of `frames` as the peer accepts now and
    /// returns how many bytes; `Pending` until it accepts some.
    fn poll_take(
        &mut self,
        cx: &mut Context<'_>,
        frames: &VecDeque<Bytes>,
    ) -> Poll<io::Result<usize>>;
    /// Ends the connection after what was taken (and wakes its reader).
    fn close(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// Ends the connection abruptly: nothing more is sent, the peer gets a
    /// reset rather than an end that would look like a whole stream.
    fn reset(&mut self);
}

/// A plain TCP socket's write half.
pub struct TcpLink {
    half: Option<OwnedWriteHalf>,
    reset: bool,
}

impl TcpLink {
    pub fn new(half: OwnedWriteHalf) -> TcpLink {
        TcpLink {
            half: Some(half),
            reset: false,
        }
    }
}

impl Link for TcpLink {
    fn poll_take(
        &mut self,
        cx: &mut Context<'_>,
        frames: &VecDeque<Bytes>,
    ) -> Poll<io::Result<usize>> {
        let Some(half) = self.half.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let mut count = 0;
        for (slot, frame) in iov.iter_mut().zip(frames.iter()) {
            *slot = IoSlice::new(frame);
            count += 1;
        }
        Pin::new(half).poll_write_vectored(cx, &iov[..count])
    }

    fn close(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        if let Some(half) = &self.half {
            shutdown_both(half.as_ref().as_raw_fd());
        }
        Box::pin(std::future::ready(()))
    }

    fn reset(&mut self) {
        if let Some(half) = &self.half {
            reset_fd(half.as_ref().as_raw_fd());
        }
        self.reset = true;
    }
}

impl Drop for TcpLink {
    fn drop(&mut self) {
        if let (true, Some(half)) = (self.reset, self.half.take()) {
            // Dropping the write half would send a FIN before the reset.
            half.forget();
        }
    }
}

/// Any byte stream's write half (TLS), with the raw socket underneath for
/// ending it.
pub struct StreamLink<W> {
    write: W,
    fd: RawFd,
}

impl<W> StreamLink<W> {
    /// `fd` must stay open as long as `write` lives (it is `write`'s socket).
    pub fn new(write: W, fd: RawFd) -> StreamLink<W> {
        StreamLink { write, fd }
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> Link for StreamLink<W> {
    fn poll_take(
        &mut self,
        cx: &mut Context<'_>,
        frames: &VecDeque<Bytes>,
    ) -> Poll<io::Result<usize>> {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let mut count = 0;
        for (slot, frame) in iov.iter_mut().zip(frames.iter()) {
            *slot = IoSlice::new(frame);
            count += 1;
        }
        Pin::new(&mut self.write).poll_write_vectored(cx, &iov[..count])
    }

    fn close(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            // TLS says goodbye (close_notify) before the FIN; a peer that
            // does not read gets no more than a moment.
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut self.write).await;
            })
            .await;
            shutdown_both(self.fd);
        })
    }

    fn reset(&mut self) {
        reset_fd(self.fd);
    }
}

/// A channel into an HTTP response body (Server-Sent Events through hyper):
/// whole frames go in as they are; hyper writes them as its socket takes them.
pub struct ChannelLink {
    tx: tokio_util::sync::PollSender<Bytes>,
}

impl ChannelLink {
    /// A link and the receiving end its body reads, holding `capacity` frames.
    pub fn new(capacity: usize) -> (ChannelLink, tokio::sync::mpsc::Receiver<Bytes>) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        (
            ChannelLink {
                tx: tokio_util::sync::PollSender::new(tx),
            },
            rx,
        )
    }
}

impl Link for ChannelLink {
    fn poll_take(
        &mut self,
        cx: &mut Context<'_>,
        frames: &VecDeque<Bytes>,
    ) -> Poll<io::Result<usize>> {
        let mut taken = 0;
        for frame in frames {
            match self.tx.poll_reserve(cx) {
                Poll::Ready(Ok(())) => {
                    if self.tx.send_item(frame.clone()).is_err() {
                        return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
                    }
                    taken += frame.len();
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                Poll::Pending if taken > 0 => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(taken))
    }

    fn close(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        // The body ends once every frame sent before this has been read.
        self.tx.close();
        Box::pin(std::future::ready(()))
    }

    fn reset(&mut self) {
        self.tx.close();
    }
}

fn shutdown_both(fd: RawFd) {
    // SAFETY: the fd belongs to a socket its link keeps open.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Both);
}

/// With a zero linger the kernel sends RST when the socket is closed;
/// shutting down the read side wakes the reader, whose end closes it.
fn reset_fd(fd: RawFd) {
    // SAFETY: the fd belongs to a socket its link keeps open.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&fd);
    let _ = sock.set_linger(Some(Duration::ZERO));
    let _ = sock.shutdown(std::net::Shutdown::Read);
}
