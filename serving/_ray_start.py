"""The ``ray start`` hook of ``make run`` (``RAY_START_HOOK=serving._ray_start.single_machine``, scripts/run.sh).

``ray start --head`` runs a Ray Client server on port 10001 whenever Ray's client extras are installed, and
has no flag to leave it out. On MedLens's single machine nothing connects through Ray Client
(``serving.launch`` and the tests connect as drivers): the hook removes that process, its start-up CPU,
about 90 MB and a listening port. Ray calls the hook with its ``RayParams`` before it starts the node.
"""

from __future__ import annotations

from typing import Any


def single_machine(ray_params: Any, head: bool) -> None:
    """No Ray Client server on the head node."""
    if head:
        ray_params.ray_client_server_port = None
