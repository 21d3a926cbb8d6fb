"""Cut the schema that tests/deploy/test_kuberay.py validates against out of KubeRay's RayService CRD.

    git -C kuberay show v1.7.0:ray-operator/config/crd/bases/ray.io_rayservices.yaml > ray.io_rayservices.yaml
    python -m tests.deploy.extract_crd_schema ray.io_rayservices.yaml --ref v1.7.0 --commit <sha> \
        > tests/deploy/rayservice-v1-schema.json

Keeps the ``v1`` version's ``openAPIV3Schema`` without ``status`` (the operator writes it, a manifest does
not) and without ``description`` texts (most of the file's 1 MB); everything that constrains a manifest
stays. The result records where it came from (``$comment``, ``x-provenance``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

SOURCE_REPO = "https://github.com/ray-project/kuberay"
SOURCE_PATH = "ray-operator/config/crd/bases/ray.io_rayservices.yaml"


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        # a schema's "description" is text; a property *named* description would map to a schema (a dict)
        return {k: _strip(v) for k, v in node.items() if not (k == "description" and isinstance(v, str))}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def extract(crd: dict[str, Any], ref: str, commit: str) -> dict[str, Any]:
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _strip(version["schema"]["openAPIV3Schema"])
    schema["properties"].pop("status", None)
    return {
        "$comment": (
            f"RayService v1 openAPIV3Schema from {SOURCE_REPO} ({SOURCE_PATH}) at {ref}, commit {commit}; "
            "Apache License 2.0 (KubeRay authors). "
            "Descriptions and status removed by tests/deploy/extract_crd_schema.py."
        ),
        "x-provenance": {
            "repository": SOURCE_REPO,
            "path": SOURCE_PATH,
            "ref": ref,
            "commit": commit,
            "license": "Apache-2.0",
            "crd": crd["metadata"]["name"],
            "controller-gen": crd["metadata"].get("annotations", {}).get("controller-gen.kubebuilder.io/version"),
        },
        **schema,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("crd", type=Path)
    parser.add_argument("--ref", required=True)
    parser.add_argument("--commit", required=True)
    args = parser.parse_args(argv)
    out = extract(yaml.safe_load(args.crd.read_text()), args.ref, args.commit)
    json.dump(out, sys.stdout, separators=(",", ":"))  # compact: 155 kB instead of 440
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
