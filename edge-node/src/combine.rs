//! Small writes gathered into the next write, so that HTTP/2 over TLS sends many small
//! responses in one TLS record and one system call.
//!
//! h2 chooses, once per connection, whether it copies a DATA frame's payload into its own frame
//! buffer or hands the payload down as a buffer of its own ("chaining"), and it chooses by
//! whether the stream takes vectored writes: with them (as a rustls stream does) it chains
//! every payload over 256 bytes and flushes after each chained frame, so every small response
//! was a TLS record and a `writev` of its own (seen with strace under h2load: ten `writev`s of
//! one record each for ten 1 KB responses on one connection). Without vectored writes h2
//! copies payloads of up to 1 KiB and writes the responses that are ready together; but it then
//! writes a chained frame's 9-byte head and its payload in two calls, which over TLS would be
//! two records. [`CombineWrites`] says it takes no vectored writes and holds writes while they
//! add up to at most [`HOLD`] bytes, until the next write or flush sends them along.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Writes are held while the held bytes and the new write add up to at most this.
pub const HOLD: usize = 4096;

/// A stream that holds small writes until the next write or flush (see the module's doc).
/// Disabled, it passes everything through as it is.
#[derive(Debug)]
pub struct CombineWrites<S> {
    inner: S,
    held: Vec<u8>,
    enabled: bool,
}

impl<S> CombineWrites<S> {
    /// Wraps `inner`; `enabled` is whether to combine (for HTTP/2) or pass through.
    pub fn new(inner: S, enabled: bool) -> Self {
        Self {
            inner,
            held: Vec::new(),
            enabled,
        }
    }
}

impl<S: AsyncWrite + Unpin> CombineWrites<S> {
    /// Sends the held bytes; ready when none are left.
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let sent = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if sent == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..sent);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CombineWrites<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CombineWrites<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !this.enabled {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        loop {
            if this.held.len() + buf.len() <= HOLD {
                this.held.extend_from_slice(buf);
                return Poll::Ready(Ok(buf.len()));
            }
            if this.held.is_empty() {
                return Pin::new(&mut this.inner).poll_write(cx, buf);
            }
            // The held bytes and this write leave together.
            let slices = [IoSlice::new(&this.held), IoSlice::new(buf)];
            let sent = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, &slices))?;
            if sent == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if sent <= this.held.len() {
                // Only held bytes went; try again with what is left of them.
                this.held.drain(..sent);
                continue;
            }
            let taken = sent - this.held.len();
            this.held.clear();
            return Poll::Ready(Ok(taken));
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if !self.enabled {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        }
        // As `AsyncWrite`'s default: the first slice that is not empty.
        let buf = bufs
            .iter()
            .find(|buf| !buf.is_empty())
            .map_or(&[][..], |buf| &**buf);
        self.poll_write(cx, buf)
    }

    fn is_write_vectored(&self) -> bool {
        if self.enabled {
            false
        } else {
            self.inner.is_write_vectored()
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_held(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_held(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncWriteExt;

    /// Records each write call's bytes; takes at most `limit` bytes per call.
    #[derive(Clone, Default)]
    struct Recorder {
        calls: Arc<Mutex<Vec<Vec<u8>>>>,
        limit: Option<usize>,
        flushes: Arc<Mutex<usize>>,
    }

    impl Recorder {
        fn calls(&self) -> Vec<Vec<u8>> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = self.limit.map_or(buf.len(), |limit| buf.len().min(limit));
            self.calls.lock().unwrap().push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let all: Vec<u8> = bufs.iter().flat_map(|buf| buf.iter().copied()).collect();
            let n = self.limit.map_or(all.len(), |limit| all.len().min(limit));
            self.calls.lock().unwrap().push(all[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            *self.flushes.lock().unwrap() += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[tokio::test]
    async fn small_writes_wait_for_the_flush_and_leave_in_one_call() {
        let recorder = Recorder::default();
        let mut stream = CombineWrites::new(recorder.clone(), true);
        assert!(!stream.is_write_vectored());
        let (a, b, c) = (bytes(9, 1), bytes(1000, 2), bytes(1200, 3));
        stream.write_all(&a).await.unwrap();
        stream.write_all(&b).await.unwrap();
        stream.write_all(&c).await.unwrap();
        assert!(
            recorder.calls().is_empty(),
            "nothing leaves before the flush"
        );
        stream.flush().await.unwrap();
        assert_eq!(recorder.calls(), vec![[a, b, c].concat()]);
        assert_eq!(*recorder.flushes.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn a_held_head_leaves_with_the_large_write_after_it() {
        let recorder = Recorder::default();
        let mut stream = CombineWrites::new(recorder.clone(), true);
        let (head, payload) = (bytes(9, 4), bytes(16_384, 5));
        stream.write_all(&head).await.unwrap();
        stream.write_all(&payload).await.unwrap();
        stream.flush().await.unwrap();
        assert_eq!(recorder.calls(), vec![[head, payload].concat()]);
    }

    #[tokio::test]
    async fn short_writes_below_keep_the_order() {
        // The stream below takes 100 bytes per call, so the held bytes leave over several calls
        // before any of the large write does.
        let recorder = Recorder {
            limit: Some(100),
            ..Recorder::default()
        };
        let mut stream = CombineWrites::new(recorder.clone(), true);
        let (small, large, tail) = (bytes(250, 6), bytes(9000, 7), bytes(30, 8));
        stream.write_all(&small).await.unwrap();
        stream.write_all(&large).await.unwrap();
        stream.write_all(&tail).await.unwrap();
        stream.shutdown().await.unwrap();
        let sent: Vec<u8> = recorder.calls().concat();
        assert_eq!(sent, [small, large, tail].concat());
        assert!(recorder.calls().iter().all(|call| call.len() <= 100));
    }

    #[tokio::test]
    async fn disabled_it_passes_writes_through() {
        let recorder = Recorder::default();
        let mut stream = CombineWrites::new(recorder.clone(), false);
        assert!(stream.is_write_vectored());
        stream.write_all(&bytes(9, 9)).await.unwrap();
        assert_eq!(recorder.calls().len(), 1);
    }
}
