"""One OpenAPI document for the whole service.

Each model application is its own HTTP ingress (its own FastAPI app under its route prefix), so each
would describe only itself. The ``medlens`` ingress serves the union at ``/openapi.json`` and ``/docs``:
its own routes plus every catalogue model's routes under that model's prefix.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI


def merged_openapi(ingress: FastAPI, models: Iterable[tuple[str, FastAPI]]) -> dict[str, Any]:
    """``ingress``'s document with the routes of each ``(route_prefix, app)`` added under its prefix."""
    doc = FastAPI(title=ingress.title, version=ingress.version, description=ingress.description)
    doc.include_router(ingress.router)
    for prefix, api in models:
        doc.include_router(api.router, prefix=prefix)
    return doc.openapi()


def serve_merged_openapi(ingress: FastAPI, models: Iterable[tuple[str, FastAPI]]) -> None:
    """Make ``ingress.openapi()`` (what ``/openapi.json`` and ``/docs`` use) return the merged document."""
    cache: dict[str, Any] = {}
    pairs = list(models)

    def openapi() -> dict[str, Any]:
        if not cache:
            cache.update(merged_openapi(ingress, pairs))
        return cache

    ingress.openapi = openapi  # type: ignore[method-assign]
