"""Atomic file and directory writes: a crash never leaves a half-written file."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from textrnn.errors import DataError, RunDirError

TMP_PATTERN = re.compile(r"\.tmp-(\d+)-")


def _tmp_prefix() -> str:
    """Temporary siblings are named `.tmp-<pid>-...`, so a later run can tell whose they are."""
    return f".tmp-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete `.tmp-<pid>-*` files and directories in `directory` whose writer is gone.

    A process killed while writing (SIGKILL, power loss) leaves its temporary
    sibling behind; the finished file was never replaced, so nothing is lost
    by removing it. Temporaries of live processes are left alone.
    """
    removed = []
    for path in sorted(Path(directory).glob(".tmp-*")):
        match = TMP_PATTERN.match(path.name)
        if not match or _alive(int(match[1])) or not path.exists():
            continue
        with contextlib.suppress(OSError):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f"{_tmp_prefix()}{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it is renamed onto `path`.

    For writers that insist on a file name (Keras `save_weights` wants a name
    ending in `.weights.h5`, so the suffix is kept).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    tmp = path.with_name(f"{_tmp_prefix()}{path.name.removesuffix(suffix)}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            if tmp.is_dir():
                shutil.rmtree(tmp)
            elif tmp.exists():
                tmp.unlink()


def ensure_writable_directory(path: str | os.PathLike, option: str = "--run-dir") -> Path:
    """Create `path` if needed and prove it writable before any long work starts."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
        try:
            os.write(fd, b"x" * 4096)  # a full disk fails here, not hours later
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as error:
        raise RunDirError(f"cannot write to {path} ({option}): {error.strerror or error}") from None
    return path


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """Fail now, before long work, if `path` cannot be written as a file (`option` names it)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"cannot write to {path} ({option}): it is a directory")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # the nearest existing ancestor: it must take new entries
    if not parent.is_dir():
        raise DataError(f"cannot write to {path} ({option}): {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"cannot write to {path} ({option}): {parent} is not writable")
    return path


def escape_token(token: str) -> str:
    """Escape a token for one line of `vocab.txt`."""
    return token.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def unescape_token(line: str) -> str:
    """One line of `vocab.txt` -> the token (`escape_token` undone)."""
    out, i = [], 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line):
            out.append({"n": "\n", "r": "\r", "\\": "\\"}.get(line[i + 1], line[i + 1]))
            i += 2
        else:
            out.append(line[i])
            i += 1
    return "".join(out)
