"""The exporter's ``config.json`` as the renderer writes it: the exporter's own loader accepts it
with every probe feature, each header's Secret is mounted where ``header_files`` points (the
exporter started on the pod's file layout reads every header), and any change rolls the pod."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lumen_alerting.exporter.config import ExporterConfig, parse_settings
from lumen_alerting.policy.document import policy_from_manifest
from lumen_alerting.policy.model import (
    Exporter,
    Policy,
    Probe,
    ProbeHeader,
    SecretKeyRef,
)
from lumen_alerting.render.exporter import CONFIG_HASH_ANNOTATION, exporter_objects
from lumen_alerting.render.objects import RenderOptions
from tests.support.schemas import REPO

OPTIONS = RenderOptions()
FEATURES = REPO / "tests" / "policies" / "workloads-exporter-probe-features.yaml"
Manifest = dict[str, Any]


def load(path: Path) -> Policy:
    return policy_from_manifest(yaml.safe_load(path.read_text()))


def rendered(policy: Policy) -> tuple[dict[str, Any], Manifest]:
    """(config.json as parsed, the Deployment) of the policy's exporter."""
    objects = exporter_objects(policy, OPTIONS)
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    return json.loads(config_map["data"]["config.json"]), deployment


@pytest.mark.parametrize(
    "path",
    [FEATURES, REPO / "examples" / "gateway.yaml", REPO / "examples" / "pipeline.yaml"],
    ids=lambda p: p.stem,
)
def test_the_exporter_loads_every_key_as_rendered(path: Path) -> None:
    """Nothing rendered is unknown to the exporter, and it reads back exactly what was written:
    no key it ignores, no default that differs from the policy's."""
    document, _ = rendered(load(path))
    config = ExporterConfig.model_validate(document)
    loaded = config.model_dump(mode="json")
    for written, read in zip(document["probes"], loaded["probes"], strict=True):
        assert read == {"header_files": {}, **written}
    assert loaded["pipeline"] == {"expire_after": None, **document["pipeline"]}


def test_every_probe_feature_is_written() -> None:
    document, _ = rendered(load(FEATURES))
    ion_api, gateway = document["probes"]
    assert ion_api["method"] == "POST" and ion_api["expected_status"] == [200, 202]
    assert ion_api["value_maps"] == {
        "lumen_gateway_status": {"down": 0.0, "locked": 1.0, "unlocked": 2.0},
        "lumen_ion_mock_mode": {"off": 0.0, "on": 1.0},
    }
    assert ion_api["count_values"] == {
        "lumen_ion_persona": "$.persona",
        "lumen_ion_region": "$.region",
    }
    assert ion_api["max_distinct_values"] == 50
    assert ion_api["header_files"] == {
        "Authorization": "/etc/lumen/exporter/headers/ion-api/0",
        "X-Lumen-Tenant": "/etc/lumen/exporter/headers/ion-api/1",
    }
    assert gateway["method"] == "HEAD" and gateway["expected_status"] == [204]
    assert gateway["header_files"] == {"X-Api-Key": "/etc/lumen/exporter/headers/gateway/0"}
    assert document["pipeline"] == {"enabled": True, "expire_after": "2d"}


def test_without_expiry_or_headers_neither_key_is_written() -> None:
    document, _ = rendered(load(REPO / "examples" / "pipeline.yaml"))
    assert document["pipeline"] == {"enabled": True}
    assert all("header_files" not in probe for probe in document["probes"])


def mount_projected_volumes(deployment: Manifest, config: str, root: Path) -> dict[str, str]:
    """Write what the kubelet would put in the container's projected volumes under ``root``:
    the ConfigMap's config.json and, for each Secret item, the text ``<secret>/<key>``. Returns
    {mount path: directory standing in for it}."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    standing_in = {}
    for volume in pod["volumes"]:
        if "projected" not in volume:
            continue
        directory = root / volume["name"]
        standing_in[mounts[volume["name"]]] = str(directory)
        for source in volume["projected"]["sources"]:
            ((kind, reference),) = source.items()
            for item in reference["items"]:
                file = directory / item["path"]
                file.parent.mkdir(parents=True, exist_ok=True)
                if kind == "configMap":
                    file.write_text(config)
                else:
                    assert kind == "secret"
                    file.write_text(f"{reference['name']}/{item['key']}\n")
    return standing_in


def test_header_secrets_are_mounted_where_header_files_point(tmp_path: Path) -> None:
    """The exporter, started with the rendered arguments on the pod's file layout, reads every
    header's value from its own Secret key (and the pipeline token from its own)."""
    policy = load(FEATURES)
    objects = exporter_objects(policy, OPTIONS)
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    config = config_map["data"]["config.json"]
    # The config and the arguments name the pod's paths; point them at the stand-in directories.
    standing_in = mount_projected_volumes(deployment, config, tmp_path / "volumes")
    assert list(standing_in) == ["/etc/lumen/exporter"]
    relocated = config.replace("/etc/lumen/exporter", standing_in["/etc/lumen/exporter"])
    (Path(standing_in["/etc/lumen/exporter"]) / "config.json").write_text(relocated)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = [
        arg.replace("/etc/lumen/exporter", standing_in["/etc/lumen/exporter"]).replace(
            "/var/lib/lumen", str(tmp_path / "state")
        )
        for arg in container["args"]
    ]
    # A token of 16 characters at least: write the stand-in's pipeline token file over.
    token_file = Path(args[args.index("--pipeline-token-file") + 1])
    token_file.write_text("pipeline-token-0123456789\n")

    settings = parse_settings(args, {})

    assert settings.probe_headers == {
        "ion-api": {
            "Authorization": "ion-api/authorization",
            "X-Lumen-Tenant": "ion-api/tenant",
        },
        "gateway": {"X-Api-Key": "gateway-key/key"},
    }
    assert settings.config.pipeline.expire_after == "2d"


