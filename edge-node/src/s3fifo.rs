//! S3-FIFO (Yang et al., SOSP '23), weighed by bytes: the disk tier's admission and eviction
//! policy, chosen over W-TinyLFU, SIEVE and LRU by `bench/isp-box.sh` (a seeded Zipf demand:
//! 9–12 points of byte hit ratio over LRU at 1–5 % of the catalogue, where W-TinyLFU gained
//! 5–6 and SIEVE 2).
//!
//! New objects enter a small FIFO (a tenth of the bytes). One asked for again while there
//! moves to the main FIFO when it reaches the small queue's head; one that was not leaves,
//! and its key is remembered in a ghost FIFO, so that it goes straight to main if it comes back
//! soon. Main gives each object read since it last reached the head another lap (up to three),
//! and evicts the first one that was not. One-hit wonders so leave after a tenth of the cache
//! instead of pushing everything else out, and a hit costs a counter, not a list move.
//!
//! Objects known to be wanted (those a previous run left, those pre-positioned) go straight to
//! main.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;

/// Which queue an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Small,
    Main,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    size: u64,
    /// Reads since it last passed a queue's head, capped at 3.
    frequency: u8,
    queue: Queue,
    /// Tells this entry's queue slot from a removed one's with the same key.
    generation: u64,
}

#[derive(Debug)]
struct State<K, V> {
    entries: HashMap<K, Entry<V>>,
    small: VecDeque<(K, u64)>,
    main: VecDeque<(K, u64)>,
    ghost: VecDeque<K>,
    ghosts: HashMap<K, u32>,
    small_used: u64,
    main_used: u64,
    generation: u64,
}

/// A byte-bounded S3-FIFO index. Every operation takes one short lock.
#[derive(Debug)]
pub struct S3Fifo<K, V> {
    capacity: u64,
    small_capacity: u64,
    state: Mutex<State<K, V>>,
}

