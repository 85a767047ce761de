-- User DB: plays, each listener's listening clock, and the ads served (SQLite).
-- One row per `POST /api/v1/play` answer; its id is an unguessable capability (the per-play
-- manifests are fetched by players that send no bearer token).
CREATE TABLE plays (
    id               TEXT PRIMARY KEY NOT NULL,
    user_id          TEXT NOT NULL,
    track_id         TEXT NOT NULL,
    format           TEXT NOT NULL, -- 'hls' or 'dash'
    device           TEXT NOT NULL,
    node_id          TEXT NOT NULL, -- the primary node
    region           TEXT NOT NULL, -- its site
    document         TEXT NOT NULL, -- JSON: the nodes, tokens and pieces the manifests are made of
    ads_ms           INTEGER NOT NULL,
    duration_ms      INTEGER NOT NULL,
    position_ms      INTEGER NOT NULL,
    listened_ms      INTEGER NOT NULL,
    state            TEXT NOT NULL, -- 'served', 'playing', 'completed' or 'skipped'
    expires_at       INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX plays_user ON plays (user_id, created_at);

-- Track time each listener has heard, and where on that clock the last ad break fell.
CREATE TABLE listening (
    user_id          TEXT PRIMARY KEY NOT NULL,
    listened_ms      INTEGER NOT NULL,
    last_break_at_ms INTEGER NULL,
    last_play_at     INTEGER NULL, -- wall clock of the latest play: a long gap starts a session
    ads_served       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

CREATE TABLE ad_impressions (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL,
    play_id      TEXT NOT NULL,
    ad_track_id  TEXT NOT NULL,
    listened_ms  INTEGER NOT NULL,
    reason       TEXT NOT NULL, -- 'session-start' or 'interval'
    served_at    INTEGER NOT NULL
);
CREATE INDEX ad_impressions_user ON ad_impressions (user_id, served_at);
