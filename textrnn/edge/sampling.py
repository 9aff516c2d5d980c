"""Sampling on the host, in numpy: `textrnn.decoding.sampling` without TensorFlow.

The same filters (temperature, top-k keeping ties, top-p keeping the best
token) and the same counter-based noise (MurmurHash3 finalizer of seed, step,
row and token, Gumbel-max), so a seed draws the same tokens here as in the
SavedModel's `generate` whenever the logits agree.
"""

from __future__ import annotations

import numpy as np

VERY_NEGATIVE = np.float32(-1e9)
_M1, _M2 = np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35)


def _mix32(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint32(16))
    x = x * _M1
    x = x ^ (x >> np.uint32(13))
    x = x * _M2
    return x ^ (x >> np.uint32(16))


def _word(value: np.ndarray | int, shift: int) -> np.ndarray:
    """A 32-bit word of an int64 (two's complement), as uint32."""
    value = np.asarray(value, np.int64)
    return ((value >> np.int64(shift)) & np.int64(0xFFFFFFFF)).astype(np.uint32)


def hash_uniform(rows: int, columns: int, seed: tuple[int, int], first_row: int = 0) -> np.ndarray:
    """Uniform float32 in (0, 1) of shape (rows, columns), as `sampling.hash_uniform`."""
    with np.errstate(over="ignore"):
        row = np.arange(rows, dtype=np.int64) + np.int64(first_row)
        column = np.arange(columns, dtype=np.int64)
        counter = row[:, None] * np.int64(1 << 20) + column[None, :]
        seed0, seed1 = np.int64(seed[0]), np.int64(seed[1])
        x = _mix32(_word(counter, 0) ^ _mix32(_word(seed0, 0) + np.uint32(0x9E3779B9)))
        x = _mix32(x ^ _mix32(_word(seed0, 32) ^ np.uint32(0x7F4A7C15)))
        x = _mix32(x ^ _mix32(_word(seed1, 0) + np.uint32(0x632BE59B)))
        x = _mix32(x ^ _word(counter, 32) ^ _word(seed1, 32))
    top24 = (x >> np.uint32(8)).astype(np.float32)
    return (top24 + np.float32(0.5)) * np.float32(1.0 / (1 << 24))


def top_k_filter(logits: np.ndarray, top_k: int) -> np.ndarray:
    """Keep the `top_k` largest logits per row (ties at the k-th kept); 0 keeps all."""
    if top_k <= 0:
        return logits
    k = min(max(top_k, 1), logits.shape[-1])
    kth = -np.sort(-logits, axis=-1)[:, k - 1 : k]
    return np.where(logits < kth, VERY_NEGATIVE, logits)


def top_p_filter(logits: np.ndarray, top_p: float) -> np.ndarray:
    """Nucleus filter: the smallest top set reaching `top_p` (the best token always kept)."""
    if top_p >= 1.0:
        return logits
    ordered = -np.sort(-logits, axis=-1)
    shifted = np.exp(ordered - ordered[:, :1])
    probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
    before = np.cumsum(probabilities, axis=-1) - probabilities  # mass of the better tokens
    keep = before < np.float32(top_p)
    keep[:, 0] = True
    threshold = np.min(np.where(keep, ordered, np.float32(3e38)), axis=-1, keepdims=True)
    return np.where(logits < threshold, VERY_NEGATIVE, logits)


def step_seed(seed: int, step: int) -> tuple[int, int]:
    return int(seed), int(step)


def sample_logits(
    logits: np.ndarray,
    temperature: float,
    top_k: int,
    top_p: float,
    seed: tuple[int, int],
    first_row: int = 0,
    banned: np.ndarray | None = None,
) -> np.ndarray:
    """Next token ids int32 [batch] from logits (batch, vocabulary); temperature 0 is argmax."""
    logits = np.asarray(logits, np.float32)
    if banned is not None:
        logits = np.where(banned[None, :], VERY_NEGATIVE, logits)
    if temperature <= 0:
        return np.argmax(logits, axis=-1).astype(np.int32)
    scaled = np.asarray(logits / np.float32(max(temperature, 1e-6)), np.float32)
    if banned is not None:
        scaled = np.where(banned[None, :], VERY_NEGATIVE, scaled)
    filtered = top_p_filter(top_k_filter(scaled, top_k), top_p)
    uniform = hash_uniform(filtered.shape[0], filtered.shape[1], seed, first_row)
    gumbel = -np.log(-np.log(uniform))
    return np.argmax(filtered + gumbel, axis=-1).astype(np.int32)
