//! Search on HTTP: `GET /api/v1/search`, and `POST /api/v1/search/rebuild` for administrators.

use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::search_error;
use crate::App;
use crate::auth::{AuthUser, MaybeAuthUser, Role};
use crate::error::{Error, ErrorBody, Result};
use crate::extract::ApiQuery;

pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(search))
        .routes(routes!(rebuild))
}

/// What a rebuild did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rebuilt {
    /// Tracks the index now holds.
    tracks: usize,
    /// The index generation after the rebuild.
    generation: u64,
    /// How long it took, ms.
    elapsed_ms: u64,
}

/// Rebuilds this process's search index from the stores (administrators only): every ready
/// track a listener may find, with its plays. Searches keep answering from the old index until
/// the new one replaces it.
#[utoipa::path(post, path = "/api/v1/search/rebuild", tag = "search",
    responses((status = 200, body = Rebuilt), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "admin_required")),
    security(("bearer" = [])))]
async fn rebuild(app: App, caller: AuthUser) -> Result<Json<Rebuilt>> {
    if caller.role != Role::Admin {
        return Err(Error::forbidden(
            "admin_required",
            "Only administrators can rebuild the search index.",
        ));
    }
    let started = std::time::Instant::now();
    let tracks = app.rebuild_search_index().await.map_err(Error::Internal)?;
    Ok(Json(Rebuilt {
        tracks,
        generation: app.search.generation(),
        elapsed_ms: started.elapsed().as_millis() as u64,
    }))
}

/// Search parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// What the listener typed (1 to 200 characters). Its last word, unless followed by a
    /// space, is matched as a prefix.
    q: Option<String>,
    /// What to return, comma-separated: `track`, `artist`, `album`, `playlist` (the caller's
    /// own). Default `track`.
    #[serde(rename = "type")]
    kinds: Option<String>,
    /// Results per type and page, 1 to 50 (default 20).
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only this genre.
    genre: Option<String>,
    /// Only this artist.
    artist: Option<String>,
    /// Only from this year on.
    year_from: Option<u32>,
    /// Only up to this year.
    year_to: Option<u32>,
    /// `true`: explicit tracks only; `false`: clean tracks only.
    explicit: Option<bool>,
}

/// A page of one type's results.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResultPage {
    /// The results, best first. A track is `{track, score, title, artist, album}`, the last
    /// three its text in parts (`{text, hit}`) that show what matched; an artist `{name,
    /// parts, tracks, popularity, artwork, score}`; an album `{name, parts, artist, tracks,
    /// popularity, artwork, year, score}`; a playlist `{id, name, parts, score}`.
    #[schema(value_type = Vec<Object>)]
    items: serde_json::Value,
    /// Pass as `cursor` for the next page; absent on the last.
    next_cursor: Option<String>,
}

/// Results by type.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    /// The query as received.
    query: String,
    /// The index generation the results come from.
    generation: u64,
    tracks: Option<ResultPage>,
    artists: Option<ResultPage>,
    albums: Option<ResultPage>,
    playlists: Option<ResultPage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Index(search_index::Kind),
    Playlist,
}

fn wanted(kinds: Option<&str>) -> Result<Vec<Wanted>> {
    let mut wanted = Vec::new();
    for name in kinds.unwrap_or("track").split(',').map(str::trim) {
        let kind = match name {
            "track" => Wanted::Index(search_index::Kind::Track),
            "artist" => Wanted::Index(search_index::Kind::Artist),
            "album" => Wanted::Index(search_index::Kind::Album),
            "playlist" => Wanted::Playlist,
            _ => {
                return Err(Error::invalid(
                    "type",
                    "invalid",
                    "Comma-separated types among track, artist, album, playlist.",
                ));
            }
        };
        if !wanted.contains(&kind) {
            wanted.push(kind);
        }
    }
    Ok(wanted)
}

