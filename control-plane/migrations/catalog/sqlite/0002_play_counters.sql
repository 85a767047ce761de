-- Play counters by track, day and region (the site of the node that served the play), as the
-- Cassandra/ScyllaDB form would keep them:
--   CREATE TABLE play_counters (track_id text, day text, region text, starts counter,
--       completes counter, skips counter, ads counter, listened_ms counter,
--       PRIMARY KEY ((track_id), day, region));
-- and the events already counted, so that a redelivered event counts once.
CREATE TABLE play_counters (
    track_id    TEXT NOT NULL,
    day         TEXT NOT NULL,
    region      TEXT NOT NULL,
    starts      INTEGER NOT NULL,
    completes   INTEGER NOT NULL,
    skips       INTEGER NOT NULL,
    ads         INTEGER NOT NULL,
    listened_ms INTEGER NOT NULL,
    PRIMARY KEY (track_id, day, region)
);

CREATE TABLE counted_events (
    event_id   TEXT PRIMARY KEY NOT NULL,
    counted_at INTEGER NOT NULL
);
