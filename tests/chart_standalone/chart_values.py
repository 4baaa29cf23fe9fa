"""The standalone charts' ``values.schema.json`` and README values tables, generated.

The values that mirror a policy's ``spec.threader`` / ``spec.exporter`` take their schema from the
model (``policy.schema.object_schema``, the CRD's source), so the chart accepts what a policy
accepts, with the same descriptions and defaults. Chart-only values (image, names, peers,
scheduling) are declared here. Everything is strict: ``additionalProperties: false`` on every
object but free-form maps.

The CRD's CEL rules become JSON Schema where JSON Schema can say them (map key patterns, status
ranges, value-map sizes); the cross-field rules are checked by the charts' templates with the
CRD's messages (``TEMPLATE_RULES``), and ``test_charts.py`` makes each one refuse.

Regenerate after a model or chart change::

    .venv/bin/python -m tests.chart_standalone.chart_values --write
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lumen_alerting.policy.model import Exporter, Threader
from lumen_alerting.policy.schema import object_schema

Schema = dict[str, Any]

REPO = Path(__file__).resolve().parents[2]
CHARTS = REPO / "charts"
VALUES_START = "<!-- values:start -->"
VALUES_END = "<!-- values:end -->"
DNS_SUBDOMAIN_OR_EMPTY = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"

# CEL rules of the spec the templates check (`fail` with the same message): a JSON schema cannot
# compare two fields, nor keep list entries unique by a key.
TEMPLATE_RULES = {
    "lumen-threader": (
        "allowVolatile only applies to store.type redis",
        "more than one replica needs store.type redis",
        "store.type redis needs store.url",
        "more than one replica needs incidents.databaseURL (a shared PostgreSQL)",
        "persistence needs replicas 1 (several replicas share state through store.type redis "
        "and incidents.databaseURL instead)",
    ),
    "lumen-exporter": (
        "pipeline.enabled needs pipeline.token",
        "every key of valueMaps must be a key of fields (a value map converts that field's "
        "strings)",
    ),
}

# Descriptions written for a policy, said for a release instead.
DESCRIPTION_EDITS = (
    ("Name of a Secret in the policy's namespace.", "Name of a Secret in the release namespace."),
    ("Probe name, unique in the policy.", "Probe name, unique in the release."),
    ("Required when a receiver posts to Slack.", "Required to post to Slack."),
    (
        "each policy gets its own key prefix `lumen:<namespace>:<policy>:`",
        "the keys are under `keyPrefix`",
    ),
    (
        "The claim is owned by the policy: deleting the policy, or setting this false, deletes "
        "the claim",
        "The claim `<full name>-state` belongs to the release: `helm uninstall`, or setting "
        "this false, deletes the claim",
    ),
)


def from_model(schema: Schema, rules: tuple[str, ...]) -> Schema:
    """An OpenAPI schema of the model as a strict JSON schema; CEL rules either translated or
    named in ``rules`` (the templates check those); any other rule is an error to fix here."""
    out: Schema = {}
    for key, value in schema.items():
        if key == "x-kubernetes-validations":
            for rule in value:
                translated = translate_rule(rule["rule"])
                if translated is not None:
                    out = merge(out, translated)
                elif rule["message"] not in rules:
                    raise ValueError(f"CEL rule with no JSON schema nor template check: {rule}")
        elif key.startswith("x-kubernetes-"):
            continue  # list-map keys: templates keep probe and header names unique
        elif key == "properties":
            out["properties"] = {k: from_model(v, rules) for k, v in value.items()}
            out["additionalProperties"] = False
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = merge(from_model(value, rules), out.get(key, {}))
        elif key == "description":
            out[key] = edit_description(value)
        else:
            out[key] = value
    return out


def merge(schema: Schema, extra: Schema) -> Schema:
    merged = dict(schema)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def translate_rule(rule: str) -> Schema | None:
    keys = re.fullmatch(r"self\.all\(k, k\.matches\('(.*)'\)\)", rule)
    if keys:
        return {"propertyNames": {"pattern": keys[1]}}
    statuses = re.fullmatch(r"self\.all\(s, s >= (\d+) && s <= (\d+)\)", rule)
    if statuses:
        return {"items": {"minimum": int(statuses[1]), "maximum": int(statuses[2])}}
    sizes = re.fullmatch(r"self\.all\(k, self\[k\]\.size\(\) <= (\d+)\)", rule)
    if sizes:
        return {"additionalProperties": {"maxProperties": int(sizes[1])}}
    return None


def edit_description(text: str) -> str:
    for old, new in DESCRIPTION_EDITS:
        text = text.replace(old, new)
    return text


def string_map(description: str) -> Schema:
    return {
        "description": description,
        "type": "object",
        "additionalProperties": {"type": "string"},
    }


def label_selector(description: str) -> Schema:
    return {
        "description": description,
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "matchLabels": string_map("Labels the selected objects must have."),
            "matchExpressions": {
                "description": "Set-based requirements, all of which must hold.",
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {"type": "string", "minLength": 1},
                        "operator": {
                            "type": "string",
                            "enum": ["In", "NotIn", "Exists", "DoesNotExist"],
                        },
                        "values": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    }


def peers(description: str) -> Schema:
    """A list of NetworkPolicyPeer, as the operator's `--*-peers` flags take them."""
    return {
        "description": description,
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {
                "podSelector": label_selector("Pods (in the namespaces selected) allowed in."),
                "namespaceSelector": label_selector(
                    "Namespaces allowed in; `{}` is every namespace. Without it: the release "
                    "namespace."
                ),
                "ipBlock": {
                    "description": "A CIDR range allowed in, minus `except`.",
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["cidr"],
                    "properties": {
                        "cidr": {"type": "string", "minLength": 1},
                        "except": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    }


QUANTITIES: Schema = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number"]},
}


def common_values(app: str, component: str) -> Schema:
    """Chart-only values both charts share."""
    return {
        "image": {
            "description": "The Lumen image (one image holds every Lumen program).",
            "type": "object",
            "additionalProperties": False,
            "required": ["repository"],
            "properties": {
                "repository": {
                    "description": "Image repository; the operator's default is the same.",
                    "type": "string",
                    "minLength": 1,
                },
                "tag": {
                    "description": "Image tag. Empty: the chart's appVersion.",
                    "type": "string",
                },
                "pullPolicy": {
                    "description": "The container's imagePullPolicy.",
                    "type": "string",
                    "enum": ["Always", "IfNotPresent", "Never"],
                },
            },
        },
        "kpsRelease": {
            "description": "Value of the ServiceMonitor's `release` label, the name of the "
            "kube-prometheus-stack release whose Prometheus should scrape the "
            f"{component}. Empty: `global.kpsRelease`, else `kube-prometheus-stack`.",
            "type": "string",
            "maxLength": 63,
            "pattern": LABEL_VALUE,
        },
        "serviceMonitor": {
            "description": "The ServiceMonitor (a prometheus-operator kind).",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {
                    "description": "Render the ServiceMonitor; false where the "
                    "prometheus-operator CRDs are not installed.",
                    "type": "boolean",
                }
            },
        },
        "resources": {
            "description": f"The container's resources; the defaults are the operator's for a "
            f"{component}.",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "requests": {"description": "Requested CPU and memory.", **QUANTITIES},
                "limits": {"description": "CPU and memory limits.", **QUANTITIES},
            },
        },
        "nameOverride": {
            "description": f"Replaces the chart name (`{app}`) in the objects' names and in "
            "the `app.kubernetes.io/name` label.",
            "type": "string",
            "maxLength": 63,
        },
        "fullnameOverride": {
            "description": "The objects' name. Empty: `<release>-<chart name>`; the release "
            "name when it contains the chart name; the chart name when that starts with "
            "`<release>-` (release `lumen`: `lumen-threader`, `lumen-exporter`).",
            "type": "string",
            "maxLength": 63,
            "pattern": DNS_SUBDOMAIN_OR_EMPTY,
        },
        "podAnnotations": string_map("Extra annotations of the pod."),
        "nodeSelector": string_map("The pod's nodeSelector."),
        "tolerations": {
            "description": "The pod's tolerations.",
            "type": "array",
            "items": {"type": "object"},
        },
        "affinity": {"description": "The pod's affinity.", "type": "object"},
        "global": {
            "description": "Values an umbrella chart shares with its subcharts; only "
            "`global.kpsRelease` is read.",
            "type": "object",
        },
    }


