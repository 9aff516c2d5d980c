"""`serving.options`: defaults and validation of `ServerOptions`."""

from __future__ import annotations

import pytest


def test_defaults_bind_loopback_and_validate() -> None:
    from textrnn.serving import ServerOptions

    assert ServerOptions().host == "127.0.0.1"
    with pytest.raises(ValueError, match="--max-batch-size"):
        ServerOptions(max_batch_size=0)
    with pytest.raises(ValueError, match="--model-name"):
        ServerOptions(model_name="../x")
    with pytest.raises(ValueError, match="--tensorflow-intra-op-parallelism"):
        ServerOptions(tensorflow_intra_op_parallelism=-1)


def test_http_limits_validate() -> None:
    from textrnn.serving import ServerOptions

    with pytest.raises(ValueError, match="--header-timeout-seconds must be > 0"):
        ServerOptions(header_timeout_seconds=0)
    with pytest.raises(ValueError, match="--idle-timeout-seconds must be > 0"):
        ServerOptions(idle_timeout_seconds=-1)
    with pytest.raises(ValueError, match="--max-connections"):
        ServerOptions(max_connections=0)
    with pytest.raises(ValueError, match="--max-header-bytes"):
        ServerOptions(max_header_bytes=10)
