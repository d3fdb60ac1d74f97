//! A lingering close: after the server's last answer is sent (a `413`, a `431`, a `408`), read
//! and discard what the client is still sending, for a bounded while, before closing. Closing a
//! socket with unread bytes makes the kernel reset the connection, and a client that writes its
//! whole request before reading would see the reset instead of the answer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// At most this long is spent draining a closing connection.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this much is read from a closing connection (four times the largest request body).
pub const LINGER_MAX_BYTES: usize = 16 * 1024 * 1024;

struct Draining {
    deadline: Pin<Box<tokio::time::Sleep>>,
    drained: usize,
}

/// A socket whose shutdown sends the close (TLS `close_notify` and FIN), then drains.
pub(crate) struct LingeringClose<IO> {
    io: IO,
    draining: Option<Draining>,
}

impl<IO> LingeringClose<IO> {
    pub(crate) fn new(io: IO) -> Self {
        LingeringClose { io, draining: None }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for LingeringClose<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LingeringClose<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let draining = match &mut this.draining {
            Some(draining) => draining,
            None => {
                std::task::ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
                this.draining.insert(Draining { deadline: Box::pin(tokio::time::sleep(LINGER_TIMEOUT)), drained: 0 })
            }
        };
        let mut scratch = [0u8; 16 * 1024];
        loop {
            if draining.drained >= LINGER_MAX_BYTES || draining.deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                // The client closed its side too, or the connection failed: nothing left to drain.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => draining.drained += buf.filled().len(),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
