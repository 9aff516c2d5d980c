"""The models under the base path, their versions, and the poller that keeps them current.

Versions are found as `export` lays them out (numeric directories holding a
SavedModel). A poller thread loads new versions (and replays their warm-up
requests from `assets.extra/tf_serving_warmup_requests`) in the background
and publishes a version only once it answers; removed versions are
unloaded. The server never reads outside the base path.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textrnn.export import is_saved_model, version_directories
from textrnn.serving.errors import ServingError, first_line, invalid
from textrnn.serving.execution import Executor, replay_warmup
from textrnn.serving.options import ServerOptions, valid_model_name
from textrnn.serving.servable import Servable

logger = logging.getLogger(__name__)

VERSION = re.compile(r"\d{1,18}")  # a version in a request: at most 18 digits fit an int64
MAX_VERSION = 10**18  # versions on disk from here on are skipped: REST requests cannot name them


@dataclass
class VersionState:
    """A version's state as TensorFlow Serving reports it."""

    state: str  # AVAILABLE | END (failed or unloaded)
    error_code: str = "OK"
    error_message: str = ""
    mtime: float = 0.0  # of the version directory when the load failed: retry when it changes


class Registry:
    """The models under the base path, their loaded versions, and the poller that updates them."""

    def __init__(self, options: ServerOptions, executor: Executor) -> None:
        self.options = options
        self.executor = executor
        self.base = Path(options.model_base_path)
        self._models: dict[str, dict[int, Servable]] = {}
        self._states: dict[str, dict[int, VersionState]] = {}
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._warned: set[Path] = set()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # Discovery -----------------------------------------------------------------

    def discover(self) -> dict[str, Path]:
        """Model name -> model directory; the base path itself when it holds versions."""
        if not self.base.is_dir():
            raise FileNotFoundError(f"model base path not found: {self.base} (--model-base-path)")
        if self._versions_on_disk(self.base):
            name = self.options.model_name or self.base.resolve().name
            if not valid_model_name(name):
                name = "default"
            return {name: self.base}
        models = {}
        for child in sorted(self.base.iterdir()):
            if child.is_dir() and valid_model_name(child.name) and self._inside_base(child):
                models[child.name] = child
        return models

    def _inside_base(self, path: Path) -> bool:
        try:
            path.resolve().relative_to(self.base.resolve())
        except ValueError:
            if path not in self._warned:  # once, not at every poll
                self._warned.add(path)
                logger.warning("skipping %s: it resolves outside the model base path", path)
            return False
        return True

    def _versions_on_disk(self, model_dir: Path) -> dict[int, Path]:
        """Version number -> directory, for the numeric versions that hold a SavedModel.

        The layout `export` writes; a version still being copied in (no
        `saved_model.pb` yet) is not there yet.
        """
        try:
            directories = version_directories(model_dir)
        except OSError:  # unreadable: no versions (yet), not a failed poll
            return {}
        versions = {}
        for number, path in directories.items():
            if number < MAX_VERSION and is_saved_model(path):
                versions[number] = path
        return versions

    # Loading ---------------------------------------------------------------------

    def poll(self) -> list[str]:
        """Load new versions and unload removed ones; return one line per change.

        Readers never lock: every change publishes fresh dictionaries
        (copy-on-write), so a request sees either the old or the new set.
        """
        with self._poll_lock:
            return self._poll()

    def _publish(
        self, name: str, version: int, servable: Servable | None, state: VersionState | None
    ) -> None:
        with self._lock:
            versions = dict(self._models.get(name, {}))
            states = dict(self._states.get(name, {}))
            if servable is None:
                versions.pop(version, None)
            else:
                versions[version] = servable
            if state is None:
                states.pop(version, None)
            else:
                states[version] = state
            models = dict(self._models)
            if versions:
                models[name] = versions
            else:
                models.pop(name, None)
            self._models = models
            self._states = {**self._states, name: states}

    def _poll(self) -> list[str]:
        changes = []
        models = self.discover()
        for name, model_dir in models.items():
            on_disk = {
                v: p for v, p in self._versions_on_disk(model_dir).items() if self._inside_base(p)
            }
            loaded = self._models.get(name, {})
            states = self._states.get(name, {})
            for version in sorted(set(on_disk) - set(loaded)):
                path = on_disk[version]
                state = states.get(version)
                mtime = _mtime(path)
                if (
                    state is not None
                    and state.state == "END"
                    and state.error_code != "OK"
                    and state.mtime == mtime
                ):
                    continue  # failed before and unchanged since
                try:
                    servable = Servable(name, version, path)
                    replayed = replay_warmup(servable, self.executor)
                except Exception as error:  # noqa: BLE001 - a bad version must not stop the server
                    message = f"{type(error).__name__}: {first_line(error)}"
                    failed = VersionState("END", "UNKNOWN", f"failed to load: {message}", mtime)
                    self._publish(name, version, None, failed)
                    changes.append(f"model {name} version {version}: failed to load ({message})")
                    continue
                self._publish(name, version, servable, VersionState("AVAILABLE"))
                warm = f", {replayed} warm-up request(s) replayed" if replayed else ""
                changes.append(f"model {name} version {version}: loaded from {path}{warm}")
            for version in sorted(set(loaded) - set(on_disk)):
                self._publish(name, version, None, VersionState("END"))
                loaded[version].unload()
                changes.append(f"model {name} version {version}: unloaded (removed from disk)")
            for version, state in states.items():
                if state.error_code != "OK" and version not in on_disk:
                    self._publish(name, version, None, None)  # a failed version was removed
        for name in set(self._models) - set(models):
            gone = self._models[name]
            with self._lock:
                self._models = {k: v for k, v in self._models.items() if k != name}
                self._states = {k: v for k, v in self._states.items() if k != name}
            for servable in gone.values():
                servable.unload()
            changes.append(f"model {name}: unloaded (directory removed)")
        return changes

    def start_polling(self, echo: Any = None) -> None:
        if self.options.poll_seconds <= 0:
            return

        def loop() -> None:
            while not self._stop.wait(self.options.poll_seconds):
                try:
                    for line in self.poll():
                        (echo or logger.info)(line)
                except Exception as error:  # noqa: BLE001 - keep polling
                    logger.warning("polling %s failed: %s", self.base, first_line(error))

        self._poller = threading.Thread(target=loop, name="version-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        for versions in list(self._models.values()):
            for servable in versions.values():
                servable.unload()

    # Lookup ----------------------------------------------------------------------

    def model_names(self) -> list[str]:
        return sorted(self._models)

    def summary(self) -> str:
        return (
            "; ".join(
                f"{name} (version{'s' if len(v) > 1 else ''} "
                f"{', '.join(str(n) for n in sorted(v))})"
                for name, v in sorted(self._models.items())
            )
            or "none yet"
        )

    def get(self, name: str, version: int | str | None = None) -> Servable:
        """The servable for `name` at `version` (default: the highest); NOT_FOUND otherwise."""
        check_name(name)
        number = parse_version(version)
        versions = self._models.get(name)
        if number is None:
            if versions:
                return versions[max(versions)]
            raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
        servable = versions.get(number) if versions else None
        if servable is None:
            raise ServingError(
                "NOT_FOUND", f"Servable not found for request: Specific({name}, {number})"
            )
        return servable

    def status(self, name: str, version: int | str | None = None) -> list[tuple[int, VersionState]]:
        check_name(name)
        number = parse_version(version)
        states = self._states.get(name)
        if not states:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        if number is not None:
            if number not in states:
                raise ServingError("NOT_FOUND", f"Could not find version {number} of model {name}")
            return [(number, states[number])]
        return sorted(states.items(), reverse=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def check_name(name: str) -> None:
    if not valid_model_name(name):
        shown = name if len(name) <= 80 else name[:80] + "..."
        raise invalid(
            f"invalid model name {shown!r}: use letters, digits, '_', '.', '-' "
            "(no path separators or '..')"
        )


def parse_version(version: int | str | None) -> int | None:
    if version is None or version == "":
        return None
    if isinstance(version, int):
        return version
    if not VERSION.fullmatch(version):
        raise invalid(f"Failed to convert version: {version[:40]} to numeric.")
    return int(version)
