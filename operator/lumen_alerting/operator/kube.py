"""A small asyncio Kubernetes API client on aiohttp: just the calls the operator makes.

aiohttp is kopf's own HTTP client; it costs a tenth of httpx's CPU per request (0.2 against
1.8 ms here), which was most of the operator's CPU per policy (issue 8 item 13).

Login works like kubectl's: the in-cluster service account when running in a pod, otherwise
``KUBECONFIG`` or ``~/.kube/config`` (the ``kubernetes`` package reads the file, including exec
plugins and token refresh). kopf logs in with the same ``ClusterAccess``.

The contract, which the tests' emulated API server (``tests/support/kube_api.py``) honours as a
real one does: every failure is an ``ApiError`` built from the server's ``Status`` object (or
status 0 when no answer came back); items of a list may come without ``apiVersion``/``kind``;
apply is an upsert; a delete with a stale uid precondition answers 409; a 429 or 503 may carry
``Retry-After``, which ends up in ``ApiError.retry_after``.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .kinds import ResourceKind

FIELD_MANAGER = "lumen-operator"
IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
# Statuses worth retrying: an expired token (the next call refreshes it), conflicts of
# optimistic concurrency, throttling and server trouble.
TRANSIENT_STATUSES = frozenset({401, 409, 429, 500, 502, 503, 504})
UNREACHABLE = 0  # ApiError.status when no HTTP answer came back
# How long a bearer token is used before the kubeconfig's refresh hook is asked again (a 401
# asks at once); asking on every request cost 3 % of the operator's CPU.
TOKEN_REUSE_SECONDS = 10.0


@dataclass
class ClusterAccess:
    """Where the API server is and how to prove who we are.

    Built by ``from_environment`` for real clusters, or by hand (tests: ``server`` only, plain
    http, no credentials). ``KubeClient`` and kopf's login (``handlers.connection_info``) read
    the same instance, so both talk to the same server as the same user.
    """

    server: str
    ca_path: str | None = None
    insecure: bool = False
    client_cert: str | None = None
    client_key: str | None = None
    default_namespace: str | None = None
    # The kubernetes package's configuration, kept for its token refresh hook (exec plugins,
    # rotated service-account tokens). None when the access was built by hand (tests).
    configuration: Any = field(default=None, repr=False)

    @classmethod
    def from_environment(cls, context: str | None = None) -> ClusterAccess:
        """In-cluster service account if we run in a pod, else the kubeconfig (like kubectl).

        ``context`` picks a kubeconfig context (None: the current one). Raises whatever the
        ``kubernetes`` package raises for a missing or broken kubeconfig (several unrelated
        types; ``lumen-operator`` catches ``Exception`` and exits 2).
        """
        from kubernetes import client, config  # imported lazily: only real logins need it

        configuration = client.Configuration()
        namespace = None
        if os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(IN_CLUSTER_TOKEN):
            config.load_incluster_config(client_configuration=configuration)
            namespace_file = os.path.join(os.path.dirname(IN_CLUSTER_TOKEN), "namespace")
            if os.path.exists(namespace_file):
                with open(namespace_file, encoding="utf-8") as handle:
                    namespace = handle.read().strip()
        else:
            config.load_kube_config(context=context, client_configuration=configuration)
        return cls(
            server=configuration.host,
            ca_path=configuration.ssl_ca_cert,
            insecure=not configuration.verify_ssl,
            client_cert=configuration.cert_file,
            client_key=configuration.key_file,
            default_namespace=namespace,
            configuration=configuration,
        )

    def bearer_token(self) -> str | None:
        """The current bearer token, refreshed first if it is about to expire."""
        configuration = self.configuration
        if configuration is None:
            return None
        if configuration.refresh_api_key_hook is not None:
            configuration.refresh_api_key_hook(configuration)
        value: str | None = configuration.api_key.get("authorization") or configuration.api_key.get(
            "BearerToken"
        )
        if not value:
            return None
        return value.split(" ", 1)[1] if value.lower().startswith("bearer ") else value

    def basic_auth(self) -> tuple[str, str] | None:
        """(user, password) when the kubeconfig uses basic auth, else None."""
        configuration = self.configuration
        if configuration is not None and configuration.username and configuration.password:
            return configuration.username, configuration.password
        return None


def _credentials(access: ClusterAccess) -> dict[str, str]:
    """The Authorization header for the current credentials (tokens rotate under a client)."""
    token = access.bearer_token()
    if token:
        return {"Authorization": f"Bearer {token}"}
    if basic := access.basic_auth():
        return {"Authorization": "Basic " + base64.b64encode(":".join(basic).encode()).decode()}
    return {}


def _tls(access: ClusterAccess) -> ssl.SSLContext | bool:
    """How to check the API server's certificate and present ours (https servers only)."""
    if access.insecure:
        return False
    context = ssl.create_default_context(cafile=access.ca_path)
    if access.client_cert:
        context.load_cert_chain(access.client_cert, access.client_key)
    return context


