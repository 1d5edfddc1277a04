"""`learn fetch`: copy a lesson's exercise notebooks into the learner's folder - never over their work.

Each fetch records the hash of every file it wrote in `<dir>/.learn/fetched.json`. On the next
fetch a file is replaced only if it is still exactly what was fetched (so exercise updates
arrive); a file the learner changed, or one we have no record of, is kept - unless `--force`,
which first saves it as `<name>.<timestamp>.bak<suffix>`.

`--from` installs a lesson pack first: a folder, a local zip, or a zip over http(s).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .errors import FetchError, LearnError, LessonPackError
from .lessons import MANIFEST, Lesson, all_lessons, content_root, installed_packs_dir, load_lesson

__all__ = ["FetchReport", "fetch_lesson", "install_pack", "RECORD"]

RECORD = Path(".learn") / "fetched.json"
MAX_PACK_BYTES = 200 * 2**20
MAX_PACK_FILES = 5_000


@dataclass
class FetchReport:
    lesson: str
    dest: Path
    copied: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # changed by the learner: left alone
    backups: list[str] = field(default_factory=list)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_record(dest: Path) -> dict:
    try:
        data = json.loads((dest / RECORD).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_record(dest: Path, record: dict) -> None:
    path = dest / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _backup_name(path: Path) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = path.with_name(f"{path.stem}.{stamp}.bak{path.suffix}")
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}.{stamp}-{n}.bak{path.suffix}")
        n += 1
    return candidate


def _copy_atomic(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def fetch_lesson(lesson: Lesson, dest: Path, force: bool = False) -> FetchReport:
    """Copy the lesson's exercises (and data files) into `dest`, protecting the learner's edits."""
    if not lesson.exercises_dir.is_dir():
        raise FetchError(f"lesson {lesson.id} has no exercises at {lesson.exercises_dir}; run `learn generate {lesson.id}`")
    dest.mkdir(parents=True, exist_ok=True)
    record = _read_record(dest)
    report = FetchReport(lesson.id, dest)
    names = [spec.file for spec in lesson.notebooks] + [d for spec in lesson.notebooks for d in spec.data]
    for name in dict.fromkeys(names):
        source = lesson.exercises_dir / name
        if source.is_dir():
            continue
        if not source.is_file():
            raise FetchError(f"{source} is missing from the lesson's exercises; run `learn generate {lesson.id}`")
        target = dest / name
        new_hash = _sha(source)
        if not target.exists():
            _copy_atomic(source, target)
            report.copied.append(name)
        elif target.is_symlink() or not target.is_file():
            report.kept.append(name)
            continue
        else:
            current = _sha(target)
            if current == new_hash:
                report.unchanged.append(name)
            elif record.get(name) == current:  # untouched since we fetched it: safe to update
                _copy_atomic(source, target)
                report.updated.append(name)
            elif force:
                backup = _backup_name(target)
                os.replace(target, backup)
                _copy_atomic(source, target)
                report.backups.append(backup.name)
                report.updated.append(name)
            else:
                report.kept.append(name)
                continue
        record[name] = new_hash
    _write_record(dest, record)
    return report


# ---------------------------------------------------------------------------------------------
# lesson packs from elsewhere


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            data = response.read(MAX_PACK_BYTES + 1)
    except OSError as exc:
        raise FetchError(f"could not download {url}: {exc}") from None
    if len(data) > MAX_PACK_BYTES:
        raise FetchError(f"{url} is larger than {MAX_PACK_BYTES // 2**20} MB")
    return data


def _safe_extract(data: bytes, target: Path, origin: str) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise FetchError(f"{origin} is not a zip file") from None
    members = archive.infolist()
    if len(members) > MAX_PACK_FILES:
        raise FetchError(f"{origin} holds {len(members)} files, more than the {MAX_PACK_FILES} allowed")
    if sum(m.file_size for m in members) > MAX_PACK_BYTES:
        raise FetchError(f"{origin} unpacks to more than {MAX_PACK_BYTES // 2**20} MB")
    for m in members:
        name = PurePosixPath(m.filename)
        if name.is_absolute() or ".." in name.parts or "\\" in m.filename:
            raise FetchError(f"{origin} contains an unsafe path: {m.filename!r}")
        if (m.external_attr >> 16) & 0o170000 == 0o120000:
            raise FetchError(f"{origin} contains a symbolic link: {m.filename!r}")
    archive.extractall(target)


def _find_pack(root: Path) -> Path:
    if (root / MANIFEST).is_file():
        return root
    candidates = [p.parent for p in root.rglob(MANIFEST)]
    if len(candidates) != 1:
        raise FetchError(f"expected one {MANIFEST} in the lesson pack, found {len(candidates)}")
    return candidates[0]


def install_pack(source: str, expected_id: str | None = None) -> Lesson:
    """Install a lesson pack (folder, zip file or http(s) zip URL) and generate its exercises."""
    from .generate import generate_lesson

    with tempfile.TemporaryDirectory(prefix="learn-pack-") as tmp:
        staging = Path(tmp) / "unpacked"
        staging.mkdir()
        if source.startswith(("http://", "https://")):
            _safe_extract(_download(source), staging, source)
        else:
            path = Path(source).expanduser()
            if path.is_dir():
                shutil.copytree(path, staging, dirs_exist_ok=True, symlinks=False, ignore=shutil.ignore_patterns(".git", "__pycache__"))
            elif path.is_file():
                _safe_extract(path.read_bytes(), staging, str(path))
            else:
                raise FetchError(f"{source}: no such folder, zip file or URL")
        pack = _find_pack(staging)
        try:
            lesson = load_lesson(pack, Path(tmp) / "exercises")
            lesson.check_code()
        except LessonPackError as exc:
            raise FetchError(f"{source} is not a valid lesson pack: {exc}") from None
        if expected_id and lesson.id != expected_id:
            raise FetchError(f"{source} holds lesson '{lesson.id}', not '{expected_id}'")
        bundled = content_root() / "solutions" / lesson.id
        if bundled.is_dir():
            raise FetchError(f"a bundled lesson is already called '{lesson.id}'; give the pack another id in its {MANIFEST}")
        home = installed_packs_dir() / lesson.id
        new_home = home.with_name(f".{lesson.id}.{os.getpid()}.new")
        shutil.rmtree(new_home, ignore_errors=True)
        shutil.copytree(pack, new_home / "pack")
        installed = load_lesson(new_home / "pack", new_home / "exercises")
        try:
            generate_lesson(installed)
        except LearnError as exc:
            shutil.rmtree(new_home, ignore_errors=True)
            raise FetchError(f"{source}: cannot generate exercises: {exc}") from None
        old = home.with_name(f".{lesson.id}.{os.getpid()}.old")
        if home.exists():
            os.replace(home, old)
        os.replace(new_home, home)
        shutil.rmtree(old, ignore_errors=True)
    return all_lessons()[lesson.id]
