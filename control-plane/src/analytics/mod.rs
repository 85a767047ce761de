//! Analytics and the home screen. The `analytics` consumer turns play events into listening
//! tables ([`store::AnalyticsStore`]): plays started per region and hour, each listener's
//! plays, and "listened together" pairs from listening sessions (plays whose starts are at
//! most 30 minutes apart; a play counts once 30 s are heard or it completes, a play skipped
//! before that never; pairs of one artist's tracks are not kept; a listener weighs one per
//! pair). Plays per track, day and region are the catalog's play counters. Every event counts
//! once by its id, so duplicated and replayed logs give the same tables.
//!
//! `GET /api/v1/home` assembles titled sections from those tables, the catalog's tracks and
//! the listener's playlists: continue listening, recently played, your playlists, trending
//! near you (the region the host locator sends this client to), top in your region, new
//! releases, because you listened to X, rediscover. Every list is ordered with a tie-break on
//! the track id, so a fixed event log and clock give the same page; a page is cached per
//! listener for [`HOME_TTL`].

pub mod fill;
mod http;
pub mod store;

pub(crate) use http::routes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use events::Envelope;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::App;
use crate::auth::{AuthUser, Role};
use crate::bus::{Handler, HandlerError};
use crate::catalog::store::SearchableRow;
use crate::error::{Error, Result};
use store::{AnalyticsStore, HourPlays, ListenerPlay, PlayEvent, PlayState, PlayStep};

/// The consumer group that keeps the analytics.
pub const ANALYTICS: &str = "analytics";
/// How long a listener's home page is cached.
pub const HOME_TTL: Duration = Duration::from_secs(10);
/// Trending compares the last day with the day before.
const TRENDING_WINDOW_HOURS: i64 = 24;
/// Trending weighs an hour's plays half as much every this many hours back.
const TRENDING_HALF_LIFE_HOURS: f64 = 6.0;
/// A track trends only with at least this many plays in the window.
pub const TRENDING_MIN_PLAYS: i64 = 3;
/// Top tracks count the last week.
const TOP_WINDOW_HOURS: i64 = 7 * 24;
/// Rediscover: heard at least this often, not for this long.
const REDISCOVER_MIN_PLAYS: i64 = 2;
const REDISCOVER_AFTER_MS: i64 = 30 * 24 * 3_600_000;
/// Continue listening: a play stopped at least this far in and this far from the end.
const CONTINUE_MARGIN_MS: i64 = 10_000;
/// How many of a listener's latest plays a home page reads.
const RECENT_PLAYS: i64 = 500;
/// Items per section.
const SECTION_ITEMS: usize = 12;

/// The analytics store and what home needs besides it.
#[derive(Debug)]
pub struct Analytics {
    store: AnalyticsStore,
    /// A client for the host locator (the listener's region).
    http: reqwest::Client,
    /// Bumped by every event this process applies (home pages cached before are not used).
    generation: AtomicU64,
}

impl Analytics {
    /// Opens the store at `url`; `locator_timeout` bounds a region lookup.
    pub async fn open(url: &str, locator_timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            store: AnalyticsStore::open(url).await?,
            http: reqwest::Client::builder()
                .timeout(locator_timeout)
                .build()?,
            generation: AtomicU64::new(0),
        })
    }

    /// The store.
    pub fn store(&self) -> &AnalyticsStore {
        &self.store
    }
}

/// The `analytics` consumer: play events into the listening tables.
pub fn analytics_handler(app: App) -> Handler {
    Arc::new(move |envelope: Envelope| {
        let app = app.clone();
        Box::pin(async move { app.record_listening(envelope).await })
    })
}

