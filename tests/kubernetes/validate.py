#!/usr/bin/env python3
"""Offline checks of deploy/kubernetes, run by tests/kubernetes.rs.

    validate.py schemas -k 1.31 -k 1.37 FILE...
        Every resource of every FILE against the Kubernetes API schemas that
        the kubernetes-validate package ships, strictly (an unknown field is
        an error). The Prometheus Operator's kinds (ServiceMonitor,
        PrometheusRule) are CRDs the package has no schema for, and its
        command line only warns about such a kind and passes it; they are
        held here to a JSON schema of our own instead: the fields of the
        operator's CRDs that these manifests may use, with the CRDs' types,
        patterns and required keys, metadata and label selectors checked
        with Kubernetes' own definitions. A field outside that subset fails,
        as does any other kind without a schema: nothing passes unchecked.
        One line per resource; exit 1 when any fails.

    validate.py to-json FILE
        The YAML documents of FILE as one JSON array (the Rust test reads
        manifests through this, so it needs no YAML crate).

    validate.py prometheusrule RULES_FILE
        Print deploy/kubernetes/prometheusrule.yaml as built from the
        Prometheus rules file (ops/prometheus/infergate-alerts.yml): its
        groups, text and comments unchanged, under `spec:`. To refresh it:
          python3 tests/kubernetes/validate.py prometheusrule \\
            ops/prometheus/infergate-alerts.yml > deploy/kubernetes/prometheusrule.yaml

Needs kubernetes-validate (and its PyYAML and jsonschema), pinned in
tests/kubernetes/requirements.txt; scripts/test installs them in a venv.
"""

import argparse
import json
import sys

import jsonschema
import yaml
from referencing import Registry, Resource

import kubernetes_validate
import kubernetes_validate.utils as kv

