"""Deploy a MedLens Serve config file to a running Ray, building its applications in this one process.

    python -m serving.launch ray_config.yaml [--address auto]
    python -m serving.launch ray_config.yaml --start-head 6390 --ray-log .run/ray.log   # what `make run` runs

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

With ``--start-head PORT`` it first starts this machine's single-node Ray (:func:`ray_start_command`, in the
background) and validates the file and builds the applications while that Ray starts, then deploys to it:
on 2 cores the ``ray start`` command line and this process's imports each keep one core busy for over a
second, one after the other otherwise (docs/benchmarks-startup.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

#: The ``ray start`` hook that leaves out the Ray Client server (serving/_ray_start.py).
RAY_START_HOOK = "serving._ray_start.single_machine"


def ray_start_command(port: int, extra: Sequence[str] = (), num_cpus: int | None = None) -> list[str]:
    """``ray start`` of MedLens's single-machine head: no web dashboard, autoscaler monitor or log monitor (replica
    logs stay in files), no usage statistics, one logical CPU per core this process may run on, then ``extra``.
    Run it with ``RAY_START_HOOK`` (:data:`RAY_START_HOOK`) in its environment."""
    cpus = num_cpus if num_cpus is not None else len(os.sched_getaffinity(0))
    return [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--port",
        str(port),
        "--include-dashboard=false",
        "--no-monitor",
        "--include-log-monitor",
        "false",
        "--disable-usage-stats",
        "--num-cpus",
        str(cpus),
        *extra,
    ]


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
    parser.add_argument(
        "--start-head",
        type=int,
        metavar="PORT",
        help="first start this machine's single-node Ray head on PORT (`make run`), while the file is validated and "
        "the applications are built; its processes outlive this command (stop them with their process session)",
    )
    parser.add_argument("--ray-log", type=Path, help="with --start-head: write `ray start`'s output here")
    parser.add_argument(
        "--ray-start-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="with --start-head: one more `ray start` argument (repeatable), e.g. "
        "--ray-start-arg=--dashboard-agent-listen-port=52366",
    )
    args = parser.parse_args(argv)
    if args.start_head is None and (args.ray_log or args.ray_start_arg):
        parser.error("--ray-log and --ray-start-arg need --start-head")
    head = None
    if args.start_head is not None:
        head = _start_head(ray_start_command(args.start_head, args.ray_start_arg), args.ray_log)

    import ray
    from ray import serve
    from ray.serve.config import gRPCOptions
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(yaml.safe_load(args.config.read_text()))
    targets = build_targets(config)  # fails here, before any deployment, on a bad file or weights
    if head is not None:
        _wait_for_head(head, args.ray_log)
    ray.init(address=args.address, namespace="serve", log_to_driver=False)
    options: dict[str, Any] = {
        "proxy_location": config.proxy_location,
        "http_options": config.http_options.model_dump(),
        "grpc_options": gRPCOptions(**config.grpc_options.model_dump()),
        "logging_config": config.logging_config,
        "controller_options": config.controller_options,
    }
    if head is not None:
        _start_serve_on_new_head(**options)
    else:
        serve.start(**options)
    serve.run_many(targets, wait_for_ingress_deployment_creation=False, wait_for_applications_running=False)
    names = ", ".join(app.name for app in config.applications)
    print(f"submitted {len(targets)} applications ({names}) from {args.config}", file=sys.stderr)
    return 0


def _start_serve_on_new_head(
    proxy_location: Any, http_options: Any, grpc_options: Any, logging_config: Any, controller_options: Any
) -> None:
    """``serve.start`` on a Ray this command has just started, minus its wait for the proxies.

    ``serve.start`` creates the Serve controller, then blocks until the proxies the controller starts are ready
    (with HAProxy: the HAProxy manager and Serve's fallback proxy, each a fresh Ray worker) before it returns, so
    the applications reach the controller only after those workers have imported Ray Serve: about 2 s of a
    2-core machine's start-up in which no replica starts. Here the applications go to the controller at once and
    the proxies come up beside the replicas; nothing is reachable earlier either way (``make run`` waits for
    ``/healthz`` through HAProxy). The steps are those of ``ray.serve._private.api.serve_start`` (Ray 2.60),
    whose private helpers this calls: a new head has no Serve controller yet, so there is nothing to connect to.
    """
    from ray.serve._private import api as serve_api
    from ray.serve._private.client import ServeControllerClient
    from ray.serve.context import _set_global_client

    controller, _proxies_ready = serve_api._create_controller_and_proxy_refs(
        http_options,
        grpc_options,
        logging_config,
        None,  # tracing: Serve's default
        serve_api._coerce_controller_options(controller_options),
        proxy_location,
    )
    _set_global_client(ServeControllerClient(controller))


def _start_head(command: list[str], log: Path | None) -> subprocess.Popen[bytes]:
    out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - the child holds it
    return subprocess.Popen(
        command,
        env={**os.environ, "RAY_START_HOOK": RAY_START_HOOK},
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def _wait_for_head(head: subprocess.Popen[bytes], log: Path | None) -> None:
    rc = head.wait()
    if rc != 0:
        where = f"its output is in {log}" if log is not None else "run again with --ray-log FILE to see why"
        raise SystemExit(f"`ray start` failed (exit status {rc}); {where}. Is its port, or an earlier Ray, in use?")


if __name__ == "__main__":
    raise SystemExit(main())
