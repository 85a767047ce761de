//! Turning a request into a tantivy query: the candidates of every word from the term
//! dictionary (exact, prefix, typo), bucket scores, filters, then highlights and groups.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::OnceLock;

use levenshtein_automata::{DFA, Distance, LevenshteinAutomatonBuilder, SINK_STATE};

use tantivy::query::{
    BooleanQuery, ConstScoreQuery, DisjunctionMaxQuery, EnableScoring, Occur, Query, RangeQuery,
    TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocAddress, DocSet, Searcher, TERMINATED, TantivyDocument, Term};

use crate::fold::{self, QueryWord, QueryWords};
use crate::{
    AlbumHit, ArtistHit, Catalogue, Hits, MAX_LIMIT, MAX_QUERY_CHARS, Page, Part, SearchError,
    TrackHit,
};

/// What to search for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Tracks, by every field.
    Track,
    /// Artists, by name.
    Artist,
    /// Albums, by title.
    Album,
}

/// Filters on tracks (and so on the artists and albums they group into).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Only this genre (compared folded).
    pub genre: Option<String>,
    /// Only years in this range, inclusive.
    pub years: Option<(u32, u32)>,
    /// Only explicit (`Some(true)`) or only clean (`Some(false)`) tracks.
    pub explicit: Option<bool>,
    /// Only this artist (compared folded).
    pub artist: Option<String>,
}

/// One search.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// What the listener typed.
    pub text: &'a str,
    /// What to return.
    pub kind: Kind,
    /// Results per page (at most [`MAX_LIMIT`]).
    pub limit: usize,
    /// Results to skip (the cursor).
    pub offset: usize,
    /// Filters.
    pub filters: Filters,
}

/// The most terms one word expands to per field and per way of matching: the shortest
/// completions of a prefix (the fewest letters from what is typed), the nearest typo
/// candidates. Every term a word expands to is a posting list the query must walk, so this
/// bounds a keystroke's cost; typing on narrows the completions to the one meant.
const MAX_EXPANSIONS: usize = 10;
/// The most dictionary terms looked at per field and way of matching to choose them.
const MAX_SCANNED: usize = 2_000;
/// Matching tracks read to group into artists or albums.
const GROUP_WINDOW: usize = 500;

/// How a candidate term matched a query word.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Match {
    Exact,
    Prefix,
    Typo(u32),
}

impl Match {
    /// The bucket: how a word matched counts before where it matched.
    fn quality(self) -> f32 {
        match self {
            Match::Exact => 30.0,
            Match::Prefix => 20.0,
            Match::Typo(1) => 10.0,
            Match::Typo(_) => 5.0,
        }
    }
}

