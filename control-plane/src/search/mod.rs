//! The search service ("Track Search" of the product spec): every control-plane process that
//! serves it keeps its own index of the tracks a listener may find ([`search_index::Catalogue`], in
//! memory), built from the Inventory DB at start and kept current by the bus — a consumer
//! group of its own per process (`search.{instance}`), so that every replica sees every
//! event. A track event re-reads that track from the store (replays and duplicates change
//! nothing); play events mark their track, whose plays are re-read from the catalog's
//! counters every [`POPULARITY_EVERY`]. Results are cached briefly under the index's
//! generation, which every change bumps.

mod http;

pub(crate) use http::routes;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use events::Envelope;
use search_index::{Catalogue, Page, Request, SearchError, TrackDoc};
use sha2::{Digest as _, Sha256};

use crate::App;
use crate::bus::{Handler, HandlerError};
use crate::catalog::store::SearchableRow;
use crate::error::{Error, Result};
use crate::store::StoreError;

/// How often the plays of recently played tracks are read into the index.
pub const POPULARITY_EVERY: Duration = Duration::from_secs(2);
/// How long a page of results is cached.
const CACHE_TTL: Duration = Duration::from_secs(30);

/// One process's search index and what it still has to refresh.
pub struct Search {
    catalogue: Arc<Catalogue>,
    /// Tracks whose plays are to be read again.
    played: Mutex<Played>,
    /// This process's consumer group.
    group: String,
}

impl std::fmt::Debug for Search {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Search")
            .field("group", &self.group)
            .field("tracks", &self.catalogue.len())
            .finish_non_exhaustive()
    }
}

impl Search {
    /// An empty index for the process whose bus instance is `instance`.
    pub fn new(instance: &str) -> anyhow::Result<Self> {
        Ok(Self {
            catalogue: Arc::new(Catalogue::new()?),
            played: Mutex::new(Played::default()),
            group: format!("search.{instance}"),
        })
    }

    /// This process's consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The index's generation (it changes with every change).
    pub fn generation(&self) -> u64 {
        self.catalogue.generation()
    }

    /// How many tracks are indexed.
    pub fn len(&self) -> usize {
        self.catalogue.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.catalogue.is_empty()
    }

    /// The index itself, for in-process queries (the search benchmark's peer).
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Replaces everything indexed with `documents` (off the async threads). Returns how
    /// many tracks the index holds.
    pub async fn replace_all(&self, documents: Vec<TrackDoc>) -> anyhow::Result<usize> {
        let count = documents.len();
        let catalogue = self.catalogue.clone();
        tokio::task::spawn_blocking(move || catalogue.replace_all(documents)).await??;
        metrics::gauge!("cadenza_search_tracks").set(count as f64);
        Ok(count)
    }
}

/// A track as the index keeps it, with `popularity` plays.
fn track_doc(row: SearchableRow, popularity: u64) -> TrackDoc {
    TrackDoc {
        id: row.id,
        title: row.name,
        artist: row.singer,
        album: row.album,
        genre: row.genre,
        tags: row.top_tags,
        lyrics: row.lyrics_excerpt,
        year: row.release_year.and_then(|year| u32::try_from(year).ok()),
        explicit: row.explicit,
        duration_ms: row.duration_ms.unwrap_or(0).max(0) as u64,
        popularity,
        artwork: row.artwork,
    }
}

/// Tracks played since their plays were last read (`fresh`), and those read once already
/// that are read once more (`again`).
#[derive(Debug, Default)]
struct Played {
    fresh: HashSet<String>,
    again: HashSet<String>,
}

/// The consumer of `tracks`: a changed track is re-read and re-indexed (or dropped).
pub fn tracks_handler(app: App) -> Handler {
    Arc::new(move |envelope: Envelope| {
        let app = app.clone();
        Box::pin(async move { app.reindex(&envelope.key).await })
    })
}

/// The consumer of `plays`: a played track's plays are re-read at the next refresh.
pub fn plays_handler(app: App) -> Handler {
    Arc::new(move |envelope: Envelope| {
        let app = app.clone();
        Box::pin(async move {
            if let Some(track) = played_track(&envelope) {
                app.search
                    .played
                    .lock()
                    .expect("played lock")
                    .fresh
                    .insert(track);
            }
            Ok(())
        })
    })
}

/// The track a play started of (the only play event that changes plays started).
fn played_track(envelope: &Envelope) -> Option<String> {
    use events::plays::PlayStarted;
    envelope
        .is::<PlayStarted>()
        .then(|| envelope.decode::<PlayStarted>().ok())
        .flatten()
        .map(|started| started.0.track_id)
}

impl App {
    /// A track's plays: plays started, over every day and region of its counters.
    async fn plays_of(&self, track: &str) -> Result<u64, StoreError> {
        let counters = self.catalog.play_counters(track).await?;
        Ok(counters
            .iter()
            .map(|counter| counter.starts.max(0) as u64)
            .sum())
    }

    async fn document(&self, row: SearchableRow) -> Result<TrackDoc, StoreError> {
        let popularity = self.plays_of(&row.id).await?;
        Ok(track_doc(row, popularity))
    }

