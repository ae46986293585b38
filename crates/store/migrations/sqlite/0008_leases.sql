-- Issue 6: leases (one issued downstream credential each) and the sealed
-- static secrets of `kv` engines.

-- A lease is recorded (`issuing`, with the handle naming what the engine
-- will create) BEFORE the engine creates anything, so a crash in between
-- still leaves a row the reaper revokes. States: issuing -> active ->
-- revoking -> revoked, or -> irrevocable when revocation keeps failing.
CREATE TABLE leases (
    id              TEXT    NOT NULL PRIMARY KEY,
    engine          TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    task_id         TEXT    NOT NULL REFERENCES tasks (id),
    run_id          TEXT    NOT NULL REFERENCES runs (id),
    handle          TEXT    NOT NULL,
    public          TEXT    NOT NULL DEFAULT '{}',
    state           TEXT    NOT NULL CHECK (state IN ('issuing', 'active', 'revoking', 'revoked', 'irrevocable')),
    issued_at       INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    revoke_reason   TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at INTEGER,
    revoked_at      INTEGER
) STRICT;

CREATE INDEX leases_due ON leases (state, expires_at);
CREATE INDEX leases_task ON leases (task_id);
CREATE INDEX leases_run ON leases (run_id);

-- A `kv` engine's static secret, sealed (XChaCha20-Poly1305 under the
-- master key `key_id`, bound to engine and name): never in clear here.
CREATE TABLE kv_secrets (
    engine      TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    key_id      TEXT    NOT NULL,
    nonce       BLOB    NOT NULL,
    ciphertext  BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (engine, name)
) STRICT;
