"""``lumenctl render --format alertmanager --write-secrets``: the credential files the plain
alertmanager.yml references, written so that Alertmanager and ``lumen-threader`` can start.

- A threader's webhook token (``<dir>/lumen-<policy>-threader/webhook-token``) is a new random
  token. Every token file of the threaders at one URL holds the same token, since one threader
  process checks one token: an existing file's token is kept and copied to the others.
- A Secret a policy names (SMTP password, webhook bearer token) comes from the environment
  variable ``LUMEN_SECRET_<SECRET>_<KEY>`` (upper case, other characters ``_``), or from the file
  when it exists already.

Nothing is overwritten: an existing file is kept when it holds that value (or, for a token, any
token the threader accepts), else it is a problem. All problems are found before anything is
written, so a refused run writes nothing; a write that fails takes back the files this run
created. Files are 0600, new directories 0700. Values are never printed: messages name files and
variables only.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..atomic_files import sync_directory
from ..render.routing import CredentialFile
from ..settings import MIN_TOKEN_LENGTH

ENV_PREFIX = "LUMEN_SECRET_"
TOKEN_BYTES = 32  # as the operator's threader Secret: 43 URL-safe characters


class CredentialProblems(Exception):
    """Why nothing was written: one line per file, naming files and variables, never values."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Planned:
    """One file to write (``data``) or to keep as it is (``data`` None), and why."""

    path: Path
    data: bytes | None
    note: str


@dataclass(frozen=True)
class ThreaderStart:
    """A threader the output posts to, and the token file to start it with."""

    urls: tuple[str, ...]
    token_file: Path


def secret_variable(secret: str, key: str) -> str:
    """``LUMEN_SECRET_<SECRET>_<KEY>``: the variable holding key ``key`` of Secret ``secret``."""
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", f"{secret}_{key}").upper()


def plan_credential_files(
    files: Sequence[CredentialFile],
    directory: Path,
    environ: Mapping[str, str],
    new_token: Callable[[], str] = lambda: secrets.token_urlsafe(TOKEN_BYTES),
) -> tuple[list[Planned], list[ThreaderStart]]:
    """What to write under ``directory`` (``<secret>/<key>``), and how to start each threader;
    raises CredentialProblems, having written nothing, when a file cannot be written."""
    # A Secret key may be "." or "..": a directory, not a file in one.
    problems = [
        f"Secret {f.secret} key {f.key!r} (used by {', '.join(f.receivers)}): not a file name"
        for f in files
        if f.key in (".", "..")
    ]
    if problems:
        raise CredentialProblems(problems)
    planned: list[Planned] = []
    starts: list[ThreaderStart] = []
    for group in _threader_groups([f for f in files if f.threader_urls]):
        planned_group, problem = _plan_tokens(group, directory, new_token)
        planned += planned_group
        if problem:
            problems.append(problem)
        else:
            urls = tuple(dict.fromkeys(u for f in group for u in f.threader_urls))
            starts.append(ThreaderStart(urls, _target(directory, group[0])))
    secret_files = [f for f in files if not f.threader_urls]
    meanings: dict[str, list[CredentialFile]] = {}
    for file in secret_files:
        meanings.setdefault(secret_variable(file.secret, file.key), []).append(file)
    for file in secret_files:
        variable = secret_variable(file.secret, file.key)
        if len(meanings[variable]) > 1:
            # Secret "a-b" key "c" and Secret "a" key "b-c": one variable cannot hold both.
            target = _target(directory, file)
            if target.is_file():
                planned.append(Planned(target, None, "it exists"))
                continue
            both = " and ".join(f"Secret {f.secret} key {f.key}" for f in meanings[variable])
            problems.append(f"{target}: {variable} would stand for {both}; write the file yourself")
            continue
        step, problem = _plan_secret(file, directory, variable, environ)
        if problem:
            problems.append(problem)
        elif step:
            planned.append(step)
    if problems:
        raise CredentialProblems(problems)
    return sorted(planned, key=lambda p: p.path), starts


def write_planned(planned: Sequence[Planned]) -> None:
    """Create the planned files (0600; new directories 0700), each complete or not at all. On an
    OSError the files and directories this call created are removed again, then it is raised."""
    created_files: list[Path] = []
    created_dirs: list[Path] = []
    try:
        for step in planned:
            if step.data is None:
                continue
            created_dirs += _make_directories(step.path.parent)
            _create(step.path, step.data)
            created_files.append(step.path)
    except OSError:
        for path in reversed(created_files):
            with contextlib.suppress(OSError):
                path.unlink()
        for directory in reversed(created_dirs):
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    # The files are complete; a directory that cannot be synced only matters if the machine
    # crashes now, and then the next run writes them again.
    for directory in dict.fromkeys(path.parent for path in created_files):
        with contextlib.suppress(OSError):
            sync_directory(directory)


