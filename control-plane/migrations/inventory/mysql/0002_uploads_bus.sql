-- Inventory DB: resumable uploads, the raw object of each track, and the event bus (MySQL).
-- sqlx's Any driver sees MEDIUMTEXT as a BLOB; `store::long_text` reads it as a string.
CREATE TABLE uploads (
    id          VARCHAR(36) NOT NULL PRIMARY KEY,
    user_id     VARCHAR(36) NOT NULL,
    track_id    VARCHAR(36) NOT NULL,
    length      BIGINT NOT NULL,
    received    BIGINT NOT NULL,
    metadata    MEDIUMTEXT NOT NULL,
    status      VARCHAR(16) NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE KEY uploads_track (track_id),
    KEY uploads_user (user_id, status),
    KEY uploads_status (status, updated_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

ALTER TABLE tracks ADD COLUMN raw_key VARCHAR(200) NULL;
ALTER TABLE tracks ADD COLUMN raw_size BIGINT NULL;
ALTER TABLE tracks ADD COLUMN loudness_lufs DOUBLE NULL;
ALTER TABLE tracks ADD COLUMN gain_db DOUBLE NULL;
ALTER TABLE tracks ADD COLUMN true_peak_dbtp DOUBLE NULL;
ALTER TABLE tracks ADD COLUMN explicit BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tracks ADD COLUMN genre VARCHAR(200) NULL;
ALTER TABLE tracks ADD COLUMN release_year BIGINT NULL;

-- Acoustic fingerprints of ready tracks, for copy and duplicate detection.
CREATE TABLE track_fingerprints (
    track_id    VARCHAR(36) NOT NULL PRIMARY KEY,
    uploaded_by VARCHAR(36) NOT NULL,
    duration_ms BIGINT NOT NULL,
    fingerprint MEDIUMTEXT NOT NULL,
    created_at  BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE INDEX track_fingerprints_duration ON track_fingerprints (duration_ms);

CREATE TABLE outbox (
    seq        BIGINT NOT NULL PRIMARY KEY,
    id         VARCHAR(36) NOT NULL,
    topic      VARCHAR(100) NOT NULL,
    event_key  VARCHAR(200) NOT NULL,
    envelope   MEDIUMTEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE KEY outbox_id (id),
    KEY outbox_topic (topic, seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE TABLE bus_sequence (
    name  VARCHAR(32) NOT NULL PRIMARY KEY,
    value BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT INTO bus_sequence (name, value) VALUES ('outbox', 0);
CREATE TABLE bus_offsets (
    consumer_group VARCHAR(100) NOT NULL,
    topic          VARCHAR(100) NOT NULL,
    next_seq       BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (consumer_group, topic)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE TABLE bus_leases (
    name       VARCHAR(200) NOT NULL PRIMARY KEY,
    owner      VARCHAR(64) NOT NULL,
    expires_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE TABLE bus_processed (
    consumer_group VARCHAR(100) NOT NULL,
    event_id       VARCHAR(36) NOT NULL,
    processed_at   BIGINT NOT NULL,
    PRIMARY KEY (consumer_group, event_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE TABLE bus_dead_letters (
    consumer_group VARCHAR(100) NOT NULL,
    event_id       VARCHAR(36) NOT NULL,
    topic          VARCHAR(100) NOT NULL,
    envelope       MEDIUMTEXT NOT NULL,
    error          VARCHAR(2000) NOT NULL,
    failed_at      BIGINT NOT NULL,
    PRIMARY KEY (consumer_group, event_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
