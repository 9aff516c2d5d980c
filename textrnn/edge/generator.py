"""Text generation on the host: `prime` the prompt, then `step` and sample token by token.

The seeds, the noise rows and the stopping rule are the SavedModel's (`generate`
signature, `textrnn generate --stream`): row r of a batched call with seed s
draws `hash(s, step, r, token)`, so the same seed gives the same text here as
there whenever the logits agree; temperature 0 is greedy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from textrnn.decoding.options import SamplingOptions
from textrnn.decoding.stream_text import StreamText
from textrnn.edge import sampling
from textrnn.edge.runtime import EdgeExport
from textrnn.edge.text import BOS_ID, EOS_ID, PAD_ID


@dataclass
class EdgeLanguageModel:
    """A language-model LiteRT export.

    Example:

        lm = EdgeLanguageModel(EdgeExport.open("litert_models/lm/1"))
        lm.generate("ROMEO:", SamplingOptions(max_tokens=100, temperature=0.8, seed=1))
    """

    export: EdgeExport

    def __post_init__(self) -> None:
        manifest = self.export.manifest
        self.tokenizer = self.export.tokenizers["text"]
        self.prime_length = int(manifest["prime_length"])
        self.state_shape = (int(manifest["num_states"]), int(manifest["units"]))
        self.banned = np.zeros([self.tokenizer.vocabulary_size], bool)
        self.banned[list(manifest["banned_ids"])] = True

    def zero_states(self, batch: int = 1) -> np.ndarray:
        return np.zeros([batch, *self.state_shape], np.float32)

    def prompt_ids(self, prompt: str) -> list[int]:
        return [BOS_ID, *self.tokenizer.tokenize(prompt)]

    def prime(self, ids: list[int], states: np.ndarray | None = None):
        """Consume ids (in chunks of the fixed prime length): next-token logits (1, V), states."""
        states = self.zero_states() if states is None else states
        logits = None
        for start in range(0, len(ids), self.prime_length):
            chunk = ids[start : start + self.prime_length]
            padded = np.full([1, self.prime_length], PAD_ID, np.int32)
            padded[0, : len(chunk)] = chunk
            outputs = self.export.run("prime", token_ids=padded, states=states)
            logits, states = outputs["logits"], outputs["states"]
        return logits, states

    def step(self, token_ids: np.ndarray, states: np.ndarray):
        """Ids (batch,) and states -> next-token logits (batch, V), new states."""
        outputs = self.export.run(
            "step", token_ids=np.asarray(token_ids, np.int32).reshape(-1), states=states
        )
        return outputs["logits"], outputs["states"]

    def token_stream(self, prompt: str, options: SamplingOptions, row: int = 0) -> Iterator[int]:
        """The generated ids one by one (stops before `[EOS]` or at `max_tokens`)."""
        options.check(self.tokenizer.vocabulary_size)
        seed = options.resolved_seed()
        if options.max_tokens == 0:
            return
        logits, states = self.prime(self.prompt_ids(prompt))
        for t in range(options.max_tokens):
            token = int(
                sampling.sample_logits(
                    logits,
                    options.temperature,
                    options.top_k,
                    options.top_p,
                    sampling.step_seed(seed, t),
                    first_row=row,
                    banned=self.banned,
                )[0]
            )
            if token == EOS_ID:
                return
            yield token
            if t + 1 < options.max_tokens:
                logits, states = self.step(np.array([token]), states)

    def generate_ids(self, prompt: str, options: SamplingOptions, row: int = 0) -> list[int]:
        return list(self.token_stream(prompt, options, row))

    def generate(self, prompt: str, options: SamplingOptions, row: int = 0) -> str:
        return self.tokenizer.detokenize(self.generate_ids(prompt, options, row))

    def stream(self, prompt: str, options: SamplingOptions, row: int = 0) -> Iterator[str]:
        """The continuation piece by piece, as `textrnn generate --stream` prints it."""
        text = StreamText()  # each token detokenizes its window, not the whole continuation
        for token in self.token_stream(prompt, options, row):
            text.extend([token])
            piece = text.update(self.tokenizer.detokenize(text.tail))
            if piece:
                yield piece
            text.move_if_due(self.tokenizer.detokenize)