impl App {
    async fn record_listening(&self, envelope: Envelope) -> Result<(), HandlerError> {
        use events::plays::{PlayCompleted, PlayProgressed, PlaySkipped, PlayStarted};
        let (step, facts) = if envelope.is::<PlayStarted>() {
            (PlayStep::Started, envelope.decode::<PlayStarted>()?.0)
        } else if envelope.is::<PlayProgressed>() {
            (PlayStep::Progressed, envelope.decode::<PlayProgressed>()?.0)
        } else if envelope.is::<PlayCompleted>() {
            (PlayStep::Completed, envelope.decode::<PlayCompleted>()?.0)
        } else if envelope.is::<PlaySkipped>() {
            (PlayStep::Skipped, envelope.decode::<PlaySkipped>()?.0)
        } else {
            // Ad impressions are counted by the catalog's counters.
            return Ok(());
        };
        let artist = self
            .inventory
            .track(&facts.track_id)
            .await?
            .map(|track| track.singer)
            .unwrap_or_default();
        let event_id = envelope.id.to_string();
        let event = PlayEvent {
            event_id: &event_id,
            at: envelope
                .occurred_at_ms()
                .unwrap_or_else(|| self.clock.now_ms()),
            step,
            user_id: &facts.user_id,
            play_id: &facts.play_id,
            track_id: &facts.track_id,
            artist: &artist,
            region: &facts.region,
            position_ms: i64::try_from(facts.position_ms).unwrap_or(i64::MAX),
            listened_ms: i64::try_from(facts.listened_ms).unwrap_or(i64::MAX),
        };
        if crate::store::retry_on_conflict(|| self.analytics.store.apply(&event)).await? {
            self.analytics.generation.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("cadenza_analytics_events_total", "result" => "applied").increment(1);
        } else {
            metrics::counter!("cadenza_analytics_events_total", "result" => "duplicate")
                .increment(1);
        }
        Ok(())
    }
}

/// A track in a section.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HomeTrack {
    /// Track id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Artist.
    pub artist: String,
    /// Album.
    pub album: Option<String>,
    /// Duration, ms.
    pub duration_ms: u64,
    /// Explicit lyrics.
    pub explicit: bool,
    /// Cover-art thumbnails by edge length: object keys, served by every node at `/{key}`.
    pub artwork: BTreeMap<String, String>,
    /// Why it is here, where a count says it: plays, listeners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// Continue listening: where the listener stopped, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position_ms: Option<i64>,
}

/// A playlist in a section.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HomePlaylist {
    /// Playlist id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Last changed, Unix ms.
    pub updated_at: i64,
}

/// What a section lists.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", content = "items", rename_all = "snake_case")]
pub enum SectionItems {
    /// Tracks.
    Tracks(Vec<HomeTrack>),
    /// The listener's playlists.
    Playlists(Vec<HomePlaylist>),
}

impl SectionItems {
    fn is_empty(&self) -> bool {
        match self {
            Self::Tracks(items) => items.is_empty(),
            Self::Playlists(items) => items.is_empty(),
        }
    }
}

/// One titled section.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Section {
    /// Stable id: `continue`, `recent`, `playlists`, `trending`, `top`, `new`, `because`,
    /// `rediscover`.
    pub id: String,
    /// What a listener reads.
    pub title: String,
    /// The items, by kind.
    #[serde(flatten)]
    pub items: SectionItems,
}

/// The home page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Home {
    /// The listener's region (the site the host locator sends this client to), when known.
    pub region: Option<String>,
    /// The node nearest this client (the host locator's first choice), when known: artwork
    /// keys are served at `{media_base}/{key}`.
    pub media_base: Option<String>,
    /// When it was assembled, Unix ms.
    pub generated_at: i64,
    /// The sections that have something to show, in order.
    pub sections: Vec<Section>,
}

/// A section's tracks before they are read: id, the count shown, where the listener stopped.
type Listed = Vec<(String, Option<i64>, Option<i64>)>;

/// A track that trends: its score and the plays it is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    /// The track.
    pub track_id: String,
    /// Time-decayed plays of the window times their growth over the window before.
    pub score: f64,
    /// Plays started in the window.
    pub current: i64,
    /// Plays started in the window before.
    pub previous: i64,
}