/// Typos allowed in a word of `len` letters: none up to 3, one from 4, two from 8.
fn typo_budget(len: usize) -> u32 {
    match len {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

/// Optimal-string-alignment distance (an adjacent swap is one edit), with a change of the
/// first letter costing two; `None` beyond `budget`.
fn distance(query: &[u8], candidate: &[u8], budget: u32) -> Option<u32> {
    let (n, m) = (query.len(), candidate.len());
    if n.abs_diff(m) as u32 > budget {
        return None;
    }
    let mut rows = vec![vec![0u32; m + 1]; n + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i as u32;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j as u32;
    }
    for i in 1..=n {
        let mut best = u32::MAX;
        for j in 1..=m {
            let cost = u32::from(query[i - 1] != candidate[j - 1]);
            let mut value = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1
                && j > 1
                && query[i - 1] == candidate[j - 2]
                && query[i - 2] == candidate[j - 1]
            {
                value = value.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = value;
            best = best.min(value);
        }
        if best > budget {
            return None;
        }
    }
    let mut total = rows[n][m];
    if query.first() != candidate.first() {
        total += 1;
    }
    (total <= budget).then_some(total)
}

/// The distance from `query` to the closest prefix of `candidate` (for the word being typed).
fn prefix_distance(query: &[u8], candidate: &[u8], budget: u32) -> Option<u32> {
    let low = query.len().saturating_sub(budget as usize).max(1);
    let high = (query.len() + budget as usize).min(candidate.len());
    (low..=high)
        .filter_map(|len| distance(query, &candidate[..len], budget))
        .min()
}

/// The field weights, by kind of search.
fn fields_of(catalogue: &Catalogue, kind: Kind) -> Vec<(Field, f32)> {
    let f = &catalogue.fields;
    match kind {
        Kind::Track => vec![
            (f.title, 10.0),
            (f.artist, 8.0),
            (f.album, 4.0),
            (f.genre, 3.0),
            (f.tags, 2.0),
            (f.lyrics, 1.0),
        ],
        Kind::Artist => vec![(f.artist, 8.0)],
        Kind::Album => vec![(f.album, 4.0)],
    }
}

/// A Levenshtein DFA as the term dictionary walks it: only the terms it may still accept
/// are visited, so a typo search costs the terms near the word, not the whole dictionary.
struct Near(DFA);

impl tantivy_fst::Automaton for Near {
    type State = u32;

    fn start(&self) -> u32 {
        self.0.initial_state()
    }

    fn is_match(&self, state: &u32) -> bool {
        matches!(self.0.distance(*state), Distance::Exact(_))
    }

    fn can_match(&self, state: &u32) -> bool {
        *state != SINK_STATE
    }

    fn accept(&self, state: &u32, byte: u8) -> u32 {
        self.0.transition(*state, byte)
    }
}

/// The DFA of the terms within `budget` edits of `word` (an adjacent swap is one), or of the
/// terms with a prefix that near when `prefix`. The builders are made once: they are costly.
fn near(word: &str, budget: u32, prefix: bool) -> Near {
    static BUILDERS: OnceLock<[LevenshteinAutomatonBuilder; 2]> = OnceLock::new();
    let builders = BUILDERS.get_or_init(|| {
        [
            LevenshteinAutomatonBuilder::new(1, true),
            LevenshteinAutomatonBuilder::new(2, true),
        ]
    });
    let builder = &builders[(budget.clamp(1, 2) - 1) as usize];
    Near(if prefix {
        builder.build_prefix_dfa(word)
    } else {
        builder.build_dfa(word)
    })
}

/// Terms of `field` that `word` reaches, with how.
fn candidates(
    searcher: &Searcher,
    field: Field,
    word: &QueryWord,
    prefix: bool,
) -> tantivy::Result<Vec<(String, Match)>> {
    let mut found: BTreeMap<String, Match> = BTreeMap::new();
    found.insert(word.text.clone(), Match::Exact);
    if word.cjk {
        return Ok(found.into_iter().collect());
    }
    let query = word.text.as_bytes();
    let budget = typo_budget(word.text.len());
    // Per segment: completions (doc frequency) and typo candidates (typos, doc frequency).
    let mut completions: HashMap<String, u32> = HashMap::new();
    let mut near_terms: HashMap<String, (u32, u32)> = HashMap::new();
    for segment in searcher.segment_readers() {
        let terms = segment.inverted_index(field)?;
        let terms = terms.terms();
        if prefix {
            let mut stream = terms.range().ge(query).into_stream()?;
            let mut scanned = 0;
            while scanned < MAX_SCANNED && stream.advance() {
                scanned += 1;
                let Ok(term) = std::str::from_utf8(stream.key()) else {
                    continue;
                };
                if !term.starts_with(word.text.as_str()) {
                    break;
                }
                if term != word.text {
                    *completions.entry(term.to_owned()).or_default() += stream.value().doc_freq;
                }
            }
        }
        if budget == 0 {
            continue;
        }
        // The automaton proposes the terms within the budget; the exact distance (a typo on
        // the first letter costs two) decides. So a one-typo word only looks at the terms
        // that start with its own first letter.
        let automaton = near(&word.text, budget, prefix);
        let mut stream = if budget >= 2 {
            terms.search(automaton).into_stream()?
        } else {
            terms
                .search(automaton)
                .ge(&query[..1])
                .lt([query[0].saturating_add(1)])
                .into_stream()?
        };
        let mut scanned = 0;
        while scanned < MAX_SCANNED && stream.advance() {
            scanned += 1;
            let term = stream.key();
            let typos = if prefix {
                prefix_distance(query, term, budget)
            } else {
                distance(query, term, budget)
            };
            let Some(typos) = typos.filter(|typos| *typos > 0) else {
                continue;
            };
            let Ok(term) = std::str::from_utf8(term) else {
                continue;
            };
            let entry = near_terms.entry(term.to_owned()).or_insert((typos, 0));
            entry.0 = entry.0.min(typos);
            entry.1 += stream.value().doc_freq;
        }
    }
    let mut completions: Vec<(String, u32)> = completions.into_iter().collect();
    completions.sort_by(|a, b| (a.0.len(), &a.0).cmp(&(b.0.len(), &b.0)));
    for (term, _) in completions.into_iter().take(MAX_EXPANSIONS) {
        found.entry(term).or_insert(Match::Prefix);
    }
    let mut near_terms: Vec<(String, (u32, u32))> = near_terms.into_iter().collect();
    near_terms.sort_by(|a, b| {
        (a.1.0, a.0.len().abs_diff(query.len()), &a.0).cmp(&(
            b.1.0,
            b.0.len().abs_diff(query.len()),
            &b.0,
        ))
    });
    for (term, (typos, _)) in near_terms.into_iter().take(MAX_EXPANSIONS) {
        found.entry(term).or_insert(Match::Typo(typos));
    }
    Ok(found.into_iter().collect())
}

/// A query's terms, by field, for highlighting.
type Matched = HashMap<Field, HashSet<String>>;

/// The text query: every word must match — its best candidate over the fields counts, the
/// others a hundredth — where a position may instead be matched by a joined reading of a span
/// it is in (`spider man` as `spiderman`). One pass over the words, each word's candidates
/// looked up once, however many joins there are. Adds what the query may match to `matched`.
fn text_query(
    searcher: &Searcher,
    fields: &[(Field, f32)],
    words: &QueryWords,
    matched: &mut Matched,
) -> tantivy::Result<Box<dyn Query>> {
    let count = words.words.len();
    let mut clauses_of = |word: &QueryWord, prefix: bool| -> tantivy::Result<Vec<Box<dyn Query>>> {
        let mut clauses: Vec<Box<dyn Query>> = Vec::new();
        for &(field, weight) in fields {
            for (term, how) in candidates(searcher, field, word, prefix)? {
                let query = TermQuery::new(
                    Term::from_field_text(field, &term),
                    IndexRecordOption::Basic,
                );
                clauses.push(Box::new(ConstScoreQuery::new(
                    Box::new(query),
                    how.quality() + weight / 10.0,
                )));
                matched.entry(field).or_default().insert(term);
            }
        }
        Ok(clauses)
    };
    let mut positions: Vec<Vec<Box<dyn Query>>> = Vec::with_capacity(count);
    for (index, word) in words.words.iter().enumerate() {
        positions.push(clauses_of(word, words.typing && index + 1 == count)?);
    }
    for (from, to, joined) in &words.joins {
        let clauses = clauses_of(joined, words.typing && *to == count)?;
        for position in &mut positions[*from..*to] {
            position.extend(clauses.iter().map(|clause| clause.box_clone()));
        }
    }
    let musts = positions
        .into_iter()
        .map(|clauses| {
            (
                Occur::Must,
                Box::new(DisjunctionMaxQuery::with_tie_breaker(clauses, 0.01)) as Box<dyn Query>,
            )
        })
        .collect();
    Ok(Box::new(BooleanQuery::new(musts)))
}

/// The filters as queries that must match and score nothing.
fn filter_queries(catalogue: &Catalogue, filters: &Filters) -> Vec<(Occur, Box<dyn Query>)> {
    let f = &catalogue.fields;
    let mut queries: Vec<Box<dyn Query>> = Vec::new();
    let text = |field: Field, value: &str| -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, &fold::fold_key(value)),
            IndexRecordOption::Basic,
        ))
    };
    if let Some(genre) = &filters.genre {
        queries.push(text(f.genre_key, genre));
    }
    if let Some(artist) = &filters.artist {
        queries.push(text(f.artist_key, artist));
    }
    if let Some((low, high)) = filters.years {
        queries.push(Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_u64(f.year, u64::from(low))),
            Bound::Included(Term::from_field_u64(f.year, u64::from(high))),
        )));
    }
    if let Some(explicit) = filters.explicit {
        queries.push(Box::new(TermQuery::new(
            Term::from_field_u64(f.explicit, u64::from(explicit)),
            IndexRecordOption::Basic,
        )));
    }
    queries
        .into_iter()
        .map(|query| {
            (
                Occur::Must,
                Box::new(ConstScoreQuery::new(query, 0.0)) as Box<dyn Query>,
            )
        })
        .collect()
}

