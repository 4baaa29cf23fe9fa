"""Prometheus text exposition kept pre-rendered, source by source, and merged family by family.

A scrape of the exporter's probe series used to format every sample again (``generate_latest``
over ~1,800 samples: 8-30 ms of CPU for 100 probes), although a probe's series only change when
that probe records a result. Here each source (a probe) is rendered once per change, by
``prometheus_client``'s own ``generate_latest`` (so label escaping and number formatting are its
own), and its text is kept split by family. A scrape then only joins bytes: for each family, its
HELP and TYPE lines once, then the sample lines of every source in order, so the samples of a
family that spans sources (``lumen_probe_success{probe="a"}``, ``{probe="b"}``...) stay
together, as the text format requires.

Thread-safety: sources are re-rendered on the event loop while a scrape may run in another
thread (tests do). A source's text is replaced whole (one list item assignment) and a scrape
works on a copy of that list and on the family order as it was, each taken in one step;
nothing a scrape iterates is mutated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric

HELP = b"# HELP "


@dataclass(frozen=True, slots=True)
class FamilyText:
    """One family of one source, as ``generate_latest`` wrote it."""

    header: bytes  # its "# HELP" and "# TYPE" lines
    samples: bytes  # its sample lines, each ending in a newline; empty for a family without any


class MetricsSource:
    """What ``generate_latest`` needs: something with ``collect()``."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def render(families: Iterable[Metric]) -> dict[str, FamilyText]:
    """``families`` in the text format, by the name on each family's HELP line (a counter
    ``x`` gives ``x_total`` and, with ``_created`` samples, ``x_created``)."""
    return split_families(generate_latest(MetricsSource(families)))


def split_families(text: bytes) -> dict[str, FamilyText]:
    """``generate_latest`` text by family. A line starting with ``# HELP`` starts a family:
    label values and HELP texts have their newlines escaped, so no other line can."""
    found: dict[str, FamilyText] = {}
    if not text:
        return found
    if not text.startswith(HELP) or not text.endswith(b"\n"):
        raise ValueError("not generate_latest text: it starts with a HELP line, ends a line")
    # Every family but the first follows a newline; cutting there drops that newline, so the
    # text's own last newline goes too and each piece gets its newline back.
    for chunk in (b"\n" + text[:-1]).split(b"\n" + HELP)[1:]:
        family = HELP + chunk + b"\n"
        help_end = family.index(b"\n") + 1
        if not family.startswith(b"# TYPE ", help_end):
            raise ValueError("not generate_latest text: a HELP line without its TYPE line")
        type_end = family.index(b"\n", help_end) + 1
        name = chunk[: chunk.index(b" ")].decode()
        if name in found:
            raise ValueError(f"family {name} appears twice")
        found[name] = FamilyText(family[:type_end], family[type_end:])
    return found


class MergedExposition:
    """The text of several sources, each rendered on its own, served as one exposition.

    ``order`` fixes the order of families; a family no source has is left out, one not in
    ``order`` goes last. ``always`` holds families written even when no source has them (their
    HELP and TYPE lines with no samples), as ``prometheus_client`` writes a metric that has no
    samples yet. A family's header is taken from the first source that has it (after
    ``always``), so a HELP text that differs between sources is the first one's, as when all
    sources were collected into one family."""

    def __init__(
        self,
        sources: Sequence[str],
        order: Sequence[str],
        always: dict[str, FamilyText] | None = None,
    ) -> None:
        self._index = {source: position for position, source in enumerate(sources)}
        if len(self._index) != len(sources):
            raise ValueError("source names must be unique")
        always = always or {}
        self._order: tuple[str, ...] = tuple(dict.fromkeys([*order, *always]))
        # Slot 0 holds the always-there families, then one slot per source, in order.
        self._texts: list[dict[str, FamilyText]] = [dict(always)] + [{} for _ in sources]

    def update(self, source: str, families: dict[str, FamilyText]) -> None:
        """Replace the text of ``source`` with ``families`` (``render``'s result)."""
        position = self._index.get(source)
        if position is None:
            raise KeyError(f"unknown source {source!r}")
        new = [name for name in families if name not in self._order]
        if new:
            self._order = (*self._order, *new)
        self._texts[position + 1] = families

    def text(self) -> bytes:
        """The exposition: each family's header once, then the samples of every source."""
        texts = list(self._texts)  # one step: a copy the loop's updates do not touch
        parts: list[bytes] = []
        for name in self._order:
            header = False
            for families in texts:
                family = families.get(name)
                if family is None:
                    continue
                if not header:
                    parts.append(family.header)
                    header = True
                parts.append(family.samples)
        return b"".join(parts)
