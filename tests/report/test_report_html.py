"""``lumenctl report --output report.html``: one self-contained page, readable offline, escaped,
opened in headless Chromium (Debian ``chromium``) and screenshotted. The screenshot and the page
are kept in ``test-artifacts/report/`` at the repository root."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from lumen_alerting.cli.lumenctl import main as lumenctl
from tests.report.generated import gateway_runs, write_csv
from tests.support.schemas import REPO

CHROMIUM = shutil.which("chromium")
ARTIFACTS = REPO / "test-artifacts" / "report"

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML report of a generated 10,000-row log (one probe, seed 001's gateway)."""
    directory = tmp_path_factory.mktemp("report-html")
    write_csv(directory / "metrics.csv", gateway_runs(10_000, seed=21).runs)
    output = directory / "report.html"
    started = time.perf_counter()
    assert (
        lumenctl(
            [
                "report",
                "--input",
                str(directory / "metrics.csv"),
                "--output",
                str(output),
            ]
        )
        == 0
    )
    print(f"report of 10,000 rows as HTML: {time.perf_counter() - started:.2f} s")
    return output


class Resources(HTMLParser):
    """Every URL-valued attribute and every tag of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.urls += [
            value or "" for name, value in attrs if name in ("src", "href", "xlink:href", "action")
        ]


def test_the_page_fetches_nothing(page):
    text = page.read_text(encoding="utf-8")
    resources = Resources()
    resources.feed(text)
    assert resources.urls, "the inline SVGs refer to their own glyphs and clip paths"
    assert all(url.startswith("#") for url in resources.urls), [
        u for u in resources.urls if u[:1] != "#"
    ]
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", text, re.IGNORECASE)
    assert not {"script", "link", "img", "iframe", "object", "embed"} & resources.tags
    assert text.count("<svg") >= 12  # success, ten fields, the response times, the personas
    assert 100_000 < len(text) < 4_000_000  # thinned for drawing: a 10,000-point series is not


def test_data_is_escaped(page):
    """The generated personas include ``<script>alert('x')</script>``: shown, never run."""
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(" in text


def test_every_figure_of_the_tables_is_in_the_page(page, tmp_path):
    json_output = tmp_path / "report.json"
    source = page.parent / "metrics.csv"
    assert lumenctl(["report", "--input", str(source), "--output", str(json_output)]) == 0
    document = json.loads(json_output.read_text(encoding="utf-8"))["probes"]["ion-api"]
    text = page.read_text(encoding="utf-8")
    for name, figures in document["statistics"].items():
        row = re.search(rf"<tr><td>{name}</td>(.*?)</tr>", text)
        assert row, name
        cells = re.findall(r"<td>(.*?)</td>", row.group(1))
        shown = [float(cell) for cell in cells]
        want = [
            figures[k] for k in ("count", "min", "max", "mean", "median", "stdev", "p95", "p99")
        ]
        assert shown == pytest.approx(want, rel=1e-5), name
    assert f"{document['health']['uptime_percent']:.2f}%" in text
    assert f"Downtime periods ({len(document['health']['downtime'])})" in text
    assert f"Anomalies ({len(document['anomalies'])})" in text


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian chromium not installed (make setup installs it)"
)
def test_chromium_renders_the_page(page, tmp_path):
    assert CHROMIUM is not None
    screenshot = tmp_path / "report.png"
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # root in a container has no user namespaces for the sandbox
            "--disable-gpu",
            # The page fetches nothing; these keep Chromium itself off the (closed) network.
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={screenshot}",
            "--window-size=1280,2400",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0 and screenshot.exists(), result.stderr[-2000:]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshot, ARTIFACTS / "report.png")
    shutil.copyfile(page, ARTIFACTS / "report.html")

    pixels = imread(screenshot)  # floats in [0, 1], height x width x RGB(A)
    assert pixels.shape[:2] == (2400, 1280)
    rgb = np.round(pixels[..., :3] * 255).astype(np.int32)
    colours = np.unique(rgb.reshape(-1, 3) @ np.array([1 << 16, 1 << 8, 1]))
    assert colours.size > 200, "a blank or text-only page has few colours"
    # The charts' line colour (#1f77b4) and the anomaly markers (#d62728) are drawn.
    line = np.all(np.abs(rgb - [0x1F, 0x77, 0xB4]) <= 12, axis=-1).sum()
    marks = np.all(np.abs(rgb - [0xD6, 0x27, 0x28]) <= 12, axis=-1).sum()
    assert line > 20_000, line
    assert marks > 500, marks
    white = np.all(rgb >= 250, axis=-1).mean()
    assert 0.3 < white < 0.97, white


def test_markup_in_any_text_stays_text(tmp_path):
    """Persona values and probe names reach tables, chart labels and SVG comments."""
    nasty = "--><img src=x onerror=alert(1)><!--"
    runs = [
        replace(run, persona=nasty, probe="<b>probe</b>") for run in gateway_runs(50, seed=8).runs
    ]
    write_csv(tmp_path / "m.csv", runs)
    output = tmp_path / "r.html"
    assert lumenctl(["report", "--input", str(tmp_path / "m.csv"), "--output", str(output)]) == 0
    text = output.read_text(encoding="utf-8")
    resources = Resources()
    resources.feed(text)
    assert {"img", "b"}.isdisjoint(resources.tags)
    assert "&lt;b&gt;probe&lt;/b&gt;" in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text


def test_dollars_in_field_names_and_personas_are_drawn_as_written(tmp_path):
    """matplotlib reads "$...$" as mathematics; "$\\frac{$" is none: a field (chart titles, the
    histogram's label) and a persona (the bars' labels) named so still make a page."""
    odd = "$\\frac{$"
    runs = [replace(run, persona=odd) for run in gateway_runs(50, seed=8).runs]
    write_csv(tmp_path / "m.csv", runs)
    path = tmp_path / "m.csv"
    renamed = {"lumen_ion_response_time_ms": f"{odd}_response_time_ms", "lumen_risk_band": odd}
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[0] = ",".join(renamed.get(name, name) for name in lines[0].rstrip("\n").split(",")) + "\n"
    path.write_text("".join(lines), encoding="utf-8")
    output = tmp_path / "r.html"
    assert lumenctl(["report", "--input", str(path), "--output", str(output)]) == 0
    text = output.read_text(encoding="utf-8")
    assert f"<td>{odd}</td>" in text and f"<td>{odd}_response_time_ms</td>" in text
    assert f"Response time distribution ({odd}_response_time_ms)" in text


@pytest.mark.parametrize("count", [1, 2, 3])
def test_tiny_and_all_failed_logs_make_a_page(tmp_path, count):
    runs = [
        replace(run, success=False, gauges={}, persona=None) for run in gateway_runs(count).runs
    ]
    write_csv(tmp_path / "m.csv", runs)
    for output in (tmp_path / "r.html", tmp_path / "r.json"):
        assert (
            lumenctl(["report", "--input", str(tmp_path / "m.csv"), "--output", str(output)]) == 0
        )
    probe = json.loads((tmp_path / "r.json").read_text())["probes"]["ion-api"]
    assert probe["health"]["uptime_percent"] == 0.0
    assert probe["health"]["downtime"][0]["recovered_at"] is None  # still down
    assert probe["health"]["mock_mode_percent"] is None
    assert probe["personas"]["values"] == []
    assert (probe["statistics"]["duration_seconds"]["stdev"] is None) == (count == 1)
    assert "still down" in (tmp_path / "r.html").read_text()
