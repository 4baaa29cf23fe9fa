"""``POST /pipeline/runs`` and ``POST /suppression``: CI's way into the pipeline state.

Both need ``Authorization: Bearer <token>`` (compared in constant time, header bytes that are
not UTF-8 included; 401 with ``WWW-Authenticate: Bearer`` otherwise). Routes built without a
token answer 403 on both, never taking unauthenticated writes; the real process never gets
there: ``pipeline.enabled`` without ``--pipeline-token-file`` does not start, and without
``pipeline.enabled`` the routes do not exist (404). A body over ``MAX_BODY`` bytes gets 413, one
not received within ``BODY_TIMEOUT`` 408, one that is not JSON 400, one that does not fit the
schema 422; each error body lists the problems as ``path: reason`` and changes nothing. A state
that cannot be saved gives 503 (and nothing changed either). Saving (two fsyncs) runs in a
thread, one write at a time, so scrapes are never held up by it. The token is never logged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ..service_http import bearer_matches, json_error
from .pipeline import (
    PipelineRun,
    PipelineStore,
    RunRejected,
    Suppression,
    parse_json,
    parse_problems,
)

log = logging.getLogger("lumen.exporter.pipeline")

M = TypeVar("M", bound=BaseModel)

MAX_BODY = 64 * 1024  # a run of MAX_STAGES_PER_RUN stages is under 8 KiB
BODY_TIMEOUT = 10.0  # seconds to receive the body


def pipeline_routes(store: PipelineStore, token: str | None) -> list[web.RouteDef]:
    """The two routes over ``store``; ``token`` None (no ``--pipeline-token-file``): 403."""
    endpoints = _Endpoints(store, token or None)
    return [
        web.post("/pipeline/runs", endpoints.runs),
        web.post("/suppression", endpoints.suppression),
    ]


class _Endpoints:
    def __init__(self, store: PipelineStore, token: str | None) -> None:
        self._store = store
        self._token = token
        # A write fsyncs twice: it runs in a thread, so the loop keeps serving scrapes, and one
        # at a time, so requests queue here rather than on the store's lock in the thread pool.
        self._writes = asyncio.Lock()

    async def runs(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        parsed = await _parse(request, PipelineRun)
        if isinstance(parsed, web.Response):
            return parsed
        try:
            async with self._writes:
                outcome = await asyncio.to_thread(self._store.apply_run, parsed)
        except RunRejected as rejected:
            return json_error(422, "run not accepted", problems=[str(rejected)])
        except OSError as error:
            log.warning("Pipeline run not saved: %s", error)
            return json_error(503, "state not saved; retry later", headers={"Retry-After": "5"})
        if not outcome.duplicate:
            log.info(
                "Pipeline run %s: %s (%d stages%s)",
                parsed.run_id or "(no id)",
                outcome.result,
                len(parsed.stages),
                "" if outcome.current else ", older than the last run: counted only",
            )
        return web.json_response(
            {
                "ok": True,
                "result": outcome.result,
                "stages": len(parsed.stages),
                "duplicate": outcome.duplicate,
                "current": outcome.current,
            }
        )

    async def suppression(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        parsed = await _parse(request, Suppression)
        if isinstance(parsed, web.Response):
            return parsed
        try:
            async with self._writes:
                await asyncio.to_thread(self._store.set_suppressed, parsed.suppressed)
        except OSError as error:
            log.warning("Suppression not saved: %s", error)
            return json_error(503, "state not saved; retry later", headers={"Retry-After": "5"})
        log.warning("Alert suppression %s", "on" if parsed.suppressed else "off")
        return web.json_response({"ok": True, "suppressed": parsed.suppressed})

    def _refusal(self, request: web.Request) -> web.Response | None:
        if self._token is None:
            return json_error(
                403, "pipeline endpoints are off: the exporter has no --pipeline-token-file"
            )
        if not bearer_matches(request, self._token):
            return json_error(
                401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        return None


async def _parse(request: web.Request, model: type[M]) -> M | web.Response:
    """The body as ``model``, or the 4xx answer that says what is wrong with it."""
    body = await _read_body(request)
    if isinstance(body, web.Response):
        return body
    try:
        data = parse_json(body)
    except ValueError as error:
        return json_error(400, "body is not JSON", problems=[f"body: {error}"])
    try:
        return model.model_validate(data)
    except ValidationError as invalid:
        return json_error(422, "invalid body", problems=parse_problems(invalid))


async def _read_body(request: web.Request) -> bytes | web.Response:
    """At most MAX_BODY bytes, read within BODY_TIMEOUT, whatever the app's client_max_size."""
    too_large = json_error(413, f"body larger than {MAX_BODY} bytes")
    if request.content_length is not None and request.content_length > MAX_BODY:
        return too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            while chunk := await request.content.read(MAX_BODY + 1 - size):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BODY:
                    too_large.force_close()  # the rest is not worth reading
                    return too_large
    except TimeoutError:
        response = json_error(408, f"body not received within {BODY_TIMEOUT:g} seconds")
        response.force_close()
        return response
    return b"".join(chunks)
