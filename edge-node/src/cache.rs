//! The two cache tiers: memory (moka, weighted by bytes) over disk (bounded in bytes by an
//! S3-FIFO index, survives restarts, verified by checksum on every read so that a torn or
//! corrupt file is a miss).
//!
//! Keys: a request's cache key is its primary key (path and query) plus the values of the
//! request headers the stored response `Vary`s on; the names are remembered per primary key.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use moka::notification::RemovalCause;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use crate::freshness::Policy;
use crate::s3fifo::S3Fifo;

/// A stored response's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// The full cache key (primary key and vary values).
    pub key: String,
    /// Status code.
    pub status: u16,
    /// End-to-end response headers, as received (hop-by-hop ones and `Age` removed), each
    /// value's bytes as the characters U+0000–U+00FF (see [`latin1`]).
    pub headers: Vec<(String, String)>,
    /// When the response (or its last revalidation) arrived, Unix milliseconds. (Named for
    /// its unit, so that a disk file written with whole seconds does not decode: a miss.)
    pub response_time_ms: u64,
    /// Its age on arrival, milliseconds.
    pub initial_age_ms: u64,
    /// Storage and freshness decisions.
    pub policy: Policy,
    /// The request headers it varies on, lower-case.
    pub vary: Vec<String>,
}

/// A stored response.
#[derive(Debug, Clone)]
pub struct Object {
    /// Metadata.
    pub meta: Meta,
    /// The whole body.
    pub body: Bytes,
    /// Response headers rebuilt from `meta` once, for serving.
    pub headers: HeaderMap,
    /// The disk tier's file for exactly this object, already written (unnamed until the tier
    /// names it), which `body` lies in: see [`Cache::object`].
    image: Option<Bytes>,
}

impl Object {
    /// Builds an object, turning the stored header list into a map and moving a large body
    /// into a sealed file (an unnamed one in `bodies` if given, else a memory file), from
    /// which the cleartext listener sends it without copying.
    pub fn new(meta: Meta, body: Bytes, bodies: Option<&sealed_bytes::Directory>) -> Self {
        let body = sealed_bytes::share(body, bodies);
        let mut headers = HeaderMap::with_capacity(meta.headers.len());
        for (name, value) in &meta.headers {
            let bytes: Vec<u8> = value.chars().filter_map(|c| u8::try_from(c).ok()).collect();
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(&bytes),
            ) {
                headers.append(name, value);
            }
        }
        Self {
            meta,
            body,
            headers,
            image: None,
        }
    }

    /// Status code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.meta.status).unwrap_or(StatusCode::OK)
    }

    /// Current age at `now_ms` (Unix milliseconds), milliseconds (RFC 9111 §4.2.3).
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        self.meta
            .initial_age_ms
            .saturating_add(now_ms.saturating_sub(self.meta.response_time_ms))
    }

    /// Its entity tag.
    pub fn etag(&self) -> Option<&str> {
        self.headers
            .get(http::header::ETAG)
            .and_then(|value| value.to_str().ok())
    }

    /// Its last modification.
    pub fn last_modified(&self) -> Option<SystemTime> {
        self.headers
            .get(http::header::LAST_MODIFIED)
            .and_then(|value| value.to_str().ok())
            .and_then(http_semantics::parse_http_date)
    }

    fn weight(&self) -> u32 {
        u32::try_from(self.body.len() + 512 + self.meta.key.len()).unwrap_or(u32::MAX)
    }
}

/// A header value's bytes as text, one character per byte (Latin-1), so that values with
/// obs-text survive storage unchanged; [`Object::new`] turns them back into bytes.
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&byte| char::from(byte)).collect()
}

/// Lower-cased `Vary` names of a response.
pub fn vary_names(headers: &HeaderMap) -> Vec<String> {
    let mut names: Vec<String> = headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The full key of a request for a response that varies on `names`.
pub fn variant_key(primary: &str, names: &[String], request: &HeaderMap) -> String {
    if names.is_empty() {
        return primary.to_owned();
    }
    let mut key = primary.to_owned();
    for name in names {
        key.push('\n');
        key.push_str(name);
        key.push('=');
        let value = if name == "accept-encoding" {
            // Normalised to the one coding the node asks parents for, so that the many
            // spellings of Accept-Encoding do not split the cache.
            if http_semantics::accepts_gzip(request) {
                "gzip"
            } else {
                ""
            }
            .to_owned()
        } else {
            request
                .get_all(name.as_str())
                .iter()
                .filter_map(|value| value.to_str().ok())
                .collect::<Vec<_>>()
                .join(",")
        };
        key.push_str(&value);
    }
    key
}

/// The memory and disk tiers.
#[derive(Debug, Clone)]
pub struct Cache {
    memory: moka::sync::Cache<String, Arc<Object>>,
    disk: Option<DiskTier>,
    varies: moka::sync::Cache<String, Arc<Vec<String>>>,
}

/// Where a lookup found its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The memory tier.
    Memory,
    /// The disk tier (now also in memory).
    Disk,
}

