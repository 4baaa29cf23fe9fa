"""One image name and tag everywhere: the renderer's default, the chart's values and appVersion,
the package version, `lumen-operator --image` and `lumenctl render --image` (issue 11)."""

from __future__ import annotations

import contextlib
import io
import tomllib

import pytest
import yaml

from lumen_alerting.cli.lumenctl import main as lumenctl
from lumen_alerting.operator.config import parse_config
from lumen_alerting.render.objects import DEFAULT_IMAGE
from tests.support.schemas import REPO


def chart_image() -> str:
    values = yaml.safe_load((REPO / "values.yaml").read_text())
    chart = yaml.safe_load((REPO / "Chart.yaml").read_text())
    return f"{values['image']['repository']}:{values['image']['tag'] or chart['appVersion']}"


def rendered_images(*flags: str) -> set[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = lumenctl(["render", "-f", str(REPO / "examples"), "--kind", "workloads", *flags])
    assert code == 0
    return {
        container["image"]
        for document in yaml.safe_load_all(out.getvalue())
        if document and document["kind"] == "Deployment"
        for container in document["spec"]["template"]["spec"]["containers"]
    }


def test_the_chart_names_the_image_the_renderer_uses():
    assert chart_image() == DEFAULT_IMAGE


def test_the_image_tag_is_the_package_version():
    project = tomllib.loads((REPO / "operator" / "pyproject.toml").read_text())["project"]
    chart = yaml.safe_load((REPO / "Chart.yaml").read_text())
    assert DEFAULT_IMAGE.rsplit(":", 1)[1] == project["version"] == chart["appVersion"]


def test_lumenctl_render_uses_the_image_by_default_and_as_told():
    assert rendered_images() == {DEFAULT_IMAGE}
    assert rendered_images("--image", "registry.example/lumen:1.2") == {
        "registry.example/lumen:1.2"
    }


@pytest.mark.parametrize("image", ["", "   ", "a b"])
def test_lumenctl_render_refuses_a_blank_image(image, capsys):
    with pytest.raises(SystemExit) as exit_:
        lumenctl(["render", "-f", str(REPO / "examples"), "--image", image])
    assert exit_.value.code == 2
    assert "--image" in capsys.readouterr().err


def test_the_operator_renders_the_image_by_default_and_as_told():
    default = parse_config([], {}).rendering
    assert (default.threader_image, default.exporter_image) == (DEFAULT_IMAGE, DEFAULT_IMAGE)
    told = parse_config(["--image", "registry.example/lumen:1.2"], {}).rendering
    assert told.threader_image == told.exporter_image == "registry.example/lumen:1.2"
    from_environment = parse_config([], {"LUMEN_OPERATOR_IMAGE": "r.example/l:2"}).rendering
    assert from_environment.threader_image == from_environment.exporter_image == "r.example/l:2"
    one = parse_config(["--image", "r.example/l:2", "--exporter-image", "r.example/e:3"], {})
    assert (one.rendering.threader_image, one.rendering.exporter_image) == (
        "r.example/l:2",
        "r.example/e:3",
    )