    /// Rebuilds the index from the stores. Returns how many tracks it holds.
    pub async fn rebuild_search_index(&self) -> anyhow::Result<usize> {
        let started = std::time::Instant::now();
        let rows =
            crate::catalog::store::searchable_tracks(self.inventory.database().pool()).await?;
        let plays = self.catalog.plays_started().await?;
        let documents: Vec<TrackDoc> = rows
            .into_iter()
            .map(|row| {
                let popularity = plays.get(&row.id).copied().unwrap_or(0);
                track_doc(row, popularity)
            })
            .collect();
        let count = self.search.replace_all(documents).await?;
        tracing::info!(
            message = "Search index built.",
            tracks = count,
            elapsed_ms = started.elapsed().as_millis() as u64
        );
        Ok(count)
    }

    /// Re-reads track `id` and indexes it, or drops it if a listener may no longer find it.
    async fn reindex(&self, id: &str) -> Result<(), HandlerError> {
        let row =
            crate::catalog::store::searchable_track(self.inventory.database().pool(), id).await?;
        let (upserts, removals) = match row {
            Some(row) => (vec![self.document(row).await?], Vec::new()),
            None if self.search.catalogue.contains(id) => (Vec::new(), vec![id.to_owned()]),
            None => return Ok(()),
        };
        let catalogue = self.search.catalogue.clone();
        tokio::task::spawn_blocking(move || catalogue.apply(upserts, &removals))
            .await
            .map_err(HandlerError::internal)?
            .map_err(HandlerError::internal)?;
        metrics::gauge!("cadenza_search_tracks").set(self.search.len() as f64);
        Ok(())
    }

    /// Reads the plays of the tracks played since the last refresh into the index. A track
    /// is read at two refreshes in a row, so that plays the counters consumer had not yet
    /// counted at the first are read at the second.
    pub(crate) async fn refresh_popularity(&self) {
        let due: Vec<String> = {
            let mut played = self.search.played.lock().expect("played lock");
            let fresh = std::mem::take(&mut played.fresh);
            let due = fresh.union(&played.again).cloned().collect();
            played.again = fresh;
            due
        };
        if due.is_empty() {
            return;
        }
        let mut counts = Vec::with_capacity(due.len());
        for track in due {
            match self.plays_of(&track).await {
                Ok(plays) => counts.push((track, plays)),
                Err(error) => {
                    tracing::warn!(message = "Could not read a track's plays for search.", track, %error);
                    self.search
                        .played
                        .lock()
                        .expect("played lock")
                        .fresh
                        .insert(track);
                }
            }
        }
        let catalogue = self.search.catalogue.clone();
        let updated = tokio::task::spawn_blocking(move || catalogue.set_popularity(&counts)).await;
        if let Err(error) = updated.map_err(anyhow::Error::from).and_then(|r| Ok(r?)) {
            tracing::warn!(message = "Could not update plays in the search index.", %error);
        }
    }

    /// Runs a search, through the cache.
    pub(crate) async fn search(&self, request: Request<'_>, cache_key: &str) -> Result<Page> {
        let key = format!(
            "search:{}:{}:{}",
            self.search.group,
            self.search.generation(),
            hex::encode(Sha256::digest(cache_key.as_bytes()))
        );
        if let Some(page) = self.cache.get_json::<Page>(&key).await {
            metrics::counter!("cadenza_search_cache_total", "result" => "hit").increment(1);
            return Ok(page);
        }
        metrics::counter!("cadenza_search_cache_total", "result" => "miss").increment(1);
        let catalogue = self.search.catalogue.clone();
        let (text, kind, limit, offset, filters) = (
            request.text.to_owned(),
            request.kind,
            request.limit,
            request.offset,
            request.filters,
        );
        let page = tokio::task::spawn_blocking(move || {
            catalogue.search(&Request {
                text: &text,
                kind,
                limit,
                offset,
                filters,
            })
        })
        .await
        .map_err(|error| Error::Internal(error.into()))?
        .map_err(search_error)?;
        self.cache.set_json(&key, &page, CACHE_TTL).await;
        Ok(page)
    }
}

impl App {
    /// The caller's own playlists whose names match `text`, best first: the page's items and
    /// the offset of the next.
    pub(crate) async fn search_playlists(
        &self,
        user_id: &str,
        text: &str,
        limit: usize,
        offset: usize,
    ) -> Result<(serde_json::Value, Option<usize>)> {
        let mut found = Vec::new();
        for playlist in self.users.playlists_of(user_id).await? {
            if let Some((score, parts)) =
                search_index::match_text(text, &playlist.name).map_err(search_error)?
            {
                found.push((score, playlist, parts));
            }
        }
        found.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(b.1.updated_at.cmp(&a.1.updated_at))
        });
        let next = (offset + limit < found.len()).then_some(offset + limit);
        let items = found
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(score, playlist, parts)| {
                serde_json::json!({
                    "id": playlist.playlist_id,
                    "name": playlist.name,
                    "parts": parts,
                    "score": score,
                })
            })
            .collect();
        Ok((serde_json::Value::Array(items), next))
    }
}

/// A search that cannot run, as the API answers it.
pub(crate) fn search_error(error: SearchError) -> Error {
    let (code, message) = match error {
        SearchError::Empty => ("query_empty", "Type something to search for.".to_owned()),
        SearchError::NoWords => (
            "query_no_words",
            "The query has no letters or digits to search for.".to_owned(),
        ),
        SearchError::TooLong => (
            "query_too_long",
            format!(
                "A query is at most {} characters.",
                search_index::MAX_QUERY_CHARS
            ),
        ),
        SearchError::Index(error) => return Error::Internal(error.into()),
    };
    Error::BadRequest { code, message }
}
