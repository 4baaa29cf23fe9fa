"""Values the chart could render but the operator would then get wrong are refused by `helm
template` itself (a `fail` in a template, or the schema), with a message naming the value."""

from __future__ import annotations

import pytest

from tests.chart.helm import NAMESPACE, RELEASE, run_helm, template


def refusal(*settings: str, skip_schema: bool = False) -> str:
    args = ["template", RELEASE, ".", "--namespace", NAMESPACE]
    for setting in settings:
        args += ["--set-json", setting]
    if skip_schema:
        args.append("--skip-schema-validation")
    proc = run_helm(*args)
    assert proc.returncode != 0, f"{settings} were accepted"
    return proc.stderr


def test_a_policy_outside_the_watched_namespaces_is_refused() -> None:
    """The operator only watches watchNamespaces: a policy elsewhere would never be reconciled."""
    elsewhere = refusal(
        'watchNamespaces=["shop"]',
        'policies=[{"name":"checkout","namespace":"payments","spec":{}}]',
    )
    assert '"checkout" is in namespace "payments"' in elsewhere
    assert "watchNamespaces (shop)" in elsewhere
    # Without a namespace the policy goes to the release namespace, which is not watched either.
    default = refusal('watchNamespaces=["shop"]', 'policies=[{"name":"checkout","spec":{}}]')
    assert f'in namespace "{NAMESPACE}"' in default
    for settings in (
        ['watchNamespaces=["shop"]', 'policies=[{"name":"a","namespace":"shop","spec":{}}]'],
        [f'watchNamespaces=["{NAMESPACE}"]', 'policies=[{"name":"a","spec":{}}]'],
        ["watchNamespaces=[]", 'policies=[{"name":"a","namespace":"payments","spec":{}}]'],
    ):
        assert template(settings=settings).of_kind("LumenAlertPolicy"), settings


@pytest.mark.parametrize("skip_schema", [False, True], ids=["schema", "template"])
def test_an_existing_service_account_must_be_named(skip_schema: bool) -> None:
    """create: false without a name would bind the ClusterRole to the namespace's `default`
    ServiceAccount (every pod that runs as it). The schema refuses it; the templates refuse it
    too when the schema is skipped."""
    message = refusal("serviceAccount.create=false", skip_schema=skip_schema)
    assert "serviceAccount" in message and "name" in message, message
    named = template(settings=["serviceAccount.create=false", 'serviceAccount.name="ops"'])
    assert not named.of_kind("ServiceAccount")
    (binding,) = named.of_kind("ClusterRoleBinding")
    assert binding["subjects"][0]["name"] == "ops"
    pod = named.one("Deployment", "-operator")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ops"


def test_the_metrics_and_liveness_ports_must_differ() -> None:
    """The operator binds both on 0.0.0.0; the same port twice would crash it at start."""
    message = refusal("operator.livenessPort=8000")
    assert "operator.metricsPort and operator.livenessPort are both 8000" in message
