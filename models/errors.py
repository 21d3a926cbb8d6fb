"""Typed errors raised for bad user input. Each message says what is wrong and what to do.

One table: every input error class carries the HTTP status serving answers with (``status_code``)
and the machine-readable ``kind`` that goes into the error body (``{"error": kind, "detail": message}``).
"""


class MedLensInputError(ValueError):
    """Input a user sent cannot be used. Serving answers ``status_code`` with ``kind``."""

    status_code = 422
    kind = "invalid_input"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ImageDecodeError(MedLensInputError):
    """The upload is not a readable PNG, JPEG or single-frame image DICOM."""

    status_code = 415
    kind = "invalid_image"


class UnsupportedDicomError(MedLensInputError):
    """The DICOM is valid but holds no single 2-D image (no pixels, multi-frame, SR, ...)."""

    status_code = 422
    kind = "unsupported_dicom"


class SeriesFormatError(MedLensInputError):
    """The time series file is not a usable PhysioNet PSV / CSV."""

    status_code = 422
    kind = "invalid_series"


class PayloadTooLargeError(MedLensInputError):
    """The upload exceeds the configured limit."""

    status_code = 413
    kind = "payload_too_large"


class UnknownModelError(MedLensInputError):
    """A model name that is not in the catalogue (models/catalogue.py)."""

    status_code = 404
    kind = "unknown_model"


class WeightsError(RuntimeError):
    """A checkpoint is missing or does not match the code that loads it."""


def series_text(data: bytes, name: str, expected: str) -> str:
    """An uploaded series file's text (UTF-8, a byte-order mark dropped), or a ``SeriesFormatError`` naming the
    first byte that is not text: one that is not UTF-8, or a NUL (a binary file, such as a spreadsheet or a zip,
    is valid UTF-8 often enough). ``expected``: what to upload instead."""
    nul = data.find(b"\0")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        nul = exc.start if nul < 0 else min(nul, exc.start)
    if nul >= 0:
        raise SeriesFormatError(f"{name} is not a text file (byte {nul} is not text): upload {expected}.")
    return text