impl Cache {
    /// Opens the tiers: `memory_bytes` of memory and, with a directory, `disk_bytes` of disk
    /// (whatever a previous run left there is indexed again).
    pub fn open(memory_bytes: u64, disk: Option<(&Path, u64)>) -> std::io::Result<Self> {
        let memory = moka::sync::Cache::builder()
            .max_capacity(memory_bytes)
            .weigher(|_key: &String, object: &Arc<Object>| object.weight())
            .eviction_listener(|_key, _object, cause| {
                if cause == RemovalCause::Size {
                    metrics::counter!("cadenza_edge_evictions_total", "tier" => "memory")
                        .increment(1);
                }
            })
            .build();
        let disk = match disk {
            Some((dir, bytes)) => Some(DiskTier::open(dir, bytes)?),
            None => None,
        };
        Ok(Self {
            memory,
            disk,
            varies: moka::sync::Cache::new(100_000),
        })
    }

    /// Where large bodies go: unnamed files beside the disk tier, when there is one that can
    /// hold them (see [`Object::new`]).
    pub fn bodies(&self) -> Option<&sealed_bytes::Directory> {
        self.disk.as_ref()?.bodies.as_ref()
    }

    /// Builds an object to store (see [`Object::new`]). With a disk tier, a large body is
    /// written once, as the tier's whole file for the object (`sealed_bytes::write_file`),
    /// and served from that file: storing the object only names the file, where otherwise the
    /// body would go to disk twice (an unnamed file to serve it from, and the tier's file).
    pub fn object(&self, meta: Meta, body: Bytes) -> Object {
        if body.len() >= sealed_bytes::MIN_LEN
            && !sealed_bytes::is_sealed(&body)
            && let Some(dir) = self.bodies()
            && let Ok(meta_bytes) = serde_json::to_vec(&meta)
        {
            let (head, tail) = frame(&meta_bytes, &body);
            if let Some(image) = sealed_bytes::write_file(&[&head, &body, &tail], dir) {
                let mut object =
                    Object::new(meta, image.slice(head.len()..head.len() + body.len()), None);
                object.image = Some(image);
                return object;
            }
        }
        Object::new(meta, body, self.bodies())
    }

    /// The full key of a request, from the vary names remembered for `primary`.
    pub fn key_for(&self, primary: &str, request: &HeaderMap) -> String {
        match self.varies.get(primary) {
            Some(names) => variant_key(primary, &names, request),
            None => primary.to_owned(),
        }
    }

    /// Looks `key` up in memory, then on disk (promoting a disk hit to memory).
    pub async fn get(&self, key: &str) -> Option<(Arc<Object>, Tier)> {
        if let Some(object) = self.memory.get(key) {
            return Some((object, Tier::Memory));
        }
        let disk = self.disk.as_ref()?;
        let object = Arc::new(disk.get(key).await?);
        self.remember_vary(&object);
        self.memory.insert(key.to_owned(), object.clone());
        Some((object, Tier::Disk))
    }

    /// Stores an object in both tiers (the disk write happens in the background).
    pub fn insert(&self, object: Arc<Object>) {
        self.remember_vary(&object);
        self.memory.insert(object.meta.key.clone(), object.clone());
        if let Some(disk) = &self.disk {
            let disk = disk.clone();
            tokio::task::spawn_blocking(move || disk.put(&object, false));
        }
    }

    /// Stores an object on disk only, as wanted (straight into the index's main queue), and
    /// waits for the write (in memory where there is no disk tier): for what is stored ahead
    /// of demand.
    pub async fn insert_cold(&self, object: Arc<Object>) {
        self.remember_vary(&object);
        match &self.disk {
            Some(disk) => {
                let disk = disk.clone();
                let key = object.meta.key.clone();
                if tokio::task::spawn_blocking(move || disk.put(&object, true))
                    .await
                    .is_err()
                {
                    tracing::warn!(message = "Disk cache write did not finish.", key);
                }
            }
            None => {
                self.memory.insert(object.meta.key.clone(), object);
            }
        }
    }

