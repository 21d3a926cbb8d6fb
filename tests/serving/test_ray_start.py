"""serving/_ray_start.py, the `ray start` hook of `make run`: Ray's own parameters object, before and after."""

from __future__ import annotations

from ray._private.parameter import RayParams

from serving._ray_start import single_machine


def test_the_head_node_starts_without_a_ray_client_server() -> None:
    params = RayParams(ray_client_server_port=10001)
    single_machine(params, head=True)
    assert params.ray_client_server_port is None  # Node.start_head_processes skips the server then


def test_a_worker_node_is_left_alone() -> None:
    params = RayParams(ray_client_server_port=10001)
    single_machine(params, head=False)
    assert params.ray_client_server_port == 10001
