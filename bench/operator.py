"""Operator convergence: policies created at once or over time -> seconds until all are Ready.

Run: ``make bench-operator`` (or ``.venv/bin/python bench/operator.py [--policies N]``);
``--scale`` runs the two cases of issue 8 item 13 one after the other, each against a fresh
emulator and operator: 200 policies created at once by 16 clients, then 1,000 created by 8
clients over 42 s; it prints the seconds from the last create until all are Ready and the
operator's CPU per policy of both (targets: within 20 s; 1,000 within 1.2x of 200).

The operator runs as its own process, exactly as deployed: the ``lumen-operator`` console script,
logging in through a kubeconfig that points at the emulated API server of the tests
(``tests/support/kube_api.py``, in this process). Every policy is the gateway example (9 children
and a token Secret). Prints the time until every policy is Ready, p50/p99 of create -> Ready per
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lumen_alerting.operator.kinds import POLICY  # noqa: E402
from tests.support.kube_api import ClusterEmulator  # noqa: E402
from tests.support.polling import free_port  # noqa: E402

GATEWAY: dict[str, Any] = yaml.safe_load((REPO / "examples" / "gateway.yaml").read_text())
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
        # Like an informer: each renewed watch resumes from the last resourceVersion seen. (A
        # watch without one starts with every policy again: with 1,000 policies renewed every
        # 5 s, that re-list cost this process more CPU than the API server it shares it with.)
        version: str | None = None
        with httpx.Client(base_url=self._server, timeout=None) as http:
            while not self._stop.is_set():
                params = {"watch": "true", "timeoutSeconds": "5", "allowWatchBookmarks": "true"}
                if version is not None:
                    params["resourceVersion"] = version
                with http.stream(
                    "GET", "/apis/lumen.dev/v1alpha1/lumenalertpolicies", params=params
                ) as stream:
                    for line in stream.iter_lines():
                        if not line:
                            continue
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":  # 410 Expired: start over
                            version = None
                            break
                        version = (obj.get("metadata") or {}).get("resourceVersion") or version
                        if event.get("type") != "BOOKMARK":
                            self._see(obj)

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
    policy["metadata"] = {"name": f"bench-{index:04d}", "namespace": f"team-{index % NAMESPACES}"}
    return policy


@dataclass(frozen=True)
class Round:
    """How the policies of one run are created."""

    policies: int
    clients: int
    spread: float  # seconds over which the creates are spread evenly (0: as fast as possible)
    drift_interval: float
    idle_seconds: float


@dataclass(frozen=True)
class Outcome:
    round: Round
    created: float  # seconds from the first create to the last one's answer
    after_last_create: float  # seconds from the last create's answer until all are Ready
    all_ready: float  # seconds from the first create until all are Ready
    p50: float
    p99: float
    operator_cpu: float  # seconds of CPU until all Ready
    bench_cpu: float  # this process: the emulated API server, the clients, the watch
    idle: float  # share of one core
    rss: float
    requests: int
    shutdown: float

    @property
    def cpu_ms_per_policy(self) -> float:
        return self.operator_cpu * 1000 / self.round.policies


def run_round(spec: Round) -> Outcome | None:
    with ClusterEmulator() as cluster, tempfile.TemporaryDirectory() as tmp:
        liveness = free_port()
        env = {**os.environ, "KUBECONFIG": kubeconfig(cluster.url, tmp)}
        operator = subprocess.Popen(
            [
                str(REPO / ".venv" / "bin" / "lumen-operator"),
                "--standalone",
                "--metrics-port=0",
                f"--liveness-port={liveness}",
                f"--drift-interval={spec.drift_interval}",
                "--log-level=warning",
            ],
            env=env,
        )
        try:
            wait_until_live(liveness, operator)
            watch = ReadyWatch(cluster.url)
            time.sleep(0.5)  # let the watch connect
            created_at: dict[str, float] = {}
            answered: list[float] = []
            clients = threading.local()
            start = time.monotonic()
            bench_cpu_before = time.process_time()

            def create(index: int) -> None:
                body = manifest(index)
                key = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
                if not hasattr(clients, "http"):  # one connection per client thread, like kubectl
                    clients.http = httpx.Client(base_url=cluster.url, timeout=30)
                due = start + spec.spread * index / spec.policies
                time.sleep(max(0.0, due - time.monotonic()))
                before = time.monotonic()
                response = clients.http.post(POLICY.path(body["metadata"]["namespace"]), json=body)
                response.raise_for_status()
                created_at[key] = before
                answered.append(time.monotonic())

            with ThreadPoolExecutor(max_workers=spec.clients) as pool:
                list(pool.map(create, range(spec.policies)))
            last_create = max(answered)
            deadline = last_create + 120
            while len(watch.ready_at) < spec.policies and time.monotonic() < deadline:
                time.sleep(0.05)
            watch.stop()
            if len(watch.ready_at) < spec.policies:
                ready = len(watch.ready_at)
                print(f"only {ready} of {spec.policies} Ready 120 s after the last create")
                return None
            done = max(watch.ready_at.values())
            busy_cpu = cpu_seconds(operator.pid)
            bench_cpu = time.process_time() - bench_cpu_before
            latencies = sorted(watch.ready_at[key] - created_at[key] for key in created_at)

            time.sleep(5)  # let the last status patches and events settle
            cpu_before, wall_before = cpu_seconds(operator.pid), time.monotonic()
            time.sleep(spec.idle_seconds)
            idle = (cpu_seconds(operator.pid) - cpu_before) / (time.monotonic() - wall_before)
            rss = rss_mib(operator.pid)
            requests = len(cluster.calls())
        finally:
            operator.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            operator.wait(30)
            shutdown = time.monotonic() - stopped
    return Outcome(
        round=spec,
        created=last_create - start,
        after_last_create=max(0.0, done - last_create),
        all_ready=done - start,
        p50=statistics.median(latencies),
        p99=latencies[max(0, round(0.99 * len(latencies)) - 1)],
        operator_cpu=busy_cpu,
        bench_cpu=bench_cpu,
        idle=idle,
        rss=rss,
        requests=requests,
        shutdown=shutdown,
    )


def report(outcome: Outcome) -> None:
    spec = outcome.round
    how = f"over {spec.spread:.0f} s" if spec.spread else "at once"
    print(f"policies:                {spec.policies} in {NAMESPACES} namespaces, "
          f"created {how} by {spec.clients} clients in {outcome.created:.2f} s")  # fmt: skip
    print(f"all Ready after:         {outcome.all_ready:.2f} s from the first create, "
          f"{outcome.after_last_create:.2f} s after the last")  # fmt: skip
    print(f"create -> Ready p50:     {outcome.p50:.2f} s")
    print(f"create -> Ready p99:     {outcome.p99:.2f} s")
    print(f"CPU until all Ready:     operator {outcome.operator_cpu:.1f} s "
          f"({outcome.cpu_ms_per_policy:.1f} ms per policy), bench process (API server, "
          f"clients) {outcome.bench_cpu:.1f} s")  # fmt: skip
    print(f"operator idle CPU:       {outcome.idle * 100:.2f} % of one core over "
          f"{spec.idle_seconds:.0f} s with --drift-interval {spec.drift_interval:.0f}")  # fmt: skip
    print(f"operator RSS:            {outcome.rss:.0f} MiB")
    print(f"API requests (all):      {outcome.requests}")
    print(f"operator shutdown:       {outcome.shutdown:.2f} s after SIGTERM")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16, help="concurrent creating clients")
    parser.add_argument(
        "--spread", type=float, default=0.0, help="seconds to spread the creates over (0: burst)"
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="run 200 at once, then 1,000 by 8 clients over 42 s, and compare (issue 8 item 13)",
    )
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument(
        "--drift-interval",
        type=float,
        default=300.0,
        help="the operator's --drift-interval; short values put resync load into the idle window",
    )
    args = parser.parse_args()

    if args.scale:
        small = run_round(Round(200, 16, 0.0, args.drift_interval, args.idle_seconds))
        if small is None:
            return 1
        report(small)
        print(flush=True)
        large = run_round(Round(1000, 8, 42.0, args.drift_interval, args.idle_seconds))
        if large is None:
            return 1
        report(large)
        ratio = large.cpu_ms_per_policy / small.cpu_ms_per_policy
        print()
        print(f"1,000 all Ready {large.after_last_create:.2f} s after the last create "
              "(target <= 20 s)")  # fmt: skip
        print(f"CPU per policy: {small.cpu_ms_per_policy:.1f} ms at 200, "
              f"{large.cpu_ms_per_policy:.1f} ms at 1,000: "
              f"{ratio:.2f}x (target <= 1.2x)")  # fmt: skip
        ok = large.after_last_create <= 20 and ratio <= 1.2
        print("targets met" if ok else "TARGETS MISSED")
        return 0 if ok else 1

    outcome = run_round(
        Round(args.policies, args.clients, args.spread, args.drift_interval, args.idle_seconds)
    )
    if outcome is None:
        return 1
    report(outcome)
    # Targets of issue 3; the idle one is for the default interval (shorter ones measure the
    # cost of resyncs).
    ok = (
        outcome.all_ready <= 30
        and outcome.p99 < 5
        and (outcome.idle < 0.02 or args.drift_interval < 300)
    )
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