    fn remember_vary(&self, object: &Object) {
        let primary = object
            .meta
            .key
            .split('\n')
            .next()
            .unwrap_or(&object.meta.key);
        if object.meta.vary.is_empty() {
            if self.varies.contains_key(primary) {
                self.varies.invalidate(primary);
            }
        } else {
            self.varies
                .insert(primary.to_owned(), Arc::new(object.meta.vary.clone()));
        }
    }

    /// Removes every variant whose primary key is `primary` (exact), or starts with it when
    /// `prefix`. Returns how many objects went.
    pub fn purge(&self, primary: &str, prefix: bool) -> usize {
        let matches = |key: &str| {
            let key_primary = key.split('\n').next().unwrap_or(key);
            if prefix {
                key_primary.starts_with(primary)
            } else {
                key_primary == primary
            }
        };
        let mut removed = 0;
        let keys: Vec<Arc<String>> = self
            .memory
            .iter()
            .filter(|(key, _)| matches(key))
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            self.memory.invalidate(key.as_str());
            removed += 1;
        }
        if let Some(disk) = &self.disk {
            removed += disk.purge(&matches);
        }
        let names: Vec<Arc<String>> = self
            .varies
            .iter()
            .filter(|(key, _)| matches(key))
            .map(|(key, _)| key)
            .collect();
        for name in names {
            self.varies.invalidate(name.as_str());
        }
        removed
    }

    /// Whether either tier holds `key` (a full key), without reading it or counting a use.
    pub fn contains(&self, key: &str) -> bool {
        self.memory.contains_key(key)
            || self
                .disk
                .as_ref()
                .is_some_and(|disk| disk.index.contains(&xxh3_128(key.as_bytes())))
    }

    /// Bytes held in memory and on disk.
    pub fn sizes(&self) -> (u64, u64) {
        self.memory.run_pending_tasks();
        let disk = self.disk.as_ref().map_or(0, |disk| disk.index.used());
        (self.memory.weighted_size(), disk)
    }
}

/// The disk tier: one file per object, `objects/{xx}/{hash}`, written to `tmp/` and renamed
/// into place, so that a file is whole or absent; an index in memory ([`S3Fifo`], weighed by
/// file size) bounds the bytes and says which files to delete.
#[derive(Debug, Clone)]
struct DiskTier {
    dir: Arc<PathBuf>,
    index: Arc<S3Fifo<u128, Arc<DiskEntry>>>,
    /// Unnamed files in `tmp/` for the node's large bodies, memory tier included: the file
    /// system's page cache, which sendfile reads a batch of pages at a time, where a memory
    /// file's pages are looked up one by one (see `sealed_bytes`). `None` where the file
    /// system makes no unnamed files (bodies then go into memory files).
    bodies: Option<sealed_bytes::Directory>,
}

#[derive(Debug)]
struct DiskEntry {
    key: String,
    size: u64,
}

const MAGIC: &[u8; 4] = b"CDZ1";

