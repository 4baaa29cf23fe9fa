"""Generated documentation stays in step with the model; the README shows the commands."""

from __future__ import annotations

import importlib.util

from tests.support.schemas import REPO

# A script in tools/, loaded for its generator.
_spec = importlib.util.spec_from_file_location(
    "policy_reference", REPO / "tools" / "policy_reference.py"
)
assert _spec and _spec.loader
policy_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(policy_reference)


def test_policy_reference_is_generated_from_the_model():
    committed = (REPO / "docs" / "policy-reference.md").read_text()
    assert committed == policy_reference.reference(), "run `make docs` and commit the result"


def test_reference_documents_every_spec_field():
    text = policy_reference.reference()
    for field in (
        "spec.slos[].sli.ratio.errors",
        "spec.routing.receivers[].email.authPassword",
        "spec.threader.store.type",
        "spec.exporter.probes[].healthMetric",
    ):
        assert f"`{field}`" in text, field


def test_readme_names_the_commands():
    readme = (REPO / "README.md").read_text()
    for command in (
        "make test",
        "lumenctl render",
        "lumenctl validate",
        "lumenctl test",
        "kubectl apply -f crds/",
    ):
        assert command in readme, command
