"""Learning a WordPiece vocabulary from word counts.

The words come from the run's own in-graph pre-tokenization
(`textrnn.tokenizers.learn_vocabulary` counts them), so the learner only
decides which pieces the vocabulary holds; `tensorflow_text.FastWordpieceTokenizer`
then cuts every word greedily, longest piece first, in the graph. Two learners:

- `huggingface` (the default): Hugging Face `tokenizers`' WordPiece trainer
  (byte-pair merges in Rust, `##` before pieces that continue a word): 2.9 s for
  the 40,846 distinct words of 25,000 documents of 230 words
  (`bench/vocab_learner.py`, a quiet machine).
- `tensorflow_text`: tensorflow-text's `wordpiece_tokenizer_learner_lib`, the
  BERT learner (substring counts over a search of thresholds, in Python): what
  textrnn used before, 102.7 s on the same counts (23 minutes under load).

Both keep every character of the corpus as a piece, bare and after `##`, so a
word of known characters never becomes `[UNK]`, and both give the same vocabulary
for the same counts every time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

LEARNERS = ("huggingface", "tensorflow_text")
JOINER = "##"
# The trainer reads the counts as text: each word repeated `count` times, one a line
# (no word holds a line break: both of textrnn's word splits cut there).
_WORD_SEPARATOR = "\n"
_FEED_CHARACTERS = 1 << 20  # characters per string handed to the trainer


def learn_wordpiece(
    word_counts: Mapping[str, int],
    vocabulary_size: int,
    reserved_tokens: Sequence[str],
    min_frequency: int = 1,
    learner: str = "huggingface",
) -> list[str]:
    """The vocabulary, `reserved_tokens` first, for words counted as `word_counts`.

    `min_frequency`: words seen fewer times are left out before learning.
    """
    if learner not in LEARNERS:
        raise ValueError(f"learner must be one of {', '.join(LEARNERS)}, got {learner!r}")
    counts = {word: count for word, count in word_counts.items() if count >= min_frequency}
    if not counts:
        return list(reserved_tokens)
    if learner == "tensorflow_text":
        return _tensorflow_text(counts, vocabulary_size, reserved_tokens, min_frequency)
    return _huggingface(counts, vocabulary_size, reserved_tokens)


def _huggingface(
    counts: Mapping[str, int], vocabulary_size: int, reserved_tokens: Sequence[str]
) -> list[str]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token=reserved_tokens[1]))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(_WORD_SEPARATOR, behavior="removed")
    # The trainer numbers the pieces that continue a word ("##e") in the order its hash map
    # yields the words, and breaks ties between equally frequent merges by those numbers:
    # the vocabulary changed from run to run. Declared up front (sorted), they are numbered
    # the same every time, and the vocabulary is too.
    characters = sorted({character for word in counts for character in word})
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocabulary_size,
        # Ids 0, 1, ... in this order: the reserved tokens, then every continuing character.
        special_tokens=[*reserved_tokens, *(JOINER + character for character in characters)],
        continuing_subword_prefix=JOINER,
        show_progress=False,
    )
    tokenizer.train_from_iterator(_repeated_words(counts), trainer=trainer)
    by_id = sorted(tokenizer.get_vocab(with_added_tokens=True).items(), key=lambda item: item[1])
    vocabulary = [token for token, _ in by_id]
    if vocabulary[: len(reserved_tokens)] != list(reserved_tokens):  # pragma: no cover
        raise RuntimeError("the WordPiece trainer did not put the reserved tokens first")
    return vocabulary


def _repeated_words(counts: Mapping[str, int]) -> Iterator[str]:
    """The counted words as text, each `count` times, in strings of about a megabyte."""
    parts: list[str] = []
    size = 0
    for word, count in sorted(counts.items()):  # sorted: the same text, whatever the dict order
        parts.append((word + _WORD_SEPARATOR) * count)
        size += (len(word) + 1) * count
        if size >= _FEED_CHARACTERS:
            yield "".join(parts)
            parts, size = [], 0
    if parts:
        yield "".join(parts)


def _tensorflow_text(
    counts: Mapping[str, int],
    vocabulary_size: int,
    reserved_tokens: Sequence[str],
    min_frequency: int,
) -> list[str]:
    from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

    vocabulary = learner.learn(
        list(counts.items()),
        vocab_size=vocabulary_size,
        reserved_tokens=list(reserved_tokens),
        lower_thresh=max(1, min(min_frequency, 10)),
    )
    return list(vocabulary)
