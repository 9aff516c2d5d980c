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
