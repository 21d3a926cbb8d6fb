"""argparse types the model CLIs share: a value out of range is a usage error when arguments are read (status 2),
before any data or model is loaded."""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    """A count of at least 1 (epochs, a batch size)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0 (a learning rate)."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {text}")
    return value


__all__ = ["positive_float", "positive_int"]
