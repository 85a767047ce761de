-- User DB: payments, subscriptions, webhook replay protection, and the event bus (MySQL).
-- sqlx's Any driver sees MEDIUMTEXT as a BLOB; `store::long_text` reads it as a string.
CREATE TABLE payments (
    id              VARCHAR(36) NOT NULL PRIMARY KEY,
    user_id         VARCHAR(36) NOT NULL,
    package_id      VARCHAR(36) NOT NULL,
    amount          BIGINT NOT NULL,
    currency        CHAR(3) NOT NULL,
    period          VARCHAR(8) NOT NULL,
    status          VARCHAR(24) NOT NULL,
    provider        VARCHAR(32) NOT NULL,
    provider_ref    VARCHAR(100) NULL,
    card_brand      VARCHAR(24) NULL,
    card_last4      CHAR(4) NULL,
    failure_code    VARCHAR(64) NULL,
    failure_message VARCHAR(500) NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    succeeded_at    BIGINT NULL,
    refunded_at     BIGINT NULL,
    KEY payments_user (user_id, created_at),
    UNIQUE KEY payments_provider_ref (provider, provider_ref)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE idempotency_keys (
    user_id         VARCHAR(36) NOT NULL,
    idem_key        VARCHAR(255) NOT NULL,
    request_hash    CHAR(64) NOT NULL,
    response_status BIGINT NULL,
    response_body   MEDIUMTEXT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (user_id, idem_key),
    KEY idempotency_keys_age (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE subscriptions (
    id          VARCHAR(36) NOT NULL PRIMARY KEY,
    user_id     VARCHAR(36) NOT NULL,
    package_id  VARCHAR(36) NOT NULL,
    payment_id  VARCHAR(36) NOT NULL,
    start_at    BIGINT NOT NULL,
    end_at      BIGINT NOT NULL,
    status      VARCHAR(16) NOT NULL,
    auto_renew  BIGINT NOT NULL,
    canceled_at BIGINT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    KEY subscriptions_user (user_id, end_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE subscription_payments (
    payment_id      VARCHAR(36) NOT NULL PRIMARY KEY,
    subscription_id VARCHAR(36) NOT NULL,
    start_at        BIGINT NOT NULL,
    end_at          BIGINT NOT NULL,
    applied_at      BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE webhook_events (
    provider    VARCHAR(32) NOT NULL,
    event_id    VARCHAR(100) NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (provider, event_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

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
