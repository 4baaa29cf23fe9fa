"""Whatever YAML a user writes, validation answers with InvalidPolicy or a valid policy that
renders: never a crash, a traceback, or a policy the renderer cannot handle."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lumen_alerting.policy import InvalidPolicy, policy_from_manifest
from lumen_alerting.render import render_policy
from lumen_alerting.render.unrouted import unrouted_alerts
from tests.support.document_mutation import mutations, node_paths
from tests.support.schemas import REPO

EXAMPLES = [yaml.safe_load(p.read_text()) for p in sorted(REPO.glob("examples/*.yaml"))]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "5m", "30d", "{{window}}", "#chan", "redis", "=~", "page", "{}", "0"]),
)
yaml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _check(manifest: Any) -> None:
    try:
        policy = policy_from_manifest(manifest)
    except InvalidPolicy as invalid:
        assert invalid.problems, "InvalidPolicy without problems"
        for problem in invalid.problems:
            assert problem.path and problem.reason
        return
    render_policy(policy)
    unrouted_alerts(policy)  # the operator runs it on every valid spec: it must not raise


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(*(mutations(example, yaml_values) for example in EXAMPLES)))
def test_any_single_change_to_an_example_is_handled(manifest):
    """Replace one node anywhere in a real policy with arbitrary YAML."""
    _check(manifest)


@settings(max_examples=200, deadline=None)
@given(yaml_values)
def test_arbitrary_documents_are_handled(value):
    _check(value)
    _check(
        {
            "apiVersion": "lumen.dev/v1alpha1",
            "kind": "LumenAlertPolicy",
            "metadata": {"name": "x"},
            "spec": value,
        }
    )


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(range(len(EXAMPLES))),
    st.data(),
    st.one_of(st.floats(), st.integers(), st.sampled_from([0, -1, 1e308, 1e-308, 2**63])),
)
def test_any_number_in_a_numeric_field_is_handled(index, data, number):
    """Every numeric leaf (objective, threshold, minEvents, replicas ...), any number at all."""
    manifest = copy.deepcopy(EXAMPLES[index])
    numeric = [p for p in node_paths(manifest) if _leaf(manifest, p).__class__ in (int, float)]
    if not numeric:
        return
    path = data.draw(st.sampled_from(numeric))
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = number
    _check(manifest)


def _leaf(manifest: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        manifest = manifest[key]
    return manifest
