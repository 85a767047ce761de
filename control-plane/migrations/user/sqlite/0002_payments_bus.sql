-- User DB: payments, subscriptions, webhook replay protection, and the event bus (SQLite).
CREATE TABLE payments (
    id              TEXT PRIMARY KEY NOT NULL,
    user_id         TEXT NOT NULL,
    package_id      TEXT NOT NULL,
    amount          INTEGER NOT NULL,
    currency        TEXT NOT NULL,
    period          TEXT NOT NULL,
    status          TEXT NOT NULL,
    provider        TEXT NOT NULL,
    provider_ref    TEXT,
    card_brand      TEXT,
    card_last4      TEXT,
    failure_code    TEXT,
    failure_message TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    succeeded_at    INTEGER,
    refunded_at     INTEGER
);
CREATE INDEX payments_user ON payments (user_id, created_at);
CREATE UNIQUE INDEX payments_provider_ref ON payments (provider, provider_ref);

CREATE TABLE idempotency_keys (
    user_id         TEXT NOT NULL,
    idem_key        TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    response_status INTEGER,
    response_body   TEXT,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);

CREATE TABLE subscriptions (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL,
    package_id  TEXT NOT NULL,
    payment_id  TEXT NOT NULL,
    start_at    INTEGER NOT NULL,
    end_at      INTEGER NOT NULL,
    status      TEXT NOT NULL,
    auto_renew  INTEGER NOT NULL,
    canceled_at INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX subscriptions_user ON subscriptions (user_id, end_at);

-- Which payment bought which period: one row per payment, so a payment counts once.
CREATE TABLE subscription_payments (
    payment_id      TEXT PRIMARY KEY NOT NULL,
    subscription_id TEXT NOT NULL,
    start_at        INTEGER NOT NULL,
    end_at          INTEGER NOT NULL,
    applied_at      INTEGER NOT NULL
);

CREATE TABLE webhook_events (
    provider    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (provider, event_id)
);

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
