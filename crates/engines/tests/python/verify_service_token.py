"""An independent verifier for the `jwt` engine's service tokens: what a
resource server would run. PyJWT checks the signature against a JWKS file,
the algorithm (EdDSA only), `iss`, `aud`, `exp`, `nbf`, `iat`, and the
required claims; the `typ` header must be `at+jwt` (RFC 9068).

Usage: verify_service_token.py JWKS_FILE ISSUER AUDIENCE TOKEN

Prints {"header": ..., "claims": ...} as JSON and exits 0, or prints the
error and exits 1. Nothing of Warrant's code is involved.
"""

import json
import sys

import jwt


def main() -> int:
    jwks_file, issuer, audience, token = sys.argv[1:5]
    with open(jwks_file, encoding="utf-8") as f:
        jwks = jwt.PyJWKSet.from_dict(json.load(f))
    try:
        header = jwt.get_unverified_header(token)
        if header.get("typ") != "at+jwt":
            raise jwt.InvalidTokenError(f"typ is {header.get('typ')!r}, not 'at+jwt'")
        key = jwks[header["kid"]]
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["EdDSA"],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti", "client_id"]},
        )
    except Exception as e:  # noqa: BLE001 - any failure is a refusal
        print(f"refused: {type(e).__name__}: {e}")
        return 1
    print(json.dumps({"header": header, "claims": claims}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
