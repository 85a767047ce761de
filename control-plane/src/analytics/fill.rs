//! Fill manifests for ISP boxes: what a box should hold before its subscribers ask, as Open
//! Connect pre-positions at night. A box presents its token; its manifest ranks the tracks of
//! its region by expected plays (hourly plays of the last week, each hour's weight halving every
//! day, so this week's hits outrank last week's), then those of every region, then the newest
//! releases nobody has played yet, and lists every
//! object of each track (playlists, each rendition's init and segments) until the box's byte
//! budget is spent.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use utoipa::ToSchema;

use super::store::HourPlays;
use crate::App;
use crate::config::IspBoxAccess;
use crate::error::{Error, Result};

/// Hours of plays a manifest weighs.
pub const WINDOW_HOURS: i64 = 7 * 24;
/// An hour's plays count half as much as those a day later.
pub const HALF_LIFE_HOURS: f64 = 24.0;
/// Tracks one manifest lists at most.
pub const MAX_TRACKS: usize = 20_000;
/// New releases (unplayed) a manifest may end with.
pub const NEW_RELEASES: i64 = 200;

/// One object to pre-position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FillObject {
    /// Its path on every node, without a URL token: `/media/…`.
    pub path: String,
    /// Its size in bytes (playlists and manifests, whose size the catalog does not keep: 0).
    pub bytes: u64,
}

/// One track of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FillTrack {
    /// The track.
    pub track_id: String,
    /// Plays expected per day in the box's region (or everywhere, for the tracks that fill
    /// the rest of the budget).
    pub expected_plays: f64,
    /// Bytes of all its objects.
    pub bytes: u64,
    /// Its objects: playlists first, then each rendition's init segment and media segments.
    pub objects: Vec<FillObject>,
}

/// What a box should hold, most wanted first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FillManifest {
    /// The box it was made for.
    pub box_id: String,
    /// The region that ranked it.
    pub region: String,
    /// When it was made, Unix ms.
    pub generated_at: i64,
    /// The budget asked for, bytes.
    pub budget_bytes: u64,
    /// Bytes listed.
    pub bytes: u64,
    /// The tracks, by expected plays.
    pub tracks: Vec<FillTrack>,
}

/// Expected plays per day of each track from `hours` at `now_hour`: a sum of hourly plays
/// weighted by `2^(-age / HALF_LIFE_HOURS)`, scaled to a day; most expected first (ties by
/// id, so the order is stable).
pub fn expected_plays(hours: &[HourPlays], now_hour: i64) -> Vec<(String, f64)> {
    let weight = |age: i64| (-(age.max(0) as f64) / HALF_LIFE_HOURS).exp2();
    let total_weight: f64 = (0..WINDOW_HOURS).map(weight).sum();
    let mut sums: HashMap<&str, f64> = HashMap::new();
    for row in hours {
        let age = now_hour - row.hour;
        if (0..WINDOW_HOURS).contains(&age) {
            *sums.entry(&row.track_id).or_default() += row.starts as f64 * weight(age);
        }
    }
    let mut ranked: Vec<(String, f64)> = sums
        .into_iter()
        .map(|(track, sum)| (track.to_owned(), sum / total_weight * 24.0))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked
}

/// Every object of a published track under `prefix` (`media/{track}/{version}/`), as paths.
pub fn track_objects(
    prefix: &str,
    renditions: &[events::tracks::RenditionDetail],
) -> Vec<FillObject> {
    let base = format!("/{}", prefix.trim_start_matches('/'));
    let base = if base.ends_with('/') {
        base
    } else {
        format!("{base}/")
    };
    let mut objects = vec![
        FillObject {
            path: format!("{base}master.m3u8"),
            bytes: 0,
        },
        FillObject {
            path: format!("{base}manifest.mpd"),
            bytes: 0,
        },
    ];
    for rendition in renditions {
        objects.push(FillObject {
            path: format!("{base}{}/index.m3u8", rendition.id),
            bytes: 0,
        });
        objects.push(FillObject {
            path: format!("{base}{}/init.mp4", rendition.id),
            bytes: rendition.init_bytes,
        });
        for (index, segment) in rendition.segments.iter().enumerate() {
            objects.push(FillObject {
                path: format!("{base}{}/seg-{:05}.m4s", rendition.id, index + 1),
                bytes: segment.bytes,
            });
        }
    }
    objects
}

impl App {
    /// The box whose token `token` is.
    pub(crate) fn isp_box(&self, token: &str) -> Result<&IspBoxAccess> {
        // Every configured token is compared, so the time taken does not say which matched.
        let mut found = None;
        for access in &self.config.isp_boxes {
            if bool::from(access.token.expose().as_bytes().ct_eq(token.as_bytes())) {
                found = Some(access);
            }
        }
        found.ok_or_else(|| {
            Error::unauthenticated("unknown_box", "Present the box's token as a bearer token.")
        })
    }