def connection_problem(error: BaseException) -> str | None:
    """Why no HTTP answer came back, in a few words (``connection refused``), or None when
    ``error`` is not a failure to reach the server. Log lines and messages say this rather
    than aiohttp's representation of the error."""
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return f"its TLS certificate is not trusted ({error.certificate_error})"
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return "its host name does not resolve"
    if isinstance(error, aiohttp.ClientOSError):
        # A failed connect carries the socket's error; a reset connection is one itself.
        code = (
            error.os_error.errno if isinstance(error, aiohttp.ClientConnectorError) else error.errno
        )
        if code == errno.ECONNREFUSED:
            return "connection refused"
        if code:
            return os.strerror(code).lower()  # "connection reset by peer", "no route to host"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(error, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
        return "no answer in time"
    if isinstance(error, aiohttp.ClientConnectionError):
        return str(error) or type(error).__name__
    return None


class ApiError(Exception):
    """A failed API call, with the server's Status reason and message.

    ``status`` is the HTTP status, or ``UNREACHABLE`` (0) when no answer came back (connection
    refused or reset, timeout); ``reason`` and ``message`` come from the ``Status`` body when
    the server sent one, else the HTTP phrase and the start of the body. Unreachable, the
    ``message`` is ``cannot reach the Kubernetes API at <server>`` and the ``reason`` why
    (``connection refused``, see ``connection_problem``); it reads ``<message>: <reason>``,
    as log lines say it (docs/operator.md, Logs). ``retry_after`` is the
    ``Retry-After`` header in seconds, if any. ``transient`` says whether retrying unchanged may
    help; ``Reconciler.reconcile`` turns transient errors into ``TransientFailure``.
    """

    def __init__(
        self, status: int, reason: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else f"{message}: {reason}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Worth retrying as is: the same call may succeed later without anyone changing it."""
        return self.status == UNREACHABLE or self.status in TRANSIENT_STATUSES


class KubeClient:
    """The operator's API calls. One instance shares its connections between reconciles.

    Each API method is a coroutine, makes one request and raises ``ApiError`` for any answer
    outside 2xx (and for no answer), except where its docstring names a status it absorbs.
    ``kind`` says where the object lives (``kinds.ResourceKind``); namespaces and names are
    passed as they are. The session is made on first use, on the running event loop, so an
    instance belongs to one loop (the operator makes it in kopf's startup handler);
    ``aclose`` ends it, and a later call opens a new one. Credentials are re-read every
    ``TOKEN_REUSE_SECONDS`` and on the call after a 401 (itself transient), so rotated tokens
    are picked up.

    Only ``Reconciler`` (list, get, create, apply, delete) and ``runs.PolicyRuns`` (patch_status,
    aclose) call it; a test double must keep the semantics stated on each method.
    """

    def __init__(
        self, access: ClusterAccess, *, timeout: float = 30.0, max_connections: int = 10
    ) -> None:
        self._access = access
        self._server = access.server.rstrip("/")
        self._tls = _tls(access) if self._server.startswith("https:") else False
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None  # made on first use, on its loop
        self._auth: dict[str, str] = {}
        self._auth_until = 0.0

    async def aclose(self) -> None:
        """Close the connections; the client stays usable (the next call reconnects)."""
        if self._session is not None:
            await self._session.close()
            self._session = None  # a later call opens a new one

    async def list(
        self, kind: ResourceKind, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        """Objects of ``kind`` in ``namespace`` matching the label selector.

        ``label_selector`` is in the API's syntax (``lumen.dev/policy=checkout``). Every item
        is returned with ``apiVersion`` and ``kind`` set (the API server leaves them out of
        list items of built-in kinds). A kind whose CRD is not installed raises
        ``ApiError`` 404.
        """
        body = await self._call(
            "GET", kind.path(namespace), params={"labelSelector": label_selector}
        )
        # Items of built-in lists come without apiVersion and kind; complete them as kubectl does.
        identity = {"apiVersion": kind.api_version, "kind": kind.kind}
        return [{**item, **identity} for item in body.get("items") or []]

    async def get(self, kind: ResourceKind, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None if it does not exist (404); other failures raise ``ApiError``."""
        try:
            return await self._call("GET", kind.path(namespace, name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def create(self, kind: ResourceKind, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create ``manifest`` in its ``metadata.namespace``; the answer is the object as stored.

        Raises ``ApiError`` 409 (AlreadyExists) when the name is taken: the reconciler relies
        on it to create the threader's token Secret exactly once across replicas.
        """
        namespace = manifest["metadata"]["namespace"]
        return await self._call("POST", kind.path(namespace), json_body=manifest)

    async def apply(self, kind: ResourceKind, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply as ``lumen-operator``, taking over conflicting fields.

        ``manifest`` is a complete object with ``metadata.namespace`` and ``metadata.name``;
        the API server creates it if absent (apply is an upsert), and with ``force`` fields
        owned by other managers become ours instead of answering 409. Fields this manager
        applied before and ``manifest`` no longer has are removed. The answer is the object as
        stored. Rejected objects raise ``ApiError`` (422 Invalid, 404 for a missing CRD).
        """
        meta = manifest["metadata"]
        return await self._call(
            "PATCH",
            kind.path(meta["namespace"], meta["name"]),
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            content=json.dumps(manifest, separators=(",", ":")),  # JSON is YAML
            content_type="application/apply-patch+yaml",
        )

    async def patch_status(
        self, kind: ResourceKind, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch the ``status`` subresource; the answer is the object as stored.

        ``status`` holds only the keys to change (a key set to None is removed, as JSON merge
        patch does). ``PolicyRuns`` remembers the stored ``status`` of the answer, so a double must
        return the whole object after the patch. Raises ``ApiError`` 404 when the object is
        gone (``PolicyRuns`` then drops the write).
        """
        return await self._call(
            "PATCH",
            kind.path(namespace, name, "status"),
            json_body={"status": status},
            content_type="application/merge-patch+json",
        )

    async def delete(self, kind: ResourceKind, namespace: str, name: str, uid: str) -> bool:
        """Delete the object if it is still the one we saw (same uid); False if already gone.

        The uid goes as a ``preconditions`` of the DeleteOptions: an object deleted and made
        again under the same name (by someone else) is left alone. True when the API server
        accepted the delete (the object may still be terminating on its finalizers); False for
        404 (gone already) and 409 (the uid no longer matches). Other failures raise.
        """
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
        try:
            await self._call("DELETE", kind.path(namespace, name), json_body=body)
        except ApiError as error:
            # 404: gone already. 409: replaced by a newer object that is not ours to delete.
            if error.status in (404, 409):
                return False
            raise
        return True

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        content: str | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":"))
        headers = {**self._authorization(), "Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = content_type
        try:
            async with self._connection().request(
                method, self._server + path, params=params, data=content, headers=headers
            ) as response:
                payload = await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            why = connection_problem(error) or str(error) or type(error).__name__
            raise ApiError(
                UNREACHABLE, why, f"cannot reach the Kubernetes API at {self._server}"
            ) from error
        if 200 <= response.status < 300:
            return json.loads(payload) if payload else {}
        if response.status == 401:
            self._auth_until = 0.0  # expired: read the credentials afresh next time
        raise _api_error(response.status, response.reason or "", response.headers, payload)

    def _connection(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # Requests beyond the pool wait in the connector's queue.
                connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=self._tls),
                timeout=self._timeout,
                headers={"User-Agent": FIELD_MANAGER},
                trust_env=False,  # like kopf's own client: no proxy variables for the API server
            )
        return self._session

    def _authorization(self) -> dict[str, str]:
        now = time.monotonic()
        if now >= self._auth_until:
            self._auth = _credentials(self._access)
            self._auth_until = now + TOKEN_REUSE_SECONDS
        return self._auth


def _api_error(status: int, phrase: str, headers: Mapping[str, str], payload: bytes) -> ApiError:
    reason, message = phrase, payload[:500].decode("utf-8", errors="replace")
    try:
        answer = json.loads(payload)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and answer.get("kind") == "Status":
        reason = answer.get("reason") or reason
        message = answer.get("message") or message
    retry_after = None
    if "Retry-After" in headers:
        try:
            retry_after = float(headers["Retry-After"])
        except ValueError:
            retry_after = None
    return ApiError(status, reason, message, retry_after)
