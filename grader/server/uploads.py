"""What the course server keeps of an upload: its notebooks, nothing else, within the limits.

    files: (name, bytes or a binary file)
      ├── NAME.ipynb   copied (0600) into the staging folder
      ├── NAME.zip     read entry by entry, never trusting it:
      │                  unsafe names (absolute, '..', links) skipped with a note
      │                  the declared sizes and compression ratio first: a zip bomb is refused
      │                  as such before anything is inflated
      │                  notebooks inflated while counting the bytes really produced (declared
      │                  sizes can lie), everything else named in a note and never written
      └── anything else refused ("upload notebooks or a zip of them")

The pack's own data files come from the pack when grading (grader.lessons.Lesson.data_files),
so nothing but notebooks is kept: a zip of a notebook and 95 MB of data keeps the notebook.
Folders are 0700 and files 0600: submissions are readable by the server's user only.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ..errors import UploadError

__all__ = ["Kept", "unpack", "private_dir", "write_private", "discard", "size_text", "BOMB_RATIO"]

BOMB_RATIO = 100  # inflated / compressed: text notebooks reach 5-20; a run of zeros 1000
BOMB_MIN = 10 * 2**20  # ... once the inflated size is large enough to matter
SKIP_DIRS = {"__MACOSX", ".ipynb_checkpoints", ".git"}
CHUNK = 2**20


@dataclass
class Kept:
    """The notebooks written into the staging folder, notes for the student, and their size."""

    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bytes: int = 0


def private_dir(path: Path) -> Path:
    """`path` (and missing parents below it) as a folder only its owner can enter."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, stat.S_IRWXU)
    return path


def write_private(path: Path, source: BinaryIO, limit: int) -> int:
    """Copy `source` into a new file readable by its owner only; at most `limit` bytes (more:
    UploadError, and the file is removed). Returns the bytes written."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK):
                written += len(chunk)
                if written > limit:
                    raise UploadError(f"{path.name} is over the limit of {size_text(limit)}")
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return written


def _stream(data) -> BinaryIO:
    if isinstance(data, bytes | bytearray | memoryview):
        return io.BytesIO(data)
    data.seek(0)
    return data


def _clean_name(raw: str) -> str:
    name = PurePosixPath(raw.replace("\\", "/")).name
    if not name or name.startswith(".") or len(name) > 200 or any(ord(ch) < 32 for ch in name):
        raise UploadError(f"not a usable file name: {raw!r}")
    return name


def unpack(files: list[tuple[str, object]], dest: Path, *, max_notebooks: int, max_unzipped: int) -> Kept:
    """Keep the notebooks of an upload under `dest` (see the module docstring)."""
    private_dir(dest)
    kept = Kept()
    for raw_name, data in files:
        name = _clean_name(raw_name)
        lower = name.lower()
        if lower.endswith(".ipynb"):
            target = dest / name
            if target.exists():
                raise UploadError(f"{name} was uploaded twice")
            kept.bytes += write_private(target, _stream(data), max_unzipped)
            kept.files.append(target)
        elif lower.endswith(".zip"):
            _unzip(name, _stream(data), dest, kept, max_unzipped)
        else:
            raise UploadError(f"{name}: upload notebooks (.ipynb) or a zip of them")
        if len(kept.files) > max_notebooks:
            raise UploadError(f"more than {max_notebooks} notebooks in one upload: at most {max_notebooks} per submission")
    return kept


def _member_path(info: zipfile.ZipInfo) -> tuple[PurePosixPath | None, str | None]:
    """(safe relative path, why not) of a zip entry; (None, None) for entries silently left out."""
    name = info.filename.replace("\\", "/")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return None, "a symbolic link"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None, "an absolute path"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None, "a path outside the zip"
    if not parts or info.is_dir() or any(p in SKIP_DIRS or p.startswith(".") for p in parts):
        return None, None
    if any(len(p) > 200 or any(ord(ch) < 32 for ch in p) for p in parts):
        return None, "an unusable name"
    return PurePosixPath(*parts), None


def size_text(n: float) -> str:
    """1.5 MB, 820 KB, 12 bytes."""
    if n >= 2**20:
        return f"{n / 2**20:.1f} MB".replace(".0 MB", " MB")
    return f"{n / 2**10:.0f} KB" if n >= 2**10 else f"{n:.0f} bytes"


def _bomb(name: str, inflated: int, compressed: int, limit: int) -> UploadError:
    return UploadError(f"{name} looks like a zip bomb: it would inflate to more than {size_text(inflated)} from "
                       f"{size_text(compressed)} (the limit is {size_text(limit)} unpacked); nothing of it was kept")  # fmt: skip


def _unzip(name: str, stream: BinaryIO, dest: Path, kept: Kept, limit: int) -> None:
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadError(f"{name}: not a readable zip file ({exc})") from None
    with archive:
        members = archive.infolist()
        if len(members) > 10_000:
            raise UploadError(f"{name}: {len(members)} entries in one zip, over the limit of 10000")
        declared = sum(m.file_size for m in members)
        compressed = max(1, sum(m.compress_size for m in members))
        if declared > 4 * limit or (declared > BOMB_MIN and declared > BOMB_RATIO * compressed):
            raise _bomb(name, declared, compressed, limit)
        ignored: list[str] = []
        inflated = 0
        for info in members:
            path, why = _member_path(info)
            if why:
                kept.notes.append(f"{name}: skipped {info.filename!r} ({why})")
            if path is None:
                continue
            if path.suffix.lower() != ".ipynb":
                ignored.append(str(path))
                continue
            target = dest.joinpath(*path.parts)
            if target.exists():
                kept.notes.append(f"{name}: skipped {str(path)!r} (appears twice)")
                continue
            try:
                with archive.open(info) as src:
                    written = write_private(target, src, limit - inflated)
            except UploadError:
                raise _bomb(name, limit, compressed, limit) from None
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, ValueError) as exc:
                kept.notes.append(f"{name}: skipped {str(path)!r} (damaged: {exc})")
                with contextlib.suppress(OSError):
                    target.unlink()
                continue
            inflated += written
            kept.bytes += written
            kept.files.append(target)
        if ignored:
            shown = ", ".join(ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
            kept.notes.append(f"{name}: kept the notebooks only; not kept: {shown}")


def discard(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
