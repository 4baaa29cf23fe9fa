"""What lumen-operator and lumenctl share: the four NetworkPolicy flags, defined once (names,
metavars, help texts), and one parser of true/false values (``settings.true_or_false``), so a
word means the same to every flag of both programs, or is refused by all of them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from lumen_alerting.cli import lumenctl
from lumen_alerting.operator import config
from tests.support.schemas import REPO

GATEWAY = str(REPO / "examples" / "gateway.yaml")
NETWORK_POLICY_FLAGS = (
    "--network-policies",
    "--alertmanager-peers",
    "--prometheus-peers",
    "--pipeline-peers",
)
# Each word and what it means; None: not a true/false word, refused. An empty value is unset for
# both programs (the default), as an empty LUMEN_OPERATOR_* variable is.
WORDS: list[tuple[str, bool | None]] = [
    *[(word, True) for word in ("true", "yes", "on", "1", "TRUE", " Yes ", "On")],
    *[(word, False) for word in ("false", "no", "off", "0", "False", " NO ", "OFF")],
    *[(word, None) for word in ("maybe", "y", "n", "2", "enabled", "true false")],
]


def subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    found: argparse.ArgumentParser = commands.choices[name]
    return found


def texts(parser: argparse.ArgumentParser) -> dict[str, tuple[object, object]]:
    """metavar and help of each NetworkPolicy flag of ``parser``."""
    return {
        action.option_strings[0]: (action.metavar, action.help)
        for action in parser._actions
        if action.option_strings and action.option_strings[0] in NETWORK_POLICY_FLAGS
    }


def test_the_network_policy_flags_are_defined_once() -> None:
    operator = texts(config._parser())
    render = texts(subcommand(lumenctl._parser(), "render"))
    assert list(operator) == list(NETWORK_POLICY_FLAGS)
    assert render == operator
    assert [f"--{flag.name}" for flag in config.NETWORK_POLICY_FLAGS] == list(NETWORK_POLICY_FLAGS)


def operator_switch(argv: list[str], environ: dict[str, str]) -> bool | None:
    """What lumen-operator makes of a true/false word (``--network-policies``, or
    ``LUMEN_OPERATOR_STANDALONE`` for a flag that takes no value); None when it refuses it (exit
    2)."""
    try:
        settings = config.parse_config(argv, environ)
    except SystemExit as refused:
        assert refused.code == 2
        return None
    return settings.rendering.network_policies if argv else settings.standalone


def lumenctl_exit(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = lumenctl.main(list(argv))
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    output = capsys.readouterr()
    return code, output.out, output.err


@pytest.mark.parametrize(("word", "meaning"), WORDS)
def test_one_true_or_false_for_both_programs(
    word: str, meaning: bool | None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert operator_switch(["--network-policies", word], {}) is meaning
    assert operator_switch([], {"LUMEN_OPERATOR_STANDALONE": word}) is meaning
    capsys.readouterr()

    code, out, err = lumenctl_exit(capsys, "render", "-f", GATEWAY, "--network-policies", word)
    if meaning is None:
        assert (code, out) == (2, "")
        assert f"argument --network-policies: {word!r} is not true or false" in err
    else:
        kinds = [doc["kind"] for doc in yaml.safe_load_all(out) if doc]
        assert (code, "NetworkPolicy" in kinds) == (0, meaning)

    run = tmp_path / "run.json"
    run.write_text(json.dumps({"stages": [{"stage": "b", "success": True, "duration_seconds": 1}]}))
    output = tmp_path / "lumen.prom"
    emit = ["emit", "--run", str(run), "--output", str(output), "--suppressed", word]
    code, out, err = lumenctl_exit(capsys, *emit)
    if meaning is None:
        assert (code, out, output.exists()) == (2, "", False)
        assert f"argument --suppressed: {word!r} is not true or false" in err
    else:
        assert code == 0, err
        assert f"lumen_alert_suppressed {float(meaning)}" in output.read_text().splitlines()


@pytest.mark.parametrize("flag", NETWORK_POLICY_FLAGS)
def test_an_empty_value_is_the_default_for_both_programs(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert config.parse_config([flag, " "], {}) == config.parse_config([], {})
    code, implicit, _ = lumenctl_exit(capsys, "render", "-f", GATEWAY)
    assert code == 0
    assert lumenctl_exit(capsys, "render", "-f", GATEWAY, flag, "") == (0, implicit, "")
