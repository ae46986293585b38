"""An independent verifier: PyJWT fetches Warrant's JWKS over HTTP and
verifies a run token with it. Usage: verify_run_token.py JWKS_URL ISSUER TOKEN

Prints the verified claims as JSON and exits 0, or prints the error and
exits 1. Nothing of Warrant's code is involved.
"""

import json
import sys

import jwt
from jwt import PyJWKClient


def main() -> int:
    jwks_url, issuer, token = sys.argv[1:4]
    client = PyJWKClient(jwks_url, cache_keys=False)
    try:
        key = client.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["EdDSA"],
            audience=issuer,
            issuer=issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
        )
    except Exception as e:  # noqa: BLE001 - any failure is a refusal
        print(f"refused: {type(e).__name__}: {e}")
        return 1
    print(json.dumps({"kid": key.key_id, "claims": claims}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