DEFS = "https://kubernetes.io/api/_definitions.json#/$defs/"
OBJECT_META = {"$ref": DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
LABEL_SELECTOR = {"$ref": DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"}
# The operator's duration pattern (its CRDs' `Duration` type).
DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def closed(properties, required=()):
    """An object with these properties only."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def resource(api_version, kind, spec):
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **closed(
            {
                "apiVersion": {"const": api_version},
                "kind": {"const": kind},
                "metadata": OBJECT_META,
                "spec": spec,
            },
            required=("apiVersion", "kind", "metadata", "spec"),
        ),
    }


RELABEL = closed(
    {
        "action": {"type": "string"},
        "sourceLabels": {"type": "array", "items": {"type": "string"}},
        "separator": {"type": "string"},
        "targetLabel": {"type": "string"},
        "regex": {"type": "string"},
        "modulus": {"type": "integer"},
        "replacement": {"type": "string"},
    }
)

# monitoring.coreos.com/v1, as the operator's CRDs define them (a subset).
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): resource(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        closed(
            {
                "selector": LABEL_SELECTOR,
                "namespaceSelector": closed(
                    {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    }
                ),
                "jobLabel": {"type": "string"},
                "targetLabels": {"type": "array", "items": {"type": "string"}},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "sampleLimit": {"type": "integer"},
                "endpoints": {
                    "type": "array",
                    "items": closed(
                        {
                            "port": {"type": "string"},
                            "targetPort": {"type": ["integer", "string"]},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                            "params": {
                                "type": "object",
                                "additionalProperties": {
                                    "type": "array",
                                    "items": {"type": "string"},
                                },
                            },
                            "interval": DURATION,
                            "scrapeTimeout": DURATION,
                            "honorLabels": {"type": "boolean"},
                            "honorTimestamps": {"type": "boolean"},
                            "relabelings": {"type": "array", "items": RELABEL},
                            "metricRelabelings": {"type": "array", "items": RELABEL},
                        }
                    ),
                },
            },
            required=("selector", "endpoints"),
        ),
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): resource(
        "monitoring.coreos.com/v1",
        "PrometheusRule",
        closed(
            {
                "groups": {
                    "type": "array",
                    "items": closed(
                        {
                            "name": {"type": "string", "minLength": 1},
                            "interval": DURATION,
                            "query_offset": DURATION,
                            "limit": {"type": "integer"},
                            "labels": STRING_MAP,
                            "partial_response_strategy": {"type": "string"},
                            "rules": {
                                "type": "array",
                                "items": {
                                    **closed(
                                        {
                                            "alert": {"type": "string"},
                                            "record": {"type": "string"},
                                            "expr": {"type": ["integer", "string"]},
                                            "for": DURATION,
                                            "keep_firing_for": {**DURATION, "minLength": 1},
                                            "labels": STRING_MAP,
                                            "annotations": STRING_MAP,
                                        },
                                        required=("expr",),
                                    ),
                                    # "Only one of `record` and `alert` must be set."
                                    "oneOf": [
                                        {"required": ["alert"]},
                                        {"required": ["record"]},
                                    ],
                                },
                            },
                        },
                        required=("name",),
                    ),
                },
            },
        ),
    ),
}


def schema_version(desired):
    """The package's schema version used for a desired Kubernetes version:
    the newest that is not newer (as kubernetes_validate.validate picks)."""
    want = kv.major_minor(desired)
    older = [v for v in kv.all_versions() if kv.major_minor(v) <= want]
    if not older:
        raise SystemExit(f"kubernetes-validate has no schemas for Kubernetes {desired}")
    return older[-1]


def validate_crd(doc, schema, desired):
    version = schema_version(desired)
    defs = kv.schema_contents(
        f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", desired
    )
    registry = Resource.from_contents(defs) @ Registry()
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    return kv.major_minor(version), errors


def short(message, limit=240):
    """jsonschema's message, without the whole instance it may quote."""
    return message if len(message) <= limit else message[:limit] + " ..."


def name_of(doc):
    meta = doc.get("metadata") or {}
    return f"{str(doc.get('kind', '?')).lower()}/{meta.get('name', '?')}"


def schemas(args):
    failures = 0
    checked = 0
    for filename in args.files:
        docs = kv.resources_from_file(filename)
        if not docs:
            print(f"ERROR {filename}: no resource in it")
            failures += 1
        for doc in docs:
            for desired in args.kubernetes_version:
                checked += 1
                key = (doc.get("apiVersion"), doc.get("kind"))
                what = f"{filename} {name_of(doc)} ({key[0]})"
                if key in CRD_SCHEMAS:
                    version, errors = validate_crd(doc, CRD_SCHEMAS[key], desired)
                    for e in errors:
                        path = ".".join(str(p) for p in e.path)
                        print(f"ERROR {what} against the operator's CRD subset, Kubernetes {version}: {path}: {short(e.message)}")
                    if errors:
                        failures += 1
                    else:
                        print(f"ok {what}: CRD subset schema, meta from Kubernetes {version}")
                    continue
                try:
                    version = kv.validate(doc, desired, strict=True)
                    print(f"ok {what}: Kubernetes {version} (strict)")
                except kv.ValidationError as e:
                    path = ".".join(str(p) for p in e.path)
                    print(f"ERROR {what} against Kubernetes {e.version}: {path}: {short(e.message)}")
                    failures += 1
                except kv.SchemaNotFoundError as e:
                    # The package's CLI only warns here; an unchecked resource
                    # is a failure.
                    print(f"ERROR {what}: {e.message}, and none of our own")
                    failures += 1
    print(
        f"kubernetes-validate {kubernetes_validate.__version__}: "
        f"{checked - failures} resource checks passed, {failures} failed"
    )
    return 1 if failures else 0


def to_json(args):
    with open(args.file) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    json.dump(docs, sys.stdout)
    return 0


RULE_HEADER = """\
# The alerting rules of ops/prometheus/infergate-alerts.yml, for the
# Prometheus Operator (needs its CRDs; see servicemonitor.yaml). Do not edit
# the groups here: edit ops/prometheus/infergate-alerts.yml, then rebuild
# this file with
#   python3 tests/kubernetes/validate.py prometheusrule \\
#     ops/prometheus/infergate-alerts.yml > deploy/kubernetes/prometheusrule.yaml
# tests/kubernetes.rs fails while the two differ.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: infergate
  labels:
    app.kubernetes.io/name: infergate
    app.kubernetes.io/part-of: infergate
spec:
"""


def prometheusrule(args):
    with open(args.rules) as f:
        lines = f.read().splitlines()
    # From `groups:` on (the file's own header comment is about loading it
    # into Prometheus by hand), indented under `spec:`.
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = "\n".join(("  " + line) if line.strip() else "" for line in lines[start:])
    sys.stdout.write(RULE_HEADER + body + "\n")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("schemas")
    p.add_argument("-k", "--kubernetes-version", action="append", required=True)
    p.add_argument("files", nargs="+")
    p.set_defaults(run=schemas)
    p = sub.add_parser("to-json")
    p.add_argument("file")
    p.set_defaults(run=to_json)
    p = sub.add_parser("prometheusrule")
    p.add_argument("rules")
    p.set_defaults(run=prometheusrule)
    args = parser.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