def test_header_secrets_are_read_only_files_of_the_config_volume() -> None:
    _, deployment = rendered(load(FEATURES))
    pod = deployment["spec"]["template"]["spec"]
    (config,) = [v for v in pod["volumes"] if v["name"] == "config"]
    assert config["projected"]["defaultMode"] == 0o440
    secrets = [s["secret"] for s in config["projected"]["sources"] if "secret" in s]
    assert secrets == [
        {"name": "pipeline-ci", "items": [{"key": "token", "path": "pipeline-token"}]},
        {
            "name": "ion-api",
            "items": [{"key": "authorization", "path": "headers/ion-api/0"}],
        },
        {"name": "ion-api", "items": [{"key": "tenant", "path": "headers/ion-api/1"}]},
        {"name": "gateway-key", "items": [{"key": "key", "path": "headers/gateway/0"}]},
    ]
    (container,) = pod["containers"]
    assert {
        "name": "config",
        "mountPath": "/etc/lumen/exporter",
        "readOnly": True,
    } in container["volumeMounts"]
    # The header values are only referenced: no Secret data anywhere in the objects.
    assert "Bearer" not in json.dumps(exporter_objects(load(FEATURES), OPTIONS))


def with_probe(policy: Policy, change: Callable[[Probe], Probe]) -> Policy:
    exporter = policy.spec.exporter
    assert exporter is not None
    probes = [change(exporter.probes[0]), *exporter.probes[1:]]
    return dataclasses.replace(
        policy,
        spec=dataclasses.replace(policy.spec, exporter=replace(exporter, probes=probes)),
    )


def replace(exporter: Exporter, **changes: Any) -> Exporter:
    return dataclasses.replace(exporter, **changes)


def with_pipeline(policy: Policy, **changes: Any) -> Policy:
    exporter = policy.spec.exporter
    assert exporter is not None
    pipeline = dataclasses.replace(exporter.pipeline, **changes)
    return dataclasses.replace(
        policy,
        spec=dataclasses.replace(policy.spec, exporter=replace(exporter, pipeline=pipeline)),
    )


HEADER = ProbeHeader(name="X-Other", secret=SecretKeyRef(name="other", key="key"))
CONFIG_CHANGES: dict[str, Callable[[Policy], Policy]] = {
    "value map entry": lambda p: with_probe(
        p,
        lambda probe: dataclasses.replace(
            probe,
            value_maps={**probe.value_maps, "lumen_ion_mock_mode": {"off": 0, "on": 2}},
        ),
    ),
    "counted value": lambda p: with_probe(
        p,
        lambda probe: dataclasses.replace(probe, count_values={"lumen_ion_persona": "$.p"}),
    ),
    "distinct values": lambda p: with_probe(
        p, lambda probe: dataclasses.replace(probe, max_distinct_values=51)
    ),
    "method": lambda p: with_probe(p, lambda probe: dataclasses.replace(probe, method="GET")),
    "expected status": lambda p: with_probe(
        p, lambda probe: dataclasses.replace(probe, expected_status=[200])
    ),
    "header added": lambda p: with_probe(
        p, lambda probe: dataclasses.replace(probe, headers=[*probe.headers, HEADER])
    ),
    "header renamed": lambda p: with_probe(
        p,
        lambda probe: dataclasses.replace(
            probe,
            headers=[dataclasses.replace(probe.headers[0], name="Proxy-Authorization")],
        ),
    ),
    "expiry": lambda p: with_pipeline(p, expire_after="3d"),
    "no expiry": lambda p: with_pipeline(p, expire_after=None),
}


@pytest.mark.parametrize("change", CONFIG_CHANGES.values(), ids=CONFIG_CHANGES.keys())
def test_a_config_change_changes_the_config_hash(
    change: Callable[[Policy], Policy],
) -> None:
    policy = load(FEATURES)
    before = rendered(policy)[1]["spec"]["template"]["metadata"]["annotations"]
    after = rendered(change(policy))[1]["spec"]["template"]["metadata"]["annotations"]
    assert before[CONFIG_HASH_ANNOTATION] != after[CONFIG_HASH_ANNOTATION]


def test_a_header_moved_to_another_secret_changes_the_pod_template() -> None:
    """config.json names only the file; the Secret behind it is in the pod's volumes, which are
    part of the template too, so the pod rolls all the same."""
    policy = load(FEATURES)
    moved = with_probe(
        policy,
        lambda probe: dataclasses.replace(
            probe,
            headers=[
                dataclasses.replace(h, secret=SecretKeyRef(name="rotated", key="authorization"))
                if h.name == "Authorization"
                else h
                for h in probe.headers
            ],
        ),
    )
    before, after = rendered(policy)[1], rendered(moved)[1]
    annotations = before["spec"]["template"]["metadata"]["annotations"]
    assert annotations == after["spec"]["template"]["metadata"]["annotations"]
    assert before["spec"]["template"] != after["spec"]["template"]