impl<K: Hash + Eq + Copy, V: Clone> S3Fifo<K, V> {
    /// An empty index of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            small_capacity: capacity / 10,
            state: Mutex::new(State {
                entries: HashMap::new(),
                small: VecDeque::new(),
                main: VecDeque::new(),
                ghost: VecDeque::new(),
                ghosts: HashMap::new(),
                small_used: 0,
                main_used: 0,
                generation: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K, V>> {
        // A panic under the lock leaves consistent counts (every change is a few statements
        // with no call that panics); go on with what is there.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value of `key`, counting a read.
    pub fn get(&self, key: &K) -> Option<V> {
        let mut state = self.lock();
        let entry = state.entries.get_mut(key)?;
        entry.frequency = (entry.frequency + 1).min(3);
        Some(entry.value.clone())
    }

    /// Whether `key` is held (not counted as a read).
    pub fn contains(&self, key: &K) -> bool {
        self.lock().entries.contains_key(key)
    }

    /// Bytes held.
    pub fn used(&self) -> u64 {
        let state = self.lock();
        state.small_used + state.main_used
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry, for a scan (purge by prefix).
    pub fn snapshot(&self) -> Vec<(K, V)> {
        self.lock()
            .entries
            .iter()
            .map(|(key, entry)| (*key, entry.value.clone()))
            .collect()
    }

    /// Adds (or replaces) `key` as a newcomer: into the small queue, or into main if it left
    /// recently. Returns what was evicted to make room (`key` itself if it is larger than the
    /// main queue), for the caller to delete.
    pub fn insert(&self, key: K, value: V, size: u64) -> Vec<(K, V)> {
        let mut state = self.lock();
        let ghost = state.ghosts.contains_key(&key);
        let queue = if ghost { Queue::Main } else { Queue::Small };
        self.place(&mut state, key, value, size, queue)
    }

    /// Adds (or replaces) `key` straight into main: an object known to be wanted.
    pub fn insert_main(&self, key: K, value: V, size: u64) -> Vec<(K, V)> {
        let mut state = self.lock();
        self.place(&mut state, key, value, size, Queue::Main)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&self, key: &K) -> Option<V> {
        let mut state = self.lock();
        let entry = state.entries.remove(key)?;
        match entry.queue {
            Queue::Small => state.small_used -= entry.size,
            Queue::Main => state.main_used -= entry.size,
        }
        Some(entry.value)
    }

    fn place(
        &self,
        state: &mut State<K, V>,
        key: K,
        value: V,
        size: u64,
        queue: Queue,
    ) -> Vec<(K, V)> {
        let mut evicted = Vec::new();
        if let Some(old) = state.entries.remove(&key) {
            match old.queue {
                Queue::Small => state.small_used -= old.size,
                Queue::Main => state.main_used -= old.size,
            }
        }
        let main_capacity = self.capacity - self.small_capacity;
        if size > main_capacity {
            evicted.push((key, value));
            return evicted;
        }
        state.generation += 1;
        let generation = state.generation;
        match queue {
            Queue::Small if size <= self.small_capacity => {
                while state.small_used + size > self.small_capacity
                    && self.evict_small(state, &mut evicted)
                {}
                state.small.push_back((key, generation));
                state.small_used += size;
            }
            _ => {
                self.make_room_in_main(state, size, &mut evicted);
                state.main.push_back((key, generation));
                state.main_used += size;
            }
        }
        let queue = if state.small.back() == Some(&(key, generation)) {
            Queue::Small
        } else {
            Queue::Main
        };
        state.entries.insert(
            key,
            Entry {
                value,
                size,
                frequency: 0,
                queue,
                generation,
            },
        );
        evicted
    }

    fn make_room_in_main(&self, state: &mut State<K, V>, size: u64, evicted: &mut Vec<(K, V)>) {
        let main_capacity = self.capacity - self.small_capacity;
        while state.main_used + size > main_capacity && self.evict_main(state, evicted) {}
    }

    /// Moves the small queue's head on: to main if it was read, else out (into the ghost).
    /// Returns false when the small queue is empty.
    fn evict_small(&self, state: &mut State<K, V>, evicted: &mut Vec<(K, V)>) -> bool {
        while let Some((key, generation)) = state.small.pop_front() {
            let Some(entry) = state.entries.get(&key) else {
                continue;
            };
            if entry.generation != generation || entry.queue != Queue::Small {
                continue;
            }
            let (size, read) = (entry.size, entry.frequency > 0);
            state.small_used -= size;
            if read {
                self.make_room_in_main(state, size, evicted);
                if let Some(entry) = state.entries.get_mut(&key) {
                    entry.frequency = 0;
                    entry.queue = Queue::Main;
                    state.main.push_back((key, entry.generation));
                    state.main_used += size;
                }
            } else if let Some(entry) = state.entries.remove(&key) {
                self.remember_ghost(state, key);
                evicted.push((key, entry.value));
            }
            return true;
        }
        false
    }

    /// Gives main's head another lap if it was read, else evicts it. Returns false when main
    /// is empty.
    fn evict_main(&self, state: &mut State<K, V>, evicted: &mut Vec<(K, V)>) -> bool {
        while let Some((key, generation)) = state.main.pop_front() {
            let Some(entry) = state.entries.get_mut(&key) else {
                continue;
            };
            if entry.generation != generation || entry.queue != Queue::Main {
                continue;
            }
            if entry.frequency > 0 {
                entry.frequency -= 1;
                state.main.push_back((key, generation));
                continue;
            }
            let size = entry.size;
            if let Some(entry) = state.entries.remove(&key) {
                state.main_used -= size;
                evicted.push((key, entry.value));
            }
            return true;
        }
        false
    }

    /// Remembers `key` in the ghost queue, which holds as many keys as there are entries.
    fn remember_ghost(&self, state: &mut State<K, V>, key: K) {
        *state.ghosts.entry(key).or_default() += 1;
        state.ghost.push_back(key);
        let limit = state.entries.len().max(1024);
        while state.ghost.len() > limit {
            if let Some(old) = state.ghost.pop_front()
                && let Some(count) = state.ghosts.get_mut(&old)
            {
                *count -= 1;
                if *count == 0 {
                    state.ghosts.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_hit_wonder_leaves_before_an_object_read_twice() {
        let index = S3Fifo::new(1_000);
        // Small holds 100 bytes: a read object moves to main, an unread one is dropped.
        assert!(index.insert(1u32, "read", 60).is_empty());
        assert_eq!(index.get(&1), Some("read"));
        assert!(index.insert(2, "once", 30).is_empty());
        let evicted = index.insert(3, "new", 60);
        assert!(evicted.is_empty(), "{evicted:?}: 1 moved to main");
        assert!(index.contains(&1));
        let evicted = index.insert(4, "newer", 40);
        assert_eq!(evicted, [(2, "once")]);
        // 2 is a ghost now: back, it goes straight to main.
        assert!(index.insert(2, "again", 30).is_empty());
        assert_eq!(index.used(), 60 + 30 + 60 + 40);
    }

    #[test]
    fn main_gives_read_objects_another_lap_and_bytes_stay_bounded() {
        let index = S3Fifo::new(1_000);
        for key in 0..9u32 {
            assert!(index.insert_main(key, key, 100).is_empty());
        }
        assert_eq!(index.used(), 900);
        index.get(&0);
        // Main holds 900: the next one pushes out the oldest unread (1, not 0).
        let evicted = index.insert_main(9, 9, 100);
        assert_eq!(evicted, [(1, 1)]);
        assert!(index.contains(&0));
        for key in 10..200u32 {
            index.insert(key, key, 37 + u64::from(key % 50));
            assert!(index.used() <= 1_000, "{}", index.used());
        }
        // Larger than main: refused at once.
        assert_eq!(index.insert(500, 500, 950), [(500, 500)]);
        assert!(!index.contains(&500));
    }

    #[test]
    fn removed_and_replaced_keys_leave_no_stale_slots() {
        let index = S3Fifo::new(1_000);
        index.insert(1u32, 'a', 50);
        assert_eq!(index.remove(&1), Some('a'));
        assert_eq!(index.used(), 0);
        index.insert(1, 'b', 40);
        index.insert(1, 'c', 30);
        assert_eq!(index.used(), 30);
        assert_eq!(index.len(), 1);
        // Filling small pushes only the live slot out.
        let evicted: Vec<_> = (2..10u32)
            .flat_map(|key| index.insert(key, 'x', 30))
            .collect();
        assert_eq!(evicted.iter().filter(|(key, _)| *key == 1).count(), 1);
        assert!(index.used() <= 1_000);
    }
}
