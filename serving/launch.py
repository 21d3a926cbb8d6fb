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

Before anything runs, :func:`validate` checks what Serve's schema cannot: each application against the model
catalogue (its name, route prefix, builder and args), the batching ``user_config`` of every model and generator
deployment, the checkpoints, the case database's URL and the API token in this environment (which a head started
here passes on to its replicas), and that a host other than loopback requires the token. A bad file is refused with
one line per problem, naming the application and the key, and exit status 1; nothing is started. After
``ray.init`` the replicas' GPUs are compared with the cluster's (:func:`gpu_shortfall`).

With ``--start-head PORT``, once the file is valid, it starts this machine's single-node Ray
(:func:`ray_start_command`, in the background) and binds the applications while that Ray starts, then deploys
to it. Validating first costs ``make run`` the overlap it had with ``ray start``: the validation's imports (Ray
Serve's schema, about 1.1 s on a 2-core machine, 2026-12-08) now come before it; :mod:`serving.app` (about 0.3 s)
still overlaps.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

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


#: The application builders of :mod:`serving.app` (``import_path: serving.app:<builder>``) -> what the application
#: serves: the ``medlens`` ingress, one catalogue model (``args.model``) or one generator (``args.generator``).
#: tests/serving/test_launch.py checks that these are ``serving.app.DEPLOYMENT_OF``'s builders (that module is
#: imported only once the file is valid, while ``ray start`` runs).
BUILDERS: dict[str, str] = {"build_app": "ingress", "build_model_app": "model", "build_synthetic_app": "generator"}


class InvalidConfig(SystemExit):
    """A Serve config that MedLens cannot start with: one line per problem, each naming the application and the
    key to change. ``python -m serving.launch`` prints it and exits with status 1."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(f"  - {p}" for p in self.problems))


@dataclass(frozen=True)
class AppPlan:
    """One application of a valid config file: what :func:`bind_targets` deploys."""

    name: str
    builder: str  # a key of BUILDERS
    route_prefix: str | None
    args: Any  # ServingArgs
    options: dict[str, dict[str, Any]]  # deployment name -> the file's options for it
    logging_config: dict[str, Any] | None


def is_loopback(host: str) -> bool:
    """True for an address that only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _pydantic_problems(where: str, exc: Any, prefix: str = "") -> list[str]:
    """``where: <prefix><key path>: <message>`` for each error of a pydantic ``ValidationError``."""
    out = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"] if part != "[key]")  # a mapping's key: its name is enough
        message = str(err["msg"]).removeprefix("Value error, ")
        out.append(f"{where}: {prefix}{key}: {message}" if key else f"{where}: {message}")
    return out


def schema_problems(exc: Any, raw: Any) -> list[str]:
    """Ray Serve's own schema errors (a ``ValidationError`` of ``ServeDeploySchema``), each naming the application
    (by its ``name`` in ``raw``, the file's mapping) and the key."""
    apps = raw.get("applications") if isinstance(raw, dict) else None
    out = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = "the file"
        if len(loc) >= 2 and loc[0] == "applications" and isinstance(loc[1], int):
            app = apps[loc[1]] if isinstance(apps, list) and loc[1] < len(apps) else None
            name = app.get("name") if isinstance(app, dict) else None
            where = f"application {name!r}" if name else f"applications[{loc[1]}]"
            loc = loc[2:]
            if len(loc) >= 2 and loc[0] == "deployments" and isinstance(loc[1], int) and isinstance(app, dict):
                deps = app.get("deployments") or []
                dep = deps[loc[1]] if loc[1] < len(deps) and isinstance(deps[loc[1]], dict) else {}
                loc = [f"deployments[{dep.get('name', loc[1])}]", *loc[2:]]
        key = ".".join(str(part) for part in loc)
        message = str(err["msg"]).removeprefix("Value error, ")
        out.append(f"{where}: {key}: {message}" if key else f"{where}: {message}")
    return out