PROMETHEUS_PEERS = (
    "Who may scrape `/metrics` on the http port (NetworkPolicyPeers). Default: pods labelled "
    "`app.kubernetes.io/name: prometheus` (as prometheus-operator labels them) in any namespace. "
    "Empty: no rule for them."
)


def check_description_edits() -> None:
    """Each edit still finds its text in the model: a reworded description must not slip into
    the charts still speaking of a policy."""
    text = json.dumps([object_schema(Threader), object_schema(Exporter)])
    missing = [old for old, _ in DESCRIPTION_EDITS if json.dumps(old)[1:-1] not in text]
    if missing:
        raise ValueError(f"DESCRIPTION_EDITS no longer match the model: {missing}")


def threader_values() -> Schema:
    check_description_edits()
    spec = from_model(object_schema(Threader), TEMPLATE_RULES["lumen-threader"])
    chart: Schema = {
        "tokens": {
            "description": "The webhook and admin tokens. The chart never creates their Secret "
            "(see README): create it first.",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "secretName": {
                    "description": "Existing Secret with keys `webhook-token` (Alertmanager's "
                    "bearer token) and `admin-token` (guards `/cache`). Empty: the full name "
                    "(the Deployment's name).",
                    "type": "string",
                    "maxLength": 253,
                    "pattern": DNS_SUBDOMAIN_OR_EMPTY,
                }
            },
        },
        "keyPrefix": {
            "description": "Redis key prefix with `store.type: redis`; give each threader "
            "sharing a Redis its own. Empty: `lumen:<namespace>:<full name>:`.",
            "type": "string",
            "maxLength": 253,
        },
        "networkPolicy": {
            "description": "A NetworkPolicy admitting only Alertmanager and Prometheus to the "
            "threader's port (ingress only: egress to Slack, Redis and PostgreSQL stays open).",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"description": "Render the NetworkPolicy.", "type": "boolean"},
                "alertmanagerPeers": peers(
                    "Who may post alerts to the http port (NetworkPolicyPeers). Default: pods "
                    "labelled `app.kubernetes.io/name: alertmanager` (as prometheus-operator "
                    "labels them) in any namespace. Empty: no rule for them."
                ),
                "prometheusPeers": peers(PROMETHEUS_PEERS),
            },
        },
        **common_values("lumen-threader", "threader"),
    }
    return chart_schema("lumen-threader", spec, chart)


