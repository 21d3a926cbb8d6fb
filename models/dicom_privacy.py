"""What pydicom says about a DICOM file, kept from quoting its header.

pydicom's warnings and log records quote the header values they complain of, and in a malformed header a value
whose length field is wrong runs on over the elements after it, the patient's name and ID among them. Found by
mutating DICOM files: a transfer syntax UID whose length was corrupted was quoted whole (8,894 bytes, every
identifier of the file) in a warning that reached a model replica's log. So, in every process that reads DICOM
files here (:func:`keep_header_text_out_of_logs`, called when :mod:`models.xray_io` is imported and when the GDCM
worker starts):

* pydicom does not check values while reading (its checks only warn, quoting the value; the loader checks what it
  uses);
* pydicom's warnings are not shown;
* pydicom's log records reach the log with their level and logger name, and a fixed message in place of theirs.

An exception's own words can quote the header too: error messages name its type only (:func:`exception_kind`).
"""

from __future__ import annotations

import logging
import warnings

import pydicom.config

#: What a pydicom log record says in our logs.
WITHHELD = "pydicom reported a problem with a DICOM file (its words are withheld: they may quote patient identifiers)"

_logger = logging.getLogger(__name__)


class _Withhold(logging.Handler):
    """On the ``pydicom`` logger (which no longer propagates): each record goes on to ours, with its level and
    logger name but without its message."""

    def emit(self, record: logging.LogRecord) -> None:
        _logger.log(record.levelno, "%s [%s]", WITHHELD, record.name)


def keep_header_text_out_of_logs() -> None:
    """Configure this process's pydicom as the module says. Idempotent."""
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    source = logging.getLogger("pydicom")
    source.propagate = False
    if not any(isinstance(h, _Withhold) for h in source.handlers):
        source.addHandler(_Withhold())


def exception_kind(exc: BaseException) -> str:
    """An exception raised while reading a DICOM file, for an error message: its type's name, never its words
    (pydicom's quote header values: ``invalid literal for int() with base 10: 'DOE^JANE'``)."""
    return type(exc).__name__


__all__ = ["WITHHELD", "exception_kind", "keep_header_text_out_of_logs"]
