"""The peering CRDs in crds/ and the chart's peering objects are the ones kopf looks for: the
group, version and plural of kopf's own selectors (so a kopf upgrade that moved them fails
here), the scope kopf's mode needs, and the name the operator is told with --peering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kopf._cogs.structs import references

from tests.chart.helm import operator_container, template
from tests.support.schemas import REPO

CRDS = {
    "ClusterKopfPeering": (REPO / "crds/kopf.dev_clusterkopfpeerings.yaml", "Cluster"),
    "KopfPeering": (REPO / "crds/kopf.dev_kopfpeerings.yaml", "Namespaced"),
}
# kopf's peering selectors in the mode the chart runs it: cluster-wide or per namespace.
SELECTORS = {
    "ClusterKopfPeering": references.CLUSTER_PEERINGS_K,
    "KopfPeering": references.NAMESPACED_PEERINGS_K,
}


def crd(kind: str) -> dict[str, Any]:
    path: Path = CRDS[kind][0]
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_the_crd_serves_what_kopf_selects(kind: str) -> None:
    spec = crd(kind)["spec"]
    selector = SELECTORS[kind]
    assert spec["group"] == selector.group
    assert spec["names"]["plural"] == selector.any_name
    assert spec["names"]["kind"] == kind
    assert spec["scope"] == CRDS[kind][1]
    served = [v["name"] for v in spec["versions"] if v["served"]]
    assert served == [selector.version]
    # kopf writes its keep-alives under status, keyed by replica: a free-form object.
    schema = spec["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["properties"]["status"]["x-kubernetes-preserve-unknown-fields"] is True


@pytest.mark.parametrize(
    ("settings", "kind", "namespaces"),
    [
        (["replicaCount=2"], "ClusterKopfPeering", [None]),
        (["replicaCount=3", 'watchNamespaces=["a","b"]'], "KopfPeering", ["a", "b"]),
    ],
)
def test_the_peering_objects_are_what_the_operator_is_told(
    settings: list[str], kind: str, namespaces: list[str | None]
) -> None:
    rendered = template(settings=[*settings, 'operator.peering="team-lumen"'])
    objects = rendered.of_kind(kind)
    selector = SELECTORS[kind]
    assert [obj["metadata"].get("namespace") for obj in objects] == namespaces
    for obj in objects:
        assert obj["apiVersion"] == f"{selector.group}/{selector.version}"
        assert obj["metadata"]["name"] == "team-lumen"
    assert "--peering=team-lumen" in operator_container(rendered)["args"]
