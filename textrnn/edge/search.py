"""Greedy and beam search on the host, in numpy: `textrnn.decoding.search` for one sentence.

`step_fn(ids int32 (n,), state) -> (log_probs float32 (n, vocabulary), state,
attention float32 (n, memory))`, where `state` is a dict of arrays with leading
dimension n (the hypotheses). The bookkeeping follows the in-graph searches step
for step, in float32, with `tf.math.top_k`'s tie order (lower index first), so
beam 1 is greedy and the same log-probabilities give the same hypotheses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

NEGATIVE = np.float32(-1e9)
CAPPED_RANK = np.float32(-1e4)  # decoding.search.CAPPED_RANK: cut at the cap ranks last

StepFn = Callable[[np.ndarray, dict[str, np.ndarray]], tuple[np.ndarray, dict[str, Any], Any]]


@dataclass
class Hypotheses:
    """Finished hypotheses, best first (those cut at the cap after the others): ids end in
    EOS (or are cut at the cap)."""

    ids: list[list[int]]
    scores: list[float]  # log-probability / GNMT length penalty
    log_probs: list[float]
    attention: list[np.ndarray]  # (length, memory) each


def length_penalty(length: int, alpha: float) -> np.float32:
    return np.float32(np.power(np.float32((5.0 + length) / 6.0), np.float32(alpha)))


def _force_eos(log_probs: np.ndarray, eos_id: int) -> np.ndarray:
    forced = np.full_like(log_probs, NEGATIVE)
    forced[:, eos_id] = log_probs[:, eos_id]
    return forced


def _top_k(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Largest k of a 1-D array, ties by lower index (as `tf.math.top_k`)."""
    order = np.argsort(-values, kind="stable")[:k]
    return values[order], order


def greedy_search(
    step_fn: StepFn,
    state: dict[str, np.ndarray],
    max_length: int,
    bos_id: int,
    eos_id: int,
    alpha: float = 0.0,
) -> Hypotheses:
    """Argmax decoding of one sentence; at `max_length` tokens EOS is forced."""
    previous = np.array([bos_id], np.int32)
    ids, attention, log_prob = [], [], np.float32(0.0)
    for step in range(max(max_length, 1)):
        log_probs, state, weights = step_fn(previous, state)
        log_probs = np.asarray(log_probs, np.float32)
        if step >= max_length - 1:
            log_probs = _force_eos(log_probs, eos_id)
        token = int(np.argmax(log_probs[0]))
        log_prob = np.float32(log_prob + log_probs[0, token])
        ids.append(token)
        attention.append(np.asarray(weights, np.float32)[0])
        if token == eos_id:
            break
        previous = np.array([token], np.int32)
    score = float(log_prob / length_penalty(len(ids), alpha))
    return Hypotheses([ids], [score], [float(log_prob)], [np.stack(attention)])


def beam_search(
    step_fn: StepFn,
    state: dict[str, np.ndarray],
    max_length: int,
    beam_size: int,
    bos_id: int,
    eos_id: int,
    alpha: float = 0.6,
    n_best: int = 1,
) -> Hypotheses:
    """Beam search of one sentence, as `decoding.search.beam_search` with a batch of 1.

    `state` holds one row; it is tiled to `beam_size` rows here.
    """
    beam = beam_size
    state = {key: np.repeat(value, beam, axis=0) for key, value in state.items()}
    width = max(max_length, 1)
    alive_log_prob = np.full([beam], NEGATIVE, np.float32)
    alive_log_prob[0] = 0.0
    alive_ids = np.zeros([beam, width], np.int32)
    alive_attention: np.ndarray | None = None
    finished_ids = np.zeros([beam, width], np.int32)
    finished_log_prob = np.full([beam], NEGATIVE, np.float32)
    finished_score = np.full([beam], NEGATIVE, np.float32)
    finished_lengths = np.zeros([beam], np.int32)
    finished_attention: np.ndarray | None = None
    finished_capped = np.zeros([beam], bool)
    previous = np.full([beam], bos_id, np.int32)
    step, done = 0, False
    while step < max_length and not done:
        log_probs, state, weights = step_fn(previous, state)
        log_probs = np.asarray(log_probs, np.float32)
        weights = np.asarray(weights, np.float32)
        if alive_attention is None:
            alive_attention = np.zeros([beam, width, weights.shape[-1]], np.float32)
            finished_attention = np.zeros_like(alive_attention)
        vocabulary = log_probs.shape[-1]
        if step >= max_length - 1:
            log_probs = _force_eos(log_probs, eos_id)
        candidates = (alive_log_prob[:, None] + log_probs).reshape(-1)
        top_log_prob, top_index = _top_k(candidates, beam)
        origin, token = top_index // vocabulary, (top_index % vocabulary).astype(np.int32)
        candidate_ids = alive_ids[origin].copy()
        candidate_ids[:, step] = token
        candidate_attention = alive_attention[origin].copy()
        candidate_attention[:, step] = weights[origin]
        state = {key: value[origin] for key, value in state.items()}
        live = top_log_prob > NEGATIVE / 2
        ends = live & (token == eos_id)
        length = step + 1
        new_score = np.where(ends, top_log_prob / length_penalty(length, alpha), NEGATIVE)
        all_score = np.concatenate([finished_score, new_score.astype(np.float32)])
        all_capped = np.concatenate([finished_capped, ends & (step >= max_length - 1)])
        _, keep = _top_k(np.where(all_capped, all_score + CAPPED_RANK, all_score), beam)
        finished_score, finished_capped = all_score[keep], all_capped[keep]
        finished_ids = np.concatenate([finished_ids, candidate_ids])[keep]
        finished_attention = np.concatenate([finished_attention, candidate_attention])[keep]
        finished_log_prob = np.concatenate(
            [finished_log_prob, np.where(ends, top_log_prob, NEGATIVE).astype(np.float32)]
        )[keep]
        finished_lengths = np.concatenate([finished_lengths, np.full([beam], length)])[keep]
        alive_log_prob = np.where(live & ~ends, top_log_prob, NEGATIVE).astype(np.float32)
        finished_count = int(np.sum(finished_score > NEGATIVE / 2))
        best_ended = bool(ends[0]) and finished_count >= min(n_best, beam)
        no_live = bool(np.all(alive_log_prob <= NEGATIVE / 2))
        done = best_ended or no_live or length >= max_length
        alive_ids, alive_attention, previous, step = (
            candidate_ids,
            candidate_attention,
            token,
            length,
        )
    kept = [i for i in range(beam) if finished_score[i] > NEGATIVE / 2]
    return Hypotheses(
        ids=[finished_ids[i, : finished_lengths[i]].tolist() for i in kept],
        scores=[float(finished_score[i]) for i in kept],
        log_probs=[float(finished_log_prob[i]) for i in kept],
        attention=[finished_attention[i, : finished_lengths[i]] for i in kept],
    )
