"""The container image (Dockerfile, ``make image``) started as a pod starts it: read-only root
filesystem, user 65532, only the volumes the renderer declares writable.

``make test`` (and ``make test-image``, which runs only this module) builds the image first and
requires it; a bare ``pytest`` skips these tests where podman or the image is missing.
``LUMEN_IMAGE`` names another image, ``LUMEN_PODMAN`` another podman command (``make`` passes
its own: vfs storage, runc, ../shared/containers/containers.conf).

The threader and the exporter run with the command, arguments and mounts the renderer writes for
``examples/gateway.yaml``: a projected token directory becomes a host directory of files readable
by group 65532 only, each emptyDir a tmpfs, and nothing else is writable (podman's own tmpfs on
/tmp, /run and /var/tmp is turned off). Only ``--listen`` changes, to a free port on 127.0.0.1:
the containers share the host's network.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lumen_alerting.cli.policy_files import load_policies
from lumen_alerting.render import render_policy
from lumen_alerting.render.objects import DEFAULT_IMAGE
from lumen_alerting.render.pods import RUN_AS
from tests.support.polling import eventually, free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gateway.yaml"
SHARED_CONF = ROOT.parent / "shared" / "containers" / "containers.conf"
IMAGE = os.environ.get("LUMEN_IMAGE") or DEFAULT_IMAGE
USER = f"{RUN_AS}:{RUN_AS}"
ENTRY_POINTS = ["lumen-operator", "lumen-threader", "lumen-exporter", "lumenctl"]


def podman_command() -> list[str]:
    if command := os.environ.get("LUMEN_PODMAN"):
        return shlex.split(command)
    conf = [] if "CONTAINERS_CONF" in os.environ or not SHARED_CONF.exists() else [SHARED_CONF]
    return [
        *(["env", f"CONTAINERS_CONF={conf[0]}"] if conf else []),
        "podman", "--storage-driver", "vfs", "--runtime", "runc", "--cgroup-manager", "cgroupfs",
    ]  # fmt: skip


PODMAN = podman_command()


def podman(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {shlex.join(args)}: exit {done.returncode}: {done.stderr}")
    return done


def image_present() -> bool:
    if shutil.which("podman") is None:
        return False
    return podman("image", "exists", IMAGE, check=False, timeout=60).returncode == 0


# `make test` builds the image first and sets LUMEN_IMAGE_REQUIRED: there a missing image fails
# the run instead of skipping it. A bare `pytest` elsewhere skips these tests without one.
IMAGE_REQUIRED = os.environ.get("LUMEN_IMAGE_REQUIRED") == "1"
if IMAGE_REQUIRED and not image_present():
    raise RuntimeError(f"LUMEN_IMAGE_REQUIRED=1 but there is no local image {IMAGE} (make image)")

pytestmark = [
    pytest.mark.skipif(not image_present(), reason=f"no local image {IMAGE} (make test-image)"),
    pytest.mark.timeout(600),
]

# As a pod runs it: read-only root, user 65532, the host's network, and no writable path but the
# ones a test mounts.
RUN = ["run", "--network", "host", "--read-only", "--read-only-tmpfs=false", "--user", USER]


@pytest.fixture(scope="module")
def box() -> Iterator[str]:
    """One container of the image, idle, for the commands that need no server of their own (each
    container costs a copy of the image with vfs storage; `podman exec` costs none)."""
    name = f"lumen-image-test-{uuid.uuid4().hex[:8]}"
    try:
        # /tmp as every rendered pod has it: an emptyDir.
        podman(
            *RUN, "--detach", "--name", name, "--tmpfs", "/tmp:rw,mode=1777", IMAGE, "sleep", "inf"
        )
        yield name
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)


def test_the_image_runs_as_65532_by_default(box):
    assert podman("image", "inspect", "--format", "{{.Config.User}}", IMAGE).stdout.strip() == USER
    assert podman("exec", box, "id", "-u").stdout.strip() == str(RUN_AS)


@pytest.mark.parametrize("program", ENTRY_POINTS)
def test_every_entry_point_is_on_the_path(box, program):
    done = podman("exec", box, program, "--help", check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {program}"), done.stdout


def test_every_module_is_compiled_at_build_time(box):
    # The root filesystem is read-only: a module without its .pyc would be compiled again at
    # every start (and the image sets PYTHONDONTWRITEBYTECODE, so it never would be written).
    script = (
        "import importlib.util, pathlib, sys; "
        "missing = [str(p) for p in pathlib.Path(sys.prefix).rglob('*.py') "
        "if not pathlib.Path(importlib.util.cache_from_source(str(p))).exists()]; "
        "print(len(missing), missing[:5])"
    )
    assert podman("exec", box, "python", "-c", script).stdout.strip() == "0 []"


def test_lumenctl_report_draws_its_charts(box):
    # matplotlib needs a writable cache directory: MPLCONFIGDIR points it at /tmp. Warnings are
    # errors, so the fallback ("created a temporary cache directory") fails this too.
    script = (
        "import io; from lumen_alerting.report import html; from matplotlib.figure import Figure; "
        "figure = Figure(); figure.add_subplot().plot([1, 2], [3, 4]); out = io.StringIO(); "
        "figure.savefig(out, format='svg'); print(out.getvalue().count('<svg'))"
    )
    done = podman("exec", box, "python", "-W", "error", "-c", script, check=False)
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "1", "")


def test_the_root_filesystem_is_not_writable(box):
    # The test's own guard: were the container writable, the tests above would prove nothing.
    done = podman("exec", box, "touch", "/opt/lumen/written", check=False)
    assert done.returncode != 0
    assert "Read-only file system" in done.stderr


def rendered_container(app: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """The container ``app`` of the example's rendered Deployment, its pod spec, and the data of
    the ConfigMap the exporter's volume reads."""
    loaded = load_policies([str(EXAMPLE)])
    assert not loaded.problems, loaded.problems
    [(_, policy)] = loaded.policies
    objects = render_policy(policy, only="workloads")
    config_maps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    for manifest in objects:
        if manifest["kind"] != "Deployment":
            continue
        pod = manifest["spec"]["template"]["spec"]
        [container] = pod["containers"]
        if container["command"] == [app]:
            assert container["image"] == DEFAULT_IMAGE
            return container, pod, {k: v for d in config_maps.values() for k, v in d.items()}
    raise AssertionError(f"the example renders no {app} Deployment")


