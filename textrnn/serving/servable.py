"""One loaded model version: its signatures, signature definitions and batchers."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from textrnn.serving.batching import Batcher
from textrnn.serving.errors import invalid
from textrnn.serving.metrics import Stats
from textrnn.serving.options import ServerOptions
from textrnn.serving.signatures import DEFAULT_SIGNATURE, Signature, read_signature_defs


class Servable:
    """One loaded model version: its signatures, signature definitions and batchers."""

    def __init__(self, name: str, version: int, path: Path) -> None:
        import tensorflow as tf

        self.name = name
        self.version = version
        self.path = path
        self.loaded = tf.saved_model.load(str(path))  # keeps the functions' variables alive
        defaults = read_input_defaults(path)
        self.signatures = {
            key: Signature(key, fn, defaults.get(key)) for key, fn in self.loaded.signatures.items()
        }
        self.signature_def_map = read_signature_defs(path)
        self.batchers: dict[str, Batcher] = {}
        self._batcher_lock = threading.Lock()

    def signature(self, name: str) -> Signature:
        name = name or DEFAULT_SIGNATURE
        signature = self.signatures.get(name)
        if signature is None:
            raise invalid(
                f'Serving signature name: "{name}" not found in signature def; this model has '
                + ", ".join(sorted(self.signatures))
            )
        return signature

    def batcher(
        self, signature: Signature, options: ServerOptions, stats: Stats, all_waiting: Any = None
    ) -> Batcher:
        batcher = self.batchers.get(signature.name)
        if batcher is None:
            with self._batcher_lock:
                batcher = self.batchers.get(signature.name)
                if batcher is None:
                    batcher = Batcher(
                        signature,
                        options.max_batch_size,
                        options.batch_timeout_micros / 1e6,
                        options.num_batch_threads,
                        stats,
                        all_waiting,
                    )
                    self.batchers[signature.name] = batcher
        return batcher

    def unload(self) -> None:
        with self._batcher_lock:
            for batcher in self.batchers.values():
                batcher.stop()
            self.batchers.clear()


def read_input_defaults(path: Path) -> dict[str, dict]:
    """`input_defaults` of the export's manifest (`assets.extra/textrnn.json`): per signature,
    values for inputs a request may leave out (inputs added after the first exports)."""
    try:
        manifest = json.loads((path / "assets.extra" / "textrnn.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    defaults = manifest.get("input_defaults") if isinstance(manifest, dict) else None
    return defaults if isinstance(defaults, dict) else {}