def exporter_values() -> Schema:
    check_description_edits()
    spec = from_model(object_schema(Exporter), TEMPLATE_RULES["lumen-exporter"])
    chart: Schema = {
        "networkPolicy": {
            "description": "A NetworkPolicy admitting only Prometheus (and, with "
            "`pipeline.enabled`, the pipeline's clients) to the exporter's port (ingress only: "
            "egress to the probed endpoints stays open).",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"description": "Render the NetworkPolicy.", "type": "boolean"},
                "prometheusPeers": peers(PROMETHEUS_PEERS),
                "pipelinePeers": peers(
                    "Who may POST pipeline runs with `pipeline.enabled` (NetworkPolicyPeers). "
                    "Default: every pod of the release namespace. Empty: no rule for them."
                ),
            },
        },
        **common_values("lumen-exporter", "exporter"),
    }
    return chart_schema("lumen-exporter", spec, chart)


def chart_schema(chart: str, spec: Schema, chart_only: Schema) -> Schema:
    overlap = set(spec["properties"]) & set(chart_only)
    if overlap:
        raise ValueError(f"chart-only values shadow spec fields: {sorted(overlap)}")
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": f"Values of the {chart} chart",
        "type": "object",
        "additionalProperties": False,
        "properties": {**spec["properties"], **chart_only},
    }


