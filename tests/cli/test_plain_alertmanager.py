"""Plain mode: ``lumenctl render --format alertmanager --threader-url … --secrets-dir …
--write-secrets`` gives an alertmanager.yml that a real Alertmanager outside Kubernetes runs
with, and the credential files it names (docs/lumenctl.md, docs/routing.md)."""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from lumen_alerting.cli.lumenctl import _parser, main
from lumen_alerting.cli.plain_secrets import CredentialProblems, plan_credential_files
from lumen_alerting.cli.policy_files import load_policies
from lumen_alerting.policy.model import Policy
from lumen_alerting.render.routing import (
    SECRETS_DIR,
    CredentialFile,
    PlainOptions,
    alertmanager_yaml,
    credential_files,
    threader_url_template,
)
from tests.render.test_routing import ALERTMANAGER, POLICY_FILES, amtool, dump, walk
from tests.support.polling import eventually, free_port
from tests.support.schemas import REPO
from tests.support.slack_api import SlackDouble
from tests.support.threader_run import ThreaderProcess

EXAMPLES = REPO / "examples"
# The user Secrets examples/ name, and the variables --write-secrets reads them from.
EXAMPLE_SECRETS = {
    "LUMEN_SECRET_SMTP_PASSWORD": ("smtp/password", "smtp-password-of-the-test"),
    "LUMEN_SECRET_TICKETS_TOKEN": ("tickets/token", "tickets-token-of-the-test"),
    "LUMEN_SECRET_LUMEN_ALERT_TOKEN": (
        "lumen-alert/token",
        "lumen-alert-token-of-the-test",
    ),
}
THREADER_TOKENS = (
    "lumen-gateway-threader/webhook-token",
    "lumen-http-api-threader/webhook-token",
)


def policies_of(*paths: Path) -> list[Policy]:
    return [policy for _, policy in load_policies([str(p) for p in paths], "default").policies]


def file_references(config: dict[str, Any]) -> list[str]:
    return [node for path, node in walk(config) if path.endswith("_file")]


def render(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["render", "-f", str(EXAMPLES), "--format", "alertmanager", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def example_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, (_, value) in EXAMPLE_SECRETS.items():
        monkeypatch.setenv(variable, value)


# --- the renderer ------------------------------------------------------------------------------


def test_the_documented_default_url_is_the_in_cluster_file() -> None:
    """The help's default template gives the bytes of the in-cluster file, as does no option."""
    policies = policies_of(*POLICY_FILES, EXAMPLES)
    in_cluster = dump(alertmanager_yaml(policies))
    template = threader_url_template("http://lumen-{name}-threader.{namespace}.svc:8080/")
    assert dump(alertmanager_yaml(policies, PlainOptions(threader_url=template))) == in_cluster
    assert dump(alertmanager_yaml(policies, PlainOptions(secrets_dir=SECRETS_DIR))) == in_cluster


def test_threader_url_and_secrets_dir_change_those_and_nothing_else() -> None:
    policies = policies_of(*POLICY_FILES, EXAMPLES)
    in_cluster = alertmanager_yaml(policies)
    plain = alertmanager_yaml(policies, PlainOptions("http://127.0.0.1:9999", "/srv/am/secrets"))
    urls = [hook["url"] for r in plain["receivers"] for hook in r.get("webhook_configs", [])]
    to_threader = [url for url in urls if url.startswith("http://127.0.0.1:9999/alert?channel=")]
    slack_receivers = sum(
        1 for p in policies if p.spec.routing for r in p.spec.routing.receivers if r.slack
    )
    assert len(to_threader) == slack_receivers > 3
    assert not [url for url in urls if "-threader." in url]
    assert all(path.startswith("/srv/am/secrets/") for path in file_references(plain))
    # Put the in-cluster values back: the rest is the in-cluster file, byte for byte.
    text = dump(plain).replace("/srv/am/secrets/", f"{SECRETS_DIR}/")
    for policy in policies:
        service = f"http://lumen-{policy.name}-threader.{policy.namespace}.svc:8080"
        for receiver in in_cluster["receivers"]:
            prefix = f"{policy.namespace}/lumen-{policy.name}/"
            if receiver["name"].startswith(prefix) and "webhook_configs" in receiver:
                hook = receiver["webhook_configs"][0]
                if hook["url"].startswith(service):
                    local = hook["url"].replace(service, "http://127.0.0.1:9999")
                    text = text.replace(f"url: {local}\n", f"url: {hook['url']}\n", 1)
    assert text == dump(in_cluster)


def test_threader_url_names_the_policy() -> None:
    (gateway,) = policies_of(EXAMPLES / "gateway.yaml")
    plain = alertmanager_yaml(
        [gateway], PlainOptions(threader_url="https://{namespace}.example.com/t/{name}")
    )
    urls = {hook["url"] for r in plain["receivers"] for hook in r.get("webhook_configs", [])}
    assert "https://lumen.example.com/t/gateway/alert?channel=%23lumen-alerts-info" in urls


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("ftp://127.0.0.1", "not an http:// or https:// URL with a host"),
        ("127.0.0.1:8080", "not an http:// or https:// URL with a host"),
        ("http://127.0.0.1:8080/alert", "Lumen appends /alert itself"),
        ("http://127.0.0.1:8080/?x=1", "no query or fragment"),
        ("http://127.0.0.1:8080#top", "no query or fragment"),
        ("http://{host}:8080", "unknown placeholder {host}"),
        ("http://{name!r}:8080", "unknown placeholder {name}"),
        ("http://{name:8080", "unbalanced braces"),
        ("http://127.0.0.1:70000", "not a URL"),
    ],
)
def test_bad_threader_urls(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=r"^'") as raised:
        threader_url_template(text)
    assert complaint in str(raised.value)