fn offset_of(cursor: Option<&str>) -> Result<usize> {
    match cursor {
        None => Ok(0),
        Some(cursor) => cursor
            .strip_prefix('o')
            .and_then(|offset| offset.parse::<usize>().ok())
            .filter(|offset| *offset <= 10_000)
            .ok_or_else(|| Error::invalid("cursor", "invalid", "Not a cursor this API gave.")),
    }
}

fn cursor_of(next: Option<usize>) -> Option<String> {
    next.map(|offset| format!("o{offset}"))
}

/// Search the catalogue as you type: typos forgiven by word length, the last word a prefix,
/// any word order, split and joined words ("spider man", "spiderman", "Spider-Man"), names
/// without their punctuation ("rem", "acdc"), any script (diacritics folded; Cyrillic and
/// Greek found by their Latin spelling; CJK by any run of characters in a title). Ranked
/// exact > prefix > typo, then title and artist over album, genre, tags and lyrics, then plays.
#[utoipa::path(get, path = "/api/v1/search", tag = "search", params(SearchQuery),
    responses((status = 200, body = SearchResults),
        (status = 400, body = ErrorBody, description = "query_empty, query_no_words, query_too_long"),
        (status = 422, body = ErrorBody)))]
async fn search(
    app: App,
    MaybeAuthUser(caller): MaybeAuthUser,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<Json<SearchResults>> {
    let text = query.q.unwrap_or_default();
    // The same refusals for every type (an empty, punctuation-only or over-long query).
    search_index::check_query(&text).map_err(search_error)?;
    let wanted = wanted(query.kinds.as_deref())?;
    let limit = query.limit.unwrap_or(20);
    if !(1..=search_index::MAX_LIMIT).contains(&limit) {
        return Err(Error::invalid("limit", "invalid", "Between 1 and 50."));
    }
    let offset = offset_of(query.cursor.as_deref())?;
    if let (Some(from), Some(to)) = (query.year_from, query.year_to)
        && from > to
    {
        return Err(Error::invalid("year_from", "invalid", "Not after year_to."));
    }
    let years = match (query.year_from, query.year_to) {
        (None, None) => None,
        (from, to) => Some((from.unwrap_or(0), to.unwrap_or(u32::MAX))),
    };
    let filters = search_index::Filters {
        genre: query.genre.clone(),
        years,
        explicit: query.explicit,
        artist: query.artist.clone(),
    };
    let generation = app.search.generation();
    let mut results = SearchResults {
        query: text.clone(),
        generation,
        tracks: None,
        artists: None,
        albums: None,
        playlists: None,
    };
    for kind in wanted {
        match kind {
            Wanted::Index(kind) => {
                let request = search_index::Request {
                    text: &text,
                    kind,
                    limit,
                    offset,
                    filters: filters.clone(),
                };
                let key = format!("{kind:?}\n{limit}\n{offset}\n{filters:?}\n{text}");
                let page = app.search(request, &key).await?;
                let items = match &page.hits {
                    search_index::Hits::Tracks(hits) => serde_json::to_value(hits),
                    search_index::Hits::Artists(hits) => serde_json::to_value(hits),
                    search_index::Hits::Albums(hits) => serde_json::to_value(hits),
                }
                .map_err(|error| Error::Internal(error.into()))?;
                let page = Some(ResultPage {
                    items,
                    next_cursor: cursor_of(page.next),
                });
                match kind {
                    search_index::Kind::Track => results.tracks = page,
                    search_index::Kind::Artist => results.artists = page,
                    search_index::Kind::Album => results.albums = page,
                }
            }
            Wanted::Playlist => {
                let Some(caller) = &caller else {
                    results.playlists = Some(ResultPage {
                        items: serde_json::Value::Array(Vec::new()),
                        next_cursor: None,
                    });
                    continue;
                };
                let (items, next) = app
                    .search_playlists(&caller.user_id, &text, limit, offset)
                    .await?;
                results.playlists = Some(ResultPage {
                    items,
                    next_cursor: cursor_of(next),
                });
            }
        }
    }
    Ok(Json(results))
}
