"""The files of a case upload: which kind each one is, and the members of a ``.zip``, expanded with limits.

A zip is hostile until proven otherwise: too many members (counted from its index's size before the index
is parsed, then from the index) or too many bytes once unpacked (declared or actual: headers can lie; one
budget for all the zips of an upload) refuse the whole upload with 413; a member whose path leaves the
archive (``../``, absolute) refuses it with 422; nested archives, encrypted members, members that do not
inflate and unknown types refuse that member only. Members are read one at a time with a byte cap, so memory
stays bounded whatever the headers claim. Nothing here keeps a file's name: a file is known by its position
("file 2, member 7").
"""

from __future__ import annotations

import io
import lzma
import posixpath
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from serving._http import ApiError
from serving._protocol import ItemError

Kind = Literal["xray", "sepsis", "mortality"]
SUFFIX_KIND: dict[str, Kind] = {
    ".png": "xray",
    ".jpg": "xray",
    ".jpeg": "xray",
    ".dcm": "xray",
    ".psv": "sepsis",
    ".csv": "sepsis",  # unless its header is a PhysioNet 2012 record's (:func:`_kind`)
    ".txt": "mortality",  # only with a PhysioNet 2012 record's header; any other text is not a case
}
#: the header of a PhysioNet 2012 record: a .csv or .txt that starts with it is a mortality record
LONG_HEADER = ("Time", "Parameter", "Value")
_JUNK_PREFIXES = ("__MACOSX/",)
#: the index bytes allowed per member before the index is parsed: a member's entry is 46 bytes and its name
#: (plus extra fields and comment); 1 KiB each is far more than real archives use
_INDEX_BYTES_PER_MEMBER = 1024
#: what unpacking a member can raise besides zipfile's own errors: a corrupt deflate or LZMA stream
_UNPACK_ERRORS = (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError, zlib.error,
                  lzma.LZMAError)  # fmt: skip


@dataclass(frozen=True)
class CaseFile:
    where: str  # "file 2" or "file 1, member 7"
    data: bytes
    upload_name: str  # "upload" + its suffix: what the model server sees
    kind: Kind


@dataclass(frozen=True)
class Rejected:
    where: str
    error: ItemError


@dataclass(frozen=True)
class ZipLimits:
    max_members: int  # of one .zip
    max_unzipped_bytes: int  # of all the .zip files of one upload, unpacked
    max_member_bytes: int


@dataclass
class Unpacked:
    """Bytes unpacked so far from the zips of one upload: they share :attr:`ZipLimits.max_unzipped_bytes`."""

    total: int = 0


def _sniff(data: bytes) -> str | None:
    """A suffix from the first bytes when the name has none we know."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if len(data) > 132 and data[128:132] == b"DICM":
        return ".dcm"
    if data[:4] == b"PK\x03\x04":
        return ".zip"
    return None


def _suffix(name: str | None, data: bytes) -> str | None:
    suffix = posixpath.splitext((name or "").replace("\\", "/"))[1].lower()
    if suffix in SUFFIX_KIND or suffix == ".zip":
        return suffix
    return _sniff(data)


def _kind(suffix: str, data: bytes) -> Kind | None:
    """The kind of case a file is, None for none: a file whose first line is the header of a PhysioNet 2012
    record (``Time,Parameter,Value``) is a mortality record, as .csv or .txt; another .csv is a sepsis record (one
    row per hour), another .txt no case at all."""
    if suffix not in (".csv", ".txt"):
        return SUFFIX_KIND[suffix]
    first = data[:256].decode("utf-8-sig", errors="replace").lstrip().split("\n", 1)[0]
    if tuple(c.strip().strip('"') for c in first.split(",")) == LONG_HEADER:
        return "mortality"
    return "sepsis" if suffix == ".csv" else None


def _case_file(where: str, data: bytes, suffix: str) -> CaseFile | Rejected:
    kind = _kind(suffix, data)
    return _unsupported(where) if kind is None else CaseFile(where, data, "upload" + suffix, kind)


def _unsupported(where: str) -> Rejected:
    return Rejected(
        where,
        ItemError(
            415,
            "unsupported_file_type",
            f"{where.capitalize()} is not a file MedLens reads: send PNG, JPEG or DICOM chest X-rays, PSV or CSV "
            "ICU records, PhysioNet 2012 .txt records, or a .zip of them.",
        ),
    )


def classify(
    where: str, name: str | None, data: bytes, limits: ZipLimits, unpacked: Unpacked | None = None
) -> Iterator[CaseFile | Rejected]:
    """One uploaded file -> the case files it holds (itself, or a zip's members) and what was refused.
    ``unpacked``: the upload's running total, shared by the calls for its files (None: this file alone)."""
    suffix = _suffix(name, data)
    if suffix is None:
        yield _unsupported(where)
    elif suffix == ".zip":
        yield from _expand(where, data, limits, Unpacked() if unpacked is None else unpacked)
    else:
        yield _case_file(where, data, suffix)


def _index_size(data: bytes) -> int | None:
    """Bytes of a zip's central directory (its index), as zipfile will read them: from the end-of-central-
    directory record, or the ZIP64 one where its locator stands before it. None when there is no such record
    (zipfile then refuses the file itself)."""
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 22 - 0xFFFF))
    if end < 0 or len(data) < end + 22:
        return None
    size = int.from_bytes(data[end + 12 : end + 16], "little")
    locator, record = end - 20, end - 20 - 56  # zipfile reads the ZIP64 record just before its locator
    if record >= 0 and data[locator : locator + 4] == b"PK\x06\x07" and data[record : record + 4] == b"PK\x06\x06":
        size = int.from_bytes(data[record + 40 : record + 48], "little")
    return size


