"""Helpers shared by several integration test modules (imported by name: pytest puts this
folder on ``sys.path``)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from confluent_kafka import Consumer

from connector.core.models import Batch, ContactEvent, SourceRef, batch_id_for


def consume_n(bootstrap: str, topic: str, n: int, timeout: float = 30.0, *, catch_extra: bool = False) -> list[Any]:
    """Read ``n`` records of ``topic`` from the start with a fresh group (fewer on timeout).

    With ``catch_extra``, wait a moment more and return whatever arrives beyond ``n`` too, so
    a test can assert that nothing was written twice.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": "false"})
    consumer.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=max(1, n - len(out)), timeout=0.5):
                assert msg.error() is None, msg.error()
                out.append(msg)
        if catch_extra:
            out.extend(m for m in consumer.consume(num_messages=10, timeout=0.5) if m.error() is None)
    finally:
        consumer.close()
    return out


def simple_batch(first: int, count: int) -> Batch:
    """A batch of ``count`` minimal contacts ``c<first>..``, numbers ``+1415555<i>``."""
    contacts = [
        ContactEvent.of(SourceRef("crm", 0, i), None, b"", [], 0, f"e{i}", f"c{i}", f"+1415555{i:04d}", True,
                        "Ann", None, None, {}, 1_700_000_000_000, "crm")
        for i in range(first, first + count)
    ]
    covered = [c.source for c in contacts]
    return Batch(batch_id_for(covered), contacts, covered, "size", time.monotonic())


class FakeRegistry:
    """The two Schema Registry endpoints the connector uses, over real HTTP."""

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.by_text: dict[str, int] = {}
        self.subjects: dict[str, list[int]] = {}
        self.gets: list[int] = []
        self.auth_headers: list[str | None] = []
        self.fail_ids: set[int] = set()  # ids answered with HTTP ``fail_status``
        self.fail_status = 500
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                registry.auth_headers.append(self.headers.get("Authorization"))
                parts = self.path.strip("/").split("/")
                if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
                    sid = int(parts[2])
                    registry.gets.append(sid)
                    if sid in registry.fail_ids:
                        self._send(registry.fail_status, {"error_code": 50001, "message": "boom"})
                    elif sid in registry.schemas:
                        self._send(200, {"schema": registry.schemas[sid]})
                    else:
                        self._send(404, {"error_code": 40403, "message": "Schema not found"})
                else:
                    self._send(404, {"error_code": 404, "message": "no such path"})

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                parts = self.path.strip("/").split("/")
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                if len(parts) != 3 or parts[0] != "subjects" or parts[2] != "versions":
                    self._send(404, {"error_code": 404, "message": "no such path"})
                    return
                try:
                    text = json.dumps(json.loads(body["schema"]), sort_keys=True)
                except (KeyError, ValueError):
                    self._send(422, {"error_code": 42201, "message": "Invalid schema"})
                    return
                sid = registry.by_text.get(text)
                if sid is None:
                    sid = len(registry.schemas) + 100
                    registry.schemas[sid] = body["schema"]
                    registry.by_text[text] = sid
                registry.subjects.setdefault(parts[1], []).append(sid)
                self._send(200, {"id": sid})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)
