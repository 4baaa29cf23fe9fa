"""Exporter settings: flags (each with a ``LUMEN_EXPORTER_*`` environment form, see
``lumen_alerting.settings``) and the ``config.json`` the renderer writes
(``lumen_alerting.render.exporter.exporter_config``), parsed with pydantic.

Everything is read and checked before anything starts: a bad flag, an unreadable file or a bad
field of ``config.json`` ends the process with one line naming it, exit 2. The pipeline token is
read from a file and kept out of every ``repr`` and log line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..policy.durations import DURATION_PATTERN, parse_duration
from ..policy.probe_metrics import (
    counter_problem,
    counter_series,
    jsonpath_problem,
    method_problem,
    probe_series_names,
    repeated_metric,
    reserved_metric_problem,
    url_problem,
)
from ..settings import (
    Setting,
    add_version_flag,
    flag_or_environment,
    listen_address,
    parse_or_exit,
    secret_file,
    token_file,
    whole_number,
)

ENV_PREFIX = "LUMEN_EXPORTER_"
DEFAULT_LISTEN = "0.0.0.0:9108"  # seed 001's exporter port
DEFAULT_MAX_CONCURRENT_PROBES = 16
DEFAULT_CSV_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_CSV_BACKUPS = 3
_BYTE_SUFFIXES = {"": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_BYTE_SIZE = re.compile(r"([0-9]+)\s*(KiB|MiB|GiB)?")

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
_DURATION = re.compile(DURATION_PATTERN)


def _duration(text: str) -> str:
    if not text or not _DURATION.fullmatch(text):
        raise ValueError(f"{text!r} is not a duration (use e.g. 500ms, 5s, 1m)")
    if parse_duration(text) <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return text


def _metric_name(name: str) -> str:
    # The exporter's own series (probes' and pipeline's, counters with _total and _created) are
    # reserved by policy.probe_metrics, the list ``lumenctl validate`` checks too.
    if not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a Prometheus metric name")
    if (problem := reserved_metric_problem(name)) is not None:
        raise ValueError(problem)
    return name


def _compiled_path(path: str) -> str:
    if (problem := jsonpath_problem(path)) is not None:
        raise ValueError(problem)
    return path


Duration = Annotated[str, AfterValidator(_duration)]
MetricName = Annotated[str, AfterValidator(_metric_name)]
JsonPathText = Annotated[str, AfterValidator(_compiled_path)]
# A value map's number: JSON's NaN and Infinity (which json.loads takes) are no gauge values.
MappedNumber = Annotated[float, Field(allow_inf_nan=False)]


class ProbeConfig(BaseModel):
    """One probe of ``config.json`` (``spec.exporter.probes[]`` of the policy).

    ``interval`` and ``timeout`` are Prometheus durations as the policy writes them; ``fields``
    maps a gauge name to the JSONPath of its value in the response body; ``value_maps`` turns a
    field's string values into numbers (``{"lumen_gateway_status": {"locked": 1, "unlocked":
    2}}``); ``count_values`` counts a string field by value in the counter ``<name>_total{probe,
    value}``, at most ``max_distinct_values`` distinct values. ``method``, ``expected_status``
    and ``header_files`` default to GET, any 2xx and no extra headers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    url: str = Field(pattern=r"^https?://[^\s/]+")
    interval: Duration = "20s"
    timeout: Duration = "5s"
    health_metric: MetricName = "lumen_probe_up"
    response_time_metric: MetricName = "lumen_probe_response_time_ms"
    fields: dict[MetricName, JsonPathText] = Field(default_factory=dict, max_length=64)
    # Field metric -> string value -> number; a string not in its map is no value ("unmapped").
    value_maps: dict[str, dict[str, MappedNumber]] = Field(default_factory=dict, max_length=64)
    # Counter base name (exported as <name>_total{probe,value}) -> JSONPath of a string field.
    count_values: dict[MetricName, JsonPathText] = Field(default_factory=dict, max_length=16)
    max_distinct_values: int = Field(default=20, ge=1, le=1000)
    method: Literal["GET", "HEAD", "POST"] = "GET"
    expected_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)
    # Header name -> file holding its value (a mounted Secret); read at start, never logged.
    header_files: dict[str, str] = Field(default_factory=dict, max_length=16)

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, url: str) -> str:
        if (problem := url_problem(url)) is not None:
            raise ValueError(problem)
        return url

    @field_validator("header_files")
    @classmethod
    def _header_names(cls, files: dict[str, str]) -> dict[str, str]:
        for name in files:
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an HTTP header name")
        return files

    @field_validator("value_maps")
    @classmethod
    def _maps_of_fields(
        cls, maps: dict[str, dict[str, float]], info: ValidationInfo
    ) -> dict[str, dict[str, float]]:
        # An empty string is a key like any other (an API that answers "" for "unknown"), as the
        # policy allows it: lumenctl validate and this check must agree.
        # ``fields`` is declared first, so it is validated first; absent when it was invalid
        # (then that is the error to report, not this one).
        fields = info.data.get("fields")
        if fields is None:
            return maps
        for name in maps:
            if name not in fields:
                raise ValueError(f"{name!r} is not one of the probe's fields (a key of fields)")
        return maps

    @field_validator("count_values")
    @classmethod
    def _counter_names(cls, counted: dict[str, str]) -> dict[str, str]:
        for name in counted:
            if (problem := counter_problem(name)) is not None:
                raise ValueError(problem)
        return counted

    @model_validator(mode="after")
    def _distinct_metrics(self) -> ProbeConfig:
        # A counter takes three names (x, x_total, x_created): a gauge x_total beside a counter
        # x would be two families of one name, and Prometheus drops the whole scrape.
        names = probe_series_names(self.gauge_names, self.count_values)
        if (twice := repeated_metric(names)) is not None:
            raise ValueError(f"metric {twice!r} is used twice by this probe")
        return self

    @model_validator(mode="after")
    def _body_to_read(self) -> ProbeConfig:
        # A HEAD answer has no body: its fields would be invalid_json on every run, forever.
        reads_body = bool(self.fields or self.count_values)
        if (problem := method_problem(self.method, reads_body)) is not None:
            raise ValueError(f"method: {problem}")
        return self

    @property
    def gauge_names(self) -> list[str]:
        return [self.health_metric, self.response_time_metric, *self.fields]

    @property
    def interval_seconds(self) -> float:
        return float(parse_duration(self.interval))

    @property
    def timeout_seconds(self) -> float:
        return float(parse_duration(self.timeout))

    def answers_as_expected(self, status: int) -> bool:
        """Whether an HTTP status counts as success: one of ``expected_status``, else any 2xx."""
        if self.expected_status:
            return status in self.expected_status
        return 200 <= status < 300


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    # Remove the last run's gauges not pushed again within this duration; None keeps them.
    expire_after: Duration | None = None

    @property
    def expire_after_seconds(self) -> float | None:
        return None if self.expire_after is None else float(parse_duration(self.expire_after))