/// Whether `text` is a query the index accepts (not empty, not only punctuation, not too long).
pub fn check_query(text: &str) -> Result<(), SearchError> {
    words_of(text).map(|_| ())
}

/// Checks the text and breaks it into words.
fn words_of(text: &str) -> Result<QueryWords, SearchError> {
    if text.trim().is_empty() {
        return Err(SearchError::Empty);
    }
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(SearchError::TooLong);
    }
    let words = fold::query_words(text);
    if words.words.is_empty() {
        return Err(SearchError::NoWords);
    }
    Ok(words)
}

/// Matches read at the most. A rebuild adds tracks most played first, so its segments hold
/// them in that order, and they are read most played segment first: a query that matches more
/// than this many tracks ranks the most played of its matches — what a listener typing a
/// letter or two expects — at a bounded cost instead of scoring every match; a query that
/// matches fewer is ranked over all of its matches.
const MATCH_BUDGET: usize = 4_000;

/// The best `window` matches after `offset`, by bucket score, then plays, then position: the
/// segments read in document order, the one whose first track is most played first, until
/// [`MATCH_BUDGET`] matches are read.
fn collect(
    searcher: &Searcher,
    query: &dyn Query,
    window: usize,
    offset: usize,
) -> tantivy::Result<Vec<((i64, u64), DocAddress)>> {
    let weight = query.weight(EnableScoring::enabled_from_searcher(searcher))?;
    let mut segments: Vec<(u64, usize)> = searcher
        .segment_readers()
        .iter()
        .enumerate()
        .map(|(ordinal, segment)| (Catalogue::first_plays(segment), ordinal))
        .collect();
    segments.sort_unstable_by(|a, b| b.cmp(a));
    let mut found: Vec<((i64, u64), DocAddress)> = Vec::new();
    for (_, ordinal) in segments {
        let segment = searcher.segment_reader(ordinal as u32);
        let plays = segment.fast_fields().u64("popularity").ok();
        let alive = segment.alive_bitset();
        let mut scorer = weight.scorer(segment, 1.0)?;
        let mut doc = scorer.doc();
        while doc != TERMINATED && found.len() < MATCH_BUDGET {
            if alive.is_none_or(|alive| alive.is_alive(doc)) {
                let played = plays.as_ref().and_then(|c| c.first(doc)).unwrap_or(0);
                // Buckets: equal relevance (to a thousandth) is decided by plays.
                let score = (f64::from(scorer.score()) * 1000.0).round() as i64;
                found.push(((score, played), DocAddress::new(ordinal as u32, doc)));
            }
            doc = scorer.advance();
        }
        if found.len() >= MATCH_BUDGET {
            break;
        }
    }
    let wanted = (offset + window).min(found.len());
    let order = |a: &((i64, u64), DocAddress), b: &((i64, u64), DocAddress)| {
        b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1))
    };
    if wanted < found.len() {
        found.select_nth_unstable_by(wanted, order);
        found.truncate(wanted);
    }
    found.sort_unstable_by(order);
    Ok(found.into_iter().skip(offset).collect())
}

