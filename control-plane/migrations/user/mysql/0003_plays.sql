-- User DB: plays, each listener's listening clock, and the ads served (MySQL).
CREATE TABLE plays (
    id               VARCHAR(64) NOT NULL PRIMARY KEY,
    user_id          VARCHAR(36) NOT NULL,
    track_id         VARCHAR(36) NOT NULL,
    format           VARCHAR(8) NOT NULL,
    device           VARCHAR(200) NOT NULL,
    node_id          VARCHAR(200) NOT NULL,
    region           VARCHAR(200) NOT NULL,
    document         MEDIUMTEXT NOT NULL,
    ads_ms           BIGINT NOT NULL,
    duration_ms      BIGINT NOT NULL,
    position_ms      BIGINT NOT NULL,
    listened_ms      BIGINT NOT NULL,
    state            VARCHAR(16) NOT NULL,
    expires_at       BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    KEY plays_user (user_id, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE listening (
    user_id          VARCHAR(36) NOT NULL PRIMARY KEY,
    listened_ms      BIGINT NOT NULL,
    last_break_at_ms BIGINT NULL,
    last_play_at     BIGINT NULL,
    ads_served       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE ad_impressions (
    id           VARCHAR(36) NOT NULL PRIMARY KEY,
    user_id      VARCHAR(36) NOT NULL,
    play_id      VARCHAR(64) NOT NULL,
    ad_track_id  VARCHAR(36) NOT NULL,
    listened_ms  BIGINT NOT NULL,
    reason       VARCHAR(16) NOT NULL,
    served_at    BIGINT NOT NULL,
    KEY ad_impressions_user (user_id, served_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
