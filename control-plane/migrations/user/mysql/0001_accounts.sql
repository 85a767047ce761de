-- User DB: accounts, sessions and playlist ownership (MySQL / MariaDB).
CREATE TABLE users (
    id            VARCHAR(36) NOT NULL PRIMARY KEY,
    email         VARCHAR(254) NOT NULL,
    first_name    VARCHAR(200) NOT NULL,
    last_name     VARCHAR(200) NOT NULL,
    mobile        VARCHAR(16) NOT NULL,
    address       VARCHAR(1000) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    role          VARCHAR(16) NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE KEY users_email (email),
    KEY users_role (role)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE sessions (
    id           VARCHAR(36) NOT NULL PRIMARY KEY,
    token_hash   CHAR(64) NOT NULL,
    user_id      VARCHAR(36) NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    client_addr  VARCHAR(64) NOT NULL,
    user_agent   VARCHAR(255) NOT NULL,
    UNIQUE KEY sessions_token (token_hash),
    KEY sessions_user (user_id),
    KEY sessions_expiry (expires_at),
    CONSTRAINT sessions_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE playlist_user_info (
    id          VARCHAR(36) NOT NULL PRIMARY KEY,
    user_id     VARCHAR(36) NOT NULL,
    playlist_id VARCHAR(36) NOT NULL,
    name        VARCHAR(200) NOT NULL,
    is_public   BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE KEY playlist_user_info_playlist (playlist_id),
    KEY playlist_user_info_user (user_id, created_at),
    CONSTRAINT playlist_user_info_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
