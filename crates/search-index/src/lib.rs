//! Cadenza's catalogue search: a tantivy index of ready tracks, and queries that forgive what
//! listeners type.
//!
//! Text is folded and tokenised by [`fold`] alike at index and at query time. A query is its
//! words, each of which must match (in any order); a word matches exactly, as a prefix (the
//! word still being typed), or with typos by its length — none up to 3 letters, one from 4,
//! two from 8, and a typo on the first letter costs two. The index's own term dictionary gives
//! the candidates, so a typo costs a scan of one letter's terms, not of the documents.
//!
//! Ranking is by buckets, not by term statistics: each matching word scores first how it
//! matched (exact 30, prefix 20, one typo 10, two 5), then where, a tenth of its field's
//! weight (title 10, artist 8, album 4, genre 3, tags 2, lyrics 1); the best match of a word
//! counts, others a hundredth. Equal scores go to the more played track. Artists and albums
//! are the groups of matching tracks.

pub mod fold;
mod query;
pub mod synthetic;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value as _,
};
use tantivy::tokenizer::{TextAnalyzer, Token as TantivyToken, TokenStream, Tokenizer};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

pub use query::{Filters, Kind, Request, check_query, match_text};

/// The longest query accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// The most results one page holds.
pub const MAX_LIMIT: usize = 50;

/// A search that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The query is empty or white space.
    #[error("the query is empty")]
    Empty,
    /// The query has no letters, digits or CJK characters (only punctuation, symbols, emoji).
    #[error("the query has no words to search for")]
    NoWords,
    /// The query is longer than [`MAX_QUERY_CHARS`].
    #[error("the query is longer than {MAX_QUERY_CHARS} characters")]
    TooLong,
    /// The index failed.
    #[error("search index error: {0}")]
    Index(#[from] tantivy::TantivyError),
}

/// A track as search sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackDoc {
    /// Track id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Artist (the singer).
    pub artist: String,
    /// Album.
    pub album: Option<String>,
    /// Genre.
    pub genre: Option<String>,
    /// Top tags (`genre:…`, `mood:…`), searched with their prefix left out.
    pub tags: Vec<String>,
    /// An excerpt of the lyrics.
    pub lyrics: Option<String>,
    /// Release year.
    pub year: Option<u32>,
    /// Explicit content.
    pub explicit: bool,
    /// Length, ms.
    pub duration_ms: u64,
    /// Plays counted; ties in relevance go to the more played.
    pub popularity: u64,
    /// Cover-art thumbnail paths by edge length.
    pub artwork: BTreeMap<String, String>,
}

/// A part of a field's text, matched by the query or not: a result's highlights, safe to
/// render as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// The original text of this part.
    pub text: String,
    /// Whether a query word matched it.
    pub hit: bool,
}

/// One track found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackHit {
    /// The track.
    pub track: TrackDoc,
    /// Relevance (bucket score).
    pub score: f32,
    /// The title in parts.
    pub title: Vec<Part>,
    /// The artist in parts.
    pub artist: Vec<Part>,
    /// The album in parts.
    pub album: Vec<Part>,
}

/// One artist found: the group of matching tracks that share it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtistHit {
    /// The artist's name as its best-matching track spells it.
    pub name: String,
    /// The name in parts.
    pub parts: Vec<Part>,
    /// Matching tracks by this artist (within the first results).
    pub tracks: usize,
    /// Their plays.
    pub popularity: u64,
    /// Cover art of its most played matching track.
    pub artwork: BTreeMap<String, String>,
    /// Relevance of its best track.
    pub score: f32,
}

/// One album found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlbumHit {
    /// Album title.
    pub name: String,
    /// The title in parts.
    pub parts: Vec<Part>,
    /// Its artist.
    pub artist: String,
    /// Matching tracks on it.
    pub tracks: usize,
    /// Their plays.
    pub popularity: u64,
    /// Cover art.
    pub artwork: BTreeMap<String, String>,
    /// Year.
    pub year: Option<u32>,
    /// Relevance of its best track.
    pub score: f32,
}

/// A page of results of one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "items", rename_all = "snake_case")]
pub enum Hits {
    /// Tracks.
    Tracks(Vec<TrackHit>),
    /// Artists.
    Artists(Vec<ArtistHit>),
    /// Albums.
    Albums(Vec<AlbumHit>),
}

