"""Peer 2: LitServe with dynamic batching (the popular light alternative).

MEDLENS_BENCH_THREADS=2 .venv/bin/python -m benchmarks.peers.litserve_server --port 8102 [--sepsis]

No ``from __future__ import annotations`` here: LitServe reads the annotation of
``decode_request(request)`` at run time, and only the class ``Request`` (not the string "Request"
or ``Any``) makes it parse multipart uploads; anything else is taken as a JSON body (422).
"""

import argparse
import os
from typing import Any

import litserve as ls
import torch
from starlette.requests import Request

from models.inference import SepsisPredictor, XrayPredictor
from models.sepsis_io import parse_series_bytes
from models.xray_io import load_xray_bytes

#: the execution path (models/backends.py) serving_peers chose for the ceiling: every server runs the same
BACKEND: Any = os.environ.get("MEDLENS_BENCH_BACKEND", "auto")


class XrayAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        torch.set_num_threads(int(os.environ.get("MEDLENS_BENCH_THREADS", "2")))
        self.model = XrayPredictor(device="cpu", backend=BACKEND)

    def decode_request(self, request: Request) -> Any:
        upload = request["file"]
        data = upload.file.read() if hasattr(upload, "file") else upload
        return load_xray_bytes(data, "upload").pixels

    def predict(self, x: list[Any]) -> list[float]:
        return [float(p) for p in self.model.predict(list(x))]

    def batch(self, inputs: list[Any]) -> list[Any]:
        return list(inputs)  # a list, as the predictor takes (no numpy.stack)

    def unbatch(self, output: Any) -> list[Any]:
        return list(output)

    def encode_response(self, output: float) -> dict[str, float]:
        return {"probability": output}


class SepsisAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        torch.set_num_threads(int(os.environ.get("MEDLENS_BENCH_THREADS", "2")))
        self.model = SepsisPredictor("lstm", device="cpu", backend=BACKEND)

    def decode_request(self, request: Request) -> Any:
        upload = request["file"]
        data = upload.file.read() if hasattr(upload, "file") else upload
        return parse_series_bytes(data, "upload.psv").values

    def predict(self, x: list[Any]) -> list[list[float]]:
        return [[float(v) for v in p] for p in self.model.predict(list(x))]

    def batch(self, inputs: list[Any]) -> list[Any]:
        return list(inputs)  # variable-length series: no numpy.stack (LitServe's default)

    def unbatch(self, output: Any) -> list[Any]:
        return list(output)

    def encode_response(self, output: list[float]) -> dict[str, list[float]]:
        return {"probability": output}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8102)
    parser.add_argument("--sepsis", action="store_true")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-timeout", type=float, default=0.01)
    args = parser.parse_args()
    api_cls = SepsisAPI if args.sepsis else XrayAPI
    path = "/predict_sepsis" if args.sepsis else "/predict"
    api = api_cls(max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout, api_path=path)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, healthcheck_path="/healthz")
    server.run(port=args.port, host="127.0.0.1", generate_client_file=False)


if __name__ == "__main__":
    main()