@dataclass(frozen=True)
class Chart:
    name: str
    directory: Path
    schema: Callable[[], Schema]
    model: type  # the spec dataclass whose fields the chart's values mirror

    @property
    def spec_field(self) -> str:
        return self.name.removeprefix("lumen-")


STANDALONE = (
    Chart("lumen-threader", CHARTS / "threader", threader_values, Threader),
    Chart("lumen-exporter", CHARTS / "exporter", exporter_values, Exporter),
)


def schema_text(chart: Chart) -> str:
    return json.dumps(chart.schema(), indent=2) + "\n"


def leaves(
    schema: Schema, path: str = "", items: bool = False, objects: bool = False
) -> Iterator[tuple[str, Schema]]:
    """Documented values: every scalar, list and free-form map; objects with properties are
    walked into (and listed too with ``objects``), and with ``items`` so are the entries of
    lists of objects (``probes[].url``)."""
    properties = schema.get("properties")
    if schema.get("type") == "array" and items and "properties" in schema.get("items", {}):
        yield path, schema
        yield from leaves(schema["items"], f"{path}[]", items, objects)
        return
    if properties is None or schema.get("type") != "object":
        yield path, schema
        return
    if objects and path and not path.endswith("[]"):
        yield path, schema
    for key, sub in properties.items():
        yield from leaves(sub, f"{path}.{key}" if path else key, items, objects)


def lookup(values: Any, path: str) -> tuple[bool, Any]:
    node = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def type_name(schema: Schema) -> str:
    kind = schema.get("type", "object")
    return " or ".join(kind) if isinstance(kind, list) else str(kind)


def values_table(chart: Chart) -> str:
    """The README's values table: every leaf value with its type, default and description."""
    spec_keys = set(object_schema(chart.model)["properties"])
    values = yaml.safe_load((chart.directory / "values.yaml").read_text())
    rows = [
        "| value | type | default | description |",
        "| --- | --- | --- | --- |",
    ]
    for key, top in chart.schema()["properties"].items():
        spec = key in spec_keys
        for path, schema in leaves(top, key, items=spec, objects=True):
            present, default = lookup(values, path)
            shown = f"`{json.dumps(default)}`" if present else "unset"
            if "properties" in schema and present:
                shown = "see below"  # an object whose fields have rows of their own
            elif "[]" in path:
                shown = "—"  # an entry's field: the default, if any, is in the description
                if "default" in schema:
                    shown = f"`{json.dumps(schema['default'])}`"
            description = schema.get("description", "").replace("|", "\\|").replace("\n", " ")
            if spec:
                description += f" (`spec.{chart.spec_field}.{path}`)"
            rows.append(f"| `{path}` | {type_name(schema)} | {shown} | {description} |")
    return "\n".join(rows) + "\n"


def readme_text(chart: Chart) -> str:
    readme = (chart.directory / "README.md").read_text()
    start, end = readme.index(VALUES_START), readme.index(VALUES_END)
    return readme[: start + len(VALUES_START)] + "\n\n" + values_table(chart) + "\n" + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="write the files (else: check)")
    args = parser.parse_args(argv)
    stale = []
    for chart in STANDALONE:
        for path, text in (
            (chart.directory / "values.schema.json", schema_text(chart)),
            (chart.directory / "README.md", readme_text(chart)),
        ):
            current = path.read_text() if path.exists() else None
            if current != text:
                stale.append(path)
                if args.write:
                    path.write_text(text)
    for path in stale:
        print(f"{'wrote' if args.write else 'stale'}: {path.relative_to(REPO)}")
    return 1 if stale and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
