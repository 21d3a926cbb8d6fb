"""serving/launch.py (what `make run` deploys with): every application of each Serve config file, built in one
process, carries exactly the options the file sets (no Ray cluster needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from models.config import REPO_ROOT
from serving._settings import ServingArgs
from serving.launch import build_targets, deployment_options

CONFIGS = [
    REPO_ROOT / "ray_config.yaml",
    REPO_ROOT / "ray_config.gpu.yaml",
    REPO_ROOT / "tests/serving/ray_config.test.yaml",
]


def _load(path: Path) -> ServeDeploySchema:
    return ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))


def _plain(value: Any) -> Any:
    return value.model_dump() if hasattr(value, "model_dump") else value


def _assert_subset(expected: Any, actual: Any, where: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not a mapping"
        for key, value in expected.items():
            _assert_subset(value, actual.get(key), f"{where}.{key}")
    else:
        assert actual == expected, f"{where}: built {actual!r}, the file says {expected!r}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_each_application_gets_the_files_name_prefix_args_and_deployment_options(path: Path) -> None:
    config = _load(path)
    targets = build_targets(config)
    assert [t.name for t in targets] == [a.name for a in config.applications]
    for app, target in zip(config.applications, targets, strict=True):
        assert target.route_prefix == app.route_prefix
        deployment = target.target._bound_deployment  # Serve's own record of the bound deployment
        assert deployment._replica_config.init_args == (ServingArgs.model_validate(app.args),)
        options = deployment_options(app)
        assert list(options) == [deployment.name], f"{app.name}: the file names the deployment {deployment.name}"
        checked = 0
        for key, value in options[deployment.name].items():
            if key == "ray_actor_options":
                _assert_subset(value, deployment._replica_config.ray_actor_options, f"{app.name}.{key}")
            elif key == "num_replicas":
                assert deployment.num_replicas == value
            else:
                _assert_subset(value, _plain(getattr(deployment._deployment_config, key)), f"{app.name}.{key}")
            checked += 1
        assert checked >= 2  # every deployment of these files sets options (a file without any would say nothing)
        logging = app.logging_config or config.logging_config
        assert target.logging_config == (logging.model_dump() if logging else None)


def test_a_file_naming_a_deployment_the_application_lacks_is_refused() -> None:
    raw = yaml.safe_load((REPO_ROOT / "ray_config.yaml").read_text())
    raw["applications"][1]["deployments"][0]["name"] = "pneumonia-cnn-typo"
    with pytest.raises(SystemExit, match="no deployment named"):
        build_targets(ServeDeploySchema.model_validate(raw))


def test_an_import_path_that_is_not_a_medlens_builder_is_refused() -> None:
    raw = yaml.safe_load((REPO_ROOT / "ray_config.yaml").read_text())
    raw["applications"][0]["import_path"] = "somewhere.else:app"
    with pytest.raises(SystemExit, match="not a MedLens builder"):
        build_targets(ServeDeploySchema.model_validate(raw))
