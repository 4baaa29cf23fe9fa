"""Run the real operator (kopf + engine) in a thread against the emulated API server, and act
on the cluster the way a user with kubectl would."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import httpx

from lumen_alerting.operator.config import OperatorConfig
from lumen_alerting.operator.kinds import POLICY, RENDERED_KINDS, SECRET, ResourceKind
from lumen_alerting.operator.kube import ClusterAccess
from lumen_alerting.operator.metrics import OperatorMetrics
from lumen_alerting.operator.runtime import run_operator
from lumen_alerting.render.objects import POLICY_LABEL

TEST_CONFIG = OperatorConfig(standalone=True, metrics_port=0, liveness_port=0)


class LogRecorder(logging.Handler):
    """Collects warnings and errors of kopf and the operator while a test runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def errors(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= logging.ERROR]


class OperatorThread:
    """``lumen-operator`` in its own thread and event loop, as the console script runs it."""

    def __init__(self, server: str, config: OperatorConfig = TEST_CONFIG) -> None:
        self.config = config
        self.metrics = OperatorMetrics()
        self._access = ClusterAccess(server=server)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="lumen-operator", daemon=True)
        self.failure: BaseException | None = None

    def _main(self) -> None:
        try:
            asyncio.run(
                run_operator(
                    self.config,
                    self._access,
                    self.metrics,
                    stop_flag=self._stop,
                    ready_flag=self._ready,
                )
            )
        except BaseException as error:  # surfaced by stop()
            self.failure = error

    def start(self) -> OperatorThread:
        self._thread.start()
        if not self._ready.wait(15):
            raise AssertionError(f"operator not ready within 15 s: {self.failure!r}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(20)
        assert not self._thread.is_alive(), "operator did not stop within 20 s"
        if self.failure is not None:
            raise AssertionError("operator crashed") from self.failure


@contextmanager
def running_operator(server: str, **settings: Any) -> Iterator[OperatorThread]:
    operator = OperatorThread(server, replace(TEST_CONFIG, **settings)).start()
    try:
        yield operator
    finally:
        operator.stop()


class Kubectl:
    """Synchronous API calls as a user makes them, against the emulated server."""

    def __init__(self, server: str) -> None:
        self.http = httpx.Client(base_url=server, timeout=10)

    def close(self) -> None:
        self.http.close()

    def create(self, kind: ResourceKind, manifest: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(kind.path(manifest["metadata"]["namespace"]), json=manifest)
        assert response.status_code == 201 or response.is_success, response.text
        created: dict[str, Any] = response.json()
        return created

    def create_namespace(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        response = self.http.post("/api/v1/namespaces", json=body)
        assert response.is_success, response.text

    def get(self, kind: ResourceKind, namespace: str, name: str) -> dict[str, Any] | None:
        response = self.http.get(kind.path(namespace, name))
        if response.status_code == 404:
            return None
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    def list(
        self, kind: ResourceKind, namespace: str, selector: str | None = None
    ) -> list[dict[str, Any]]:
        params = {"labelSelector": selector} if selector else None
        response = self.http.get(kind.path(namespace), params=params)
        response.raise_for_status()
        # Like kubectl: items of built-in lists carry no apiVersion/kind of their own.
        identity = {"apiVersion": kind.api_version, "kind": kind.kind}
        return [{**item, **identity} for item in response.json()["items"]]

    def merge_patch(
        self, kind: ResourceKind, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        response = self.http.patch(
            kind.path(namespace, name),
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert response.is_success, response.text
        patched: dict[str, Any] = response.json()
        return patched

    def delete(self, kind: ResourceKind, namespace: str, name: str) -> None:
        response = self.http.delete(kind.path(namespace, name))
        assert response.is_success, response.text

    def policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(POLICY, namespace, name)

    def children(self, namespace: str, policy: str) -> dict[tuple[str, str], dict[str, Any]]:
        """Every object labelled as the policy's child, Secrets included, by (kind, name)."""
        found = {}
        for kind in (*RENDERED_KINDS, SECRET):
            for obj in self.list(kind, namespace, f"{POLICY_LABEL}={policy}"):
                found[(kind.kind, obj["metadata"]["name"])] = obj
        return found


def kopf_done(policy: dict[str, Any]) -> bool:
    """kopf has finished handling the policy's current spec: its copy of the spec is the spec
    and no handler is in progress. The operator writes its status before kopf writes this, so
    a test that compares whole objects waits for both."""
    kopf = (policy.get("status") or {}).get("kopf") or {}
    handled = kopf.get("lastHandledConfiguration")
    return (
        handled is not None
        and json.loads(handled).get("spec") == policy.get("spec")
        and not kopf.get("progress")
    )


def condition(policy: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    item: dict[str, Any]
    for item in ((policy or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return item
    return {}