impl DiskTier {
    fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        let dir = Arc::new(dir.to_path_buf());
        std::fs::create_dir_all(dir.join("objects"))?;
        // Whatever was being written when the last run stopped is not an object.
        let _ = std::fs::remove_dir_all(dir.join("tmp"));
        std::fs::create_dir_all(dir.join("tmp"))?;
        let index = Arc::new(S3Fifo::new(max_bytes));
        let work = dir.join("tmp");
        let bodies = sealed_bytes::Directory::open(&work)
            .inspect_err(|error| {
                tracing::warn!(dir = %work.display(), %error,
                    "cannot make unnamed files here; large bodies go into memory files");
            })
            .ok();
        let tier = Self { dir, index, bodies };
        tier.reindex()?;
        Ok(tier)
    }

    /// Indexes the files a previous run left, oldest first so that they are evicted first.
    fn reindex(&self) -> std::io::Result<()> {
        let mut found = Vec::new();
        for shard in std::fs::read_dir(self.dir.join("objects"))? {
            let shard = shard?.path();
            let Ok(entries) = std::fs::read_dir(&shard) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(hash) = path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .and_then(|name| u128::from_str_radix(name, 16).ok())
                else {
                    let _ = std::fs::remove_file(&path);
                    continue;
                };
                match read_header(&path) {
                    Some((key, size, modified)) if xxh3_128(key.as_bytes()) == hash => {
                        found.push((modified, hash, key, size));
                    }
                    _ => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
        found.sort_by_key(|(modified, ..)| *modified);
        // What a previous run kept was wanted: into the main queue, oldest first (so first to
        // go if the tier is now smaller).
        for (_, hash, key, size) in found {
            let evicted = self
                .index
                .insert_main(hash, Arc::new(DiskEntry { key, size }), size);
            self.delete(evicted);
        }
        Ok(())
    }

    /// Deletes the files of what the index evicted.
    fn delete(&self, evicted: Vec<(u128, Arc<DiskEntry>)>) {
        for (hash, _) in evicted {
            let _ = std::fs::remove_file(object_path(&self.dir, hash));
            metrics::counter!("cadenza_edge_evictions_total", "tier" => "disk").increment(1);
        }
    }

    async fn get(&self, key: &str) -> Option<Object> {
        let hash = xxh3_128(key.as_bytes());
        let size = self.index.get(&hash)?.size;
        let path = object_path(&self.dir, hash);
        let bodies = self.bodies.clone();
        let read = path.clone();
        // A large file is mapped rather than read, so its body is served from the page cache
        // without a copy; the checksum is verified over the mapping either way (off the
        // runtime's threads, since that reads the disk).
        let decoded = tokio::task::spawn_blocking(move || {
            let bytes = if size >= sealed_bytes::MIN_LEN as u64 {
                sealed_bytes::map_file(&read)
                    .or_else(|_| std::fs::read(&read).map(Bytes::from))
                    .ok()?
            } else {
                Bytes::from(std::fs::read(&read).ok()?)
            };
            Some(decode(&bytes, bodies.as_ref()))
        })
        .await
        .ok()??;
        match decoded {
            Some(object) if object.meta.key == key => Some(object),
            _ => {
                tracing::warn!(message = "Corrupt disk cache file removed.", path = %path.display());
                metrics::counter!("cadenza_edge_disk_corrupt_total").increment(1);
                self.index.remove(&hash);
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes `object`; `wanted` puts it straight into the index's main queue (pre-positioned
    /// objects), where a newcomer otherwise starts in the small one.
    fn put(&self, object: &Object, wanted: bool) {
        let hash = xxh3_128(object.meta.key.as_bytes());
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{hash:032x}-{:016x}", unique_suffix()));
        let target = object_path(&self.dir, hash);
        let write = || -> std::io::Result<u64> {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            // Written already (`Cache::object`): only the name is new.
            if let Some(image) = &object.image {
                match sealed_bytes::link(image, &tmp, &target) {
                    Ok(()) => return Ok(image.len() as u64),
                    Err(error) => {
                        tracing::debug!(message = "Cannot name a written cache file; writing it again.", %error);
                    }
                }
            }
            let meta = serde_json::to_vec(&object.meta).map_err(std::io::Error::other)?;
            let (head, tail) = frame(&meta, &object.body);
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&head)?;
            file.write_all(&object.body)?;
            file.write_all(&tail)?;
            drop(file);
            std::fs::rename(&tmp, &target)?;
            Ok((head.len() + object.body.len() + tail.len()) as u64)
        };
        match write() {
            Ok(size) => {
                let entry = Arc::new(DiskEntry {
                    key: object.meta.key.clone(),
                    size,
                });
                let evicted = if wanted {
                    self.index.insert_main(hash, entry, size)
                } else {
                    self.index.insert(hash, entry, size)
                };
                self.delete(evicted);
            }
            Err(error) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::warn!(message = "Disk cache write failed.", error = %error);
            }
        }
    }

    fn purge(&self, matches: &dyn Fn(&str) -> bool) -> usize {
        let hashes: Vec<u128> = self
            .index
            .snapshot()
            .into_iter()
            .filter(|(_, entry)| matches(&entry.key))
            .map(|(hash, _)| hash)
            .collect();
        for hash in &hashes {
            if self.index.remove(hash).is_some() {
                let _ = std::fs::remove_file(object_path(&self.dir, *hash));
            }
        }
        hashes.len()
    }
}

/// A name part no other write in this process (or another process sharing the directory)
/// uses at the same time: a counter mixed with the process id.
fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed) ^ (std::process::id() as u64) << 40
}

