#!/usr/bin/env python3
"""Put the pinned upstream prometheus-operator CRDs (v0.93.0) into a cache directory.

Copies them from a local folder (normally ../shared/upstream-crds) when it exists, otherwise
downloads them from the v0.93.0 tag. In both cases every file's sha256 is checked against the
values recorded in shared/upstream-crds/SOURCE.md; any mismatch is a hard failure.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

TAG = "v0.93.0"
URL = (
    "https://raw.githubusercontent.com/prometheus-operator/prometheus-operator/"
    f"{TAG}/example/prometheus-operator-crd/{{name}}"
)
PINNED = {
    "monitoring.coreos.com_prometheusrules.yaml": (
        "78be98554b9c8506ab2b4f4feb91c5f3a56e536a0a510f3a8e876a459970d56d"
    ),
    "monitoring.coreos.com_alertmanagerconfigs.yaml": (
        "fed47c462483a47a4d1912bf8a7a3767618644cfdee86dc73d7624c55d6a8b9d"
    ),
    "monitoring.coreos.com_servicemonitors.yaml": (
        "a99047972c9dd7679ce2050b9968e8a08773492e671b3e17abd476d42aa78a32"
    ),
    "monitoring.coreos.com_podmonitors.yaml": (
        "45a93443daa687d3654f7e9631909ff7edcdf3ec09c5e60251b74aa2722aee5d"
    ),
    "monitoring.coreos.com_prometheuses.yaml": (
        "c0eed4b2c38a58e3a5be7e2f5846df067804c694b0c9316b35029ab68fa183a4"
    ),
    "monitoring.coreos.com_alertmanagers.yaml": (
        "0e8eccd22699818c93f619c8fe2d92dbbd783a7e9232827a886dedeac1fb5dc1"
    ),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(name: str, source: Path | None) -> bytes:
    if source is not None:
        return (source / name).read_bytes()
    url = URL.format(name=name)
    with urllib.request.urlopen(url, timeout=60) as resp:
        return resp.read()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dest", required=True, type=Path)
    parser.add_argument("--source", type=Path, help="local folder with the upstream CRD files")
    args = parser.parse_args()

    source = args.source if args.source is not None and args.source.is_dir() else None
    args.dest.mkdir(parents=True, exist_ok=True)
    where = str(source) if source else f"upstream tag {TAG}"
    failures = []
    for name, want in PINNED.items():
        target = args.dest / name
        if target.is_file() and sha256(target.read_bytes()) == want:
            continue
        data = fetch(name, source)
        got = sha256(data)
        if got != want:
            failures.append(f"{name}: sha256 {got} != pinned {want} (from {where})")
            continue
        fd, tmp = tempfile.mkstemp(dir=args.dest, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        print(f"fetched {name} from {where}")
    if failures:
        for line in failures:
            print(f"ERROR: {line}", file=sys.stderr)
        print("ERROR: upstream CRD checksum mismatch; refusing to continue", file=sys.stderr)
        return 1
    print(f"{len(PINNED)} upstream CRDs verified in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