def _batching_problems(where: str, deployment: str, options: dict[str, Any]) -> list[str]:
    """A model or generator deployment's ``user_config`` (dynamic batching), checked as its replicas will read it,
    and its ``max_ongoing_requests`` against the batch size."""
    from ray.serve._private.constants import DEFAULT_MAX_ONGOING_REQUESTS
    from ray.serve.schema import DEFAULT

    from serving._settings import BatchConfig

    where = f"{where}, deployment {deployment!r}"
    user_config = options.get("user_config")
    if user_config is None or user_config is DEFAULT.VALUE:
        return [
            f"{where}: no user_config: give it `user_config: {{max_batch_size: N, batch_wait_timeout_s: S}}` "
            "(dynamic batching; without it Serve never configures the replica and replaces it every health check)"
        ]
    if not isinstance(user_config, dict):
        return [f"{where}: user_config must be a mapping with max_batch_size and batch_wait_timeout_s"]
    try:
        batch = BatchConfig.model_validate(user_config)
    except ValidationError as exc:
        return _pydantic_problems(where, exc, "user_config.")
    ongoing = options.get("max_ongoing_requests", DEFAULT_MAX_ONGOING_REQUESTS)
    if ongoing < batch.max_batch_size:
        return [
            f"{where}: max_ongoing_requests {ongoing} is below user_config.max_batch_size {batch.max_batch_size} "
            "(a batch could never fill): raise max_ongoing_requests or lower max_batch_size"
        ]
    return []


