"""Typed errors raised for bad user input. Each message says what is wrong and what to do."""


class MedLensInputError(ValueError):
    """Input a user sent cannot be used. Serving maps this to an HTTP 4xx (``status_code``)."""

    status_code = 422

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ImageDecodeError(MedLensInputError):
    """The upload is not a readable PNG, JPEG or single-frame image DICOM."""

    status_code = 415


class UnsupportedDicomError(MedLensInputError):
    """The DICOM is valid but holds no single 2-D image (no pixels, multi-frame, SR, ...)."""

    status_code = 422


class SeriesFormatError(MedLensInputError):
    """The time series file is not a usable PhysioNet PSV / CSV."""

    status_code = 422


class PayloadTooLargeError(MedLensInputError):
    """The upload exceeds the configured limit."""

    status_code = 413


class WeightsError(RuntimeError):
    """A checkpoint is missing or does not match the code that loads it."""