def _too_many(where: str, entries: str, limits: ZipLimits) -> ApiError:
    return ApiError(
        413,
        "zip_too_large",
        f"{where.capitalize()} is a .zip of {entries} entries; at most {limits.max_members} are accepted. "
        "Split it into smaller archives.",
    )


def _expand(where: str, data: bytes, limits: ZipLimits, unpacked: Unpacked) -> Iterator[CaseFile | Rejected]:
    index_bytes = _index_size(data)
    if index_bytes is not None and index_bytes > limits.max_members * _INDEX_BYTES_PER_MEMBER:
        # refused before zipfile parses it: an index of millions of tiny entries costs seconds and gigabytes
        raise _too_many(where, f"more than {limits.max_members}", limits)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        yield Rejected(
            where,
            ItemError(422, "invalid_zip", f"{where.capitalize()} is not a readable .zip ({type(exc).__name__})."),
        )
        return
    if len(members) > limits.max_members:
        raise _too_many(where, str(len(members)), limits)
    declared = sum(max(m.file_size, 0) for m in members)
    if unpacked.total + declared > limits.max_unzipped_bytes:
        earlier = f" (with the upload's earlier zips, {_mb(unpacked.total + declared)})"
        raise ApiError(
            413,
            "zip_too_large",
            f"{where.capitalize()} unpacks to {_mb(declared)}{earlier if unpacked.total else ''}; at most "
            f"{_mb(limits.max_unzipped_bytes)} are accepted in one case upload; split it into smaller archives "
            "sent separately.",
        )
    for m in members:
        parts = m.filename.replace("\\", "/").split("/")
        if m.filename.startswith(("/", "\\")) or ".." in parts or (len(parts[0]) == 2 and parts[0][1] == ":"):
            raise ApiError(
                422,
                "unsafe_zip",
                f"{where.capitalize()} has a member whose path leaves the archive (absolute, or with ..): "
                "MedLens refuses such archives.",
            )
    for index, member in enumerate(members, start=1):
        at = f"{where}, member {index}"
        base = posixpath.basename(member.filename.replace("\\", "/"))
        if member.is_dir() or member.filename.startswith(_JUNK_PREFIXES) or base.startswith(".") or not base:
            continue
        if member.flag_bits & 0x1:
            yield Rejected(at, ItemError(422, "encrypted_zip_member", f"{at.capitalize()} is encrypted."))
            continue
        if member.file_size > limits.max_member_bytes:
            yield Rejected(at, _too_big(at, limits.max_member_bytes))
            continue
        try:
            with archive.open(member) as fh:
                content = fh.read(limits.max_member_bytes + 1)
        except _UNPACK_ERRORS as exc:
            why = (
                "its compressed data is corrupt" if isinstance(exc, zlib.error | lzma.LZMAError) else type(exc).__name__
            )
            yield Rejected(at, ItemError(422, "invalid_zip", f"{at.capitalize()} cannot be unpacked ({why})."))
            continue
        if len(content) > limits.max_member_bytes:  # its header lied about its size
            yield Rejected(at, _too_big(at, limits.max_member_bytes))
            continue
        unpacked.total += len(content)
        if unpacked.total > limits.max_unzipped_bytes:
            raise ApiError(
                413,
                "zip_too_large",
                f"{where.capitalize()} unpacks to more than {_mb(limits.max_unzipped_bytes)} with the "
                "upload's other zips (its headers say less). Split it into smaller archives sent separately.",
            )
        suffix = _suffix(member.filename, content)
        if suffix == ".zip":
            yield Rejected(at, ItemError(422, "nested_zip", f"{at.capitalize()} is itself a .zip: unpack it first."))
        elif suffix is None:
            yield _unsupported(at)
        else:
            yield _case_file(at, content, suffix)


def _mb(size: int) -> str:
    """Bytes in the unit of the settings' ``*_mb`` (MiB, as ``max_unzipped_mb`` is read)."""
    return f"{size / 1024 / 1024:.0f} MiB"


def _too_big(where: str, limit: int) -> ItemError:
    return ItemError(
        413,
        "payload_too_large",
        f"{where.capitalize()} is larger than {limit / 1024 / 1024:g} MiB, the limit per file.",
    )
