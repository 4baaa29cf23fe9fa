"""Service settings from command-line flags, each with a ``LUMEN_<SERVICE>_*`` environment form.

A flag wins over its variable; the variable's name is the flag's, upper-cased with dashes as
underscores (``--kps-release`` is ``LUMEN_OPERATOR_KPS_RELEASE``). A bad value exits with one line
naming the flag (exit 2), before anything starts; the parsers of numbers and of true/false are
shared here.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

T = TypeVar("T")
Setting = Callable[[str], "str | None"]


def flag_or_environment(
    args: argparse.Namespace, environ: Mapping[str, str], prefix: str
) -> Setting:
    """``setting("kps-release")``: the flag's value, else ``<prefix>KPS_RELEASE``, else None."""

    def setting(flag: str) -> str | None:
        value = getattr(args, flag.replace("-", "_"))
        if isinstance(value, bool):
            return "true" if value else "false"
        if value is not None:
            return str(value)
        return environ.get(prefix + flag.upper().replace("-", "_"))

    return setting


DISTRIBUTION = "lumen-alerting"  # operator/pyproject.toml's project name


def package_version() -> str:
    """The installed distribution's version (operator/pyproject.toml), shared by every program."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


class _VersionAction(argparse.Action):
    """argparse's ``version`` action, but the version is looked up only when asked for: the
    installed metadata is read then, not at every program start."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"{parser.prog} {package_version()}")
        parser.exit()


def add_version_flag(parser: argparse.ArgumentParser) -> None:
    """``--version``: print ``<prog> <package version>`` on stdout and exit 0 (no variable)."""
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")


def parse_or_exit(
    parser: argparse.ArgumentParser,
    argv: Sequence[str],
    build: Callable[[argparse.Namespace], T],
) -> T:
    """Parse ``argv`` and build the settings; a ValueError becomes one line naming the flag on
    stderr and exit 2 (argparse's own errors, like an unknown flag, still show the usage)."""
    args = parser.parse_args(argv)
    try:
        return build(args)
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")


def whole_number(flag: str, value: str | None, default: int, *, low: int, high: int) -> int:
    """``value`` as an int within ``low..high``; ``default`` when unset."""
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"--{flag}: {value!r} is not a whole number") from None
    if not low <= number <= high:
        raise ValueError(
            f"--{flag}: must be between {low} and {high} ({number} is outside {low}..{high})"
        )
    return number


def seconds(flag: str, value: str | None, default: float, *, low: float, high: float) -> float:
    """``value`` as seconds within ``low..high``; ``default`` when unset."""
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"--{flag}: {value!r} is not a number of seconds") from None
    if not low <= number <= high:
        raise ValueError(f"--{flag}: must be between {low:g} and {high:g} seconds")
    return number


TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def true_or_false(value: str) -> bool:
    """A true/false flag value: the one parser of every such flag and variable (lumen-operator's,
    ``lumenctl``'s). Takes the words of ``TRUE_WORDS`` and ``FALSE_WORDS`` in any case, spaces
    around ignored; ValueError for anything else (what an unset or empty value means is the
    caller's)."""
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{value!r} is not true or false (nor yes/no, on/off, 1/0)")


def listen_address(value: str) -> tuple[str, int]:
    """``--listen HOST:PORT`` as (host, port); ``[::1]:80`` gives ``::1``."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen: {value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def secret_file(where: str, path: str) -> str:
    """The stripped content of a mounted Secret file; ``where`` names the setting in errors."""
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as error:
        raise ValueError(f"{where}: cannot read {path}: {error.strerror}") from None


MIN_TOKEN_LENGTH = 16  # a bearer token shorter than this is a placeholder, not a secret


def token_file(where: str, path: str | None) -> str | None:
    """A bearer token from a file (None when no file is given), at least MIN_TOKEN_LENGTH long."""
    if not path:
        return None
    token = secret_file(where, path)
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(
            f"{where}: the token in {path} is shorter than {MIN_TOKEN_LENGTH} characters"
        )
    return token