/// The tracks trending at `now_hour` from plays per hour: at least [`TRENDING_MIN_PLAYS`]
/// plays in the last [`TRENDING_WINDOW_HOURS`] and more than in the window before; scored by
/// those plays, each hour's weighing half as much every [`TRENDING_HALF_LIFE_HOURS`] back,
/// times the growth `(current + 1) / (previous + 1)`. Best first, ties by track id.
pub fn trending(hours: &[HourPlays], now_hour: i64) -> Vec<Trend> {
    #[derive(Default)]
    struct Sums {
        decayed: f64,
        current: i64,
        previous: i64,
    }
    let mut sums: HashMap<&str, Sums> = HashMap::new();
    for row in hours {
        let age = now_hour - row.hour;
        if !(0..2 * TRENDING_WINDOW_HOURS).contains(&age) {
            continue;
        }
        let sums = sums.entry(&row.track_id).or_default();
        if age < TRENDING_WINDOW_HOURS {
            sums.current += row.starts;
            sums.decayed += row.starts as f64 * 0.5f64.powf(age as f64 / TRENDING_HALF_LIFE_HOURS);
        } else {
            sums.previous += row.starts;
        }
    }
    let mut trends: Vec<Trend> = sums
        .into_iter()
        .filter(|(_, sums)| sums.current >= TRENDING_MIN_PLAYS && sums.current > sums.previous)
        .map(|(track, sums)| Trend {
            track_id: track.to_owned(),
            score: sums.decayed * (sums.current + 1) as f64 / (sums.previous + 1) as f64,
            current: sums.current,
            previous: sums.previous,
        })
        .collect();
    trends.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.current.cmp(&a.current))
            .then(a.track_id.cmp(&b.track_id))
    });
    trends
}

/// Plays per track summed over `hours`, most first, ties by track id.
pub fn top(hours: &[HourPlays]) -> Vec<(String, i64)> {
    let mut sums: HashMap<&str, i64> = HashMap::new();
    for row in hours {
        *sums.entry(&row.track_id).or_default() += row.starts;
    }
    let mut top: Vec<(String, i64)> = sums
        .into_iter()
        .map(|(track, plays)| (track.to_owned(), plays))
        .collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top
}

/// The node the host locator would send a client to first.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NearestNode {
    /// Its site: the listener's region.
    site: String,
    /// Its base URL.
    url: String,
}

/// A region's charts: trending (with plays in the window) and top tracks of the week (with
/// their plays), best first, at most [`CHART_LENGTH`] each.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Charts {
    /// Trending tracks and their plays in the last day.
    pub trending: Vec<(String, i64)>,
    /// Top tracks and their plays in the last week.
    pub top: Vec<(String, i64)>,
}

/// How many tracks a chart keeps.
pub const CHART_LENGTH: usize = 100;
/// How long a region's charts are kept before they are computed again.
const CHARTS_TTL: Duration = Duration::from_secs(60);

impl App {
    /// The charts of `region` (every region: `None`) at `now_hour`: computed from the hourly
    /// plays at most once per [`CHARTS_TTL`] and hour, in the shared cache, so that a home
    /// page reads them precomputed whatever the traffic.
    pub async fn charts(&self, region: Option<&str>, now_hour: i64) -> Result<Charts> {
        let key = format!("home-charts:{}:{now_hour}", region.unwrap_or("*"));
        if let Some(charts) = self.cache.get_json::<Charts>(&key).await {
            return Ok(charts);
        }
        let store = &self.analytics.store;
        let hours = store
            .region_hours(
                region,
                now_hour + 1 - TOP_WINDOW_HOURS.max(2 * TRENDING_WINDOW_HOURS),
                now_hour + 1,
            )
            .await?;
        let charts = Charts {
            trending: trending(&hours, now_hour)
                .into_iter()
                .take(CHART_LENGTH)
                .map(|trend| (trend.track_id, trend.current))
                .collect(),
            top: top(&hours
                .iter()
                .filter(|row| now_hour - row.hour < TOP_WINDOW_HOURS)
                .cloned()
                .collect::<Vec<_>>())
            .into_iter()
            .take(CHART_LENGTH)
            .collect(),
        };
        self.cache.set_json(&key, &charts, CHARTS_TTL).await;
        Ok(charts)
    }
}