def test_credential_files_are_the_files_the_output_names() -> None:
    policies = policies_of(*POLICY_FILES, EXAMPLES)
    plain = PlainOptions("http://{namespace}.threader:8080", "/srv/secrets")
    files = credential_files(policies, plain)
    assert [f.path for f in files] == sorted(
        set(file_references(alertmanager_yaml(policies, plain)))
    )
    tokens = {f.path: f.threader_urls for f in files if f.threader_urls}
    # tests/policies' lumen-gw/gateway and examples' lumen/gateway share the Secret's name, so
    # the file (no namespace in its path) serves both threaders.
    assert tokens["/srv/secrets/lumen-gateway-threader/webhook-token"] == (
        "http://lumen-gw.threader:8080",
        "http://lumen.threader:8080",
    )
    assert tokens["/srv/secrets/lumen-http-api-threader/webhook-token"] == (
        "http://shop.threader:8080",
    )
    assert all(f.key == "webhook-token" for f in files if f.threader_urls)
    smtp = next(f for f in files if f.path == "/srv/secrets/smtp/password")
    assert smtp.threader_urls == ()
    assert "lumen/lumen-gateway/email-critical" in smtp.receivers


# --- lumenctl render: flags --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["manifests", "rules"])
@pytest.mark.parametrize(
    "flags",
    [
        ["--threader-url", "http://127.0.0.1:8080"],
        ["--secrets-dir", "s"],
        ["--write-secrets"],
    ],
)
def test_plain_flags_only_with_format_alertmanager(
    fmt: str, flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["render", "-f", str(EXAMPLES), "--format", fmt, *flags])
    assert exit_info.value.code == 2
    output = capsys.readouterr()
    assert output.out == ""
    assert f"{flags[0]}: only with --format alertmanager" in output.err


def test_secrets_dir_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = render(capsys, "--secrets-dir", "secrets")
    assert code == 0
    references = file_references(yaml.safe_load(out))
    assert references and all(p.startswith(f"{tmp_path}/secrets/") for p in references)


def test_every_render_option_is_documented() -> None:
    docs = (REPO / "docs" / "lumenctl.md").read_text()
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = [o for a in commands.choices["render"]._actions for o in a.option_strings]
    assert "--write-secrets" in options
    missing = [o for o in options if o.startswith("--") and o != "--help"]
    missing = [o for o in missing if not re.search(rf"`{re.escape(o)}[` ]", docs)]
    assert missing == []


