"""Print the part of ``operator/requirements.lock`` the container image installs.

The lock pins the runtime dependencies and the ``test`` extra together (``make lock``). The image
wants only the former: the packages ``[project] dependencies`` of ``operator/pyproject.toml`` name
and, transitively, the packages pip-compile says they come ``# via``. Each kept entry is copied
whole, hashes included, so ``pip install --require-hashes`` checks every download; a dependency
this misses makes that install fail (pip refuses an unpinned requirement in hash mode) rather than
leave it out of the image.

One addition: the lock is compiled with Python 3.11.7, and redis needs ``async-timeout`` before
3.11.3 (Debian bookworm's python3 is 3.11.2), a dependency pip-compile leaves out. It is appended
pinned and hashed, with its marker, so pip skips it on a newer Python (``python:3.11-slim``).

Used by the Dockerfile: ``python3 tools/image_requirements.py LOCK PYPROJECT > runtime.lock``.
Standard library only (it runs in the image's bare Python before anything is installed).
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

# Dependencies of locked packages that only older Pythons need, so the lock does not hold them.
OLD_PYTHON_EXTRAS = [
    'async-timeout==5.0.1 ; python_full_version < "3.11.3" \\',
    "    --hash=sha256:39e3809566ff85354557ec2398b55e096c8364bacac9405a7a1fa429e77fe76c",
    "    # via redis (before Python 3.11.3; tools/image_requirements.py)",
]
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    """PEP 503 normalised name: ``Typing_Extensions`` and ``typing-extensions`` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Entry:
    name: str
    lines: list[str] = field(default_factory=list)
    via: set[str] = field(default_factory=set)


def lock_entries(text: str) -> list[Entry]:
    """The lock's requirements in order, each with its lines and the names it comes via."""
    entries: list[Entry] = []
    in_via = False
    for line in text.splitlines():
        match = _REQUIREMENT.match(line)
        if match:
            entries.append(Entry(canonical(match.group(1)), [line]))
            in_via = False
            continue
        if not entries or not line.startswith("    "):
            continue  # the header comment
        entry = entries[-1]
        entry.lines.append(line)
        comment = line.strip().removeprefix("#").strip()
        if not line.strip().startswith("#"):
            continue  # a --hash line
        if comment == "via":
            in_via = True  # the names follow, one a line
        elif comment.startswith("via "):
            entry.via.add(_via_name(comment.removeprefix("via ")))
        elif in_via and comment:
            entry.via.add(_via_name(comment))
    return entries


def _via_name(text: str) -> str:
    # "lumen-alerting (operator/pyproject.toml)", "-r requirements.in" or a package name.
    return canonical(text.split()[0]) if text and not text.startswith("-") else text


def runtime_dependencies(pyproject: str) -> set[str]:
    document = tomllib.loads(pyproject)
    names = set()
    for requirement in document["project"]["dependencies"]:
        match = _REQUIREMENT.match(requirement)
        if match is None:
            raise ValueError(f"cannot read the requirement {requirement!r}")
        names.add(canonical(match.group(1)))
    return names


def runtime_entries(lock: str, pyproject: str) -> list[Entry]:
    """The lock entries the package needs at run time, in the lock's order."""
    entries = lock_entries(lock)
    roots = runtime_dependencies(pyproject)
    missing = roots - {entry.name for entry in entries}
    if missing:
        raise ValueError(f"not in the lock (run make lock): {', '.join(sorted(missing))}")
    needed = set(roots)
    grew = True
    while grew:
        grew = False
        for entry in entries:
            if entry.name not in needed and entry.via & needed:
                needed.add(entry.name)
                grew = True
    return [entry for entry in entries if entry.name in needed]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: image_requirements.py LOCK PYPROJECT", file=sys.stderr)
        return 2
    lock, pyproject = (Path(path).read_text(encoding="utf-8") for path in argv)
    try:
        kept = runtime_entries(lock, pyproject)
    except ValueError as error:
        print(f"image_requirements.py: {error}", file=sys.stderr)
        return 1
    print("# The runtime part of operator/requirements.lock (tools/image_requirements.py).")
    for entry in kept:
        print("\n".join(entry.lines))
    print("\n".join(OLD_PYTHON_EXTRAS))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
