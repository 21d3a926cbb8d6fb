"""Deploy a MedLens Serve config file to a running Ray, building its applications in this one process.

    python -m serving.launch ray_config.yaml [--address auto]

What ``serve run --non-blocking --address auto CONFIG`` does (validate the file with Serve's own schema,
start Serve with its proxy, HTTP, gRPC and logging options, deploy every application with the file's
deployment options, return without waiting), minus Serve's per-application build task: for a config file,
the Serve controller builds each application in a task of its own (``max_calls=1``: a fresh Ray worker
that imports Ray Serve and the application's module, one per application, all at once). On a 2-core
machine those four workers are seconds of CPU that the replicas wait for. Here each application's one
deployment comes from :data:`serving.app.DEPLOYMENT_OF`, takes the file's options with
``Deployment.options`` (the same names as the config's deployment fields) and is bound to the validated
:class:`~serving._settings.ServingArgs`; all applications go to the controller in one ``serve.run_many``.

The applications are the same, with the same names, route prefixes and options. Serve records them as
deployed from Python rather than from a config file: a later ``serve deploy ray_config.yaml`` replaces them
(Serve then builds them as usual). ``make run`` uses this; a Ray cluster uses ``serve deploy`` (docs/deploy.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml


def deployment_options(app_config: Any) -> dict[str, dict[str, Any]]:
    """Deployment name -> the options the config file sets for it (only those it sets)."""
    out: dict[str, dict[str, Any]] = {}
    for d in app_config.deployments:
        options = d.model_dump(exclude_unset=True)
        out[options.pop("name")] = options
    return out


def build_targets(config: Any) -> list[Any]:
    """A validated ``ServeDeploySchema`` -> one ``serve.RunTarget`` per application."""
    from ray import serve

    from serving._settings import ServingArgs
    from serving.app import DEPLOYMENT_OF

    targets = []
    for app in config.applications:
        module, _, attr = app.import_path.partition(":")
        if module != "serving.app" or attr not in DEPLOYMENT_OF:
            raise SystemExit(
                f"application {app.name!r}: import_path {app.import_path!r} is not a MedLens builder "
                f"(serving.app:{' / serving.app:'.join(DEPLOYMENT_OF)}); deploy such a file with `serve run`"
            )
        args = ServingArgs.model_validate(app.args or {})
        deployment = DEPLOYMENT_OF[attr](args)
        options = deployment_options(app)
        unknown = set(options) - {deployment.name}
        if unknown:
            raise SystemExit(
                f"application {app.name!r}: no deployment named {sorted(unknown)} (it has {deployment.name!r})"
            )
        bound = deployment.options(**options.get(deployment.name, {})).bind(args)
        logging = app.logging_config or config.logging_config
        targets.append(
            serve.RunTarget(
                bound,
                name=app.name,
                route_prefix=app.route_prefix,
                logging_config=logging.model_dump() if logging is not None else None,
            )
        )
    return targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.launch", description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="a Serve config file (ray_config.yaml)")
    parser.add_argument("--address", default="auto", help="the Ray cluster (default: the one started on this machine)")
    args = parser.parse_args(argv)

    import ray
    from ray import serve
    from ray.serve.config import gRPCOptions
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(yaml.safe_load(args.config.read_text()))
    targets = build_targets(config)  # fails here, before anything is started, on a bad file or weights
    ray.init(address=args.address, namespace="serve", log_to_driver=False)
    serve.start(
        proxy_location=config.proxy_location,
        http_options=config.http_options.model_dump(),
        grpc_options=gRPCOptions(**config.grpc_options.model_dump()),
        logging_config=config.logging_config,
        controller_options=config.controller_options,
    )
    serve.run_many(targets, wait_for_ingress_deployment_creation=False, wait_for_applications_running=False)
    names = ", ".join(app.name for app in config.applications)
    print(f"submitted {len(targets)} applications ({names}) from {args.config}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
