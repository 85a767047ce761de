-- The catalog, modelled query-first as its Cassandra/ScyllaDB form would be: one partition per
-- track for its media facts, and a time-ordered timeline per track.
--   CREATE TABLE track_media (track_id text PRIMARY KEY, document text, updated_at bigint);
--   CREATE TABLE track_timeline (track_id text, at bigint, event_id text, kind text, detail text,
--       PRIMARY KEY ((track_id), at, event_id));
CREATE TABLE track_media (
    track_id TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE track_timeline (
    track_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT,
    PRIMARY KEY (track_id, at, event_id)
);
