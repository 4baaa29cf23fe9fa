"""Requests a client library would refuse to send: header values as raw bytes."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit


def post_with_raw_header(url: str, name: str, value: bytes, body: bytes = b"{}") -> int:
    """POST ``body`` to ``url`` with header ``name: value`` sent byte for byte; the status."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.putrequest("POST", parts.path or "/")
        connection.putheader(name, value)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()