class ExporterConfig(BaseModel):
    """``config.json``: the probes and the pipeline switch, as the renderer writes them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probes: list[ProbeConfig] = Field(default_factory=list, max_length=256)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)

    @field_validator("probes")
    @classmethod
    def _unique_names(cls, probes: list[ProbeConfig]) -> list[ProbeConfig]:
        names = [p.name for p in probes]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"probe name {twice[0]!r} is used twice")
        return probes

    @field_validator("probes")
    @classmethod
    def _gauges_apart_from_counters(cls, probes: list[ProbeConfig]) -> list[ProbeConfig]:
        # Probes may share a gauge (or a counter): one family, told apart by the probe label.
        # But one probe's gauge under a name another probe counts by would be two families
        # of one name on /metrics, and Prometheus drops the whole scrape.
        gauges: dict[str, int] = {}
        for index, probe in enumerate(probes):
            for name in probe.gauge_names:
                gauges.setdefault(name, index)
        for index, probe in enumerate(probes):
            for base in probe.count_values:
                for name in counter_series(base):
                    if (other := gauges.get(name)) is not None and other != index:
                        raise ValueError(
                            f"probes[{index}].count_values.{base} exports {name}, a gauge of "
                            f"probes[{other}]"
                        )
        return probes


class ConfigError(ValueError):
    """``config.json`` cannot be used; the message is one line naming the field."""


def load_config(path: Path) -> ExporterConfig:
    """The configuration in ``path``; ConfigError naming the first bad field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not JSON ({error})") from None
    try:
        return ExporterConfig.model_validate(document)
    except ValidationError as error:
        raise ConfigError(f"{path}: {describe_first(error)}") from None


