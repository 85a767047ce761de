-- Inventory DB: packages, tracks and playlist contents (SQLite).
CREATE TABLE packages (
    id                TEXT PRIMARY KEY NOT NULL,
    name              TEXT NOT NULL,
    description       TEXT NOT NULL,
    cost              INTEGER NOT NULL, -- in the currency's minor unit (cents)
    currency          TEXT NOT NULL,
    period            TEXT NOT NULL,
    free_ads_per_hour INTEGER NOT NULL,
    retired_at        INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE TABLE tracks (
    id                  TEXT PRIMARY KEY NOT NULL,
    name                TEXT NOT NULL,
    url                 TEXT,
    uploaded_by_user_id TEXT NOT NULL,
    singer              TEXT NOT NULL,
    album               TEXT,
    duration_ms         INTEGER,
    kind                TEXT NOT NULL,
    status              TEXT NOT NULL,
    reason              TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX tracks_status ON tracks (status, created_at);
CREATE INDEX tracks_uploader ON tracks (uploaded_by_user_id);

-- One row per playlist: the lock every change of its contents takes first, and its size.
CREATE TABLE playlists (
    id          TEXT PRIMARY KEY NOT NULL,
    track_count INTEGER NOT NULL,
    state       TEXT NOT NULL, -- 'pending' until the User DB records its owner, then 'live'
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX playlists_state ON playlists (state, updated_at);

CREATE TABLE playlist_tracks (
    playlist_id TEXT NOT NULL REFERENCES playlists (id) ON DELETE CASCADE,
    track_id    TEXT NOT NULL,
    position    INTEGER NOT NULL,
    added_at    INTEGER NOT NULL,
    PRIMARY KEY (playlist_id, track_id)
);
CREATE INDEX playlist_tracks_order ON playlist_tracks (playlist_id, position);
