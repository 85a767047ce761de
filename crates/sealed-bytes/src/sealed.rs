//! Sealed memory files (or unnamed files in a directory), their read-only mappings, and the
//! registry that tells a write which file (and offset) a slice of bytes came from.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock, Weak};

use bytes::Bytes;
use memmap2::Mmap;
use rustix::fs::{MemfdFlags, Mode, OFlags, SealFlags};

/// Live sealed bodies by the address their mapping starts at.
static REGISTRY: RwLock<BTreeMap<usize, Region>> = RwLock::new(BTreeMap::new());
/// How many there are (read without the lock, so that writes of plain bytes skip it).
static LIVE: AtomicUsize = AtomicUsize::new(0);
static CAP: OnceLock<usize> = OnceLock::new();

#[derive(Debug)]
struct Region {
    end: usize,
    file: Arc<File>,
    /// The mapping itself, for [`shared`]; a weak reference, so that the registry does not
    /// keep a body alive.
    mapping: Weak<Mapping>,
}

/// The owner of a sealed body's mapping: unregisters it, then unmaps and closes.
#[derive(Debug)]
struct Mapping {
    map: Mmap,
    file: Arc<File>,
}

/// What a sealed body's [`Bytes`] own: the mapping, shared with every `Bytes` [`shared`]
/// makes of it.
struct Owner(Arc<Mapping>);

impl AsRef<[u8]> for Owner {
    fn as_ref(&self) -> &[u8] {
        &self.0.map
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let start = self.map.as_ptr() as usize;
        REGISTRY
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&start);
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// At most this many sealed bodies at once: half the open-files limit (raised to its hard
/// limit first) and half the kernel's limit on mappings.
fn cap() -> usize {
    *CAP.get_or_init(|| {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
            && current < maximum
        {
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(maximum),
                    maximum: Some(maximum),
                },
            );
        }
        let files = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
        let maps = std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .unwrap_or(65_530);
        usize::try_from((files / 2).min(maps / 2)).unwrap_or(usize::MAX)
    })
}

/// How many sealed bodies are alive, and how many may be.
pub(crate) fn census() -> (usize, usize) {
    (LIVE.load(Ordering::Relaxed), cap())
}

/// `data` copied into a new sealed memory file and mapped; `None` when the cap is reached or
/// the kernel refuses (the caller keeps the bytes on the heap).
pub(crate) fn seal(data: &[u8], dir: Option<&OwnedFd>) -> Option<Bytes> {
    seal_under(data, cap(), dir)
}

fn seal_under(data: &[u8], cap: usize, dir: Option<&OwnedFd>) -> Option<Bytes> {
    if data.is_empty() {
        return None;
    }
    register(cap, || {
        dir.and_then(|dir| directory_file(data, dir))
            .or_else(|| memory_file(data))
    })
}

/// `parts`, one after the other, in a new unnamed file of `dir` that [`link`] can give a name
/// later, mapped whole.
pub(crate) fn write_file(parts: &[&[u8]], dir: &OwnedFd) -> Option<Bytes> {
    if parts.iter().all(|part| part.is_empty()) {
        return None;
    }
    register(cap(), || {
        let mut file = unnamed_file(dir, true).ok()?;
        for part in parts {
            file.write_all(part).ok()?;
        }
        Some(file)
    })
}

/// The file at `path`, mapped whole.
pub(crate) fn map_file(path: &Path) -> io::Result<Bytes> {
    let file = File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Ok(Bytes::new());
    }
    register(cap(), || Some(file)).ok_or_else(|| {
        io::Error::other("no place for another mapping (open files or mappings at their cap)")
    })
}

/// The file `make` returns, mapped and registered, once a place under `cap` is reserved for it
/// (first, so that concurrent sealings cannot overshoot the cap).
fn register(cap: usize, make: impl FnOnce() -> Option<File>) -> Option<Bytes> {
    if LIVE
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |live| {
            (live < cap).then_some(live + 1)
        })
        .is_err()
    {
        return None;
    }
    match make().and_then(map) {
        Some(mapping) => {
            let mapping = Arc::new(mapping);
            let start = mapping.map.as_ptr() as usize;
            REGISTRY
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(
                    start,
                    Region {
                        end: start + mapping.map.len(),
                        file: mapping.file.clone(),
                        mapping: Arc::downgrade(&mapping),
                    },
                );
            Some(Bytes::from_owner(Owner(mapping)))
        }
        None => {
            LIVE.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }
}

/// `dir` opened, once an unnamed file could be made there.
pub(crate) fn open_directory(dir: &Path) -> io::Result<OwnedFd> {
    let dir = rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    drop(unnamed_file(&dir, false)?);
    Ok(dir)
}

