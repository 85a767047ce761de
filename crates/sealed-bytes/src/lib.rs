//! Cached bodies the kernel sends without copying them.
//!
//! An edge serving a 100 KB segment from memory spends about a third of its CPU copying the
//! body into the socket (`writev`); nginx avoids that copy with `sendfile(2)` from its cache
//! files. This crate gives Cadenza the same: [`share`] moves a body into a *sealed* memory
//! file (`memfd_create`, then sealed against writing, growing and shrinking) and hands back
//! ordinary [`Bytes`] that read the file through a read-only mapping; [`ZeroCopyStream`]
//! wraps a TCP stream and, when a write hands it a slice of such bytes, sends that slice with
//! `sendfile(2)` from the memory file instead of copying it. Everything else (HTTP framing,
//! TLS, HTTP/2 and HTTP/3) keeps using the bytes as bytes; a writer that is handed only a slice
//! of them and must keep it (a QUIC stream's send buffer) gets the slice back as `Bytes` of the
//! same file, without a copy, from [`shared`].
//!
//! Given a [`Directory`], bodies go instead into *unnamed* files of a directory on disk
//! (`O_TMPFILE | O_EXCL`: no name, none can be given, gone when closed — a crash leaves
//! nothing behind). Their pages are the kernel's page cache of that file system, which on
//! ext4 and XFS comes in large folios that `sendfile` looks up a batch at a time; a memory
//! file's pages are shared-memory pages that it looks up one 4 KiB page at a time
//! (`shmem_file_splice_read`), unless the host enables huge pages for shared memory. Measured
//! on loopback with a 100 KB body, that lookup was about 12 % of the sender's CPU from a
//! memory file and about 1 % from an unnamed ext4 file. The price is disk: the files take
//! space (and are written back) like any cache file.
//!
//! The pages stay valid after the body is evicted: the kernel holds its own references to the
//! pages it queued, and nobody changes them meanwhile (seals for a memory file; for an unnamed
//! file, that only this process can reach it and never writes it again).
//!
//! Each sealed body holds one file descriptor and one mapping, so their number is capped (half
//! the open-files limit, which the first sealing raises to its hard limit, and half the
//! kernel's `vm.max_map_count`); beyond the cap, and for bodies under [`MIN_LEN`], [`share`]
//! keeps the bytes on the heap and they are sent by copying, as before.
//!
//! A cache can go one step further: [`write_file`] writes a whole cache file (header, body,
//! checksum) as an unnamed file and maps it, so the body is served from it at once, and
//! [`link`] later gives it its name in the cache directory; [`map_file`] maps such a file again
//! after a restart. The body then reaches the disk once, and a disk hit is read from the page
//! cache without being copied anywhere.
//!
//! Why this crate allows `unsafe`: mapping a file is unsafe in general because another
//! process could change or truncate it under the mapping. A sealed memory file can be changed
//! by no one, and an unnamed file of this process's can be reached by no one else, so its
//! read-only mapping is an immutable byte slice. A named cache file ([`link`], [`map_file`])
//! rests on its owner's promise instead: files of its directory are replaced by renaming and
//! removed by unlinking, never changed in place (as Varnish's file storage rests on its
//! file). The one call, in `sealed::map`, is the crate's only unsafe code.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bodies shorter than this stay on the heap: a sealed body costs a file descriptor, a
/// mapping and whole pages, and for small bodies the copy is cheaper than the extra syscall.
pub const MIN_LEN: usize = 16 * 1024;

/// Shorter slices (response heads, small ranges) are copied even when sealed: the copy costs
/// less than a second syscall, and the registry is not consulted for them.
#[cfg(target_os = "linux")]
const MIN_SENDFILE: usize = 4096;

/// The most slices one `sendmsg` takes (Linux's `UIO_MAXIOV`).
#[cfg(target_os = "linux")]
const IOV_MAX: usize = 1024;

#[cfg(target_os = "linux")]
mod sealed;

/// A directory whose unnamed files hold bodies instead of memory files (see the crate's doc):
/// one on a file system with `O_TMPFILE`, such as ext4, XFS or Btrfs.
#[derive(Debug, Clone)]
pub struct Directory {
    #[cfg(target_os = "linux")]
    fd: std::sync::Arc<std::os::fd::OwnedFd>,
}

