"""An independent DSSE implementation for Warrant's approval attestations:
Python `securesystemslib` (its `dsse.Envelope`, `SSlibKey`, `CryptoSigner`).
Nothing of Warrant's code is involved.

Usage:
  dsse_check.py verify ENVELOPE_FILE JWKS_FILE SUBJECT
      Verifies the envelope with the Ed25519 keys of the JWKS (each under its
      `kid`), checks it is an in-toto Statement v1 with Warrant's approval
      predicate, and that SUBJECT (`sha1:<hex>` or `sha256:<hex>`) is among
      its subjects. Prints {"keyid", "statement"} and exits 0, or prints
      `refused: ...` and exits 1.
  dsse_check.py sign PAYLOAD_FILE
      Generates an Ed25519 key, signs the payload as an in-toto DSSE envelope
      with keyid = the key's RFC 7638 JWK thumbprint, and prints
      {"public": <hex>, "envelope": {...}}.
"""

import base64
import hashlib
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://warrant.dev/attestation/approval/v1"


def b64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def keys_from_jwks(path: str) -> list:
    with open(path, encoding="utf-8") as f:
        jwks = json.load(f)
    keys = []
    for jwk in jwks["keys"]:
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            public = b64url(jwk["x"]).hex()
            keys.append(SSlibKey(jwk["kid"], "ed25519", "ed25519", {"public": public}))
    return keys


def verify(envelope_path: str, jwks_path: str, subject: str) -> int:
    try:
        with open(envelope_path, encoding="utf-8") as f:
            envelope = Envelope.from_dict(json.load(f))
        accepted = envelope.verify(keys_from_jwks(jwks_path), 1)
        if envelope.payload_type != PAYLOAD_TYPE:
            raise ValueError(f"payload type {envelope.payload_type}")
        statement = json.loads(envelope.payload)
        if statement["_type"] != STATEMENT_TYPE:
            raise ValueError(f"statement type {statement['_type']}")
        if statement["predicateType"] != PREDICATE_TYPE:
            raise ValueError(f"predicate type {statement['predicateType']}")
        alg, digest = subject.split(":", 1)
        names = {"sha1": ("gitCommit", "sha1"), "sha256": ("sha256",)}[alg]
        if not any(
            s["digest"].get(name) == digest
            for s in statement["subject"]
            for name in names
        ):
            raise ValueError(f"{subject} is not a subject")
    except Exception as e:  # noqa: BLE001 - any failure is a refusal
        print(f"refused: {type(e).__name__}: {e}")
        return 1
    print(json.dumps({"keyid": sorted(accepted)[0], "statement": statement}))
    return 0


def thumbprint(public: bytes) -> str:
    """RFC 7638: SHA-256 of the required JWK members, sorted, no spaces."""
    x = base64.urlsafe_b64encode(public).rstrip(b"=").decode()
    jwk = '{"crv":"Ed25519","kty":"OKP","x":"%s"}' % x
    digest = hashlib.sha256(jwk.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(payload_path: str) -> int:
    private_key = Ed25519PrivateKey.generate()
    public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    public_key = SSlibKey.from_crypto(private_key.public_key(), keyid=thumbprint(public))
    signer = CryptoSigner(private_key, public_key)
    with open(payload_path, "rb") as f:
        envelope = Envelope(f.read(), PAYLOAD_TYPE, {})
    envelope.sign(signer)
    print(json.dumps({"public": public.hex(), "envelope": envelope.to_dict()}))
    return 0


def main() -> int:
    command, *args = sys.argv[1:]
    if command == "verify":
        return verify(*args)
    if command == "sign":
        return sign(*args)
    print(f"unknown command {command}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
