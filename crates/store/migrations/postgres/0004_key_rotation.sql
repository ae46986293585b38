-- Issue 3: `warrant keys rotate`. A key with no `retired_at` may sign run
-- tokens and checkpoints; a retired one stays published (and trusted) until
-- every token it signed has expired, then leaves the JWKS. Its row stays, so
-- checkpoints it signed keep verifying.
ALTER TABLE public_keys ADD COLUMN retired_at BIGINT;