# --- lumenctl render --write-secrets -----------------------------------------------------------


def test_writes_every_file_it_names(
    tmp_path: Path, example_secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = tmp_path / "secrets"
    code, out, err = render(
        capsys, "--threader-url", "http://127.0.0.1:8080", "--secrets-dir", str(secrets),
        "--write-secrets",
    )  # fmt: skip
    assert code == 0, err
    written = sorted(str(p.relative_to(secrets)) for p in secrets.rglob("*") if p.is_file())
    assert written == sorted([*THREADER_TOKENS, *(f for f, _ in EXAMPLE_SECRETS.values())])
    assert set(file_references(yaml.safe_load(out))) == {str(secrets / f) for f in written}
    for path in secrets.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    for file, value in EXAMPLE_SECRETS.values():
        assert (secrets / file).read_text() == value
    # One threader (one URL) checks one token: both policies' files hold it.
    tokens = {(secrets / f).read_text() for f in THREADER_TOKENS}
    (token,) = tokens
    assert len(token) >= 32
    # Values are never printed; files and the threader's command are.
    for value in [token, *(v for _, v in EXAMPLE_SECRETS.values())]:
        assert value not in out + err
    assert f"wrote {secrets}/smtp/password (from LUMEN_SECRET_SMTP_PASSWORD)" in err
    assert (
        "start the threader at http://127.0.0.1:8080 with: lumen-threader --listen "
        f"127.0.0.1:8080 --webhook-token-file {secrets}/{THREADER_TOKENS[0]}"
    ) in err
    result = amtool("check-config", str(_save(tmp_path, out)))
    assert result.returncode == 0, result.stdout + result.stderr

    # Run again: everything is kept (the running threader's token too), the output is the same.
    code, again, err = render(
        capsys, "--threader-url", "http://127.0.0.1:8080", "--secrets-dir", str(secrets),
        "--write-secrets",
    )  # fmt: skip
    assert code == 0, err
    assert again == out
    assert {(secrets / f).read_text() for f in THREADER_TOKENS} == {token}
    assert f"kept {secrets}/smtp/password (it exists, equal to LUMEN_SECRET_SMTP_PASSWORD)" in err


def test_missing_values_write_nothing(
    tmp_path: Path, example_secrets: None, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.delenv("LUMEN_SECRET_TICKETS_TOKEN")
    monkeypatch.setenv("LUMEN_SECRET_LUMEN_ALERT_TOKEN", " ")
    secrets = tmp_path / "secrets"
    code, out, err = render(capsys, "--secrets-dir", str(secrets), "--write-secrets")
    assert code == 1
    assert out == ""
    assert not secrets.exists()
    assert (
        f"{secrets}/tickets/token: set LUMEN_SECRET_TICKETS_TOKEN to key token of Secret "
        "tickets (used by shop/lumen-http-api/tickets, lumen/lumen-pipeline/backlog), or write "
        "the file yourself"
    ) in err
    assert f"{secrets}/lumen-alert/token: LUMEN_SECRET_LUMEN_ALERT_TOKEN is empty" in err
    assert err.endswith(f"wrote nothing to {secrets}\n")


def test_a_file_written_by_hand_stands_in_for_its_variable(
    tmp_path: Path, example_secrets: None, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.delenv("LUMEN_SECRET_TICKETS_TOKEN")
    secrets = tmp_path / "secrets"
    (secrets / "tickets").mkdir(parents=True)
    (secrets / "tickets" / "token").write_text("by-hand\n")
    code, _, err = render(capsys, "--secrets-dir", str(secrets), "--write-secrets")
    assert code == 0, err
    assert f"kept {secrets}/tickets/token (it exists)" in err
    assert (secrets / "tickets" / "token").read_text() == "by-hand\n"


def test_never_overwrites_another_value(
    tmp_path: Path, example_secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = tmp_path / "secrets"
    (secrets / "smtp").mkdir(parents=True)
    (secrets / "smtp" / "password").write_text("the old password")
    code, out, err = render(capsys, "--secrets-dir", str(secrets), "--write-secrets")
    assert code == 1
    assert out == ""
    assert (
        f"{secrets}/smtp/password: exists and holds another value than LUMEN_SECRET_SMTP_PASSWORD"
    ) in err
    assert "the old password" not in err
    assert (secrets / "smtp" / "password").read_text() == "the old password"
    assert sorted(p.name for p in secrets.iterdir()) == ["smtp"], "nothing else written"


def test_threader_tokens_that_disagree_are_refused(
    tmp_path: Path, example_secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = tmp_path / "secrets"
    for file, token in zip(THREADER_TOKENS, ("a" * 20, "b" * 20), strict=True):
        (secrets / file).parent.mkdir(parents=True)
        (secrets / file).write_text(token)
    args = ("--threader-url", "http://127.0.0.1:8080", "--secrets-dir", str(secrets))
    code, out, err = render(capsys, *args, "--write-secrets")
    assert (code, out) == (1, "")
    assert "different tokens, but the threader at http://127.0.0.1:8080 checks one" in err
    # With a threader per policy ({name}) each keeps its own.
    code, out, err = render(
        capsys, "--threader-url", "http://127.0.0.1:8080/{name}", "--secrets-dir", str(secrets),
        "--write-secrets",
    )  # fmt: skip
    assert code == 0, err
    assert "lumen-threader --webhook-token-file" in err, "no --listen behind a path prefix"


def test_a_threader_at_localhost_is_started_on_that_port(
    tmp_path: Path, example_secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --listen the threader would take its default 0.0.0.0:8080, not the URL's port."""
    args = ("--threader-url", "http://localhost:9000", "--secrets-dir", str(tmp_path / "s"))
    code, _, err = render(capsys, *args, "--write-secrets")
    assert code == 0, err
    assert "with: lumen-threader --listen 127.0.0.1:9000 --webhook-token-file" in err


def test_a_failed_write_takes_back_what_it_wrote(
    tmp_path: Path, example_secrets: None, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    links: list[str] = []
    real_link = os.link

    def link_then_fail(source: str, target: str) -> None:
        if len(links) == 3:
            raise OSError(28, "No space left on device", target)
        real_link(source, target)
        links.append(target)

    monkeypatch.setattr(os, "link", link_then_fail)  # plain_secrets' os
    secrets = tmp_path / "secrets"
    code, out, err = render(capsys, "--secrets-dir", str(secrets), "--write-secrets")
    assert (code, out) == (1, "")
    assert len(links) == 3
    assert ": No space left on device" in err
    assert not secrets.exists(), "every file and directory it created is gone"


def test_write_secrets_into_another_directory(
    tmp_path: Path, example_secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Written here, named as they will be mounted (a container's /etc/alertmanager/secrets)."""
    code, out, err = render(capsys, "--write-secrets", str(tmp_path / "out"))
    assert code == 0, err
    assert all(p.startswith(f"{SECRETS_DIR}/") for p in file_references(yaml.safe_load(out)))
    assert (tmp_path / "out" / "smtp" / "password").is_file()


def test_one_variable_for_two_secrets_wants_the_files(tmp_path: Path) -> None:
    """Secret "a-b" key "c" and Secret "a" key "b-c" would both read LUMEN_SECRET_A_B_C."""
    files = [
        CredentialFile(str(tmp_path / "a-b/c"), "a-b", "c", (), ("ns/lumen-p/one",)),
        CredentialFile(str(tmp_path / "a/b-c"), "a", "b-c", (), ("ns/lumen-p/two",)),
    ]
    environ = {"LUMEN_SECRET_A_B_C": "value-of-one-of-them"}
    with pytest.raises(CredentialProblems) as refused:
        plan_credential_files(files, tmp_path, environ)
    assert refused.value.problems == [
        f"{tmp_path}/a-b/c: LUMEN_SECRET_A_B_C would stand for Secret a-b key c and Secret a "
        "key b-c; write the file yourself",
        f"{tmp_path}/a/b-c: LUMEN_SECRET_A_B_C would stand for Secret a-b key c and Secret a "
        "key b-c; write the file yourself",
    ]
    for file in files:
        Path(file.path).parent.mkdir()
        Path(file.path).write_text("by hand")
    planned, _ = plan_credential_files(files, tmp_path, environ)
    assert [(p.path, p.data) for p in planned] == sorted((Path(f.path), None) for f in files)


def test_a_key_that_is_no_file_name(tmp_path: Path) -> None:
    files = [CredentialFile(str(tmp_path / "s/.."), "s", "..", (), ("ns/lumen-p/r",))]
    with pytest.raises(CredentialProblems, match=r"Secret s key '\.\.' .*: not a file name"):
        plan_credential_files(files, tmp_path, {})


def _save(directory: Path, text: str) -> Path:
    path = directory / "alertmanager.yml"
    path.write_text(text)
    return path


# --- real Alertmanager to a real threader ------------------------------------------------------


@pytest.fixture
def run_alertmanager(tmp_path: Path) -> Iterator[Callable[[Path], str]]:
    """Start a real Alertmanager (cluster port off) on a config file; its base URL once ready."""
    assert ALERTMANAGER is not None, "prometheus-alertmanager missing: run `make setup`"
    processes: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "alertmanager.log"

    def start(config: Path) -> str:
        port = free_port()
        arguments = [
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ]
        with log.open("w") as log_file:  # the process keeps its own copy
            process = subprocess.Popen(
                [str(ALERTMANAGER), *arguments], stdout=subprocess.DEVNULL, stderr=log_file
            )
        processes.append(process)
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert process.poll() is None, f"alertmanager exited: {log.read_text()}"
            try:
                return httpx.get(f"{base}/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(ready, 15, "alertmanager ready")
        return base

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


def test_real_alertmanager_delivers_to_the_threader_with_the_written_token(
    tmp_path: Path,
    slack: SlackDouble,
    run_alertmanager: Callable[[Path], str],
    example_secrets: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's path without editing a file: render with the flags, start the threader with
    the token file render wrote, Alertmanager posts the alert, the thread appears in Slack."""
    # The example policy, told to notify at once (set in the policy, not in the output).
    policy = yaml.safe_load((EXAMPLES / "gateway.yaml").read_text())
    policy["spec"]["routing"]["groupWait"] = "0s"
    policy_file = tmp_path / "gateway.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    secrets = tmp_path / "secrets"
    threader = ThreaderProcess(slack.url, "memory", channel_interval="0")
    assert main([
        "render", "-f", str(policy_file), "--format", "alertmanager",
        "--threader-url", threader.url, "--secrets-dir", str(secrets), "--write-secrets",
    ]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    config = _save(tmp_path, out)
    # The threader as the printed command starts it.
    command = err.rsplit("with: lumen-threader ", 1)[1].split()
    assert command == [
        "--listen", f"127.0.0.1:{threader.port}",
        "--webhook-token-file", str(secrets / "lumen-gateway-threader" / "webhook-token"),
    ]  # fmt: skip
    # After ThreaderProcess' own flags: the last --webhook-token-file is the one it reads.
    threader.command += [
        f"{flag}={value}" for flag, value in zip(command[::2], command[1::2], strict=True)
    ]
    threader.start()
    try:
        base = run_alertmanager(config)
        labels = {
            "alertname": "GatewayStatusDegraded", "namespace": "lumen", "severity": "warning",
            "service": "lumen-gateway",
        }  # fmt: skip
        posted = httpx.post(
            f"{base}/api/v2/alerts",
            content=json.dumps([{"labels": labels, "annotations": {"summary": "plain mode"}}]),
            headers={"Content-Type": "application/json"},
            timeout=5,
        )
        assert posted.status_code == 200, posted.text
        [parent] = eventually(
            lambda: slack.parents("#lumen-alerts-warnings"), 15, "the thread in Slack"
        )
        assert "plain mode" in json.dumps(parent.latest.blocks)
    finally:
        assert threader.stop() == 0