/// What goes before and after a body in its file: the magic, the metadata's length, the
/// metadata and the body's length; then the XXH3 checksum of metadata and body. A large body
/// starts on a page boundary of the file (the metadata padded with spaces, which JSON allows),
/// so that `sendfile` takes whole pages of it.
fn frame(meta: &[u8], body: &[u8]) -> (Vec<u8>, [u8; 8]) {
    const PAGE: usize = 4096;
    let bare = 4 + 4 + meta.len() + 8;
    let pad = if body.len() >= sealed_bytes::MIN_LEN {
        bare.next_multiple_of(PAGE) - bare
    } else {
        0
    };
    let mut head = Vec::with_capacity(bare + pad);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&((meta.len() + pad) as u32).to_le_bytes());
    head.extend_from_slice(meta);
    head.resize(head.len() + pad, b' ');
    head.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let mut checksum = xxhash_rust::xxh3::Xxh3::new();
    checksum.update(&head[8..8 + meta.len() + pad]);
    checksum.update(body);
    (head, checksum.digest().to_le_bytes())
}

fn object_path(dir: &Path, hash: u128) -> PathBuf {
    let name = format!("{hash:032x}");
    dir.join("objects").join(&name[..2]).join(name)
}

/// The key, file size and modification time from a file's header, without reading its body.
fn read_header(path: &Path) -> Option<(String, u64, SystemTime)> {
    let mut file = std::fs::File::open(path).ok()?;
    let metadata = file.metadata().ok()?;
    let mut head = [0u8; 8];
    file.read_exact(&mut head).ok()?;
    if &head[..4] != MAGIC {
        return None;
    }
    let meta_len = u32::from_le_bytes(head[4..8].try_into().ok()?) as usize;
    if meta_len > 1 << 20 {
        return None;
    }
    let mut meta = vec![0u8; meta_len];
    file.read_exact(&mut meta).ok()?;
    let meta: Meta = serde_json::from_slice(&meta).ok()?;
    Some((
        meta.key,
        metadata.len(),
        metadata.modified().unwrap_or(UNIX_EPOCH + Duration::ZERO),
    ))
}

