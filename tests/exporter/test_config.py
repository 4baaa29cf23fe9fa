"""The exporter's flags (each also a LUMEN_EXPORTER_* variable) and its config.json: what the
renderer writes loads; anything else stops it with one line naming the field; secrets come from
files and never show in a repr."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lumen_alerting.exporter.config import (
    DEFAULT_MAX_CONCURRENT_PROBES,
    ExporterConfig,
    load_config,
    parse_settings,
    parser,
)
from lumen_alerting.policy.probe_metrics import RESERVED_METRICS
from tests.exporter.exporter_run import rendered_config
from tests.support.schemas import REPO
from tests.support.settings_docs import undocumented

TOKEN = "pipeline-token-0123456789"


def write(tmp_path: Path, document: Any, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def flags(tmp_path: Path, document: Any = None) -> list[str]:
    config = write(tmp_path, {"probes": []} if document is None else document)
    return ["--config", str(config), "--state-dir", str(tmp_path / "state")]


def refusal(
    argv: list[str], capsys: pytest.CaptureFixture[str], environ: dict[str, str] | None = None
) -> str:
    with pytest.raises(SystemExit) as exit:
        parse_settings(argv, environ or {})
    assert exit.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("example", ["gateway", "pipeline"])
def test_what_the_renderer_writes_loads(tmp_path, example):
    document = rendered_config(example)
    config = load_config(write(tmp_path, document))
    assert [p.name for p in config.probes] == [p["name"] for p in document["probes"]]
    assert config.pipeline.enabled == document["pipeline"]["enabled"]


def test_the_gateway_probe_as_seed_001_reads_it(tmp_path):
    (probe,) = load_config(write(tmp_path, rendered_config("gateway"))).probes
    assert (probe.interval_seconds, probe.timeout_seconds) == (20.0, 5.0)
    assert probe.health_metric == "lumen_ion_health"
    assert probe.response_time_metric == "lumen_ion_response_time_ms"
    assert len(probe.fields) == 7 and probe.fields["lumen_gateway_status"] == "$.gateway.status"
    assert probe.method == "GET" and probe.answers_as_expected(204)
    assert not probe.answers_as_expected(301)


PROBE = {"name": "api", "url": "http://api:8080/health"}


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"probes": [PROBE | {"interval": "0s"}]}, "probes[0].interval: '0s' must be longer"),
        ({"probes": [PROBE | {"timeout": "5 s"}]}, "probes[0].timeout: '5 s' is not a duration"),
        ({"probes": [PROBE | {"timeout": "5s\n"}]}, "probes[0].timeout: '5s\\n' is not a dura"),
        (
            {"probes": [PROBE | {"fields": {"m": "mock"}}]},
            "probes[0].fields.m: 'mock' is not a JSONPath",
        ),
        ({"probes": [PROBE | {"fields": {"bad-name": "$.a"}}]}, "probes[0].fields.bad-name:"),
        ({"probes": [PROBE | {"health_metric": "lumen_probe_success"}]}, "exporter's own series"),
        ({"probes": [PROBE | {"health_metric": "x", "fields": {"x": "$.a"}}]}, "'x' is used twice"),
        ({"probes": [PROBE, PROBE]}, "probes: probe name 'api' is used twice"),
        ({"probes": [PROBE | {"url": "ftp://x"}]}, "probes[0].url:"),
        ({"probes": [PROBE | {"nmae": "x"}]}, "probes[0].nmae: Extra inputs are not permitted"),
        ({"probes": [{"url": "http://x"}]}, "probes[0].name: Field required"),
        ({"probes": [PROBE], "pipeline": {"enabled": "maybe"}}, "pipeline.enabled:"),
        ({"probes": [PROBE | {"expected_status": [99]}]}, "probes[0].expected_status[0]:"),
        ("[1, 2", "not JSON"),
        # Value maps: of a field, finite numbers (json.loads reads Infinity).
        (
            {"probes": [PROBE | {"fields": {"m": "$.a"}, "value_maps": {"n": {"up": 1}}}]},
            "probes[0].value_maps: 'n' is not one of the probe's fields",
        ),
        (
            '{"probes": [{"name": "api", "url": "http://api", "fields": {"m": "$.a"}, '
            '"value_maps": {"m": {"up": Infinity}}}]}',
            "probes[0].value_maps.m.up: Input should be a finite number",
        ),
        (
            {"probes": [PROBE | {"fields": {"m": "$.a"}, "value_maps": {"m": {"up": "one"}}}]},
            "probes[0].value_maps.m.up:",
        ),
        # Counted values: a counter's base name, a JSONPath, apart from the probe's gauges.
        (
            {"probes": [PROBE | {"count_values": {"persona_total": "$.p"}}]},
            "probes[0].count_values: 'persona_total': give a counter's name without _total",
        ),
        (
            {"probes": [PROBE | {"count_values": {"persona_created": "$.p"}}]},
            "probes[0].count_values: 'persona_created': give a counter's name without",
        ),
        (
            {"probes": [PROBE | {"count_values": {"persona": "persona"}}]},
            "probes[0].count_values.persona: 'persona' is not a JSONPath",
        ),
        (
            {"probes": [PROBE | {"count_values": {"bad-name": "$.p"}}]},
            "probes[0].count_values.bad-name:",
        ),
        (
            {"probes": [PROBE | {"fields": {"p_total": "$.a"}, "count_values": {"p": "$.p"}}]},
            "probes[0]: metric 'p_total' is used twice by this probe",
        ),
        (
            {"probes": [PROBE | {"health_metric": "p_created", "count_values": {"p": "$.p"}}]},
            "probes[0]: metric 'p_created' is used twice by this probe",
        ),
        (
            {"probes": [PROBE | {"fields": {"p": "$.a"}, "count_values": {"p": "$.p"}}]},
            "probes[0]: metric 'p' is used twice by this probe",
        ),
        (
            {
                "probes": [
                    PROBE | {"fields": {"p_total": "$.a"}},
                    PROBE | {"name": "b", "count_values": {"p": "$.p"}},
                ]
            },
            "probes: probes[1].count_values.p exports p_total, a gauge of probes[0]",
        ),
        ({"probes": [PROBE | {"max_distinct_values": 0}]}, "probes[0].max_distinct_values:"),
        ({"probes": [PROBE | {"max_distinct_values": 1001}]}, "probes[0].max_distinct_values:"),
        # A HEAD answer has no body to read (fields would be invalid_json on every run).
        (
            {"probes": [PROBE | {"method": "HEAD", "fields": {"m": "$.a"}}]},
            "probes[0]: method: an answer to HEAD has no body to read fields or counted values",
        ),
        (
            {"probes": [PROBE | {"method": "HEAD", "count_values": {"p": "$.p"}}]},
            "probes[0]: method: an answer to HEAD has no body to read fields or counted values",
        ),
        # Credentials in the URL would be quoted by failures' texts (log, CSV error column).
        (
            {"probes": [PROBE | {"url": "http://ion:s3cret@api:8080/health"}]},
            "probes[0].url: must not carry credentials (user:pass@); send them in a header",
        ),
        (
            {"probes": [PROBE | {"url": "https://token@api/health"}]},
            "probes[0].url: must not carry credentials",
        ),
        ({"pipeline": {"expire_after": "0s"}}, "pipeline.expire_after: '0s' must be longer"),
        ({"pipeline": {"expire_after": "2 days"}}, "pipeline.expire_after: '2 days' is not a"),
    ],
)
def test_a_bad_config_is_one_line_naming_the_field(tmp_path, capsys, document, named):
    line = refusal(flags(tmp_path, document), capsys)
    assert line.startswith("lumen-exporter: error: --config: "), line
    assert named in line, line


def test_a_refused_url_is_not_quoted(tmp_path, capsys):
    document = {"probes": [PROBE | {"url": "http://ion:s3cret@api:8080/health"}]}
    line = refusal(flags(tmp_path, document), capsys)
    assert "must not carry credentials" in line and "s3cret" not in line, line


def test_a_head_probe_without_fields_and_an_at_sign_past_the_host_load():
    config = ExporterConfig.model_validate(
        {"probes": [PROBE | {"method": "HEAD", "url": "http://api:8080/health?by=@ops"}]}
    )
    assert config.probes[0].method == "HEAD"


@pytest.mark.parametrize("name", sorted(RESERVED_METRICS))
@pytest.mark.parametrize("where", ["health_metric", "response_time_metric", "fields"])
def test_every_series_name_of_the_exporter_is_refused_to_a_probe(tmp_path, capsys, name, where):
    """Probe and pipeline series, counters in all three forms: the same list as ``lumenctl
    validate``, so a policy it accepts never crash-loops the exporter."""
    probe = PROBE | ({"fields": {name: "$.a"}} if where == "fields" else {where: name})
    line = refusal(flags(tmp_path, {"probes": [probe]}), capsys)
    assert "exporter's own series" in line and repr(name) in line, line


def test_the_docs_list_every_reserved_name():
    docs = (REPO / "docs" / "exporter.md").read_text()
    families = {name.removesuffix("_total").removesuffix("_created") for name in RESERVED_METRICS}
    assert "policy/probe_metrics.py" in docs
    assert {name for name in families if f"`{name}`" not in docs} == set()


@pytest.mark.parametrize(
    "name", sorted({n.removesuffix("_total").removesuffix("_created") for n in RESERVED_METRICS})
)
def test_no_counter_may_take_a_name_of_the_exporters_own_series(tmp_path, capsys, name):
    line = refusal(flags(tmp_path, {"probes": [PROBE | {"count_values": {name: "$.a"}}]}), capsys)
    assert "exporter's own series" in line, line


def test_value_maps_counted_values_and_expiry_load(tmp_path):
    document = {
        "probes": [
            PROBE
            | {
                "fields": {"lumen_gateway_status": "$.gateway.status"},
                "value_maps": {"lumen_gateway_status": {"down": 0, "locked": 1, "unlocked": 2}},
                "count_values": {"lumen_ion_persona": "$.persona"},
                "max_distinct_values": 50,
            },
            # Another probe may share a gauge or a counter: one family, two probe labels.
            PROBE
            | {
                "name": "b",
                "fields": {"lumen_gateway_status": "$.status"},
                "count_values": {"lumen_ion_persona": "$.who"},
            },
        ],
        "pipeline": {"enabled": False, "expire_after": "1d12h"},
    }
    config = load_config(write(tmp_path, document))
    first = config.probes[0]
    assert first.value_maps == {"lumen_gateway_status": {"down": 0, "locked": 1, "unlocked": 2}}
    assert first.count_values == {"lumen_ion_persona": "$.persona"}
    assert (first.max_distinct_values, config.probes[1].max_distinct_values) == (50, 20)
    assert config.pipeline.expire_after_seconds == 36 * 3600
    assert ExporterConfig().pipeline.expire_after_seconds is None


def test_several_problems_name_the_first_and_count_the_rest(tmp_path, capsys):
    document = {"probes": [PROBE | {"interval": "0s", "timeout": "x", "nmae": 1}]}
    line = refusal(flags(tmp_path, document), capsys)
    assert "probes[0].interval" in line and "(and 2 more)" in line


def test_required_flags_and_unreadable_files(tmp_path, capsys):
    assert "--config: required" in refusal(["--state-dir", str(tmp_path)], capsys)
    assert "--state-dir: required" in refusal(["--config", str(write(tmp_path, {}))], capsys)
    missing = ["--config", str(tmp_path / "nope.json"), "--state-dir", str(tmp_path)]
    assert "cannot read" in refusal(missing, capsys)
    assert "--listen:" in refusal([*flags(tmp_path), "--listen", "9108"], capsys)
    too_many = [*flags(tmp_path), "--max-concurrent-probes", "0"]
    assert "--max-concurrent-probes:" in refusal(too_many, capsys)
    assert "--log-format:" in refusal([*flags(tmp_path), "--log-format", "xml"], capsys)


def test_flags_have_environment_forms_and_win_over_them(tmp_path):
    environ = {
        "LUMEN_EXPORTER_CONFIG": str(write(tmp_path, {"probes": [PROBE]})),
        "LUMEN_EXPORTER_STATE_DIR": str(tmp_path / "state"),
        "LUMEN_EXPORTER_LISTEN": "127.0.0.1:9200",
        "LUMEN_EXPORTER_MAX_CONCURRENT_PROBES": "3",
        "LUMEN_EXPORTER_LOG_FORMAT": "json",
    }
    settings = parse_settings([], environ)
    assert (settings.host, settings.port, settings.max_concurrent_probes) == ("127.0.0.1", 9200, 3)
    assert settings.log_format == "json" and settings.config.probes[0].name == "api"
    assert (tmp_path / "state").is_dir()
    settings = parse_settings(["--max-concurrent-probes", "5", "--listen", "[::1]:1"], environ)
    assert (settings.host, settings.port, settings.max_concurrent_probes) == ("::1", 1, 5)
    defaults = parse_settings(flags(tmp_path), {})
    assert (defaults.host, defaults.port) == ("0.0.0.0", 9108)
    assert defaults.max_concurrent_probes == DEFAULT_MAX_CONCURRENT_PROBES


def test_the_pipeline_token_is_read_from_a_file_and_never_shown(tmp_path, capsys):
    pipeline_on = {"probes": [], "pipeline": {"enabled": True}}
    line = refusal(flags(tmp_path, pipeline_on), capsys)
    assert "--pipeline-token-file: required" in line
    (tmp_path / "short").write_text("short\n")
    short = [*flags(tmp_path, pipeline_on), "--pipeline-token-file", str(tmp_path / "short")]
    assert "shorter than 16 characters" in refusal(short, capsys)
    (tmp_path / "token").write_text(TOKEN + "\n")
    argv = [*flags(tmp_path, pipeline_on), "--pipeline-token-file", str(tmp_path / "token")]
    settings = parse_settings(argv, {})
    assert settings.pipeline_token == TOKEN
    assert TOKEN not in repr(settings)


def test_probe_headers_come_from_files_and_never_show(tmp_path, capsys):
    (tmp_path / "auth").write_text("Bearer probe-secret\n")
    document = {"probes": [PROBE | {"header_files": {"Authorization": str(tmp_path / "auth")}}]}
    settings = parse_settings(flags(tmp_path, document), {})
    assert settings.probe_headers == {"api": {"Authorization": "Bearer probe-secret"}}
    assert "probe-secret" not in repr(settings)
    gone = {"probes": [PROBE | {"header_files": {"X-Key": str(tmp_path / "absent")}}]}
    assert "probes[0].header_files.X-Key: cannot read" in refusal(flags(tmp_path, gone), capsys)
    bad = {"probes": [PROBE | {"header_files": {"Bad Header": str(tmp_path / "auth")}}]}
    assert "is not an HTTP header name" in refusal(flags(tmp_path, bad), capsys)


def test_an_empty_config_is_valid():
    assert ExporterConfig.model_validate({}).probes == []


def test_every_flag_and_variable_is_documented():
    docs = (REPO / "docs" / "exporter.md").read_text()
    assert undocumented(parser(), docs, "LUMEN_EXPORTER_") == []