/// Runs `request` on `catalogue`.
pub(crate) fn run(catalogue: &Catalogue, request: &Request<'_>) -> Result<Page, SearchError> {
    let words = words_of(request.text)?;
    let searcher = catalogue.reader.searcher();
    let fields = fields_of(catalogue, request.kind);
    let mut matched = Matched::new();
    let text_query = text_query(&searcher, &fields, &words, &mut matched)?;
    let mut clauses = vec![(Occur::Must, text_query)];
    clauses.extend(filter_queries(catalogue, &request.filters));
    let query = BooleanQuery::new(clauses);

    let limit = request.limit.clamp(1, MAX_LIMIT);
    let (window, offset) = match request.kind {
        Kind::Track => (limit + 1, request.offset),
        Kind::Artist | Kind::Album => (GROUP_WINDOW, 0),
    };
    let top = collect(&searcher, &query, window, offset)?;
    let hits: Vec<(f32, crate::TrackDoc)> = top
        .into_iter()
        .filter_map(|((score, _), address): ((i64, u64), DocAddress)| {
            let document: TantivyDocument = searcher.doc(address).ok()?;
            let id = Catalogue::stored_id(&document, catalogue.fields.id)?;
            Some((score as f32 / 1000.0, catalogue.get(&id)?))
        })
        .collect();
    let f = &catalogue.fields;
    let parts = |field: Field, text: &str| highlight(text, matched.get(&field));
    Ok(match request.kind {
        Kind::Track => {
            let next = (hits.len() > limit).then_some(request.offset + limit);
            let hits = hits
                .into_iter()
                .take(limit)
                .map(|(score, track)| TrackHit {
                    score,
                    title: parts(f.title, &track.title),
                    artist: parts(f.artist, &track.artist),
                    album: track
                        .album
                        .as_deref()
                        .map(|album| parts(f.album, album))
                        .unwrap_or_default(),
                    track,
                })
                .collect();
            Page {
                hits: Hits::Tracks(hits),
                next,
            }
        }
        Kind::Artist => {
            let mut groups: Vec<ArtistHit> = Vec::new();
            let mut at: HashMap<String, usize> = HashMap::new();
            for (score, track) in hits {
                let key = fold::fold_key(&track.artist);
                match at.get(&key) {
                    Some(&index) => {
                        let group = &mut groups[index];
                        group.tracks += 1;
                        group.popularity += track.popularity;
                    }
                    None => {
                        at.insert(key, groups.len());
                        groups.push(ArtistHit {
                            parts: parts(f.artist, &track.artist),
                            name: track.artist,
                            tracks: 1,
                            popularity: track.popularity,
                            artwork: track.artwork,
                            score,
                        });
                    }
                }
            }
            let (page, next) = paginate(groups, request.offset, limit);
            Page {
                hits: Hits::Artists(page),
                next,
            }
        }
        Kind::Album => {
            let mut groups: Vec<AlbumHit> = Vec::new();
            let mut at: HashMap<(String, String), usize> = HashMap::new();
            for (score, track) in hits {
                let Some(album) = track.album.clone() else {
                    continue;
                };
                let key = (fold::fold_key(&album), fold::fold_key(&track.artist));
                match at.get(&key) {
                    Some(&index) => {
                        let group = &mut groups[index];
                        group.tracks += 1;
                        group.popularity += track.popularity;
                    }
                    None => {
                        at.insert(key, groups.len());
                        groups.push(AlbumHit {
                            parts: parts(f.album, &album),
                            name: album,
                            artist: track.artist,
                            tracks: 1,
                            popularity: track.popularity,
                            artwork: track.artwork,
                            year: track.year,
                            score,
                        });
                    }
                }
            }
            let (page, next) = paginate(groups, request.offset, limit);
            Page {
                hits: Hits::Albums(page),
                next,
            }
        }
    })
}