    /// The fill manifest of `access`'s box for a budget of `budget_bytes`.
    pub(crate) async fn fill_manifest(
        &self,
        access: &IspBoxAccess,
        budget_bytes: u64,
    ) -> Result<FillManifest> {
        let now = self.clock.now_ms();
        let now_hour = now.div_euclid(3_600_000);
        let store = &self.analytics.store;
        let from = now_hour + 1 - WINDOW_HOURS;
        let regional = expected_plays(
            &store
                .region_hours(Some(&access.region), from, now_hour + 1)
                .await?,
            now_hour,
        );
        let everywhere = expected_plays(
            &store.region_hours(None, from, now_hour + 1).await?,
            now_hour,
        );
        // New releases nobody has played yet come last: expected, but with nothing to go by.
        let newest: Vec<(String, f64)> =
            crate::catalog::store::newest_tracks(self.inventory.database().pool(), NEW_RELEASES)
                .await?
                .into_iter()
                .map(|row| (row.id, 0.0))
                .collect();
        let mut seen = HashSet::new();
        let ranked: Vec<(String, f64)> = regional
            .into_iter()
            .chain(everywhere)
            .chain(newest)
            .filter(|(track, _)| seen.insert(track.clone()))
            .take(MAX_TRACKS)
            .collect();
        // Only what a listener may still play: taken-down and unpublished tracks drop out.
        let ids: Vec<String> = ranked.iter().map(|(track, _)| track.clone()).collect();
        let listed: HashSet<String> =
            crate::catalog::store::listed_tracks(self.inventory.database().pool(), &ids)
                .await?
                .into_iter()
                .map(|row| row.id)
                .collect();
        let mut manifest = FillManifest {
            box_id: access.id.clone(),
            region: access.region.clone(),
            generated_at: now,
            budget_bytes,
            bytes: 0,
            tracks: Vec::new(),
        };
        for (track_id, expected) in ranked {
            if !listed.contains(&track_id) {
                continue;
            }
            let Some(media) = self.catalog.media(&track_id).await? else {
                continue;
            };
            let Some(prefix) = media.prefix.as_deref() else {
                continue;
            };
            let objects = track_objects(prefix, &media.renditions);
            let bytes: u64 = objects.iter().map(|object| object.bytes).sum();
            if manifest.bytes + bytes > budget_bytes {
                // A smaller track further down may still fit.
                continue;
            }
            manifest.bytes += bytes;
            manifest.tracks.push(FillTrack {
                track_id,
                expected_plays: expected,
                bytes,
                objects,
            });
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::hour;
    use super::*;

    #[test]
    fn recent_plays_outrank_as_many_older_ones_and_a_week_ago_is_forgotten() {
        let now = 1_000;
        let ranked = expected_plays(
            &[
                hour("old", now - 48, 10),
                hour("new", now - 1, 10),
                hour("gone", now - WINDOW_HOURS, 1_000),
            ],
            now,
        );
        let names: Vec<&str> = ranked.iter().map(|(track, _)| track.as_str()).collect();
        assert_eq!(names, ["new", "old"]);
        // Two days older: a quarter of the weight, give or take the hour.
        let ratio = ranked[1].1 / ranked[0].1;
        assert!(
            (ratio - 0.25 * 2f64.powf(1.0 / 24.0)).abs() < 1e-9,
            "{ratio}"
        );
    }

    #[test]
    fn a_steady_track_expects_its_daily_plays() {
        let now = 5_000;
        let hours: Vec<HourPlays> = (0..WINDOW_HOURS)
            .map(|age| hour("t", now - age, 2))
            .collect();
        let ranked = expected_plays(&hours, now);
        assert!((ranked[0].1 - 48.0).abs() < 1e-6, "{ranked:?}");
    }

    #[test]
    fn every_object_of_a_track_is_listed_with_its_size() {
        let renditions = vec![events::tracks::RenditionDetail {
            id: "64k".to_owned(),
            average_bps: 64_000,
            peak_bps: 70_000,
            init_bytes: 700,
            segments: vec![
                events::tracks::SegmentDetail {
                    duration_ms: 6_000,
                    bytes: 48_000,
                },
                events::tracks::SegmentDetail {
                    duration_ms: 2_000,
                    bytes: 16_000,
                },
            ],
        }];
        let objects = track_objects("media/t1/v1/", &renditions);
        let paths: Vec<&str> = objects.iter().map(|object| object.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/media/t1/v1/master.m3u8",
                "/media/t1/v1/manifest.mpd",
                "/media/t1/v1/64k/index.m3u8",
                "/media/t1/v1/64k/init.mp4",
                "/media/t1/v1/64k/seg-00001.m4s",
                "/media/t1/v1/64k/seg-00002.m4s",
            ]
        );
        assert_eq!(
            objects.iter().map(|object| object.bytes).sum::<u64>(),
            64_700
        );
    }
}
