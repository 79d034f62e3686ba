"""Lay out, from local files, the JSON schemas kubeconform checks the Helm chart against.

kubeconform fetches schemas from the internet by default; these machines reach package
registries only.  `make tools` runs this script to build one directory it can read
instead (``-schema-location DIR/...``, see tests/deploy/test_manifests.py):

* ``kubernetes --version 1.37.0 --out DIR`` — the Kubernetes API schemas shipped by the
  PyPI package kubernetes-validate (a dev dependency), copied to
  ``DIR/v1.37.0-local-strict/<kind>-<group>-<version>.json``.  As shipped, each schema
  names its definitions by an absolute URL (``$id`` https://kubernetes.io/api/...,
  ``$ref`` /api/_definitions.json#...), which kubeconform would try to download; the
  copies drop ``$id`` and point ``$ref`` at the ``_definitions.json`` beside them.
* ``crd FILE.yaml... --out DIR`` — every version of each CustomResourceDefinition, converted to
  ``DIR/<group>/<kind>_<version>.json``: its ``openAPIV3Schema`` as JSON Schema, strict
  (an object with declared properties accepts no others, unless the CRD says it keeps
  unknown fields) and with ``nullable`` spelled as a ``null`` type.

Standard library and PyYAML only; the output is deterministic (sorted keys).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

KUBERNETES_REF = "/api/_definitions.json#"
LOCAL_REF = "_definitions.json#"


def _relocated(node: Any) -> Any:
    """``node`` with absolute ``$ref``s made relative and ``$id``s dropped."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$id" and isinstance(value, str):
                continue
            if key == "$ref" and isinstance(value, str) and value.startswith(KUBERNETES_REF):
                value = LOCAL_REF + value[len(KUBERNETES_REF) :]
            out[key] = _relocated(value)
        return out
    if isinstance(node, list):
        return [_relocated(item) for item in node]
    return node


def kubernetes_source(version: str) -> Path:
    """kubernetes-validate's strict schemas of one Kubernetes version."""
    try:
        import kubernetes_validate  # type: ignore[import-untyped]
    except ImportError:
        sys.exit("kubernetes-validate is not installed: run `make install`")
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    source = root / f"v{version}-local-strict"
    if not source.is_dir():
        have = sorted(p.name for p in root.glob("v*-local-strict"))
        sys.exit(f"kubernetes-validate has no schemas for {version} (it has {have})")
    return source


def copy_kubernetes(version: str, out: Path) -> int:
    target = out / f"v{version}-local-strict"
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for schema in sorted(kubernetes_source(version).glob("*.json")):
        body = _relocated(json.loads(schema.read_text()))
        (target / schema.name).write_text(json.dumps(body, sort_keys=True))
        count += 1
    return count


SCHEMA_MAPS = ("properties", "patternProperties", "definitions", "$defs")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
SCHEMA_ONE = ("items", "additionalProperties", "not")


def _strict(schema: Any) -> Any:
    """An OpenAPI v3 schema of a CRD as a strict JSON Schema (walked by keyword, so a
    property that happens to be named ``properties`` is not taken for the keyword)."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _strict(sub) for name, sub in value.items()}
        elif key in SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_strict(sub) for sub in value]
        elif key in SCHEMA_ONE and isinstance(value, dict):
            out[key] = _strict(value)
        else:
            out[key] = value
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    keeps_unknown = out.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in out and "additionalProperties" not in out and not keeps_unknown:
        out["additionalProperties"] = False
    return out


def convert_crd(crd_file: Path, out: Path) -> list[Path]:
    """One schema file per served version of the CRD in ``crd_file``."""
    written = []
    for doc in yaml.safe_load_all(crd_file.read_text()):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        group, kind = spec["group"], spec["names"]["kind"]
        for version in spec["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            schema["properties"]["apiVersion"] = {
                "type": "string",
                "enum": [f"{group}/{version['name']}"],
            }
            schema["properties"]["kind"] = {"type": "string", "enum": [kind]}
            path = out / group / f"{kind.lower()}_{version['name']}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(schema, sort_keys=True))
            written.append(path)
    if not written:
        sys.exit(f"{crd_file}: no CustomResourceDefinition in it")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    kube = sub.add_parser("kubernetes", help="copy kubernetes-validate's schemas of a version")
    kube.add_argument("--version", required=True, help="e.g. 1.37.0")
    kube.add_argument("--out", type=Path, required=True)
    crd = sub.add_parser("crd", help="convert CustomResourceDefinitions' schemas")
    crd.add_argument("files", type=Path, nargs="+")
    crd.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.what == "kubernetes":
        count = copy_kubernetes(args.version, args.out)
        print(f"kubernetes {args.version}: {count} schemas in {args.out}")
    else:
        for file in args.files:
            for path in convert_crd(file, args.out):
                print(f"{file.name} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
