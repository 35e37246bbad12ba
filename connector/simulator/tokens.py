"""Access tokens: opaque ones for ``v2``, HS256 JWTs carrying ``tenantId`` for ``call-lists``.

Pure: only the standard library (hmac, base64, json, secrets).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any


def opaque_token() -> str:
    """A random bearer token, as the v2 token endpoint hands out."""
    return secrets.token_urlsafe(32)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_jwt(claims: dict[str, Any], key: bytes) -> str:
    """A compact HS256 JWT (header.payload.signature) of ``claims``."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = _b64url(hmac.new(key, signing_input, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def decode_jwt(token: str, key: bytes) -> dict[str, Any]:
    """Verify an HS256 JWT's signature and return its claims (expiry is not checked here).

    Raises:
        ValueError: the token is not a 3-part JWT, is not HS256, or its signature is wrong.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT (expected 3 dot-separated parts)")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise ValueError("JWT parts are not base64url JSON") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
        raise ValueError("unsupported JWT header or claims")
    expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise ValueError("bad JWT signature")
    return claims


def mask_token(token: str) -> str:
    """A loggable hint of a token: never more than its last four characters."""
    return f"…{token[-4:]}" if len(token) > 8 else "…"