impl App {
    /// The node the host locator would send `client` to first (its site is the listener's
    /// region), if a locator is configured and answers; cached for a minute per address.
    async fn nearest_node(&self, client: IpAddr) -> Option<NearestNode> {
        let locator = self.config.play.locator_url.as_deref()?;
        let key = format!("home-node:{client}");
        if let Some(node) = self.cache.get_json::<NearestNode>(&key).await {
            return Some(node);
        }
        #[derive(Deserialize)]
        struct Located {
            candidates: Vec<NearestNode>,
        }
        let answer = self
            .analytics
            .http
            .get(format!("{}/v1/locate", locator.trim_end_matches('/')))
            // Any track: the site does not depend on it, only the node within the site.
            .query(&[("track", "home")])
            .header("x-forwarded-for", client.to_string())
            .send()
            .await;
        let located = match answer {
            Ok(response) if response.status().is_success() => response.json::<Located>().await,
            Ok(response) => {
                tracing::debug!(message = "The host locator gave no region.", status = %response.status());
                return None;
            }
            Err(error) => Err(error),
        };
        match located {
            Ok(located) => {
                let node = located.candidates.into_iter().next()?;
                self.cache
                    .set_json(&key, &node, Duration::from_secs(60))
                    .await;
                Some(node)
            }
            Err(error) => {
                tracing::warn!(message = "The host locator did not answer for home.", %error);
                None
            }
        }
    }

    /// The home page of `user_id` (`None`: a visitor not logged in, who gets the sections
    /// that are not the listener's own), through the per-listener cache.
    pub(crate) async fn home(&self, user_id: Option<&str>, client: IpAddr) -> Result<Home> {
        let node = self.nearest_node(client).await;
        let region = node.as_ref().map(|node| node.site.clone());
        let key = format!(
            "home:{}:{}:{}",
            user_id.unwrap_or("-"),
            region.as_deref().unwrap_or(""),
            self.analytics.generation.load(Ordering::Relaxed)
        );
        let mut home = match self.cache.get_json::<Home>(&key).await {
            Some(home) => {
                metrics::counter!("cadenza_home_cache_total", "result" => "hit").increment(1);
                home
            }
            None => {
                metrics::counter!("cadenza_home_cache_total", "result" => "miss").increment(1);
                let home = self.assemble_home(user_id, region).await?;
                self.cache.set_json(&key, &home, HOME_TTL).await;
                home
            }
        };
        home.media_base = node.map(|node| node.url);
        Ok(home)
    }

