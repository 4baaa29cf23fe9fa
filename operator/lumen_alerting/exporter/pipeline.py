"""Pipeline runs (seed 004): the request bodies, the state they maintain, its metrics and its file.

CI posts one body per finished run (``POST /pipeline/runs``, see ``pipeline_http``); the state
keeps the last run's gauges, run counters for execution-based SLIs, the suppression toggle and,
for every gauge, when it was last pushed. ``PipelineState`` is pure (``now`` is an argument);
``PipelineStore`` owns its file in the state directory, written atomically after every change
and read back at start; ``PipelineCollector`` exposes a state to ``prometheus_client``.

Expiry removes the last run's gauges (per-stage success and duration, integrity, report) not
pushed within ``max_age``. It never removes ``lumen_pipeline_last_run_timestamp`` (its age is what
LumenPipelineStalled measures), the counters (a counter that vanishes and comes back reads as a
reset) or ``lumen_alert_suppressed`` (a mute is lifted by a person, not by a clock).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from ..atomic_files import write_atomically

MAX_STAGES_PER_RUN = 64
# Distinct stage names the state keeps (their counters live for ever): a bound on cardinality.
MAX_KNOWN_STAGES = 256
MAX_DURATION_SECONDS = 7 * 24 * 3600.0
# How far a run's finished_at may lie in the future (clock skew between CI and the exporter).
MAX_CLOCK_SKEW = 300.0
# Run ids remembered to answer a repeated POST (a CI retry) without counting the run twice.
REMEMBERED_RUN_IDS = 256
STATE_FILE = "pipeline-state.json"
# Held (flock) by `lumenctl emit` for its read-modify-write of the state file.
LOCK_FILE = "pipeline-state.lock"
STATE_VERSION = 1

StageName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
]
# No control characters: a run id is logged.
RunId = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Result = Literal["success", "failure"]
RESULTS: tuple[Result, Result] = ("success", "failure")

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class StageResult(BaseModel):
    """One stage of a run: seed 004's build, pdf, freeze, upload, verify, distribute, or any."""

    model_config = _STRICT
    stage: StageName
    success: bool
    duration_seconds: float = Field(ge=0, le=MAX_DURATION_SECONDS)


class PipelineRun(BaseModel):
    """The body of ``POST /pipeline/runs``: one finished run.

    ``integrity_ok`` and ``report_generated`` may be left out (or null) by a run that never got
    that far: their gauges then keep the last value pushed (and its age).
    """

    model_config = _STRICT
    run_id: RunId | None = None
    finished_at: float | None = Field(default=None, gt=0)
    stages: list[StageResult] = Field(default_factory=list, max_length=MAX_STAGES_PER_RUN)
    integrity_ok: bool | None = None
    report_generated: bool | None = None

    @field_validator("stages")
    @classmethod
    def _stages_unique(cls, stages: list[StageResult]) -> list[StageResult]:
        names = [stage.stage for stage in stages]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"stage named more than once: {', '.join(repeated)}")
        return stages

    @model_validator(mode="after")
    def _says_something(self) -> PipelineRun:
        # Counted as a success, a run reporting nothing would hide a CI job that lost its steps.
        if not self.stages and self.integrity_ok is None and self.report_generated is None:
            raise ValueError(
                "a run must report at least one stage, integrity_ok or report_generated"
            )
        return self

    @property
    def result(self) -> Result:
        """Success when every stage succeeded and neither integrity nor the report failed."""
        ok = all(stage.success for stage in self.stages)
        ok = ok and self.integrity_ok is not False and self.report_generated is not False
        return "success" if ok else "failure"


class Suppression(BaseModel):
    """The body of ``POST /suppression``."""

    model_config = _STRICT
    suppressed: bool


class RunRejected(ValueError):
    """A well-formed run the state cannot take (from the future, too many stages overall)."""