def mount_flags(
    container: dict[str, Any], pod: dict[str, Any], config_data: dict[str, str], host: Path
) -> list[str]:
    """podman flags standing for the pod's volumes: emptyDirs (and claims) as tmpfs, projected
    volumes as read-only host directories with a file per item (mode 0440, group 65532, as the
    renderer's defaultMode and fsGroup give them)."""
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    flags: list[str] = []
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume or "persistentVolumeClaim" in volume:
            flags += ["--tmpfs", f"{mount['mountPath']}:rw,mode=1777"]
            continue
        directory = host / mount["name"]
        for source in volume["projected"]["sources"]:
            kind = "secret" if "secret" in source else "configMap"
            for item in source[kind]["items"]:
                path = directory / item["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                text = config_data[item["key"]] if kind == "configMap" else uuid.uuid4().hex
                path.write_text(text, encoding="utf-8")
        for path in [directory, *directory.rglob("*")]:
            os.chown(path, 0, RUN_AS)
            path.chmod(0o750 if path.is_dir() else 0o440)
        flags += ["--volume", f"{directory}:{mount['mountPath']}:ro"]
    return flags


def with_listen(args: list[str], port: int) -> list[str]:
    index = args.index("--listen")
    return [*args[: index + 1], f"127.0.0.1:{port}", *args[index + 2 :]]


def get(url: str) -> tuple[int, str] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return None  # not listening yet


@pytest.fixture()
def service(tmp_path: Path) -> Iterator[Any]:
    """Starts the rendered container of an app; stops it with SIGTERM afterwards and checks it
    exits 0 within the grace period a pod has."""
    if os.geteuid() != 0:
        pytest.skip("the mounted token files are given to group 65532: needs root")
    started: list[str] = []

    def start(app: str, config_data_edit: Any = None) -> tuple[int, str]:
        container, pod, config_data = rendered_container(app)
        if config_data_edit is not None:
            config_data = config_data_edit(config_data)
        port = free_port()
        name = f"lumen-image-test-{uuid.uuid4().hex[:8]}"
        try:
            podman(
                *RUN, "--detach", "--name", name,
                *mount_flags(container, pod, config_data, tmp_path),
                "--entrypoint", container["command"][0],
                IMAGE, *with_listen(container["args"], port),
            )  # fmt: skip
        except AssertionError:
            podman("rm", "--force", "--time", "0", name, check=False)  # created, not started
            raise
        started.append(name)
        return port, name

    yield start
    for name in started:
        podman("stop", "--time", str(30), name, check=False)
        state = podman("inspect", "--format", "{{.State.ExitCode}}", name, check=False)
        logs = podman("logs", name, check=False)
        podman("rm", "--force", "--time", "0", name, check=False)
        assert state.stdout.strip() == "0", f"{name} exited {state.stdout}: {logs.stderr}"


def test_the_rendered_threader_answers_health_and_ready(service):
    port, name = service("lumen-threader")
    base = f"http://127.0.0.1:{port}"
    what = f"the threader's /health ({name})"
    status, body = eventually(lambda: get(f"{base}/health"), timeout=120, what=what)
    assert status == 200, body
    status, body = eventually(lambda: get(f"{base}/ready"), what="the threader's /ready")
    assert status == 200, body


def no_probe_target(config_data: dict[str, str]) -> dict[str, str]:
    """The example probes http://ion-api:8080: point the probe at a closed local port instead,
    so the test reaches no other host and knows what the probe finds."""
    config = json.loads(config_data["config.json"])
    closed = free_port()
    for probe in config["probes"]:
        probe["url"] = f"http://127.0.0.1:{closed}/health"
    return {**config_data, "config.json": json.dumps(config)}


PROBE_DOWN = re.compile(r'^lumen_ion_health\{probe="ion-api"\} 0(\.0)?$', re.MULTILINE)


def test_the_rendered_exporter_answers_metrics(service):
    port, name = service("lumen-exporter", no_probe_target)
    url = f"http://127.0.0.1:{port}/metrics"

    def probed() -> tuple[int, str] | None:
        answer = get(url)
        # The probe has run once: its health gauge is 0 (nothing listens on its port).
        return answer if answer and PROBE_DOWN.search(answer[1]) else None

    status, body = eventually(probed, timeout=120, what=f"the exporter's /metrics ({name})")
    assert status == 200, body