    /// Assembles a home page from the precomputed tables.
    pub async fn assemble_home(
        &self,
        user_id: Option<&str>,
        region: Option<String>,
    ) -> Result<Home> {
        let now = self.clock.now_ms();
        let now_hour = now.div_euclid(3_600_000);
        let store = &self.analytics.store;
        let plays = match user_id {
            Some(user_id) => store.recent_plays(user_id, RECENT_PLAYS).await?,
            None => Vec::new(),
        };

        // What each section lists, by track id, before the tracks are read.
        let mut wanted: Vec<(&'static str, String, Listed)> = Vec::new();
        wanted.push((
            "continue",
            "Continue listening".to_owned(),
            continue_listening(&plays),
        ));
        let mut seen = HashSet::new();
        let recent: Vec<_> = plays
            .iter()
            .filter(|play| seen.insert(play.track_id.as_str()))
            .map(|play| (play.track_id.clone(), None, None))
            .collect();
        wanted.push(("recent", "Recently played".to_owned(), recent));

        // Near you, falling back to every region when the listener's has nothing yet.
        let mut charts = Charts::default();
        let mut near = false;
        if let Some(region) = &region {
            charts = self.charts(Some(region), now_hour).await?;
            near = true;
        }
        let everywhere = if charts.trending.is_empty() || charts.top.is_empty() {
            Some(self.charts(None, now_hour).await?)
        } else {
            None
        };
        let (trend_title, trends) = match (&everywhere, near) {
            (Some(all), _) if charts.trending.is_empty() => ("Trending".to_owned(), &all.trending),
            _ if near => ("Trending near you".to_owned(), &charts.trending),
            _ => ("Trending".to_owned(), &charts.trending),
        };
        wanted.push((
            "trending",
            trend_title,
            trends
                .iter()
                .map(|(track, plays)| (track.clone(), Some(*plays), None))
                .collect(),
        ));
        let (top_title, tops) = match (&everywhere, &region) {
            (Some(all), _) if charts.top.is_empty() => {
                ("Top tracks this week".to_owned(), &all.top)
            }
            (_, Some(region)) => (format!("Top in {region}"), &charts.top),
            _ => ("Top tracks this week".to_owned(), &charts.top),
        };
        wanted.push((
            "top",
            top_title,
            tops.iter()
                .map(|(track, plays)| (track.clone(), Some(*plays), None))
                .collect(),
        ));
        let new_releases =
            crate::catalog::store::newest_tracks(self.inventory.database().pool(), 40).await?;
        let mut rows: HashMap<String, SearchableRow> = HashMap::new();
        let new_ids: Vec<_> = new_releases
            .iter()
            .map(|row| (row.id.clone(), None, None))
            .collect();
        for row in new_releases {
            rows.insert(row.id.clone(), row);
        }
        wanted.push(("new", "New releases".to_owned(), new_ids));

        // Because you listened to X: the latest heard track that others heard beside.
        let mut because = None;
        let mut tried = HashSet::new();
        for play in plays.iter().filter(|play| play.heard) {
            if !tried.insert(play.track_id.as_str()) || tried.len() > 5 {
                continue;
            }
            let together = store
                .listened_together(&play.track_id, 2 * SECTION_ITEMS as i64)
                .await?;
            if !together.is_empty() {
                because = Some((play.track_id.clone(), together));
                break;
            }
        }
        if let Some((_, together)) = &because {
            wanted.push((
                "because",
                // Titled below, once the seed track is read.
                String::new(),
                together
                    .iter()
                    .map(|pair| (pair.track_id.clone(), Some(pair.count), None))
                    .collect(),
            ));
        }
        let rediscover = match user_id {
            Some(user_id) => {
                store
                    .heard_before(
                        user_id,
                        now - REDISCOVER_AFTER_MS,
                        REDISCOVER_MIN_PLAYS,
                        SECTION_ITEMS as i64,
                    )
                    .await?
            }
            None => Vec::new(),
        };
        wanted.push((
            "rediscover",
            "Rediscover".to_owned(),
            rediscover
                .into_iter()
                .map(|count| (count.track_id, Some(count.count), None))
                .collect(),
        ));

        // Read every track named once (those a listener may no longer find drop out).
        let mut missing: Vec<String> = wanted
            .iter()
            .flat_map(|(_, _, items)| items.iter().map(|(id, _, _)| id.clone()))
            .chain(because.iter().map(|(seed, _)| seed.clone()))
            .filter(|id| !rows.contains_key(id))
            .collect();
        missing.sort();
        missing.dedup();
        for row in
            crate::catalog::store::listed_tracks(self.inventory.database().pool(), &missing).await?
        {
            rows.insert(row.id.clone(), row);
        }
        let mut sections = Vec::new();
        for (id, title, items) in wanted {
            let title = match (&because, id) {
                (Some((seed, _)), "because") => match rows.get(seed) {
                    Some(seed) => format!("Because you listened to {}", seed.name),
                    None => continue,
                },
                _ => title,
            };
            let tracks: Vec<HomeTrack> = items
                .into_iter()
                .filter_map(|(track, count, position_ms)| {
                    rows.get(&track)
                        .map(|row| home_track(row, count, position_ms))
                })
                .take(SECTION_ITEMS)
                .collect();
            sections.push(Section {
                id: id.to_owned(),
                title,
                items: SectionItems::Tracks(tracks),
            });
            if let (Some(user_id), "recent") = (user_id, id) {
                let playlists = self
                    .users
                    .playlists_of(user_id)
                    .await?
                    .into_iter()
                    .rev()
                    .take(SECTION_ITEMS)
                    .map(|playlist| HomePlaylist {
                        id: playlist.playlist_id,
                        name: playlist.name,
                        updated_at: playlist.updated_at,
                    })
                    .collect();
                sections.push(Section {
                    id: "playlists".to_owned(),
                    title: "Your playlists".to_owned(),
                    items: SectionItems::Playlists(playlists),
                });
            }
        }
        sections.retain(|section| !section.items.is_empty());
        Ok(Home {
            region,
            media_base: None,
            generated_at: now,
            sections,
        })
    }

    /// The play statistics of track `id`, for its artist (the uploader) or an admin.
    pub(crate) async fn track_stats(&self, caller: &AuthUser, id: &str) -> Result<TrackStats> {
        let not_found = || Error::not_found("track_not_found", "No such track.");
        let track = self.inventory.track(id).await?.ok_or_else(not_found)?;
        if track.uploaded_by_user_id != caller.user_id && caller.role != Role::Admin {
            return Err(Error::forbidden(
                "not_your_track",
                "Only the track's artist (or an admin) sees its statistics.",
            ));
        }
        let counters = self.catalog.play_counters(id).await?;
        let mut by_day: BTreeMap<String, PlayTotals> = BTreeMap::new();
        let mut by_region: BTreeMap<String, PlayTotals> = BTreeMap::new();
        let mut totals = PlayTotals::default();
        for counter in &counters {
            for sum in [
                by_day.entry(counter.day.clone()).or_default(),
                by_region.entry(counter.region.clone()).or_default(),
                &mut totals,
            ] {
                sum.add(counter);
            }
        }
        let finish = |(key, mut totals): (String, PlayTotals)| {
            totals.rates();
            (key, totals)
        };
        totals.rates();
        Ok(TrackStats {
            track_id: track.id,
            totals,
            by_day: by_day
                .into_iter()
                .map(finish)
                .map(|(day, totals)| DayStats { day, totals })
                .collect(),
            by_region: by_region
                .into_iter()
                .map(finish)
                .map(|(region, totals)| RegionStats { region, totals })
                .collect(),
        })
    }
}

/// A track's plays: counts, listening, and the rates a listener's behaviour shows.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct PlayTotals {
    /// Plays started.
    pub starts: i64,
    /// Plays heard to the end.
    pub completes: i64,
    /// Plays skipped.
    pub skips: i64,
    /// Times served as an ad.
    pub ads: i64,
    /// Listening, ms.
    pub listened_ms: i64,
    /// Completes ÷ starts (0 without starts).
    pub completion_rate: f64,
    /// Skips ÷ starts (0 without starts).
    pub skip_rate: f64,
}