def validate(config: Any, environ: Mapping[str, str] | None = None) -> list[AppPlan]:
    """Every check MedLens makes of a Serve config (already valid for Serve's own schema) before any of it runs,
    with ``environ`` (default: this process's environment, which a head started here passes on to the replicas):
    each application's import path, args and its one deployment's name against the catalogue (one application
    per catalogue entry, at its route prefix; every catalogue model beside the ``medlens`` ingress, whose /healthz
    waits for them all), the batching of model and generator deployments, the checkpoints, the case database's
    URL and the API token. :class:`InvalidConfig` lists every problem found."""
    from models.catalogue import CATALOGUE, GENERATORS
    from models.errors import UnknownModelError, WeightsError
    from serving._settings import INGRESS_APP, INGRESS_DEPLOYMENT, ConfigError, ServingArgs, check_weights

    env = os.environ if environ is None else environ
    problems: list[str] = []
    plans: list[AppPlan] = []
    unread = False  # an application whose args were refused: what it serves is unknown
    served: dict[str, list[str]] = {}  # catalogue serving name (or the ingress's) -> applications serving it
    host = config.http_options.host
    for app in config.applications:
        where = f"application {app.name!r}"
        module, _, attr = app.import_path.partition(":")
        if module != "serving.app" or attr not in BUILDERS:
            problems.append(
                f"{where}: import_path {app.import_path!r} is not a MedLens builder "
                f"(serving.app:{' / serving.app:'.join(BUILDERS)}); deploy such a file with `serve run`"
            )
            continue
        try:
            args = ServingArgs.model_validate(app.args or {})
        except ValidationError as exc:
            problems.extend(_pydantic_problems(where, exc, "args."))
            unread = True
            continue
        kind = BUILDERS[attr]
        # what the application serves, by the catalogue: its name (= its deployment's), prefix and checkpoints
        if kind == "ingress":
            stray = [key for key in ("model", "generator") if getattr(args, key) is not None]
            if stray:
                problems.append(
                    f"{where}: args.{stray[0]} is set on the ingress application (import_path "
                    f"serving.app:build_app), which serves no model: remove it (a model is its own application)"
                )
            name, prefix, weights = INGRESS_APP, "/", args.weights_dirs()
            deployment = INGRESS_DEPLOYMENT
        else:
            wanted, other = ("model", "generator") if kind == "model" else ("generator", "model")
            choice = getattr(args, wanted)
            if choice is None:
                names = CATALOGUE if kind == "model" else GENERATORS
                problems.append(f"{where}: {attr} needs args.{wanted}: one of {', '.join(names)}")
                unread = True
                continue
            if getattr(args, other) is not None:
                problems.append(
                    f"{where}: both args.model and args.generator are set: an application serves one "
                    f"{wanted}, so remove args.{other}"
                )
            item = CATALOGUE[choice] if kind == "model" else GENERATORS[choice]
            name, prefix, deployment = item.serving_name, item.route_prefix, item.serving_name
            weights = {choice: args.weights_dir(choice)}
        served.setdefault(name, []).append(app.name)
        if app.name != name:
            problems.append(f"{where}: the catalogue names this application {name!r}: rename it to {name!r}")
        if app.route_prefix != prefix:
            problems.append(f"{where}: route_prefix {app.route_prefix!r}: the catalogue's is {prefix!r}; use that")
        options = deployment_options(app)
        unknown = sorted(set(options) - {deployment})
        if unknown:
            problems.append(f"{where}: no deployment named {unknown} (it has {deployment!r})")
        if kind != "ingress":
            problems.extend(_batching_problems(where, deployment, options.get(deployment, {})))
        try:
            check_weights(weights)
        except (WeightsError, UnknownModelError) as exc:
            problems.append(f"{where}: {exc}")
        if kind == "ingress":
            try:
                args.cases.db_url(env)
            except ConfigError as exc:
                problems.append(f"{where}: args.cases.db_url_env: {exc}")
        try:
            args.api_token(env)
        except ConfigError as exc:
            problems.append(f"{where}: args.auth_token_env: {exc}")
        if args.auth != "required" and not is_loopback(host):
            problems.append(
                f"{where}: args.auth is {args.auth!r} but http_options.host {host!r} is reachable from other machines: "
                f"set args.auth: required (and {args.auth_token_env} where Ray starts), or bind 127.0.0.1"
            )
        logging = app.logging_config or config.logging_config
        plans.append(
            AppPlan(
                name=app.name,
                builder=attr,
                route_prefix=app.route_prefix,
                args=args,
                options=options,
                logging_config=logging.model_dump() if logging is not None else None,
            )
        )
    for name, apps in served.items():
        if len(apps) > 1:
            problems.append(f"applications {', '.join(map(repr, apps))} all serve {name!r}: keep one")
    if INGRESS_APP in served and not unread:
        missing = [e for e in CATALOGUE.values() if e.serving_name not in served]
        if missing:
            problems.append(
                f"the {INGRESS_APP!r} application's /healthz waits for every catalogue model: add the "
                + ", ".join(
                    f"application {e.serving_name!r} (route_prefix {e.route_prefix}, import_path "
                    f"serving.app:build_model_app, args.model: {e.name})"
                    for e in missing
                )
            )
    if problems:
        raise InvalidConfig(_merged(problems))
    return plans


def _merged(problems: Sequence[str]) -> list[str]:
    """Each problem once: the args the applications share (the YAML anchor) give them all the same token or host
    problem, listed as ``applications 'a', 'b', ...: <problem>``."""
    apps_of: dict[str, list[str]] = {}
    for problem in problems:
        where, sep, text = problem.partition(": ")
        name = where.removeprefix("application ") if where.startswith("application '") else None
        if name is None or not sep or "," in name:  # not one application's, or one deployment's
            apps_of.setdefault(problem, [])
        else:
            apps_of.setdefault(text, []).append(name)
    return [
        text if not names else f"application{'s' if len(names) > 1 else ''} {', '.join(names)}: {text}"
        for text, names in apps_of.items()
    ]


def bind_targets(plans: Sequence[AppPlan]) -> list[Any]:
    """One ``serve.RunTarget`` per validated application: its deployment from :data:`serving.app.DEPLOYMENT_OF`,
    with the file's options, bound to its args."""
    from ray import serve

    from serving.app import DEPLOYMENT_OF

    targets = []
    for plan in plans:
        deployment = DEPLOYMENT_OF[plan.builder](plan.args)
        bound = deployment.options(**plan.options.get(deployment.name, {})).bind(plan.args)
        targets.append(
            serve.RunTarget(bound, name=plan.name, route_prefix=plan.route_prefix, logging_config=plan.logging_config)
        )
    return targets


