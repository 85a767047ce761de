-- Inventory DB: packages, tracks and playlist contents (MySQL / MariaDB).
CREATE TABLE packages (
    id                VARCHAR(36) NOT NULL PRIMARY KEY,
    name              VARCHAR(100) NOT NULL,
    description       VARCHAR(1000) NOT NULL,
    cost              BIGINT NOT NULL, -- in the currency's minor unit (cents)
    currency          CHAR(3) NOT NULL,
    period            VARCHAR(8) NOT NULL,
    free_ads_per_hour BIGINT NOT NULL,
    retired_at        BIGINT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE tracks (
    id                  VARCHAR(36) NOT NULL PRIMARY KEY,
    name                VARCHAR(300) NOT NULL,
    url                 VARCHAR(1000) NULL,
    uploaded_by_user_id VARCHAR(36) NOT NULL,
    singer              VARCHAR(300) NOT NULL,
    album               VARCHAR(300) NULL,
    duration_ms         BIGINT NULL,
    kind                VARCHAR(16) NOT NULL,
    status              VARCHAR(16) NOT NULL,
    reason              VARCHAR(2000) NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    KEY tracks_status (status, created_at),
    KEY tracks_uploader (uploaded_by_user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per playlist: the lock every change of its contents takes first, and its size.
CREATE TABLE playlists (
    id          VARCHAR(36) NOT NULL PRIMARY KEY,
    track_count BIGINT NOT NULL,
    state       VARCHAR(8) NOT NULL, -- 'pending' until the User DB records its owner, then 'live'
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    KEY playlists_state (state, updated_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE playlist_tracks (
    playlist_id VARCHAR(36) NOT NULL,
    track_id    VARCHAR(36) NOT NULL,
    position    BIGINT NOT NULL,
    added_at    BIGINT NOT NULL,
    PRIMARY KEY (playlist_id, track_id),
    KEY playlist_tracks_order (playlist_id, position),
    CONSTRAINT playlist_tracks_playlist_fk FOREIGN KEY (playlist_id) REFERENCES playlists (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
