"""A small Confluent Schema Registry client: resolve schema ids, register schemas.

It implements :class:`connector.serde.codec.SchemaResolver`. Look-ups are rare (once per schema
id, then cached) and may come from the consumer thread, so the client is synchronous
(``urllib.request``) and thread-safe. Only Avro schemas without references are supported.

REST calls used:

* ``GET /schemas/ids/{id}`` → ``{"schema": "<schema as a JSON string>", "schemaType"?: ...}``
* ``POST /subjects/{subject}/versions`` with ``{"schema": "<JSON string>"}`` → ``{"id": N}``
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from connector.config import Secret
from connector.errors import SerdeError

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryClient:
    """Schema Registry REST client with an id → schema cache.

    Args:
        url: base URL, ``http://`` or ``https://`` (e.g. ``http://127.0.0.1:8081``).
        timeout: seconds for each HTTP request.
        basic_auth: optional ``(user, secret)`` for HTTP Basic authentication.

    Raises:
        SerdeError: the URL is not http(s).
    """

    def __init__(
        self, url: str, timeout: float = 5.0, *, basic_auth: tuple[str, Secret] | None = None
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise SerdeError(
                f"schema registry URL must be http(s)://host[:port], got scheme {parsed.scheme!r}"
            )
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._auth = basic_auth
        self._lock = threading.Lock()
        self._cache: dict[int, dict[str, Any]] = {}
        self._missing: set[int] = set()

    def writer_schema(self, schema_id: int) -> dict[str, Any]:
        """The Avro schema registered under ``schema_id`` (cached, including misses).

        Raises:
            SerdeError: ``unknown schema id`` (not retriable) when the registry answers 404
                or has no such id; ``retriable=True`` when the registry cannot be reached or
                answers 5xx; not retriable for a non-Avro or unparseable schema.
        """
        with self._lock:
            found = self._cache.get(schema_id)
            if found is not None:
                return found
            if schema_id in self._missing:
                raise SerdeError(f"unknown schema id {schema_id}: not in the schema registry")
        try:
            body = self._request("GET", f"/schemas/ids/{schema_id}")
        except _HttpStatus as exc:
            if exc.status == 404:
                with self._lock:
                    self._missing.add(schema_id)
                raise SerdeError(f"unknown schema id {schema_id}: not in the schema registry") from None
            raise SerdeError(
                f"schema registry: GET schema id {schema_id} answered HTTP {exc.status}",
                retriable=exc.status >= 500 or exc.status == 429,
            ) from None
        schema_type = body.get("schemaType", "AVRO")
        if schema_type != "AVRO":
            raise SerdeError(f"incompatible schema: schema id {schema_id} is {schema_type}, not AVRO")
        if body.get("references"):
            raise SerdeError(f"incompatible schema: schema id {schema_id} uses references (unsupported)")
        try:
            parsed = json.loads(body["schema"])
        except (KeyError, TypeError, ValueError):
            raise SerdeError(
                f"incompatible schema: schema id {schema_id}: registry sent no valid schema"
            ) from None
        if not isinstance(parsed, dict):
            raise SerdeError(f"incompatible schema: schema id {schema_id} is not a record schema")
        with self._lock:
            self._cache[schema_id] = parsed
        return parsed

    def register(self, subject: str, schema: Mapping[str, Any]) -> int:
        """Register ``schema`` under ``subject`` (idempotent on the registry) and return its id.

        Raises:
            SerdeError: the registry refused it (e.g. 409 incompatible, 422 invalid; not
                retriable), or could not be reached / answered 5xx (retriable).
        """
        path = f"/subjects/{urllib.parse.quote(subject, safe='')}/versions"
        try:
            body = self._request("POST", path, {"schema": json.dumps(schema, separators=(",", ":"))})
        except _HttpStatus as exc:
            raise SerdeError(
                f"schema registry: registering subject {subject!r} answered HTTP {exc.status}: {exc.message}",
                retriable=exc.status >= 500 or exc.status == 429,
            ) from None
        schema_id = body.get("id")
        if not isinstance(schema_id, int):
            raise SerdeError(f"schema registry: registering subject {subject!r} returned no id")
        with self._lock:
            self._cache[schema_id] = dict(schema)
            self._missing.discard(schema_id)
        return schema_id

    def _request(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310 - scheme checked
        req.add_header("Accept", _CONTENT_TYPE)
        if data is not None:
            req.add_header("Content-Type", _CONTENT_TYPE)
        if self._auth is not None:
            user, secret = self._auth
            token = base64.b64encode(f"{user}:{secret.get()}".encode()).decode("ascii")
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - scheme checked
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise _HttpStatus(exc.code, _error_message(exc)) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SerdeError(
                f"schema registry unreachable: {method} {path}: {reason}", retriable=True
            ) from None
        try:
            body = json.loads(raw)
        except ValueError:
            raise SerdeError(
                f"schema registry: {method} {path}: response is not JSON", retriable=True
            ) from None
        if not isinstance(body, dict):
            raise SerdeError(f"schema registry: {method} {path}: response is not a JSON object")
        return body


class _HttpStatus(Exception):
    """Internal: the registry answered with an HTTP error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
    except (ValueError, OSError):
        return exc.reason if isinstance(exc.reason, str) else ""
    message = body.get("message", "") if isinstance(body, dict) else ""
    return str(message)[:200]