impl PlayTotals {
    fn add(&mut self, counter: &crate::catalog::store::PlayCounter) {
        self.starts += counter.starts;
        self.completes += counter.completes;
        self.skips += counter.skips;
        self.ads += counter.ads;
        self.listened_ms += counter.listened_ms;
    }

    fn rates(&mut self) {
        if self.starts > 0 {
            self.completion_rate = self.completes as f64 / self.starts as f64;
            self.skip_rate = self.skips as f64 / self.starts as f64;
        }
    }
}

/// One day's plays (UTC).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DayStats {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Its plays.
    #[serde(flatten)]
    pub totals: PlayTotals,
}

/// One region's plays.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegionStats {
    /// The site of the nodes that served them.
    pub region: String,
    /// Its plays.
    #[serde(flatten)]
    pub totals: PlayTotals,
}

/// A track's statistics.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TrackStats {
    /// The track.
    pub track_id: String,
    /// Over every day and region.
    pub totals: PlayTotals,
    /// By day, oldest first.
    pub by_day: Vec<DayStats>,
    /// By region, by name.
    pub by_region: Vec<RegionStats>,
}

/// Continue listening: the tracks whose latest play stopped part-way (neither completed nor
/// skipped, at least [`CONTINUE_MARGIN_MS`] in), latest first, with where they stopped.
fn continue_listening(plays: &[ListenerPlay]) -> Listed {
    let mut seen = HashSet::new();
    plays
        .iter()
        .filter(|play| seen.insert(play.track_id.as_str()))
        .filter(|play| play.state == PlayState::Playing && play.position_ms >= CONTINUE_MARGIN_MS)
        .map(|play| (play.track_id.clone(), None, Some(play.position_ms)))
        .collect()
}

