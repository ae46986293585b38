-- Warrant's schema on SQLite. Timestamps are INTEGER microseconds since the
-- Unix epoch; scopes and group lists are JSON text; hashes are 32-byte BLOBs.

CREATE TABLE users (
    name        TEXT    NOT NULL PRIMARY KEY,
    groups      TEXT    NOT NULL DEFAULT '[]',
    admin       INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
    -- SHA-256 of the user's API token; the token itself is never stored.
    token_hash  BLOB    NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE agents (
    name        TEXT    NOT NULL PRIMARY KEY,
    tier        TEXT    NOT NULL CHECK (tier IN ('read-only', 'propose', 'privileged')),
    -- Not a foreign key: agents declared in the config file may name an
    -- owner before that user exists.
    owner       TEXT,
    description TEXT    NOT NULL DEFAULT '',
    source      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE tasks (
    id          TEXT    NOT NULL PRIMARY KEY,
    agent       TEXT    NOT NULL REFERENCES agents (name),
    delegator   TEXT    NOT NULL REFERENCES users (name),
    purpose     TEXT    NOT NULL,
    ticket      TEXT,
    scope       TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'active', 'ended')),
    end_reason  TEXT    CHECK (end_reason IN ('completed', 'expired', 'revoked', 'killed')),
    end_note    TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    -- An ended task always says why and when; a live one never does.
    CHECK ((state = 'ended') = (end_reason IS NOT NULL AND ended_at IS NOT NULL))
) STRICT;

-- The reaper's query: live tasks by expiry.
CREATE INDEX tasks_state_expires ON tasks (state, expires_at);
CREATE INDEX tasks_created ON tasks (created_at);
CREATE INDEX tasks_delegator ON tasks (delegator, created_at);

-- The hash-chained audit log. `data` is the RFC 8785 canonical JSON text the
-- hash covers. No CHECK constraints here on purpose: whatever a row holds
-- must reach the verifier as it is.
CREATE TABLE audit_events (
    seq         INTEGER NOT NULL PRIMARY KEY,
    time_us     INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    task_id     TEXT,
    data        TEXT    NOT NULL,
    prev_hash   BLOB    NOT NULL,
    hash        BLOB    NOT NULL
) STRICT;

CREATE INDEX audit_events_task ON audit_events (task_id, seq);

-- Signed chain heads.
CREATE TABLE audit_checkpoints (
    seq         INTEGER NOT NULL PRIMARY KEY,
    hash        BLOB    NOT NULL,
    time_us     INTEGER NOT NULL,
    kid         TEXT    NOT NULL,
    signature   BLOB    NOT NULL
) STRICT;

-- Every public key the server has signed checkpoints with.
CREATE TABLE public_keys (
    kid         TEXT    NOT NULL PRIMARY KEY,
    alg         TEXT    NOT NULL,
    public_key  BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

-- Append-only, enforced by the database as defence in depth. Anyone who can
-- write the file can drop these triggers: the hash chain and the signed
-- checkpoints are what make tampering evident, not these.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;

CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;