def describe_first(error: ValidationError) -> str:
    """``probes[0].interval: '0s' must be longer than zero`` (and how many more problems)."""
    problems = error.errors(include_url=False)
    first = problems[0]
    where = field_path(first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{where}: {message}{more}" if where else f"{message}{more}"


def field_path(location: Sequence[int | str]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("function-after") or part.startswith("["):
            continue  # pydantic's name for a validator step, not a field
        else:
            path += f".{part}" if path else part
    return path


@dataclass(frozen=True)
class ExporterSettings:
    """Everything the exporter runs with: flags, the loaded ``config.json``, secrets read."""

    config: ExporterConfig
    config_path: Path
    state_dir: Path
    host: str = "0.0.0.0"
    port: int = 9108
    csv_path: Path | None = None
    csv_max_bytes: int = DEFAULT_CSV_MAX_BYTES
    csv_backups: int = DEFAULT_CSV_BACKUPS
    log_format: Literal["plain", "json"] = "plain"
    log_level: str = "info"
    max_concurrent_probes: int = DEFAULT_MAX_CONCURRENT_PROBES
    pipeline_token: str | None = field(default=None, repr=False)
    # probe name -> header -> value, from the probes' header files (secrets: never in a repr).
    probe_headers: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)


def parse_settings(argv: Sequence[str], environ: Mapping[str, str]) -> ExporterSettings:
    """Settings from ``argv`` and ``environ``; exits 2 with one line on bad input."""
    return parse_or_exit(
        parser(), argv, lambda args: _settings(flag_or_environment(args, environ, ENV_PREFIX))
    )


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lumen-exporter",
        description="Probe HTTP endpoints on a schedule and serve the results to Prometheus.",
        epilog="Every flag can also be set as LUMEN_EXPORTER_<FLAG>.",
    )
    add = parser.add_argument
    add("--listen", metavar="HOST:PORT", help=f"address to serve on (default: {DEFAULT_LISTEN})")
    add("--config", metavar="FILE", help="config.json written by the operator (required)")
    add("--state-dir", metavar="DIR", help="directory for state kept across restarts (required)")
    add(
        "--pipeline-token-file",
        metavar="FILE",
        help="bearer token CI presents to the pipeline endpoints (required when the config "
        "enables the pipeline)",
    )
    add("--csv", metavar="FILE", help="append a CSV row per probe result to FILE")
    add(
        "--csv-max-bytes",
        metavar="BYTES",
        help="rotate the CSV log when it would grow past this size: bytes, or with KiB, MiB "
        "or GiB (default: 10MiB)",
    )
    add(
        "--csv-backups",
        metavar="N",
        help=f"rotated CSV logs kept, FILE.1 (newest) to FILE.N (default: {DEFAULT_CSV_BACKUPS})",
    )
    add("--log-format", metavar="plain|json", help="log format (default: plain)")
    add("--log-level", metavar="LEVEL", help="debug, info, warning or error (default: info)")
    add(
        "--max-concurrent-probes",
        metavar="N",
        help=f"probes in flight at once at most; the others wait their turn (default: "
        f"{DEFAULT_MAX_CONCURRENT_PROBES})",
    )
    add_version_flag(parser)
    return parser