/// A page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// The results.
    pub hits: Hits,
    /// Offset of the next page, if there are more.
    pub next: Option<usize>,
}

/// The index's fields.
#[derive(Debug, Clone, Copy)]
struct Fields {
    id: Field,
    title: Field,
    artist: Field,
    album: Field,
    genre: Field,
    tags: Field,
    lyrics: Field,
    genre_key: Field,
    artist_key: Field,
    year: Field,
    explicit: Field,
    popularity: Field,
}

const TOKENIZER: &str = "cadenza";

/// The tokenizer tantivy indexes with: [`fold::index_tokens`].
#[derive(Debug, Clone, Copy)]
struct FoldingTokenizer;

/// Tokens already made.
struct Tokens {
    tokens: Vec<TantivyToken>,
    next: usize,
}

impl Tokenizer for FoldingTokenizer {
    type TokenStream<'a> = Tokens;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Tokens {
        let tokens = fold::index_tokens(text)
            .into_iter()
            .enumerate()
            .map(|(position, token)| TantivyToken {
                offset_from: token.start,
                offset_to: token.end,
                position,
                text: token.text,
                position_length: 1,
            })
            .collect();
        Tokens { tokens, next: 0 }
    }
}

impl TokenStream for Tokens {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &TantivyToken {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut TantivyToken {
        &mut self.tokens[self.next - 1]
    }
}

/// The searchable catalogue: a tantivy index in memory, with the documents it holds.
pub struct Catalogue {
    fields: Fields,
    writer: Mutex<IndexWriter<TantivyDocument>>,
    reader: IndexReader,
    /// What is indexed, by track id (to re-index a track when only its popularity changes).
    docs: Mutex<HashMap<String, TrackDoc>>,
    generation: AtomicU64,
}

impl std::fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalogue")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Catalogue {
    /// An empty catalogue.
    pub fn new() -> Result<Self, SearchError> {
        let mut schema = Schema::builder();
        let text = |stored: bool| {
            let options = TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(TOKENIZER)
                    .set_index_option(IndexRecordOption::Basic),
            );
            if stored {
                options.set_stored()
            } else {
                options
            }
        };
        let fields = Fields {
            id: schema.add_text_field("id", STRING | STORED),
            title: schema.add_text_field("title", text(true)),
            artist: schema.add_text_field("artist", text(true)),
            album: schema.add_text_field("album", text(true)),
            genre: schema.add_text_field("genre", text(false)),
            tags: schema.add_text_field("tags", text(false)),
            lyrics: schema.add_text_field("lyrics", text(false)),
            genre_key: schema.add_text_field("genre_key", STRING),
            artist_key: schema.add_text_field("artist_key", STRING),
            year: schema.add_u64_field("year", INDEXED),
            explicit: schema.add_u64_field("explicit", INDEXED),
            popularity: schema.add_u64_field("popularity", FAST),
        };
        let index = Index::create_in_ram(schema.build());
        index
            .tokenizers()
            .register(TOKENIZER, TextAnalyzer::from(FoldingTokenizer));
        // One indexing thread, so that a segment keeps the order documents were added in
        // (a rebuild adds them most played first: see `query`'s early stop).
        let writer = index.writer_with_num_threads(1, 100_000_000)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            fields,
            writer: Mutex::new(writer),
            reader,
            docs: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        })
    }

    /// A number that changes whenever what the index answers may have changed (a cache key).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// How many tracks are indexed.
    pub fn len(&self) -> usize {
        self.docs.lock().expect("docs lock").len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether track `id` is indexed.
    pub fn contains(&self, id: &str) -> bool {
        self.docs.lock().expect("docs lock").contains_key(id)
    }

    /// The plays of a segment's first document: for a segment a rebuild wrote (most played first),
    /// the most its documents have, so segments are read and merged in that order.
    pub(crate) fn first_plays(segment: &tantivy::SegmentReader) -> u64 {
        segment
            .fast_fields()
            .u64("popularity")
            .ok()
            .and_then(|plays| plays.first(0))
            .unwrap_or(0)
    }

    /// The indexed track `id`.
    pub fn get(&self, id: &str) -> Option<TrackDoc> {
        self.docs.lock().expect("docs lock").get(id).cloned()
    }

    /// Applies changes (adds or replaces, removes) and makes them searchable.
    pub fn apply(&self, upserts: Vec<TrackDoc>, removals: &[String]) -> Result<(), SearchError> {
        let mut writer = self.writer.lock().expect("writer lock");
        let mut docs = self.docs.lock().expect("docs lock");
        for id in removals {
            writer.delete_term(Term::from_field_text(self.fields.id, id));
            docs.remove(id);
        }
        for doc in upserts {
            writer.delete_term(Term::from_field_text(self.fields.id, &doc.id));
            writer.add_document(self.document(&doc))?;
            docs.insert(doc.id.clone(), doc);
        }
        writer.commit()?;
        self.reader.reload()?;
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Replaces everything with `all` (a rebuild from the stores), added most played first so
    /// that a segment's documents are in that order.
    pub fn replace_all(&self, mut all: Vec<TrackDoc>) -> Result<(), SearchError> {
        all.sort_by(|a, b| {
            b.popularity
                .cmp(&a.popularity)
                .then_with(|| a.id.cmp(&b.id))
        });
        let mut writer = self.writer.lock().expect("writer lock");
        let mut docs = self.docs.lock().expect("docs lock");
        writer.delete_all_documents()?;
        docs.clear();
        for doc in all {
            writer.add_document(self.document(&doc))?;
            docs.insert(doc.id.clone(), doc);
        }
        writer.commit()?;
        // One segment, the segments merged most played first (each holds its documents in the
        // order they were added): every query then looks its words up in one term dictionary
        // per field, and reads the most played tracks first.
        self.reader.reload()?;
        let searcher = self.reader.searcher();
        if searcher.segment_readers().len() > 1 {
            let mut segments: Vec<(u64, tantivy::index::SegmentId)> = searcher
                .segment_readers()
                .iter()
                .map(|segment| (Self::first_plays(segment), segment.segment_id()))
                .collect();
            segments.sort_by_key(|segment| std::cmp::Reverse(segment.0));
            let ids: Vec<tantivy::index::SegmentId> =
                segments.into_iter().map(|(_, id)| id).collect();
            writer.merge(&ids).wait()?;
        }
        self.reader.reload()?;
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Sets the plays of indexed tracks (others are ignored).
    pub fn set_popularity(&self, counts: &[(String, u64)]) -> Result<(), SearchError> {
        let changed: Vec<TrackDoc> = {
            let docs = self.docs.lock().expect("docs lock");
            counts
                .iter()
                .filter_map(|(id, plays)| {
                    let doc = docs.get(id)?;
                    (doc.popularity != *plays).then(|| TrackDoc {
                        popularity: *plays,
                        ..doc.clone()
                    })
                })
                .collect()
        };
        if changed.is_empty() {
            return Ok(());
        }
        self.apply(changed, &[])
    }

    fn document(&self, doc: &TrackDoc) -> TantivyDocument {
        let f = &self.fields;
        let mut document = TantivyDocument::default();
        document.add_text(f.id, &doc.id);
        document.add_text(f.title, &doc.title);
        document.add_text(f.artist, &doc.artist);
        document.add_text(f.artist_key, fold::fold_key(&doc.artist));
        if let Some(album) = &doc.album {
            document.add_text(f.album, album);
        }
        if let Some(genre) = &doc.genre {
            document.add_text(f.genre, genre);
            document.add_text(f.genre_key, fold::fold_key(genre));
        }
        for tag in &doc.tags {
            // `genre:synthwave` is searched as `synthwave`.
            document.add_text(f.tags, tag.split_once(':').map_or(tag.as_str(), |(_, v)| v));
        }
        if let Some(lyrics) = &doc.lyrics {
            document.add_text(f.lyrics, lyrics);
        }
        if let Some(year) = doc.year {
            document.add_u64(f.year, u64::from(year));
        }
        document.add_u64(f.explicit, u64::from(doc.explicit));
        document.add_u64(f.popularity, doc.popularity);
        document
    }

    /// Runs a search.
    pub fn search(&self, request: &Request<'_>) -> Result<Page, SearchError> {
        query::run(self, request)
    }

    fn stored_id(document: &TantivyDocument, field: Field) -> Option<String> {
        document
            .get_first(field)
            .and_then(|value| value.as_str())
            .map(str::to_owned)
    }
}

#[cfg(test)]
mod tests;