def _threader_groups(files: list[CredentialFile]) -> list[list[CredentialFile]]:
    """Token files joined by the threader URLs they share: each group is one token."""
    groups: list[tuple[set[str], list[CredentialFile]]] = []
    for file in files:
        urls = set(file.threader_urls)
        joined = [g for g in groups if g[0] & urls]
        merged_urls = urls.union(*(g[0] for g in joined))
        merged_files = [f for g in joined for f in g[1]] + [file]
        groups = [g for g in groups if g not in joined] + [(merged_urls, merged_files)]
    return [sorted(g[1], key=lambda f: f.path) for g in groups]


def _plan_tokens(
    group: list[CredentialFile], directory: Path, new_token: Callable[[], str]
) -> tuple[list[Planned], str | None]:
    """One token for the group: the existing files' (all equal and long enough) or a new one."""
    urls = ", ".join(dict.fromkeys(u for f in group for u in f.threader_urls))
    existing: dict[Path, str] = {}
    for file in group:
        target = _target(directory, file)
        content, problem = _read_existing(target)
        if problem:
            return [], problem
        if content is not None:
            existing[target] = content.strip()
    if existing:
        short = [str(p) for p, token in existing.items() if len(token) < MIN_TOKEN_LENGTH]
        if short:
            return [], (
                f"{', '.join(short)}: a token shorter than {MIN_TOKEN_LENGTH} characters, which "
                "lumen-threader refuses: remove the file for a new token"
            )
        if len(set(existing.values())) > 1:
            return [], (
                f"{', '.join(map(str, existing))}: different tokens, but the threader at {urls} "
                "checks one: remove the files that should get the other's token"
            )
        token = next(iter(existing.values()))
        first = next(iter(existing))
        source = f"the token of {first}"
    else:
        token = new_token()
        source = f"a new webhook token for the threader at {urls}"
    planned = []
    for file in group:
        target = _target(directory, file)
        if target in existing:
            planned.append(Planned(target, None, "it exists"))
        else:
            planned.append(Planned(target, token.encode(), source))
            source = "the same token"
    return planned, None


def _plan_secret(
    file: CredentialFile, directory: Path, variable: str, environ: Mapping[str, str]
) -> tuple[Planned | None, str | None]:
    target = _target(directory, file)
    used_by = ", ".join(file.receivers)
    content, problem = _read_existing(target)
    if problem:
        return None, problem
    value = environ.get(variable)
    if value is not None and not value.strip():
        return None, f"{target}: {variable} is empty (Secret {file.secret} key {file.key})"
    if content is not None:
        if value is not None and content.strip() != value.strip():
            return None, (
                f"{target}: exists and holds another value than {variable}; remove the file to "
                "write the variable's value, or unset the variable to keep the file"
            )
        same = "" if value is None else f", equal to {variable}"
        return Planned(target, None, f"it exists{same}"), None
    if value is None:
        return None, (
            f"{target}: set {variable} to key {file.key} of Secret {file.secret} (used by "
            f"{used_by}), or write the file yourself"
        )
    return Planned(target, value.encode(), f"from {variable}"), None


def _read_existing(path: Path) -> tuple[str | None, str | None]:
    """(content, None) for a file, (None, None) when there is none, (None, problem) else."""
    try:
        return path.read_text(encoding="utf-8"), None
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        return None, f"{path}: exists but cannot be read: {reason}"


def _target(directory: Path, file: CredentialFile) -> Path:
    return directory / file.secret / file.key


def _make_directories(directory: Path) -> list[Path]:
    """``mkdir -p`` with mode 0700; the directories it created, outermost first."""
    missing = []
    for parent in (directory, *directory.parents):
        if parent.exists():
            break
        missing.append(parent)
    for path in reversed(missing):
        path.mkdir(mode=0o700)
    return list(reversed(missing))


def _create(path: Path, data: bytes) -> None:
    """Write ``data`` to a new ``path`` (0600): complete or absent, and never over a file that
    appeared meanwhile (link() refuses an existing name; FileExistsError)."""
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