fn paginate<T>(groups: Vec<T>, offset: usize, limit: usize) -> (Vec<T>, Option<usize>) {
    let total = groups.len();
    let page: Vec<T> = groups.into_iter().skip(offset).take(limit).collect();
    let next = (offset + limit < total).then_some(offset + limit);
    (page, next)
}

/// `text` in parts, the tokens whose folded form the query matched marked as hits.
fn highlight(text: &str, terms: Option<&HashSet<String>>) -> Vec<Part> {
    let mut spans: Vec<(usize, usize)> = fold::index_tokens(text)
        .into_iter()
        .filter(|token| terms.is_some_and(|terms| terms.contains(&token.text)))
        .map(|token| (token.start, token.end))
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let mut parts = Vec::new();
    let mut at = 0;
    for (start, end) in merged {
        if start > at {
            parts.push(Part {
                text: text[at..start].to_owned(),
                hit: false,
            });
        }
        parts.push(Part {
            text: text[start..end].to_owned(),
            hit: true,
        });
        at = end;
    }
    if at < text.len() || parts.is_empty() {
        parts.push(Part {
            text: text[at..].to_owned(),
            hit: false,
        });
    }
    parts
}

/// How well `query` matches a short `text` (a playlist's name) by the rules of the index —
/// every word exactly, as the prefix being typed, or with typos — without an index: its
/// score and its highlighted parts, or `None`.
pub fn match_text(query: &str, text: &str) -> Result<Option<(f32, Vec<Part>)>, SearchError> {
    let words = words_of(query)?;
    let typing = words.typing;
    let tokens = fold::index_tokens(text);
    let reading = |words: &[QueryWord]| -> Option<(f32, HashSet<String>)> {
        let mut score = 0.0;
        let mut matched = HashSet::new();
        for (index, word) in words.iter().enumerate() {
            let prefix = typing && index + 1 == words.len();
            let best = tokens
                .iter()
                .filter_map(|token| Some((how_matches(word, &token.text, prefix)?, &token.text)))
                // The first best: a word before the joined forms that contain it.
                .fold(
                    None,
                    |best: Option<(Match, &String)>, candidate| match best {
                        Some(best) if best.0.quality() >= candidate.0.quality() => Some(best),
                        _ => Some(candidate),
                    },
                )?;
            score += best.0.quality();
            matched.insert(best.1.clone());
        }
        Some((score, matched))
    };
    let best = std::iter::once(&words.words)
        .chain(&words.alternatives)
        .filter_map(|words| reading(words))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    Ok(best.map(|(score, matched)| (score, highlight(text, Some(&matched)))))
}

