"""What a model replica receives for one request, and what comes back for a bad item.

Uploads travel as raw bytes plus a sanitised file name ("upload.dcm"): the user's own file name may
contain a patient's name and is dropped where the request arrives. Decoding happens inside the batch,
so one bad file becomes one :class:`ItemError` and never fails the rest of its batch.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from models.errors import MedLensInputError

logger = logging.getLogger("ray.serve")


@dataclass(frozen=True, slots=True)
class Upload:
    data: bytes
    filename: str  # sanitised: "upload" + a known suffix, never the user's name
    include: frozenset[str] = frozenset()  # optional parts of the answer asked for ("preview", "vitals")
    # an explanation of this hour alone (an hourly series' 0-based row), in a time that grows with the hour, not
    # with the square of the stay's length; None: every hour
    explain_hour: int | None = None


@dataclass(frozen=True, slots=True)
class ItemError:
    """A per-item failure the HTTP layer turns into an error answer (ErrorResponse)."""

    status: int
    error: str
    detail: str


def safe_upload_name(filename: str | None, allowed: tuple[str, ...], default: str) -> str:
    """Keep only a known extension of the user's file name: ``"Jane Doe.DCM"`` -> ``"upload.dcm"``."""
    suffix = os.path.splitext(os.path.basename(filename or ""))[1].lower()
    return "upload" + suffix if suffix in allowed else default


def input_error(exc: MedLensInputError) -> ItemError:
    """The status and kind of a typed input error are the error class's own (models/errors.py)."""
    return ItemError(exc.status_code, exc.kind, exc.message)


def undecodable(exc: Exception, what: str) -> ItemError:
    """A decoder failed in a way models/ did not anticipate: still the user's input, so a 422.
    Only the exception type is logged (its message could quote file contents)."""
    logger.warning("unexpected %s decoder failure: %s", what, type(exc).__name__)
    return ItemError(
        422,
        "undecodable_input",
        f"The uploaded {what} could not be read ({type(exc).__name__}); check that it is a valid file and "
        "upload it again.",
    )


def model_failure(exc: Exception, model: str) -> ItemError:
    """The model itself failed on valid input: a server bug (500)."""
    logger.error("%s model failed on an item: %s", model, type(exc).__name__)
    return ItemError(
        500,
        "model_error",
        f"The {model} model failed on this input ({type(exc).__name__}). Retry; if it persists, report it "
        "to the MedLens operators.",
    )
