"""The KubeRay ``RayService`` manifests (deploy/kuberay/) are what ``python -m serving.kuberay`` writes from the
Serve configs, embed exactly their applications, and are valid RayService objects for KubeRay v1.7.0.

The schema is the RayService CRD's ``openAPIV3Schema`` (tests/deploy/rayservice-v1-schema.json, cut by
tests/deploy/extract_crd_schema.py; provenance inside it), validated with ``jsonschema`` the way
``kubectl apply`` (field validation ``Strict``) would: an unknown field is an error, not silently pruned.
The CRD's CEL rules (``x-kubernetes-validations``) are not evaluated here; they need an API server."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError
from ray.serve.schema import ServeDeploySchema

from models.config import REPO_ROOT
from serving import kuberay

SCHEMA_FILE = Path(__file__).with_name("rayservice-v1-schema.json")
PROFILES = list(kuberay.PROFILES)


def _strict(node: Any) -> Any:
    """Every object schema that lists its properties and allows nothing else explicitly refuses unknown keys."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        if "properties" in node:  # property names are not schemas' keywords: recurse into each schema only
            out["properties"] = {name: _strict(schema) for name, schema in node["properties"].items()}
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@pytest.fixture(scope="module")
def validator() -> jsonschema.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    strict = _strict(schema)
    cls = jsonschema.validators.validator_for(strict, default=jsonschema.Draft7Validator)
    cls.check_schema(strict)
    return cls(strict)


def _manifest(profile: str) -> dict[str, Any]:
    _, path = kuberay.PROFILES[profile]
    return yaml.safe_load(path.read_text())


def _errors(validator: jsonschema.Validator, doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_schema_provenance() -> None:
    prov = json.loads(SCHEMA_FILE.read_text())["x-provenance"]
    assert prov["repository"] == "https://github.com/ray-project/kuberay"
    assert prov["path"] == "ray-operator/config/crd/bases/ray.io_rayservices.yaml"
    assert prov["ref"] == "v1.7.0" and len(prov["commit"]) == 40
    assert prov["license"] == "Apache-2.0"


def test_committed_manifests_are_the_generators() -> None:
    assert kuberay.main(["--check"]) == 0, "run `python -m serving.kuberay` and commit deploy/kuberay/"


@pytest.mark.parametrize("profile", PROFILES)
def test_manifest_is_a_valid_rayservice(validator: jsonschema.Validator, profile: str) -> None:
    doc = _manifest(profile)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayService"
    assert _errors(validator, doc) == []


@pytest.mark.parametrize("profile", PROFILES)
def test_serve_config_is_ray_config(profile: str) -> None:
    """One source of truth: serveConfigV2's applications are the Serve config file's, key for key."""
    config_path, _ = kuberay.PROFILES[profile]
    source = yaml.safe_load(config_path.read_text())
    embedded = yaml.safe_load(_manifest(profile)["spec"]["serveConfigV2"])
    # every application requires the token on a cluster (serving/_settings.py ServingArgs.auth)
    assert kuberay.AUTH == "required"
    assert embedded["applications"] == [
        {**a, "args": {**a["args"], "auth": kuberay.AUTH}} for a in source["applications"]
    ]
    assert embedded["proxy_location"] == source["proxy_location"]
    assert embedded["http_options"] == {**source["http_options"], "host": "0.0.0.0"}
    ServeDeploySchema.model_validate(embedded)  # and Ray Serve itself accepts it


@pytest.mark.parametrize("profile", PROFILES)
def test_every_container_gets_the_fast_path_env(profile: str) -> None:
    from serving._settings import fast_path_env

    cluster = _manifest(profile)["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        for container in group["template"]["spec"]["containers"]:
            env = container["env"]
            assert {e["name"]: e["value"] for e in env if "value" in e} == fast_path_env()
            # the case database and the API token from the Secret, in every container (the ingress may run on
            # any worker): without them a pod does not start
            secret = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
            assert secret == {
                "MEDLENS_DB_URL": {"name": "medlens", "key": "db-url"},
                "MEDLENS_API_TOKEN": {"name": "medlens", "key": "api-token"},
            }
    assert cluster["rayVersion"] == kuberay.RAY_VERSION
    # Ray's token authentication: the head's dashboard and Jobs API (8265) take no unauthenticated job
    assert cluster["authOptions"] == {"mode": "token"}


def _break_rayparams(doc: dict[str, Any]) -> None:
    doc["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # must be a string


def _break_typo(doc: dict[str, Any]) -> None:
    cluster = doc["spec"]["rayClusterConfig"]
    cluster["workerGroupSpec"] = cluster.pop("workerGroupSpecs")  # misspelt field


def _break_no_containers(doc: dict[str, Any]) -> None:
    del doc["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"]


def _break_serve_config_as_mapping(doc: dict[str, Any]) -> None:
    doc["spec"]["serveConfigV2"] = yaml.safe_load(doc["spec"]["serveConfigV2"])  # must be a YAML string


def _break_quantity(doc: dict[str, Any]) -> None:
    worker = doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    worker["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "8 gigabytes"


def _break_no_cluster(doc: dict[str, Any]) -> None:
    del doc["spec"]["rayClusterConfig"]


@pytest.mark.parametrize(
    "breakage",
    [
        _break_rayparams,
        _break_typo,
        _break_no_containers,
        _break_serve_config_as_mapping,
        _break_quantity,
        _break_no_cluster,
    ],
)
def test_a_broken_manifest_is_rejected(validator: jsonschema.Validator, breakage: Any) -> None:
    """The validation can fail: each deliberate breakage of the committed manifest is an error."""
    doc = copy.deepcopy(_manifest("cpu"))
    assert _errors(validator, doc) == []
    breakage(doc)
    assert _errors(validator, doc), f"{breakage.__name__} was accepted"


def test_a_broken_serve_config_is_rejected() -> None:
    embedded = yaml.safe_load(_manifest("cpu")["spec"]["serveConfigV2"])
    embedded["applications"][1]["deployments"][0]["max_ongoing_requests"] = -1
    with pytest.raises(ValidationError):
        ServeDeploySchema.model_validate(embedded)


def test_manifest_files_exist_where_docs_point() -> None:
    text = (REPO_ROOT / "docs" / "deploy.md").read_text()
    for _, path in kuberay.PROFILES.values():
        assert str(path.relative_to(REPO_ROOT)) in text
