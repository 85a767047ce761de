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
    // Reserve a place under the cap first, so that concurrent sealings cannot overshoot it.
    if LIVE
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |live| {
            (live < cap).then_some(live + 1)
        })
        .is_err()
    {
        return None;
    }
    match map(data, dir) {
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
    drop(unnamed_file(&dir)?);
    Ok(dir)
}

/// A new file in `dir` that has no name and can never be given one (`O_TMPFILE | O_EXCL`):
/// only this process's descriptor reaches it, and it is gone when that closes.
fn unnamed_file(dir: &OwnedFd) -> io::Result<File> {
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::TMPFILE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )?;
    Ok(File::from(fd))
}

/// `data` in an unnamed file of `dir`, if the file can be made and written.
fn directory_file(data: &[u8], dir: &OwnedFd) -> Option<File> {
    let mut file = unnamed_file(dir).ok()?;
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

fn map(data: &[u8], dir: Option<&OwnedFd>) -> Option<Mapping> {
    let file = dir
        .and_then(|dir| directory_file(data, dir))
        .or_else(|| memory_file(data))?;
    // SAFETY: the file is this process's own and nothing changes it after this point. A memory
    // file's seals forbid every writer (this process included) from changing, growing or
    // shrinking it, and cannot be removed; an unnamed file has no name to be opened by and is
    // never written again (its descriptor is used only to read it, by `sendfile`). Its
    // read-only mapping therefore never changes under the slice it backs.
    #[allow(unsafe_code)]
    let map = unsafe { Mmap::map(&file) }.ok()?;
    Some(Mapping {
        map,
        file: Arc::new(file),
    })
}

/// The file `slice` lies in, and its offset there.
pub(crate) fn lookup(slice: &[u8]) -> Option<(Arc<File>, u64)> {
    if slice.is_empty() || LIVE.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let start = slice.as_ptr() as usize;
    let end = start + slice.len();
    let registry = REGISTRY.read().unwrap_or_else(PoisonError::into_inner);
    let (&base, region) = registry.range(..=start).next_back()?;
    (end <= region.end).then(|| (region.file.clone(), (start - base) as u64))
}

/// `slice`, which lies in a sealed body, as `Bytes` sharing that body's mapping.
pub(crate) fn shared(slice: &[u8]) -> Option<Bytes> {
    if slice.is_empty() || LIVE.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let start = slice.as_ptr() as usize;
    let end = start + slice.len();
    let mapping = {
        let registry = REGISTRY.read().unwrap_or_else(PoisonError::into_inner);
        let (_, region) = registry.range(..=start).next_back()?;
        if end > region.end {
            return None;
        }
        // The caller borrows `slice` from a live body, so the mapping is alive.
        region.mapping.upgrade()?
    };
    Some(Bytes::from_owner(Owner(mapping)).slice_ref(slice))
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