/// How query `word` matches one folded token, if it does.
fn how_matches(word: &QueryWord, token: &str, prefix: bool) -> Option<Match> {
    if token == word.text {
        return Some(Match::Exact);
    }
    if word.cjk {
        return None;
    }
    if prefix && token.starts_with(word.text.as_str()) {
        return Some(Match::Prefix);
    }
    let budget = typo_budget(word.text.len());
    let (query, candidate) = (word.text.as_bytes(), token.as_bytes());
    let typos = if prefix {
        prefix_distance(query, candidate, budget)
    } else {
        distance(query, candidate, budget)
    };
    typos.filter(|typos| *typos > 0).map(Match::Typo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_by_length_and_first_letter() {
        assert_eq!(distance(b"halo", b"halo", 1), Some(0));
        assert_eq!(distance(b"hallo", b"halo", 1), Some(1));
        assert_eq!(distance(b"hlao", b"halo", 1), Some(1));
        assert_eq!(
            distance(b"galo", b"halo", 1),
            None,
            "a first-letter typo costs two"
        );
        assert_eq!(distance(b"bejonce", b"beyonce", 1), Some(1));
        assert_eq!(distance(b"veyoncee", b"beyonce", 2), None);
        assert_eq!(distance(b"dvorzak", b"dvorak", 1), Some(1));
        assert_eq!(typo_budget(3), 0);
        assert_eq!(typo_budget(4), 1);
        assert_eq!(typo_budget(8), 2);
        assert_eq!(prefix_distance(b"beyo", b"beyonce", 1), Some(0));
        assert_eq!(prefix_distance(b"bejo", b"beyonce", 1), Some(1));
    }

    #[test]
    fn highlights_mark_matched_tokens() {
        let terms: HashSet<String> = ["spider".to_owned()].into();
        let parts = highlight("Spider-Man", Some(&terms));
        assert_eq!(
            parts,
            [
                Part {
                    text: "Spider".into(),
                    hit: true
                },
                Part {
                    text: "-Man".into(),
                    hit: false
                }
            ]
        );
        let terms: HashSet<String> = ["acdc".to_owned()].into();
        assert!(highlight("AC/DC", Some(&terms))[0].hit);
    }
}
