"""Typed errors raised for bad user input. Each message says what is wrong and what to do.

One table: every input error class carries the HTTP status serving answers with (``status_code``)
and the machine-readable ``kind`` that goes into the error body (``{"error": kind, "detail": message}``).
"""

import re


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


#: The line breaks a series file's loaders (and pandas' CSV parser) split on. ``str.splitlines()`` also splits on
#: \x0b, \x0c, \x1c-\x1e, \x85, \u2028 and \u2029, which the CSV parser reads as ordinary characters.
LINE_BREAK = re.compile(r"\r\n|\r|\n")


def line_count(text: str) -> int:
    """How many lines :func:`split_lines` makes of ``text`` (without making them): a size check before the split."""
    return text.count("\n") + text.count("\r") - text.count("\r\n") + 1


def split_lines(text: str) -> list[str]:
    """``text``'s lines, split at ``\\r\\n``, ``\\r`` or ``\\n`` only (as the CSV parser splits them); as
    ``str.splitlines()``, a final line break ends the last line rather than starting an empty one."""
    lines = LINE_BREAK.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines


def _utf16(head: bytes) -> bool:
    """Whether a file's first bytes look like UTF-16: a byte-order mark, or a NUL in every other byte (ASCII
    characters in UTF-16) and in few of the others."""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    if len(head) < 4:
        return False
    even, odd = head[0::2], head[1::2]
    return any(a.count(0) >= 0.9 * len(a) and b.count(0) <= 0.1 * len(b) for a, b in ((odd, even), (even, odd)))


def _eight_bit_text(head: bytes) -> bool:
    """Whether a file's first bytes, not UTF-8, look like text in an 8-bit encoding (Latin-1, Windows-1252): no
    control byte but tab, line breaks and form feed, and at most 30 % of bytes above 0x7f (accented letters among
    ASCII ones). A binary file (an image, a zip) has control bytes or mostly high ones."""
    controls = sum(head.count(bytes([b])) for b in range(32) if b not in (9, 10, 12, 13)) + head.count(0x7F)
    return controls == 0 and sum(1 for b in head if b > 0x7F) <= 0.3 * len(head)


def series_text(data: bytes, name: str, expected: str) -> str:
    """An uploaded series file's text (UTF-8, a byte-order mark dropped), or a ``SeriesFormatError`` saying why
    not: UTF-16 (a byte-order mark, or a NUL in every other byte), text in another 8-bit encoding (Latin-1,
    Windows-1252: :func:`_eight_bit_text`), else not a text file, naming the first byte that is not text: one that
    is not UTF-8, or a NUL (a binary file, such as a spreadsheet or a zip, is valid UTF-8 often enough).
    ``expected``: what to upload instead."""
    nul = data.find(b"\0")
    try:
        text = data.decode("utf-8-sig")
        bad = -1
    except UnicodeDecodeError as exc:
        bad = exc.start
    if nul < 0 and bad < 0:
        return text
    head = data[:4096]
    if _utf16(head):
        raise SeriesFormatError(
            f"{name} is UTF-16 text, not UTF-8: save it as UTF-8 (in a spreadsheet: CSV UTF-8) and upload {expected}."
        )
    if nul < 0 and _eight_bit_text(head):
        raise SeriesFormatError(
            f"{name} is not UTF-8 (byte {bad}, 0x{data[bad]:02x}, is not UTF-8): it looks like text in another 8-bit "
            f"encoding (Latin-1, Windows-1252, ...). Save it as UTF-8 (in a spreadsheet: CSV UTF-8) and upload "
            f"{expected}."
        )
    first = bad if nul < 0 else (nul if bad < 0 else min(nul, bad))
    raise SeriesFormatError(f"{name} is not a text file (byte {first} is not text): upload {expected}.")


#: How much of a cell or name from a file an error message quotes.
QUOTED_CHARS = 40


def quoted(text: str) -> str:
    """``text`` from a file, quoted for an error message: its first :data:`QUOTED_CHARS` characters."""
    return repr(text[:QUOTED_CHARS]) + (" ..." if len(text) > QUOTED_CHARS else "")