/// A new file in `dir` that has no name (`O_TMPFILE`): gone when its descriptor closes unless
/// [`link`] names it first. Unless `linkable`, it can never be given one (`O_EXCL`), so only
/// this process's descriptor ever reaches it.
fn unnamed_file(dir: &OwnedFd, linkable: bool) -> io::Result<File> {
    let mut flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    if !linkable {
        flags |= OFlags::EXCL;
    }
    let fd = rustix::fs::openat(dir, ".", flags, Mode::RUSR | Mode::WUSR)?;
    Ok(File::from(fd))
}

/// Gives the file `bytes` lie in (made by [`write_file`]) the name `path`, replacing what is
/// there: linked first at `scratch` (a free name on the same file system), then renamed, so
/// that `path` names the old file or the new one, never neither.
pub(crate) fn link(bytes: &[u8], scratch: &Path, path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let (file, _) =
        lookup(bytes).ok_or_else(|| io::Error::other("these bytes are not in a sealed file"))?;
    // `/proc/self/fd/N` names the open file; following it links the file itself, which needs
    // no privilege (linking the descriptor with `AT_EMPTY_PATH` would).
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    rustix::fs::linkat(
        rustix::fs::CWD,
        proc_path.as_str(),
        rustix::fs::CWD,
        scratch,
        rustix::fs::AtFlags::SYMLINK_FOLLOW,
    )?;
    std::fs::rename(scratch, path).inspect_err(|_| {
        let _ = std::fs::remove_file(scratch);
    })
}

/// `data` in an unnamed file of `dir`, if the file can be made and written.
fn directory_file(data: &[u8], dir: &OwnedFd) -> Option<File> {
    let mut file = unnamed_file(dir, false).ok()?;
    file.write_all(data).ok()?;
    Some(file)
}

/// `data` in a memory file sealed against writing, growing and shrinking.
fn memory_file(data: &[u8]) -> Option<File> {
    let fd = rustix::fs::memfd_create(
        "cadenza-body",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .ok()?;
    let mut file = File::from(fd);
    file.write_all(data).ok()?;
    rustix::fs::fcntl_add_seals(
        &file,
        SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
    )
    .ok()?;
    Some(file)
}

fn map(file: File) -> Option<Mapping> {
    // SAFETY: nothing changes the file after this point. A memory file's seals forbid every
    // writer (this process included) from changing, growing or shrinking it, and cannot be
    // removed; an unnamed file has no name to be opened by and is never written again (its
    // descriptor is used only to read it, by `sendfile`). A file made by `write_file` and
    // named by `link`, or one `map_file` opens, is a cache file, which its owner replaces by
    // renaming a new file over it and deletes by unlinking, never changing one in place: the
    // caller's promise (see `map_file`'s documentation in the crate root). Its read-only
    // mapping therefore never changes under the slice it backs.
    #[allow(unsafe_code)]
    let map = unsafe { Mmap::map(&file) }.ok()?;
    Some(Mapping {
        map,
        file: Arc::new(file),
    })
}

/// The file `slice` lies in, and its offset there.
pub(crate) fn lookup(slice: &[u8]) -> Option<(Arc<File>, u64)> {
    in_region(slice, |offset, region| (region.file.clone(), offset as u64))
}

/// `slice`, which lies in a sealed body, as `Bytes` sharing that body's mapping.
pub(crate) fn shared(slice: &[u8]) -> Option<Bytes> {
    // The caller borrows `slice` from a live body, so the mapping is alive.
    let mapping = in_region(slice, |_, region| region.mapping.upgrade())??;
    Some(Bytes::from_owner(Owner(mapping)).slice_ref(slice))
}

/// `found` of the registered region `slice` lies wholly in, and of `slice`'s offset there.
fn in_region<R>(slice: &[u8], found: impl FnOnce(usize, &Region) -> R) -> Option<R> {
    if slice.is_empty() || LIVE.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let start = slice.as_ptr() as usize;
    let end = start + slice.len();
    let registry = REGISTRY.read().unwrap_or_else(PoisonError::into_inner);
    let (&base, region) = registry.range(..=start).next_back()?;
    (end <= region.end).then(|| found(start - base, region))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_bodies_are_refused_and_a_dropped_body_frees_its_place() {
        let data = vec![7u8; 20_000];
        let first = seal_under(&data, usize::MAX, None).unwrap();
        // `first` holds a place, so a cap of one (or none) leaves none.
        assert!(seal_under(&data, 1, None).is_none());
        assert!(seal_under(&data, 0, None).is_none());
        assert!(lookup(&first).is_some());
        let address = first.as_ptr() as usize;
        // A slice shared out of the body keeps it registered until it goes too.
        let part = shared(&first[100..200]).unwrap();
        drop(first);
        assert!(
            REGISTRY
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(&address)
        );
        drop(part);
        let registry = REGISTRY.read().unwrap_or_else(PoisonError::into_inner);
        assert!(
            !registry.contains_key(&address),
            "the mapping is unregistered"
        );
    }
}