def parse_problems(error: ValidationError) -> list[str]:
    """pydantic's errors as ``path: reason`` lines (``stages[0].success: Input should be ...``)."""
    problems = []
    for item in error.errors(include_url=False):
        path = ""
        for part in item["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = item["msg"]
        if item["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        elif item["type"] == "model_type":  # "a valid dictionary or instance of PipelineRun"
            message = "Input should be an object"
        problems.append(f"{path or 'body'}: {message}")
    return problems


def parse_json(data: bytes) -> Any:
    """A request body or run file as JSON: UTF-8, no repeated keys, no NaN or Infinity;
    ``ValueError`` naming what is wrong otherwise."""
    try:
        return json.loads(
            data.decode("utf-8"), object_pairs_hook=_no_repeated_keys, parse_constant=_no_constant
        )
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    repeated = sorted(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
    if repeated:
        raise ValueError(f"key given more than once: {', '.join(repeated)}")
    return dict(pairs)


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


@dataclass
class Pushed:
    """A gauge's value and when it was last pushed (seconds since the epoch)."""

    value: float
    pushed_at: float


@dataclass
class StageGauges:
    success: bool
    duration_seconds: float
    pushed_at: float


@dataclass(frozen=True)
class RunOutcome:
    """What ``apply_run`` did: the run's result, whether it was a repeat (nothing changed), and
    whether it was current (older than the last run: counted, gauges left alone)."""

    result: Result
    duplicate: bool = False
    current: bool = True


@dataclass
class PipelineState:
    """Everything the pipeline endpoints maintain. Pure: every change takes ``now``."""

    last_run: Pushed | None = None  # value: the run's finished_at
    stages: dict[str, StageGauges] = field(default_factory=dict)
    integrity_ok: Pushed | None = None
    report_generated: Pushed | None = None
    suppressed: Pushed = field(default_factory=lambda: Pushed(0.0, 0.0))
    runs_total: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULTS, 0))
    stage_runs_total: dict[str, dict[str, int]] = field(default_factory=dict)
    recent_run_ids: list[str] = field(default_factory=list)

    def apply_run(self, run: PipelineRun, now: float) -> RunOutcome:
        """Count the run and, unless an older run arrives late, set the last run's gauges.
        Raises ``RunRejected`` (and changes nothing) for a run the state cannot take."""
        if run.run_id is not None and run.run_id in self.recent_run_ids:
            return RunOutcome(run.result, duplicate=True)
        finished = now if run.finished_at is None else run.finished_at
        if finished > now + MAX_CLOCK_SKEW:
            raise RunRejected(
                f"finished_at: {finished:.0f} is more than {MAX_CLOCK_SKEW:.0f} s in the future "
                f"(the exporter's clock reads {now:.0f})"
            )
        new_stages = {s.stage for s in run.stages} - self.stage_runs_total.keys()
        if len(self.stage_runs_total) + len(new_stages) > MAX_KNOWN_STAGES:
            raise RunRejected(
                f"stages: more than {MAX_KNOWN_STAGES} distinct stage names over all runs"
            )
        result = run.result
        self.runs_total[result] += 1
        for stage in run.stages:
            counts = self.stage_runs_total.setdefault(stage.stage, dict.fromkeys(RESULTS, 0))
            counts["success" if stage.success else "failure"] += 1
        if run.run_id is not None:
            self.recent_run_ids = [*self.recent_run_ids, run.run_id][-REMEMBERED_RUN_IDS:]
        current = self.last_run is None or finished >= self.last_run.value
        if current:
            self.last_run = Pushed(finished, now)
            for stage in run.stages:
                self.stages[stage.stage] = StageGauges(stage.success, stage.duration_seconds, now)
            if run.integrity_ok is not None:
                self.integrity_ok = Pushed(float(run.integrity_ok), now)
            if run.report_generated is not None:
                self.report_generated = Pushed(float(run.report_generated), now)
        return RunOutcome(result, current=current)

    def set_suppressed(self, flag: bool, now: float) -> None:
        self.suppressed = Pushed(float(flag), now)

    def expirable(self, now: float, max_age: float) -> bool:
        """Whether ``expire`` would remove anything (cheap: no copy)."""
        times = [g.pushed_at for g in self.stages.values()]
        times += [p.pushed_at for p in (self.integrity_ok, self.report_generated) if p]
        return any(now - pushed_at > max_age for pushed_at in times)

    def expire(self, now: float, max_age: float) -> list[str]:
        """Remove the last run's gauges not pushed within ``max_age`` seconds; name them."""
        removed = []
        for stage, gauges in list(self.stages.items()):
            if now - gauges.pushed_at > max_age:
                del self.stages[stage]
                removed.append(f"stage {stage}")
        if self.integrity_ok is not None and now - self.integrity_ok.pushed_at > max_age:
            self.integrity_ok = None
            removed.append("integrity_ok")
        if self.report_generated is not None and now - self.report_generated.pushed_at > max_age:
            self.report_generated = None
            removed.append("report_generated")
        return removed

    def copy(self) -> PipelineState:
        return PipelineState.from_json(self.to_json())

    def to_json(self) -> dict[str, Any]:
        def pushed(value: Pushed | None) -> dict[str, float] | None:
            return None if value is None else {"value": value.value, "pushed_at": value.pushed_at}

        return {
            "version": STATE_VERSION,
            "last_run": pushed(self.last_run),
            "stages": {
                name: {
                    "success": g.success,
                    "duration_seconds": g.duration_seconds,
                    "pushed_at": g.pushed_at,
                }
                for name, g in sorted(self.stages.items())
            },
            "integrity_ok": pushed(self.integrity_ok),
            "report_generated": pushed(self.report_generated),
            "suppressed": pushed(self.suppressed),
            "runs_total": dict(self.runs_total),
            "stage_runs_total": {k: dict(v) for k, v in sorted(self.stage_runs_total.items())},
            "recent_run_ids": list(self.recent_run_ids),
        }

    @classmethod
    def from_json(cls, data: object) -> PipelineState:
        """The state ``to_json`` wrote; ``ValidationError`` for anything else."""
        saved = _SavedState.model_validate(data)
        return cls(
            last_run=_pushed(saved.last_run),
            stages={
                name: StageGauges(g.success, g.duration_seconds, g.pushed_at)
                for name, g in saved.stages.items()
            },
            integrity_ok=_pushed(saved.integrity_ok),
            report_generated=_pushed(saved.report_generated),
            suppressed=_pushed(saved.suppressed) or Pushed(0.0, 0.0),
            runs_total={r: saved.runs_total.get(r, 0) for r in RESULTS},
            stage_runs_total={
                name: {r: counts.get(r, 0) for r in RESULTS}
                for name, counts in saved.stage_runs_total.items()
            },
            recent_run_ids=list(saved.recent_run_ids),
        )


# The state file's schema: what to_json writes, checked on the way back in.
_SAVED = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
Count = Annotated[int, Field(ge=0)]


class _SavedPushed(BaseModel):
    model_config = _SAVED
    value: float
    pushed_at: float


class _SavedStage(BaseModel):
    model_config = _SAVED
    success: bool
    duration_seconds: float = Field(ge=0)
    pushed_at: float


class _SavedState(BaseModel):
    model_config = _SAVED
    version: Literal[1]
    last_run: _SavedPushed | None
    stages: dict[StageName, _SavedStage]
    integrity_ok: _SavedPushed | None
    report_generated: _SavedPushed | None
    suppressed: _SavedPushed | None
    runs_total: dict[Result, Count]
    stage_runs_total: dict[StageName, dict[Result, Count]]
    recent_run_ids: list[RunId]


def _pushed(saved: _SavedPushed | None) -> Pushed | None:
    return None if saved is None else Pushed(saved.value, saved.pushed_at)


class PipelineCollector(Collector):
    """The pipeline series of a state (or of whatever state ``source()`` returns at scrape).
    ``counters=False`` leaves the run counters out (``lumenctl emit`` without a state)."""

    def __init__(
        self, source: PipelineState | Callable[[], PipelineState], *, counters: bool = True
    ) -> None:
        self._source = source
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        state = self._source if isinstance(self._source, PipelineState) else self._source()
        families = pipeline_metrics(state)
        if not self._counters:
            families = [family for family in families if family.type != "counter"]
        return iter(families)


def textfile(state: PipelineState, *, counters: bool = True) -> bytes:
    """``state``'s series in the text format node_exporter's textfile collector reads."""
    return generate_latest(PipelineCollector(state, counters=counters))


def pipeline_metrics(state: PipelineState) -> list[Metric]:
    """The metric families of ``state`` (seed 004's names plus the run counters)."""
    families: list[Metric] = []
    if state.last_run is not None:
        families.append(
            GaugeMetricFamily(
                "lumen_pipeline_last_run_timestamp",
                "When the last pipeline run finished (success or not), seconds since the epoch.",
                value=state.last_run.value,
            )
        )
    if state.stages:
        success = GaugeMetricFamily(
            "lumen_pipeline_success",
            "1 if the stage succeeded in the last run that included it, else 0.",
            labels=["stage"],
        )
        duration = GaugeMetricFamily(
            "lumen_pipeline_duration_seconds",
            "How long the stage took in the last run that included it.",
            labels=["stage"],
        )
        for name, gauges in sorted(state.stages.items()):
            success.add_metric([name], float(gauges.success))
            duration.add_metric([name], gauges.duration_seconds)
        families += [success, duration]
    if state.integrity_ok is not None:
        families.append(
            GaugeMetricFamily(
                "lumen_remote_integrity_ok",
                "1 if the remote copy matched the local one (integrity check), 0 on a mismatch.",
                value=state.integrity_ok.value,
            )
        )
    if state.report_generated is not None:
        families.append(
            GaugeMetricFamily(
                "lumen_report_generated",
                "1 if the run produced the day's report (MD/PDF), else 0.",
                value=state.report_generated.value,
            )
        )
    runs = CounterMetricFamily(
        "lumen_pipeline_runs",
        "Pipeline runs received, by result (success: every stage, integrity and report ok).",
        labels=["result"],
    )
    for result in RESULTS:
        runs.add_metric([result], float(state.runs_total[result]))
    families.append(runs)
    if state.stage_runs_total:
        stage_runs = CounterMetricFamily(
            "lumen_pipeline_stage_runs",
            "Stage executions received, by stage and result.",
            labels=["stage", "result"],
        )
        for name, counts in sorted(state.stage_runs_total.items()):
            for result in RESULTS:
                stage_runs.add_metric([name, result], float(counts[result]))
        families.append(stage_runs)
    families.append(
        GaugeMetricFamily(
            "lumen_alert_suppressed",
            "1 while the policy's alerts are muted (POST /suppression), else 0.",
            value=state.suppressed.value,
        )
    )
    return families


@contextlib.contextmanager
def state_dir_lock(state_dir: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<state_dir>/pipeline-state.lock`` (created if missing)
    for a read-modify-write of the state file by a short-lived process (``lumenctl emit``): two
    CI jobs emitting at once on one runner would otherwise both read the same state and the
    second write would lose the first run. Waits for the holder; the kernel releases the lock
    when its process ends, so a killed emit never leaves it held."""
    # "a": create without truncating; the file's content is never used, only its lock.
    with open(Path(state_dir) / LOCK_FILE, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        yield


class StateFileError(Exception):
    """The state file exists but cannot be read back: the exporter must not start over it."""


class PipelineStore:
    """The state, its file ``<state_dir>/pipeline-state.json`` and expiry.

    Every change is made on a copy, written to disk, and only then becomes the state: when the
    write fails (``OSError``) nothing has changed. A state file that cannot be read raises
    ``StateFileError`` at construction, naming the file and what is wrong, rather than starting
    empty and losing the counters. ``max_age``: seconds after which a gauge not pushed again is
    removed (in memory at every scrape, saved with the next change); None keeps them.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        max_age: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_age is not None and not (max_age > 0 and math.isfinite(max_age)):
            raise ValueError(f"max_age must be a positive number of seconds, not {max_age!r}")
        self.path = Path(state_dir) / STATE_FILE
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._state = self._load()
        self._expire_in_memory()  # what expired while the exporter was down goes at once

    def _load(self) -> PipelineState:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return PipelineState()
        except OSError as error:
            raise StateFileError(f"{self.path}: cannot read the pipeline state: {error}") from None
        try:
            return PipelineState.from_json(json.loads(raw.decode("utf-8")))
        except (ValueError, ValidationError) as error:
            detail = (
                "; ".join(parse_problems(error))
                if isinstance(error, ValidationError)
                else str(error)
            )
            raise StateFileError(
                f"{self.path}: not a pipeline state file ({detail}); move it away to start "
                "with empty counters"
            ) from None

    @property
    def state(self) -> PipelineState:
        """A copy of the current state (after expiry)."""
        with self._lock:
            self._expire_in_memory()
            return self._state.copy()

    def current(self) -> PipelineState:
        """The committed state itself, for a collector, which only reads it: never waits for a
        writer, and never writes (a scrape runs on the event loop; a save is two fsyncs).
        Expiry is applied in memory when no change is under way; the file catches up at the
        next change, and a restart before then expires the same series again from their
        ``pushed_at``. A state is never changed once committed (changes are made on a copy),
        so reading it is safe."""
        if self.max_age is not None and self._lock.acquire(blocking=False):
            try:
                self._expire_in_memory()
            finally:
                self._lock.release()
        return self._state

    def apply_run(self, run: PipelineRun) -> RunOutcome:
        """Apply and save a run; ``RunRejected`` or ``OSError`` leave everything as it was."""
        with self._lock:
            self._expire_in_memory()
            changed = self._state.copy()
            outcome = changed.apply_run(run, self._clock())
            if not outcome.duplicate:
                self._save(changed)
            return outcome

    def set_suppressed(self, flag: bool) -> None:
        with self._lock:
            self._expire_in_memory()
            changed = self._state.copy()
            changed.set_suppressed(flag, self._clock())
            self._save(changed)

    def expire(self) -> list[str]:
        """Expire now and save it (scrapes and changes expire too; changes save it); the series
        removed. ``OSError`` if the save fails (the series are gone from memory anyway)."""
        with self._lock:
            removed = self._expire_in_memory()
            if removed:
                self._save(self._state)
            return removed

    def collector(self) -> PipelineCollector:
        return PipelineCollector(self.current)

    def _expire_in_memory(self) -> list[str]:
        """Drop the gauges older than ``max_age`` from the state in memory (a new committed
        state: a collector may be reading the old one); the file is left as it is."""
        now = self._clock()
        if self.max_age is None or not self._state.expirable(now, self.max_age):
            return []
        changed = self._state.copy()
        removed = changed.expire(now, self.max_age)
        self._state = changed
        return removed

    def _save(self, state: PipelineState) -> None:
        data = json.dumps(state.to_json(), indent=1, sort_keys=True).encode() + b"\n"
        write_atomically(self.path, data)
        self._state = state