def _settings(setting: Setting) -> ExporterSettings:
    host, port = listen_address(setting("listen") or DEFAULT_LISTEN)
    config_file = setting("config")
    if not config_file:
        raise ValueError("--config: required (the operator's config.json)")
    try:
        config = load_config(Path(config_file))
    except ConfigError as error:
        raise ValueError(f"--config: {error}") from None
    state = setting("state-dir")
    if not state:
        raise ValueError("--state-dir: required")
    log_format = (setting("log-format") or "plain").lower()
    if log_format not in ("plain", "json"):
        raise ValueError(f"--log-format: {log_format!r} is not plain or json")
    log_level = (setting("log-level") or "info").lower()
    if log_level not in ("debug", "info", "warning", "error"):
        raise ValueError(f"--log-level: {log_level!r} is not debug, info, warning or error")
    token = token_file("--pipeline-token-file", setting("pipeline-token-file"))
    if config.pipeline.enabled and token is None:
        raise ValueError(
            "--pipeline-token-file: required, the config enables the pipeline endpoints"
        )
    csv = setting("csv")
    return ExporterSettings(
        config=config,
        config_path=Path(config_file),
        state_dir=_state_dir(state),
        host=host,
        port=port,
        csv_path=_csv_path(csv) if csv else None,
        csv_max_bytes=_byte_size("csv-max-bytes", setting("csv-max-bytes")),
        csv_backups=whole_number(
            "csv-backups", setting("csv-backups"), DEFAULT_CSV_BACKUPS, low=0, high=1000
        ),
        log_format=log_format,  # type: ignore[arg-type]
        log_level=log_level,
        max_concurrent_probes=whole_number(
            "max-concurrent-probes",
            setting("max-concurrent-probes"),
            DEFAULT_MAX_CONCURRENT_PROBES,
            low=1,
            high=1024,
        ),
        pipeline_token=token,
        probe_headers=_probe_headers(config),
    )


def _state_dir(value: str) -> Path:
    path = Path(value).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--state-dir: cannot create {path}: {error.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"--state-dir: {path} is not writable")
    return path


def _csv_path(value: str) -> Path:
    """``--csv FILE``: checked here so a path the exporter cannot write stops the start, rather
    than every row failing later. The directory is not created (a typo would go unseen)."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise ValueError(f"--csv: {path} is a directory; give a file in it")
    directory = path.parent
    if not directory.is_dir():
        raise ValueError(f"--csv: the directory {directory} does not exist")
    if path.exists() and not path.is_file():
        # /dev/stdout, a FIFO: written as a stream (no rotation), so only the file must be
        # writable.
        if not os.access(path, os.W_OK):
            raise ValueError(f"--csv: {path} is not writable")
        return path
    # A regular file is rotated by renaming it in its directory: both must be writable.
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"--csv: the directory {directory} is not writable")
    if path.exists() and not os.access(path, os.W_OK | os.R_OK):
        raise ValueError(f"--csv: {path} is not readable and writable")
    return path


def _byte_size(flag: str, value: str | None) -> int:
    """``--csv-max-bytes``: ``1048576``, ``512KiB``, ``10MiB``, ``1GiB``; 1 KiB to 1 TiB."""
    if value is None or value == "":
        return DEFAULT_CSV_MAX_BYTES
    match = _BYTE_SIZE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"--{flag}: {value!r} is not a size (bytes, or e.g. 512KiB, 10MiB)")
    size = int(match[1]) * _BYTE_SUFFIXES[match[2] or ""]
    if not 1024 <= size <= 1024**4:
        raise ValueError(f"--{flag}: must be between 1KiB and 1TiB ({value} is not)")
    return size


def _probe_headers(config: ExporterConfig) -> dict[str, dict[str, str]]:
    headers: dict[str, dict[str, str]] = {}
    for index, probe in enumerate(config.probes):
        for name, path in probe.header_files.items():
            where = f"--config: probes[{index}].header_files.{name}"
            value = secret_file(where, path)
            if not value or "\n" in value or "\r" in value:
                raise ValueError(f"{where}: {path} must hold one non-empty line")
            headers.setdefault(probe.name, {})[name] = value
    return headers
