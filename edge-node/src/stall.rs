//! Slow readers: a connection whose peer stops taking bytes is closed after `send_timeout`
//! without progress (nginx's `send_timeout`), so a client that requests and never reads
//! cannot hold a connection, its task and its buffers for ever. Wraps the TCP stream under
//! TLS and hyper.
//!
//! The hot path stays off the timer wheel: a write that goes through only notes progress; the
//! one timer per connection is armed at the first stall and, when it fires, re-armed if any
//! write went through meanwhile. A stalled peer is therefore cut off between one and two
//! timeouts after its last progress.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// An I/O object whose writes fail with `TimedOut` after `timeout` without progress.
#[derive(Debug)]
pub struct SendTimeout<T> {
    inner: T,
    timeout: Duration,
    /// One timer per connection (no allocation per stall).
    clock: Pin<Box<Sleep>>,
    armed: bool,
    /// A write went through since the timer was (re)armed.
    progressed: bool,
}

impl<T> SendTimeout<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            clock: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
            progressed: false,
        }
    }

    /// The wrapped I/O object.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// A write's outcome, with the clock applied: progress is noted; a pending write arms the
    /// clock (if it is not running) and fails once the peer made no progress for a period.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match outcome {
            Poll::Ready(result) => {
                self.progressed = true;
                Poll::Ready(result)
            }
            Poll::Pending if self.stall(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// After a pending write: arms the clock (once per stall) and reports whether it ran out.
    fn stall(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.armed {
            self.armed = true;
            self.progressed = false;
            let deadline = tokio::time::Instant::now() + self.timeout;
            self.clock.as_mut().reset(deadline);
        }
        while self.clock.as_mut().poll(cx).is_ready() {
            if !self.progressed {
                metrics::counter!("cadenza_edge_send_timeouts_total").increment(1);
                return true;
            }
            // Bytes moved during this period: give the peer another one.
            self.progressed = false;
            let deadline = tokio::time::Instant::now() + self.timeout;
            self.clock.as_mut().reset(deadline);
        }
        false
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the peer took no bytes for the send timeout",
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for SendTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SendTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, outcome)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, outcome)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn a_reader_that_stops_is_timed_out_and_one_that_reads_is_not() {
        // A 64 KiB pipe: the writer fills it, then stalls until the reader takes bytes.
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut guarded = SendTimeout::new(near, Duration::from_millis(200));
        let chunk = vec![7u8; 16 * 1024];
        let stalled = async {
            loop {
                guarded.write_all(&chunk).await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), io::Error>(())
        };
        let error = tokio::time::timeout(Duration::from_secs(5), stalled)
            .await
            .expect("the stalled writer gave up")
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);

        // A slow but steady reader keeps the connection alive past the timeout.
        let (near, mut far2) = tokio::io::duplex(16 * 1024);
        let mut guarded = SendTimeout::new(near, Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            let mut total = 0;
            let mut buffer = vec![0u8; 8 * 1024];
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                match far2.read(&mut buffer).await {
                    Ok(0) | Err(_) => break total,
                    Ok(n) => total += n,
                }
            }
        });
        let body = vec![1u8; 256 * 1024];
        guarded.write_all(&body).await.unwrap();
        guarded.shutdown().await.unwrap();
        drop(guarded);
        assert_eq!(reader.await.unwrap(), body.len());
        let _ = far.read(&mut [0u8; 1]).await;
    }
}
