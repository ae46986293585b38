-- Issue 3: humans signing in with an OpenID Connect ID token, and workload
-- assertions that may start one run only.

-- Which outside identity (issuer + subject) a user signed in as. A user is
-- linked once, when the first sign-in creates it; a later token naming the
-- same user name from another identity is refused, so an IdP account cannot
-- take over a local user (or another IdP's user) by choosing its name.
CREATE TABLE user_identities (
    issuer      TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    user_name   TEXT    NOT NULL REFERENCES users (name),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
) STRICT;

CREATE INDEX user_identities_user ON user_identities (user_name);

-- Workload tokens (RFC 7523 assertions) already exchanged for a run: the
-- issuer and the token's `jti` (or, without one, the SHA-256 of the token).
-- A row is kept until the token itself has expired; the insert in the run's
-- transaction fails on a second use.
CREATE TABLE used_assertions (
    issuer      TEXT    NOT NULL,
    jti         TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (issuer, jti)
) STRICT;

CREATE INDEX used_assertions_expiry ON used_assertions (expires_at);