fn home_track(row: &SearchableRow, count: Option<i64>, position_ms: Option<i64>) -> HomeTrack {
    let duration_ms = row.duration_ms.unwrap_or(0).max(0);
    HomeTrack {
        id: row.id.clone(),
        title: row.name.clone(),
        artist: row.singer.clone(),
        album: row.album.clone(),
        duration_ms: duration_ms as u64,
        explicit: row.explicit,
        artwork: row.artwork.clone(),
        count,
        // A play stopped in its last seconds is as good as heard.
        position_ms: position_ms
            .filter(|at| duration_ms == 0 || *at + CONTINUE_MARGIN_MS < duration_ms),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One row of hourly plays.
    pub(crate) fn hour(track: &str, hour: i64, starts: i64) -> HourPlays {
        HourPlays {
            track_id: track.to_owned(),
            hour,
            starts,
        }
    }

    #[test]
    fn trending_wants_growth_a_minimum_and_prefers_recent_plays() {
        let now = 1_000;
        let hours = vec![
            // Steady: as many plays as the day before.
            hour("steady", now - 2, 10),
            hour("steady", now - 30, 10),
            // Rising, and recently.
            hour("rising", now, 4),
            hour("rising", now - 1, 2),
            // As many, but a day ago: decayed.
            hour("earlier", now - 20, 6),
            // Too few to trend.
            hour("few", now, 2),
            // Outside both windows.
            hour("old", now - 60, 50),
        ];
        let trends = trending(&hours, now);
        let ids: Vec<&str> = trends.iter().map(|trend| trend.track_id.as_str()).collect();
        assert_eq!(ids, ["rising", "earlier"]);
        assert_eq!((trends[0].current, trends[0].previous), (6, 0));
        assert!(trends[0].score > trends[1].score);
    }

    #[test]
    fn ties_break_on_the_track_id() {
        let hours = vec![hour("b", 10, 3), hour("a", 10, 3), hour("c", 10, 5)];
        let trends: Vec<String> = trending(&hours, 10)
            .into_iter()
            .map(|trend| trend.track_id)
            .collect();
        assert_eq!(trends, ["c", "a", "b"]);
        assert_eq!(
            top(&hours),
            [
                ("c".to_owned(), 5),
                ("a".to_owned(), 3),
                ("b".to_owned(), 3)
            ]
        );
    }

    fn play(id: &str, started_at: i64) -> (ListenerPlay, String) {
        (
            ListenerPlay {
                play_id: id.to_owned(),
                track_id: format!("t-{id}"),
                started_at,
                updated_at: started_at,
                position_ms: 0,
                listened_ms: 0,
                state: PlayState::Playing,
                heard: true,
            },
            "artist".to_owned(),
        )
    }

    #[test]
    fn a_session_ends_at_a_long_gap() {
        let minute = 60_000;
        let around = vec![
            play("a", 0),
            play("b", 40 * minute),
            play("c", 60 * minute),
            play("d", 85 * minute),
            play("e", 200 * minute),
        ];
        let ids = |found: Vec<&(ListenerPlay, String)>| -> Vec<String> {
            found.iter().map(|(play, _)| play.play_id.clone()).collect()
        };
        assert_eq!(ids(store::session_of(&around, "c")), ["b", "d"]);
        assert_eq!(ids(store::session_of(&around, "a")), Vec::<String>::new());
        assert_eq!(ids(store::session_of(&around, "e")), Vec::<String>::new());
        assert_eq!(
            ids(store::session_of(&around, "missing")),
            Vec::<String>::new()
        );
    }
}
