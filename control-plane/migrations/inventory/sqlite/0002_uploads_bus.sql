-- Inventory DB: resumable uploads, the raw object of each track, and the event bus (SQLite).
CREATE TABLE uploads (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL,
    track_id    TEXT NOT NULL UNIQUE, -- reserved at creation; the track row appears at completion
    length      INTEGER NOT NULL,
    received    INTEGER NOT NULL,
    metadata    TEXT NOT NULL, -- JSON object of the Upload-Metadata pairs
    status      TEXT NOT NULL, -- 'open', 'complete' or 'terminated'
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX uploads_user ON uploads (user_id, status);
CREATE INDEX uploads_status ON uploads (status, updated_at);

ALTER TABLE tracks ADD COLUMN raw_key TEXT;
ALTER TABLE tracks ADD COLUMN raw_size INTEGER;
ALTER TABLE tracks ADD COLUMN loudness_lufs REAL;
ALTER TABLE tracks ADD COLUMN gain_db REAL;
ALTER TABLE tracks ADD COLUMN true_peak_dbtp REAL;
ALTER TABLE tracks ADD COLUMN explicit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tracks ADD COLUMN genre TEXT NULL;
ALTER TABLE tracks ADD COLUMN release_year INTEGER NULL;

-- Acoustic fingerprints of ready tracks, for copy and duplicate detection.
CREATE TABLE track_fingerprints (
    track_id    TEXT PRIMARY KEY NOT NULL,
    uploaded_by TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX track_fingerprints_duration ON track_fingerprints (duration_ms);

-- The event bus. `seq` comes from `bus_sequence`, bumped inside the producing transaction, so
-- sequence order is commit order and a consumer never skips an event that commits late.
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY NOT NULL,
    id         TEXT NOT NULL UNIQUE,
    topic      TEXT NOT NULL,
    event_key  TEXT NOT NULL,
    envelope   TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX outbox_topic ON outbox (topic, seq);
CREATE TABLE bus_sequence (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
INSERT INTO bus_sequence (name, value) VALUES ('outbox', 0);
CREATE TABLE bus_offsets (
    consumer_group TEXT NOT NULL,
    topic          TEXT NOT NULL,
    next_seq       INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (consumer_group, topic)
);
CREATE TABLE bus_leases (name TEXT PRIMARY KEY NOT NULL, owner TEXT NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE bus_processed (
    consumer_group TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    processed_at   INTEGER NOT NULL,
    PRIMARY KEY (consumer_group, event_id)
);
CREATE TABLE bus_dead_letters (
    consumer_group TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    topic          TEXT NOT NULL,
    envelope       TEXT NOT NULL,
    error          TEXT NOT NULL,
    failed_at      INTEGER NOT NULL,
    PRIMARY KEY (consumer_group, event_id)
);
