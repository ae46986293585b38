-- Warrant's schema on PostgreSQL. Timestamps are BIGINT microseconds since
-- the Unix epoch; scopes and group lists are JSON text (not jsonb: the
-- stored text is returned as written); hashes are 32-byte bytea.

CREATE TABLE users (
    name        TEXT    NOT NULL PRIMARY KEY,
    groups      TEXT    NOT NULL DEFAULT '[]',
    admin       BOOLEAN NOT NULL DEFAULT FALSE,
    -- SHA-256 of the user's API token; the token itself is never stored.
    token_hash  BYTEA   NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at  BIGINT  NOT NULL
);

CREATE TABLE agents (
    name        TEXT    NOT NULL PRIMARY KEY,
    tier        TEXT    NOT NULL CHECK (tier IN ('read-only', 'propose', 'privileged')),
    -- Not a foreign key: agents declared in the config file may name an
    -- owner before that user exists.
    owner       TEXT,
    description TEXT    NOT NULL DEFAULT '',
    source      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE tasks (
    id          UUID    NOT NULL PRIMARY KEY,
    agent       TEXT    NOT NULL REFERENCES agents (name),
    delegator   TEXT    NOT NULL REFERENCES users (name),
    purpose     TEXT    NOT NULL,
    ticket      TEXT,
    scope       TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'active', 'ended')),
    end_reason  TEXT    CHECK (end_reason IN ('completed', 'expired', 'revoked', 'killed')),
    end_note    TEXT,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    ended_at    BIGINT,
    -- An ended task always says why and when; a live one never does.
    CHECK ((state = 'ended') = (end_reason IS NOT NULL AND ended_at IS NOT NULL))
);

-- The reaper's query: live tasks by expiry.
CREATE INDEX tasks_state_expires ON tasks (state, expires_at);
CREATE INDEX tasks_created ON tasks (created_at);
CREATE INDEX tasks_delegator ON tasks (delegator, created_at);

-- The hash-chained audit log. `data` is the RFC 8785 canonical JSON text the
-- hash covers. No CHECK constraints here on purpose: whatever a row holds
-- must reach the verifier as it is.
CREATE TABLE audit_events (
    seq         BIGINT  NOT NULL PRIMARY KEY,
    time_us     BIGINT  NOT NULL,
    kind        TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    task_id     TEXT,
    data        TEXT    NOT NULL,
    prev_hash   BYTEA   NOT NULL,
    hash        BYTEA   NOT NULL
);

CREATE INDEX audit_events_task ON audit_events (task_id, seq);

-- The chain head, one row. Every append locks it (`SELECT ... FOR UPDATE`)
-- for the rest of its transaction, so appends from every server sharing
-- this database are serialized into one linear chain. seq 0 with the
-- all-zero hash is the empty chain.
CREATE TABLE audit_head (
    id          SMALLINT NOT NULL PRIMARY KEY CHECK (id = 1),
    seq         BIGINT   NOT NULL,
    hash        BYTEA    NOT NULL
);

INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- Signed chain heads.
CREATE TABLE audit_checkpoints (
    seq         BIGINT  NOT NULL PRIMARY KEY,
    hash        BYTEA   NOT NULL,
    time_us     BIGINT  NOT NULL,
    kid         TEXT    NOT NULL,
    signature   BYTEA   NOT NULL
);

-- Every public key the server has signed checkpoints with.
CREATE TABLE public_keys (
    kid         TEXT    NOT NULL PRIMARY KEY,
    alg         TEXT    NOT NULL,
    public_key  BYTEA   NOT NULL,
    created_at  BIGINT  NOT NULL
);

-- Append-only, enforced by the database as defence in depth. A superuser or
-- the table owner can drop these triggers: the hash chain and the signed
-- checkpoints are what make tampering evident, not these.
CREATE FUNCTION warrant_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION warrant_append_only();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION warrant_append_only();

CREATE TRIGGER audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION warrant_append_only();

CREATE TRIGGER audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION warrant_append_only();