def starting_replicas(options: Mapping[str, Any]) -> int:
    """Replicas a deployment with these options (the file's) starts with: ``num_replicas``, or its autoscaling's
    ``initial_replicas`` (else ``min_replicas``)."""
    from ray.serve.config import AutoscalingConfig

    fixed = options.get("num_replicas")
    if isinstance(fixed, int):
        return fixed
    auto = options.get("autoscaling_config")
    if isinstance(auto, dict):
        scaling = AutoscalingConfig(**auto)
        return scaling.initial_replicas if scaling.initial_replicas is not None else scaling.min_replicas
    return 1


def gpu_shortfall(config: Any, cluster_resources: Mapping[str, float]) -> str | None:
    """What is wrong when the replicas that ``config`` starts ask for more GPUs (``ray_actor_options.num_gpus``)
    than the cluster has (``ray.cluster_resources()``): those replicas would wait for a GPU forever. None if not."""
    asks = []
    total = 0.0
    for app in config.applications:
        for name, options in deployment_options(app).items():
            gpus = float((options.get("ray_actor_options") or {}).get("num_gpus") or 0.0)
            replicas = starting_replicas(options)
            if gpus > 0 and replicas > 0:
                asks.append(f"{name} {replicas} x {gpus:g}")
                total += gpus * replicas
    have = float(cluster_resources.get("GPU", 0.0))
    if total <= have + 1e-9:
        return None
    return (
        f"its replicas ask for {total:g} GPU at start ({', '.join(asks)}) but this Ray cluster has {have:g}: they "
        "would wait for a GPU forever. Without a GPU deploy ray_config.yaml (the CPU profile); with one, check that "
        "`nvidia-smi` lists it and that Ray sees it (`ray status`), or lower ray_actor_options.num_gpus"
    )


def load_config(path: Path) -> tuple[Any, Any]:
    """``path`` read and checked against Ray Serve's own schema -> (its ``ServeDeploySchema``, the raw mapping);
    :class:`InvalidConfig` naming the application and key otherwise."""
    from ray.serve.schema import ServeDeploySchema

    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidConfig([f"cannot read it: {exc}"]) from None
    try:
        return ServeDeploySchema.model_validate(raw), raw
    except ValidationError as exc:
        raise InvalidConfig(schema_problems(exc, raw)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.launch", description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="a Serve config file (ray_config.yaml)")
    parser.add_argument("--address", default="auto", help="the Ray cluster (default: the one started on this machine)")
    parser.add_argument(
        "--start-head",
        type=int,
        metavar="PORT",
        help="once the file is valid, start this machine's single-node Ray head on PORT (`make run`) while the "
        "applications are built; its processes outlive this command (stop them with their process session)",
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
    try:
        config, _ = load_config(args.config)
        plans = validate(config)  # before any Ray is started: a bad file leaves nothing running
    except InvalidConfig as exc:
        print(f"{args.config}: not started; change the following:\n{exc}", file=sys.stderr)
        return 1
    head = None
    if args.start_head is not None:
        head = _start_head(ray_start_command(args.start_head, args.ray_start_arg), args.ray_log)

    import ray
    from ray import serve
    from ray.serve.config import gRPCOptions

    targets = bind_targets(plans)  # while that Ray starts
    if head is not None:
        _wait_for_head(head, args.ray_log)
    ray.init(address=args.address, namespace="serve", log_to_driver=False)
    shortfall = gpu_shortfall(config, ray.cluster_resources())
    if shortfall is not None:
        started = " (the Ray head this command started still runs: stop its process session)" if head else ""
        print(f"{args.config}: not deployed: {shortfall}{started}", file=sys.stderr)
        return 1
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
