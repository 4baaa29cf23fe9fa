"""Operator convergence: 200 policies created at once -> seconds until all are Ready.

Run: ``make bench-operator`` (or ``.venv/bin/python bench/operator.py [--policies N]``).

The operator runs as its own process, exactly as deployed: the ``lumen-operator`` console script,
logging in through a kubeconfig that points at the emulated API server of the tests
(``tests/kube_api.py``, in this process). Every policy is the gateway example (9 children and
a token Secret). Prints the time until every policy is Ready, p50/p99 of create -> Ready per
policy, and the operator's CPU while idle afterwards. Targets (issue 3): all Ready within 30 s,
p99 under 5 s, idle CPU under 2 %.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lumen_alerting.operator.kinds import POLICY  # noqa: E402
from tests.kube_api import ClusterEmulator  # noqa: E402
from tests.polling import free_port  # noqa: E402

GATEWAY = yaml.safe_load((REPO / "examples" / "gateway.yaml").read_text())
NAMESPACES = 10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def kubeconfig(server: str, directory: str) -> str:
    path = os.path.join(directory, "kubeconfig")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "bench", "user": {"token": "bench"}}],
        "contexts": [{"name": "bench", "context": {"cluster": "emulator", "user": "bench"}}],
        "current-context": "bench",
    }
    Path(path).write_text(yaml.safe_dump(config))
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class ReadyWatch:
    """Watches policies and notes when each first shows Ready=True for generation 1."""

    def __init__(self, server: str) -> None:
        self.ready_at: dict[str, float] = {}
        self._server = server
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self._server, timeout=None) as http:
            while not self._stop.is_set():
                params = {"watch": "true", "timeoutSeconds": "5"}
                with http.stream(
                    "GET", "/apis/lumen.dev/v1alpha1/lumenalertpolicies", params=params
                ) as stream:
                    for line in stream.iter_lines():
                        if line:
                            self._see(json.loads(line).get("object") or {})

    def _see(self, obj: dict[str, Any]) -> None:
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if ready and status.get("observedGeneration") == 1 and key not in self.ready_at:
            self.ready_at[key] = time.monotonic()

    def stop(self) -> None:
        self._stop.set()


def manifest(index: int) -> dict[str, Any]:
    policy = copy.deepcopy(GATEWAY)
    policy["metadata"] = {"name": f"bench-{index:03d}", "namespace": f"team-{index % NAMESPACES}"}
    return policy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument(
        "--drift-interval",
        type=float,
        default=300.0,
        help="the operator's --drift-interval; short values put resync load into the idle window",
    )
    args = parser.parse_args()

    with ClusterEmulator() as cluster, tempfile.TemporaryDirectory() as tmp:
        liveness = free_port()
        env = {**os.environ, "KUBECONFIG": kubeconfig(cluster.url, tmp)}
        operator = subprocess.Popen(
            [
                str(REPO / ".venv" / "bin" / "lumen-operator"),
                "--standalone",
                "--metrics-port=0",
                f"--liveness-port={liveness}",
                f"--drift-interval={args.drift_interval}",
                "--log-level=warning",
            ],
            env=env,
        )
        try:
            wait_until_live(liveness, operator)
            watch = ReadyWatch(cluster.url)
            time.sleep(0.5)  # let the watch connect
            created_at: dict[str, float] = {}
            clients = threading.local()

            def create(index: int) -> None:
                body = manifest(index)
                key = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
                if not hasattr(clients, "http"):  # one connection per client thread, like kubectl
                    clients.http = httpx.Client(base_url=cluster.url, timeout=30)
                before = time.monotonic()
                response = clients.http.post(POLICY.path(body["metadata"]["namespace"]), json=body)
                response.raise_for_status()
                created_at[key] = before

            start = time.monotonic()
            with ThreadPoolExecutor(max_workers=16) as pool:
                list(pool.map(create, range(args.policies)))
            created = time.monotonic() - start
            deadline = start + 120
            while len(watch.ready_at) < args.policies and time.monotonic() < deadline:
                time.sleep(0.05)
            watch.stop()
            if len(watch.ready_at) < args.policies:
                print(f"only {len(watch.ready_at)} of {args.policies} Ready after 120 s")
                return 1
            all_ready = max(watch.ready_at.values()) - start
            busy_cpu = cpu_seconds(operator.pid)
            emulator_cpu = time.process_time()
            latencies = sorted(watch.ready_at[key] - created_at[key] for key in created_at)
            p50 = statistics.median(latencies)
            p99 = latencies[max(0, round(0.99 * len(latencies)) - 1)]

            time.sleep(5)  # let the last status patches and events settle
            cpu_before, wall_before = cpu_seconds(operator.pid), time.monotonic()
            time.sleep(args.idle_seconds)
            idle = (cpu_seconds(operator.pid) - cpu_before) / (time.monotonic() - wall_before)
            rss = rss_mib(operator.pid)
            objects = sum(1 for _ in cluster.calls())
        finally:
            operator.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            operator.wait(30)
            shutdown = time.monotonic() - stopped

    print(f"policies:                {args.policies} in {NAMESPACES} namespaces")
    print(f"created in:              {created:.2f} s (16 concurrent clients)")
    print(f"all Ready after:         {all_ready:.2f} s   (target <= 30 s)")
    print(f"create -> Ready p50:     {p50:.2f} s")
    print(f"create -> Ready p99:     {p99:.2f} s   (target < 5 s)")
    print(f"CPU until all Ready:     operator {busy_cpu:.1f} s, "
          f"bench process (API server, clients) {emulator_cpu:.1f} s")  # fmt: skip
    print(f"operator idle CPU:       {idle * 100:.2f} % of one core over {args.idle_seconds:.0f} s"
          f" with --drift-interval {args.drift_interval:.0f}   (target < 2 %)")  # fmt: skip
    print(f"operator RSS:            {rss:.0f} MiB")
    print(f"API requests (all):      {objects}")
    print(f"operator shutdown:       {shutdown:.2f} s after SIGTERM")
    # The idle target is for the default interval; shorter ones measure the cost of resyncs.
    ok = all_ready <= 30 and p99 < 5 and (idle < 0.02 or args.drift_interval < 300)
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


def wait_until_live(port: int, operator: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if operator.poll() is not None:
            raise SystemExit(f"lumen-operator exited with {operator.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("lumen-operator did not become live within 30 s")


if __name__ == "__main__":
    sys.exit(main())