impl Directory {
    /// Opens `path`; fails when no unnamed file can be made there. Off Linux, where bodies stay
    /// on the heap, it opens nothing.
    pub fn open(path: &std::path::Path) -> io::Result<Self> {
        #[cfg(target_os = "linux")]
        {
            Ok(Self {
                fd: std::sync::Arc::new(sealed::open_directory(path)?),
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = path;
            Ok(Self {})
        }
    }
}

/// `bytes` moved into a sealed body's file (an unnamed file of `dir`, or a memory file without
/// one or when that file cannot be made or written, a full disk say) when it is at least
/// [`MIN_LEN`] long and the cap allows; otherwise (and where the kernel refuses) `bytes`
/// itself. Already sealed bytes are returned as they are.
pub fn share(bytes: Bytes, dir: Option<&Directory>) -> Bytes {
    #[cfg(target_os = "linux")]
    {
        if bytes.len() >= MIN_LEN && sealed::lookup(&bytes).is_none() {
            return sealed::seal(&bytes, dir.map(|dir| &*dir.fd)).unwrap_or(bytes);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = dir;
    bytes
}

/// A copy of `data`, sealed (in `dir` if given) when [`share`] would seal it, on the heap
/// otherwise.
pub fn copy_from_slice(data: &[u8], dir: Option<&Directory>) -> Bytes {
    #[cfg(target_os = "linux")]
    {
        if data.len() >= MIN_LEN
            && let Some(bytes) = sealed::seal(data, dir.map(|dir| &*dir.fd))
        {
            return bytes;
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = dir;
    Bytes::copy_from_slice(data)
}

/// `parts`, one after the other, in a new unnamed file of `dir`, mapped whole: bytes that are
/// sent without copying, like [`share`]'s, and whose file [`link`] can later give a name — a
/// cache file written once, then both served from and published. `None` when the file cannot
/// be made or written, the cap is reached, or (off Linux) always.
pub fn write_file(parts: &[&[u8]], dir: &Directory) -> Option<Bytes> {
    #[cfg(target_os = "linux")]
    {
        sealed::write_file(parts, &dir.fd)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (parts, dir);
        None
    }
}

/// Gives the file that `bytes` (from [`write_file`]) lie in the name `path`, replacing any file
/// there, by way of `scratch`, a free name on the same file system: `path` names the old file or
/// the new one at every moment.
///
/// From then on the file has a name, and its mapping is sound only while nobody changes the
/// file in place: the directory must be the caller's own, whose files it replaces by renaming
/// and deletes by unlinking (both harmless to a mapping) and never truncates or rewrites. A
/// file truncated under a mapping would make reading it crash the process (`SIGBUS`).
pub fn link(bytes: &[u8], scratch: &std::path::Path, path: &std::path::Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        sealed::link(bytes, scratch, path)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (bytes, scratch, path);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// The whole file at `path`, mapped (sent without copying, like [`share`]'s bytes), or read onto
/// the heap off Linux. The same promise as [`link`]'s holds for the file: nobody changes it in
/// place while the bytes live.
pub fn map_file(path: &std::path::Path) -> io::Result<Bytes> {
    #[cfg(target_os = "linux")]
    {
        sealed::map_file(path)
    }
    #[cfg(not(target_os = "linux"))]
    {
        std::fs::read(path).map(Bytes::from)
    }
}

/// Whether `bytes` lie in a sealed body's file (and so are sent without copying).
pub fn is_sealed(bytes: &[u8]) -> bool {
    #[cfg(target_os = "linux")]
    {
        sealed::lookup(bytes).is_some()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = bytes;
        false
    }
}

/// `slice`, when it lies in a sealed body, as [`Bytes`] of just that slice sharing the body's
/// file (no copy): for writers that take only `&[u8]` from their caller and then keep the data,
/// such as a QUIC stream's send buffer. `None` for any other slice.
pub fn shared(slice: &[u8]) -> Option<Bytes> {
    #[cfg(target_os = "linux")]
    {
        sealed::shared(slice)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = slice;
        None
    }
}

/// How many sealed bodies are alive, and how many may be.
pub fn census() -> (usize, usize) {
    #[cfg(target_os = "linux")]
    {
        sealed::census()
    }
    #[cfg(not(target_os = "linux"))]
    {
        (0, 0)
    }
}

/// A TCP stream whose writes send slices of sealed bytes with `sendfile(2)` and everything
/// else with `sendmsg(2)`.
#[derive(Debug)]
pub struct ZeroCopyStream {
    inner: TcpStream,
    cork: bool,
}

impl ZeroCopyStream {
    /// Wraps `inner`; plain bytes written right before a sealed slice wait for it
    /// (`MSG_MORE`), so that, say, an HTTP/2 frame header leaves with its payload.
    pub fn new(inner: TcpStream) -> Self {
        Self { inner, cork: true }
    }

    /// Whether plain bytes right before a sealed slice wait for it (`MSG_MORE`) or leave at
    /// once. Corked, an HTTP/1.1 response head leaves in the body's first segment. Measured on
    /// loopback under wrk with a 100 KB body from an unnamed ext4 file, corked against
    /// uncorked, ten rounds each: 4.2–5.0 TCP segments per response against 5.3–6.0 (the
    /// client's receive window grows when a response arrives whole), and about the same CPU
    /// per response for the sender (23.7–30.3 µs against 25.8–27.8 µs). From memory files,
    /// whose pages cost more to send, corking cost the sender about 30 % more CPU per response.
    pub fn set_cork(&mut self, cork: bool) {
        self.cork = cork;
    }

    fn poll_send(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        loop {
            match self.inner.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
            // A `WouldBlock` clears the readiness, so the next poll registers for it.
            match self.inner.try_io(tokio::io::Interest::WRITABLE, || {
                send(&self.inner, bufs, self.cork)
            }) {
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                outcome => return Poll::Ready(outcome),
            }
        }
    }
}

/// Writes `bufs` in order, sealed slices with `sendfile`, runs of others with `sendmsg`
/// (flagged `MSG_MORE` before a sealed slice when `cork`); stops at the first short write.
/// `WouldBlock` only when nothing went out.
#[cfg(target_os = "linux")]
fn send(socket: &TcpStream, bufs: &[IoSlice<'_>], cork: bool) -> io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendFlags};

    let mut written = 0usize;
    let mut rest = bufs;
    while !rest.is_empty() {
        let found = rest
            .iter()
            .enumerate()
            .filter(|(_, buf)| buf.len() >= MIN_SENDFILE)
            .find_map(|(at, buf)| sealed::lookup(buf).map(|hit| (at, hit)));
        let (outcome, wanted) = match found {
            Some((0, (file, mut offset))) => {
                let len = rest[0].len();
                rest = &rest[1..];
                let outcome = rustix::fs::sendfile(socket, &*file, Some(&mut offset), len);
                (outcome, len)
            }
            found => {
                // At most IOV_MAX slices per call; the rest go in the next round.
                let plain = found.map_or(rest.len(), |(at, _)| at).min(IOV_MAX);
                let run = &rest[..plain];
                rest = &rest[plain..];
                let mut flags = SendFlags::NOSIGNAL;
                if cork && !rest.is_empty() {
                    flags |= SendFlags::MORE;
                }
                let wanted = run.iter().map(|buf| buf.len()).sum();
                let outcome =
                    rustix::net::sendmsg(socket, run, &mut SendAncillaryBuffer::default(), flags);
                (outcome, wanted)
            }
        };
        match outcome {
            Ok(sent) => {
                written += sent;
                if sent < wanted {
                    break;
                }
            }
            Err(_) if written > 0 => break,
            Err(error) => return Err(error.into()),
        }
    }
    Ok(written)
}

#[cfg(not(target_os = "linux"))]
fn send(socket: &TcpStream, bufs: &[IoSlice<'_>], _cork: bool) -> io::Result<usize> {
    socket.try_write_vectored(bufs)
}

impl AsyncRead for ZeroCopyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZeroCopyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_send(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_send(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn large_bodies_are_sealed_small_ones_stay_on_the_heap() {
        let data = pattern(100_000, 1);
        let sealed = share(Bytes::from(data.clone()), None);
        assert_eq!(&sealed[..], &data[..]);
        assert!(is_sealed(&sealed));
        assert!(is_sealed(&sealed.slice(10..20_000)));
        // Sharing again keeps the same memory.
        let again = share(sealed.clone(), None);
        assert_eq!(again.as_ptr(), sealed.as_ptr());

        let small = share(Bytes::from(pattern(1000, 2)), None);
        assert!(!is_sealed(&small));
        let copied = copy_from_slice(&data, None);
        assert_eq!(&copied[..], &data[..]);
        assert!(is_sealed(&copied));
        assert!(!is_sealed(&data));

        let (live, cap) = census();
        assert!(live >= 2 && live <= cap);
        drop(copied);
        drop(again);
        drop(sealed);
    }

    #[test]
    fn a_slice_of_a_sealed_body_is_shared_without_a_copy_and_keeps_the_body_alive() {
        let data = pattern(70_000, 3);
        let sealed = share(Bytes::from(data.clone()), None);
        let slice = &sealed[1000..50_000];
        let shared = super::shared(slice).expect("a slice of a sealed body");
        assert_eq!(
            shared.as_ptr(),
            slice.as_ptr(),
            "the same memory, not a copy"
        );
        assert_eq!(&shared[..], &data[1000..50_000]);
        assert!(is_sealed(&shared));
        // The shared bytes outlive the body they came from.
        drop(sealed);
        assert_eq!(&shared[..], &data[1000..50_000]);
        assert!(is_sealed(&shared));
        let again = super::shared(&shared[10..20]).expect("a slice of shared bytes");
        assert_eq!(&again[..], &data[1010..1020]);
        // Plain bytes, and empty slices, are not shared.
        assert!(super::shared(&data[..]).is_none());
        assert!(super::shared(&[]).is_none());
    }

    #[test]
    fn a_written_file_is_served_at_once_and_named_later() {
        let dir = tempfile::tempdir().unwrap();
        let directory = Directory::open(dir.path()).unwrap();
        let body = pattern(50_000, 4);
        let whole = write_file(&[b"head", &body, b"tail"], &directory).unwrap();
        assert!(is_sealed(&whole));
        assert_eq!(&whole[..4], b"head");
        assert_eq!(&whole[4..50_004], &body[..]);
        assert_eq!(&whole[50_004..], b"tail");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no name yet"
        );

        // Named through a scratch name, which does not stay.
        let (scratch, path) = (dir.path().join("scratch"), dir.path().join("object"));
        link(&whole[4..50_004], &scratch, &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), &whole[..]);
        assert!(!scratch.exists());

        // A second file replaces the first under the name; the first's bytes stay readable.
        let second = write_file(&[b"other", &body], &directory).unwrap();
        link(&second, &scratch, &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), &second[..]);
        assert_eq!(&whole[..4], b"head");

        // Mapped again by name, as after a restart.
        drop((whole, second));
        let mapped = map_file(&path).unwrap();
        assert!(is_sealed(&mapped));
        assert_eq!(&mapped[..5], b"other");
        assert_eq!(&mapped[5..], &body[..]);

        // Only files written by write_file can be named.
        let heap = Bytes::from(pattern(20_000, 5));
        assert!(link(&heap, &scratch, &dir.path().join("heap")).is_err());
        let unnamed = share(heap, Some(&directory));
        assert!(is_sealed(&unnamed));
        assert!(link(&unnamed, &scratch, &dir.path().join("unnamed")).is_err());
        assert!(!dir.path().join("unnamed").exists() && !scratch.exists());
        assert!(map_file(&dir.path().join("missing")).is_err());
    }

    #[tokio::test]
    async fn a_stream_sends_sealed_and_plain_slices_in_order() {
        sends_in_order(true, None).await;
        sends_in_order(false, None).await;
    }

    /// Sends a head, most of a sealed body and a plain tail in as many writes as it takes,
    /// and checks what the client read.
    async fn sends_in_order(cork: bool, dir: Option<&Directory>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let body = share(Bytes::from(pattern(3 << 20, 7)), dir);
        assert!(is_sealed(&body));
        assert_eq!(backing(&body).starts_with("/memfd:"), dir.is_none());
        let head = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        let tail = pattern(5000, 9);
        let mut expected = head.clone();
        expected.extend_from_slice(&body[1000..]);
        expected.extend_from_slice(&tail);
        let sent = {
            let body = body.clone();
            let head = head.clone();
            let tail = tail.clone();
            tokio::spawn(async move {
                let (stream, _) = listener.accept().await.unwrap();
                stream.set_nodelay(true).unwrap();
                let mut stream = ZeroCopyStream::new(stream);
                stream.set_cork(cork);
                let parts: [&[u8]; 3] = [&head, &body[1000..], &tail];
                let total: usize = parts.iter().map(|part| part.len()).sum();
                let mut done = 0;
                while done < total {
                    // The slices still to go, the first one cut where the last write stopped.
                    let mut skip = done;
                    let mut bufs = Vec::new();
                    for part in parts {
                        if skip >= part.len() {
                            skip -= part.len();
                            continue;
                        }
                        bufs.push(IoSlice::new(&part[skip..]));
                        skip = 0;
                    }
                    done += stream.write_vectored(&bufs).await.unwrap();
                }
                stream.shutdown().await.unwrap();
                // The body may go now; what was queued stays intact.
                drop(body);
            })
        };
        drop(body);
        let mut client = TcpStream::connect(address).await.unwrap();
        // Read slowly at first so that the sender sees full socket buffers.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        sent.await.unwrap();
        assert_eq!(received.len(), expected.len());
        assert!(received == expected, "the bytes differ");
    }

    /// Where the file behind a sealed body is, as the kernel names it.
    fn backing(bytes: &[u8]) -> String {
        use std::os::fd::AsRawFd as _;
        let (file, _) = sealed::lookup(bytes).expect("sealed");
        std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    #[tokio::test]
    async fn bodies_go_into_unnamed_files_of_the_directory_given() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(Directory::open(&missing).is_err());

        let directory = Directory::open(dir.path()).unwrap();
        let data = pattern(100_000, 3);
        let body = copy_from_slice(&data, Some(&directory));
        assert_eq!(&body[..], &data[..]);
        assert!(is_sealed(&body));
        let (file, offset) = sealed::lookup(&body[100..]).unwrap();
        assert_eq!(offset, 100);
        let stat = rustix::fs::fstat(&*file).unwrap();
        let dir_stat = rustix::fs::stat(dir.path()).unwrap();
        assert_eq!(stat.st_nlink, 0, "the file has no name");
        assert_eq!(
            stat.st_dev, dir_stat.st_dev,
            "the file is on the directory's file system"
        );
        assert!(backing(&body).starts_with(&*dir.path().to_string_lossy()));
        // Nothing is left in the directory by name.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        drop(file);
        // Such a body is sent like any other, and outlives its own mapping while queued.
        sends_in_order(false, Some(&directory)).await;

        let again = copy_from_slice(&data, None);
        assert!(
            backing(&again).starts_with("/memfd:"),
            "{}",
            backing(&again)
        );
        assert_eq!(&body[..], &again[..]);
    }

    #[tokio::test]
    async fn more_slices_than_one_sendmsg_takes_are_sent_in_rounds() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let pieces: Vec<Vec<u8>> = (0..3000).map(|i| pattern(10, i as u8)).collect();
        let expected: Vec<u8> = pieces.concat();
        let sender = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = ZeroCopyStream::new(stream);
            let mut done = 0;
            while done < pieces.len() * 10 {
                let (whole, part) = (done / 10, done % 10);
                let mut bufs = vec![IoSlice::new(&pieces[whole][part..])];
                bufs.extend(pieces[whole + 1..].iter().map(|piece| IoSlice::new(piece)));
                done += stream.write_vectored(&bufs).await.unwrap();
            }
            stream.shutdown().await.unwrap();
        });
        let mut client = TcpStream::connect(address).await.unwrap();
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        sender.await.unwrap();
        assert!(received == expected, "the bytes differ");
    }
}
