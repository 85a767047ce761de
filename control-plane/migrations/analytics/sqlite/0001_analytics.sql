-- The analytics store: tables the `analytics` consumer keeps from play events, each shaped
-- for the one query that reads it (the partition key first), as Cassandra/ScyllaDB would
-- keep them.

-- Each play event counts once, however often it is delivered.
CREATE TABLE analytics_events (
    event_id   TEXT PRIMARY KEY NOT NULL,
    counted_at INTEGER NOT NULL
);

-- Plays started per region, hour (Unix hours, UTC) and track: trending and top tracks of a
-- region.  CQL: PRIMARY KEY ((region), hour, track_id) with a counter.
CREATE TABLE region_plays (
    region   TEXT NOT NULL,
    hour     INTEGER NOT NULL,
    track_id TEXT NOT NULL,
    starts   INTEGER NOT NULL,
    PRIMARY KEY (region, hour, track_id)
);

-- A listener's plays: history, continue listening, rediscover, listening sessions.
-- `state` is playing, completed or skipped; `heard` is 1 once the play counts as listened
-- (30 s heard, or completed) without a skip before that.
-- CQL: PRIMARY KEY ((user_id), play_id), with a secondary table by started_at.
CREATE TABLE listener_plays (
    user_id     TEXT NOT NULL,
    play_id     TEXT NOT NULL,
    track_id    TEXT NOT NULL,
    artist      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    position_ms INTEGER NOT NULL,
    listened_ms INTEGER NOT NULL,
    state       TEXT NOT NULL,
    heard       INTEGER NOT NULL,
    PRIMARY KEY (user_id, play_id)
);
CREATE INDEX listener_plays_by_time ON listener_plays (user_id, started_at);

-- The pairs each listener has contributed, so that a listener counts once per pair.
CREATE TABLE listener_pairs (
    user_id TEXT NOT NULL,
    track_a TEXT NOT NULL,
    track_b TEXT NOT NULL,
    PRIMARY KEY (user_id, track_a, track_b)
);

-- "Listened together": for each track, the tracks heard in the same sessions and by how
-- many listeners (both directions are kept).  CQL: PRIMARY KEY ((track_id), other_id).
CREATE TABLE track_pairs (
    track_id  TEXT NOT NULL,
    other_id  TEXT NOT NULL,
    listeners INTEGER NOT NULL,
    PRIMARY KEY (track_id, other_id)
);