/// Decodes and verifies a whole file: magic, lengths and checksum must all agree.
fn decode(bytes: &Bytes, bodies: Option<&sealed_bytes::Directory>) -> Option<Object> {
    if bytes.len() < 24 || &bytes[..4] != MAGIC {
        return None;
    }
    let meta_len = u32::from_le_bytes(bytes[4..8].try_into().ok()?) as usize;
    let meta_end = 8usize.checked_add(meta_len)?;
    let body_len_end = meta_end.checked_add(8)?;
    let body_len = usize::try_from(u64::from_le_bytes(
        bytes.get(meta_end..body_len_end)?.try_into().ok()?,
    ))
    .ok()?;
    let body_end = body_len_end.checked_add(body_len)?;
    if bytes.len() != body_end.checked_add(8)? {
        return None;
    }
    let meta_bytes = &bytes[8..meta_end];
    let body = &bytes[body_len_end..body_end];
    let mut checksum = xxhash_rust::xxh3::Xxh3::new();
    checksum.update(meta_bytes);
    checksum.update(body);
    let stored = u64::from_le_bytes(bytes[body_end..].try_into().ok()?);
    if checksum.digest() != stored {
        return None;
    }
    let meta: Meta = serde_json::from_slice(meta_bytes).ok()?;
    // A mapped file's body is served from the mapping; one read onto the heap is sealed
    // (copied) if large, or kept as a slice of what was read.
    let body = if sealed_bytes::is_sealed(bytes) || body.len() < sealed_bytes::MIN_LEN {
        bytes.slice(body_len_end..body_end)
    } else {
        sealed_bytes::copy_from_slice(body, bodies)
    };
    Some(Object::new(meta, body, bodies))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, body: &[u8]) -> Object {
        object_in(key, body, None)
    }

    fn object_in(key: &str, body: &[u8], bodies: Option<&sealed_bytes::Directory>) -> Object {
        Object::new(
            Meta {
                key: key.to_owned(),
                status: 200,
                headers: vec![("etag".to_owned(), "\"x\"".to_owned())],
                response_time_ms: 1_000,
                initial_age_ms: 0,
                policy: crate::freshness::policy(StatusCode::OK, &HeaderMap::new(), 1),
                vary: Vec::new(),
            },
            Bytes::copy_from_slice(body),
            bodies,
        )
    }

    #[tokio::test]
    async fn disk_objects_survive_reopening_and_corruption_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
        tier.put(&object("/a", b"hello"), false);
        tier.put(&object("/b", b"world"), false);
        drop(tier);
        let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            tier.get("/a").await.unwrap().body,
            Bytes::from_static(b"hello")
        );
        // Flip one byte of /b's body: the checksum refuses it and the file goes.
        let path = object_path(dir.path(), xxh3_128(b"/b"));
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 10;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(tier.get("/b").await.is_none());
        assert!(!path.exists());
        // A truncated file is refused too.
        let path = object_path(dir.path(), xxh3_128(b"/a"));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(tier.get("/a").await.is_none());
    }

    #[test]
    fn with_a_disk_tier_large_bodies_live_in_unnamed_files_beside_it() {
        /// The files this process holds open in `dir`.
        fn open_files_in(dir: &Path) -> Vec<PathBuf> {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
                .filter(|target| target.starts_with(dir) && target != dir)
                .collect()
        }
        // Two nodes' caches in one process: each keeps its bodies beside its own disk tier.
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = Cache::open(1 << 20, Some((one.path(), 1 << 20))).unwrap();
        let second = Cache::open(1 << 20, Some((two.path(), 1 << 20))).unwrap();
        let body = object_in("/big", &vec![5u8; 100_000], first.bodies()).body;
        assert!(sealed_bytes::is_sealed(&body));
        let (tmp_one, tmp_two) = (one.path().join("tmp"), two.path().join("tmp"));
        assert_eq!(
            open_files_in(&tmp_one).len(),
            1,
            "a file in {}",
            tmp_one.display()
        );
        assert!(open_files_in(&tmp_two).is_empty());
        let other = object_in("/big", &vec![6u8; 100_000], second.bodies()).body;
        assert_eq!(open_files_in(&tmp_two).len(), 1);
        // None of them has a name there.
        assert_eq!(std::fs::read_dir(&tmp_one).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(&tmp_two).unwrap().count(), 0);
        // Without a disk tier there is nowhere to put them: memory files.
        let memory_only = Cache::open(1 << 20, None).unwrap();
        assert!(memory_only.bodies().is_none());
        drop((body, other));
        assert!(
            open_files_in(&tmp_one).is_empty(),
            "the file goes with its body"
        );
    }

    /// Whether this process holds the file at `path` open (by inode: a file opened without a
    /// name and named later shows no name in `/proc/self/fd`).
    fn holds_open(path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        let inode = std::fs::metadata(path).unwrap().ino();
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|entry| std::fs::metadata(entry.ok()?.path()).ok())
            .any(|open| open.ino() == inode && open.is_file())
    }

    #[tokio::test]
    async fn a_filled_body_goes_to_disk_once_and_a_disk_hit_is_served_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let body = (0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>();
        let cache = Cache::open(1 << 20, Some((dir.path(), 1 << 20))).unwrap();
        let object = cache.object(object("/big", b"").meta, Bytes::from(body.clone()));
        assert!(sealed_bytes::is_sealed(&object.body));
        assert_eq!(&object.body[..], &body[..]);
        // On a page boundary of its file (and so of the mapping), for sendfile.
        assert_eq!(object.body.as_ptr() as usize % 4096, 0);
        let path = object_path(dir.path(), xxh3_128(b"/big"));
        assert!(!path.exists(), "no name until stored");
        // Storing it names the file it is served from.
        cache.insert(Arc::new(object));
        // Stored in the background: wait for the name.
        for _ in 0..500 {
            if path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            holds_open(&path),
            "the stored file is the one the body is served from"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        drop(cache);
        assert!(!holds_open(&path));

        // After a restart, a disk hit maps the same file: no copy of the body anywhere.
        let cache = Cache::open(1 << 20, Some((dir.path(), 1 << 20))).unwrap();
        let (hit, tier) = cache.get("/big").await.unwrap();
        assert_eq!(tier, Tier::Disk);
        assert_eq!(&hit.body[..], &body[..]);
        assert!(sealed_bytes::is_sealed(&hit.body));
        assert_eq!(hit.body.as_ptr() as usize % 4096, 0);
        assert!(holds_open(&path));
        drop((hit, cache));

        // A corrupt large file is a miss, and goes.
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let cache = Cache::open(1 << 20, Some((dir.path(), 1 << 20))).unwrap();
        assert!(cache.get("/big").await.is_none());
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn the_disk_tier_stays_within_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::open(dir.path(), 64 * 1024).unwrap();
        let body = vec![7u8; 10_000];
        for index in 0..40 {
            tier.put(&object(&format!("/o{index}"), &body), false);
        }
        assert!(tier.index.used() <= 64 * 1024);
        let files: usize = std::fs::read_dir(dir.path().join("objects"))
            .unwrap()
            .map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap().count())
            .sum();
        assert!(files <= 7, "{files} files left on disk");
    }
}
