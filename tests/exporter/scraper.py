"""Scrape a ``/metrics`` back to back from a process of its own, until a counter has gone up by
some amount; print every scrape's latency (seconds) as a JSON list.

``python -m tests.exporter.scraper URL SERIES STEPS``: ``SERIES`` is a sample as the text
format writes it (``name{labels}``); the scrapes timed start once it exists and end when it has
gone up by ``STEPS``. A process of its own, so that the scrapes measure only the exporter: a
client in the exporter's process would share its interpreter lock, and be held up (or not) with
it.
"""

from __future__ import annotations

import json
import sys
import time

import httpx

DEADLINE = 90.0  # seconds, then give up: the caller's assertions say what went wrong


def counter(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def main(url: str, series: str, steps: int) -> int:
    deadline = time.monotonic() + DEADLINE
    latencies: list[float] = []
    start: float | None = None
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            began = time.perf_counter()
            answer = client.get(url)
            took = time.perf_counter() - began
            if answer.status_code != 200:
                print(f"scrape answered {answer.status_code}", file=sys.stderr)
                return 1
            value = counter(answer.text, series)
            if value is None:
                continue  # not counted yet: the timed scrapes start at the first count
            if start is None:
                start = value
                continue
            latencies.append(took)
            if value >= start + steps:
                print(json.dumps(latencies))
                return 0
    print(f"{series} did not go up by {steps} within {DEADLINE} s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
