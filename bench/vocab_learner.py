"""Subword vocabulary learning (issue 19): textrnn's learner against tensorflow-text's.

Issue 19 measured tensorflow-text's WordPiece learner at over 2 minutes on 25,000
movie reviews of about 230 words. This builds a corpus of that shape from the
shared data (`../shared/data`: SST-2 sentences, Tiny Shakespeare lines, Multi30k's
English and German captions, drawn at random with a seed until a document holds
`--words` words), then, in one run:

1. counts the words with textrnn's in-graph pre-tokenization (`count_pieces`: the
   step both learners share);
2. learns a `--vocabulary-size` WordPiece vocabulary from the counts with Hugging Face
   `tokenizers`' trainer (textrnn's default) and with tensorflow-text's learner
   (`wordpiece_tokenizer_learner_lib`, textrnn's learner before), and prints the
   seconds of each and their ratio;
3. tokenizes `--held-out` other documents in the graph with each vocabulary
   (`FastWordpieceTokenizer`) and prints pieces per word and the `[UNK]` rate, so a
   faster learner is not a worse vocabulary.

    python bench/vocab_learner.py                        # 25,000 x 230 words, 16,000 tokens
    python bench/vocab_learner.py --documents 2000 --json

The corpus repeats its sources' sentences (about a million distinct words of text
drawn 5.75 million times), so it has fewer distinct words than real reviews
would; the count is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tensorflow as tf  # noqa: E402

from textrnn.config import TokenizerConfig  # noqa: E402
from textrnn.tokenizers import (  # noqa: E402
    RESERVED_TOKENS,
    UNK_ID,
    Tokenizer,
    count_pieces,
    save_tokenizer_files,
)
from textrnn.wordpiece import learn_wordpiece  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def source_lines(shared: Path) -> list[str]:
    """Sentences and lines of the shared corpora, labels and empty lines dropped."""
    lines = [
        line.partition(" ")[2]
        for line in (shared / "sst2" / "stsa.binary.train").read_text("utf-8").splitlines()
    ]
    for name in ("tinyshakespeare/train.txt", "multi30k/train.en", "multi30k/train.de"):
        lines += (shared / name).read_text("utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def review_like_corpus(lines: list[str], documents: int, words: int, seed: int) -> list[str]:
    """`documents` texts of about `words` words each: random lines joined by spaces."""
    rng = random.Random(seed)
    corpus = []
    for _ in range(documents):
        parts, count = [], 0
        while count < words:
            line = rng.choice(lines)
            parts.append(line)
            count += len(line.split())
        corpus.append(" ".join(parts))
    return corpus


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def vocabulary_quality(
    config: TokenizerConfig, vocabulary: list[str], texts: list[str], directory: Path
) -> dict[str, float]:
    """Pieces per word and the [UNK] rate of `texts` tokenized in the graph with `vocabulary`."""
    save_tokenizer_files(directory, config, vocabulary)
    tokenizer = Tokenizer.load(directory)
    batch = tf.constant(texts)
    words = int(tf.size(tokenizer.split_words(batch).flat_values))
    ids = tokenizer.tokenize(batch).flat_values
    pieces = int(tf.size(ids))
    unknown = int(tf.reduce_sum(tf.cast(tf.equal(ids, UNK_ID), tf.int32)))
    return {
        "vocabulary": len(vocabulary),
        "pieces_per_word": pieces / max(1, words),
        "unknown_rate": unknown / max(1, pieces),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=25_000)
    parser.add_argument("--words", type=int, default=230, help="words per document, about")
    parser.add_argument("--held-out", type=int, default=1_000, help="documents to tokenize")
    parser.add_argument("--vocabulary-size", type=int, default=16_000)
    parser.add_argument("--shared-data", type=Path, default=SHARED)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()

    lines = source_lines(args.shared_data)
    corpus = review_like_corpus(lines, args.documents + args.held_out, args.words, args.seed)
    train, held_out = corpus[: args.documents], corpus[args.documents :]
    config = TokenizerConfig(kind="subword", vocabulary_size=args.vocabulary_size)
    counts, count_seconds = timed(count_pieces, config, train)
    print(
        f"corpus: {len(train):,} documents, {sum(counts.values()):,} words "
        f"({len(counts):,} distinct) after textrnn's split; counting took {count_seconds:.1f} s",
        flush=True,
    )
    results = {"documents": len(train), "words": sum(counts.values()), "distinct": len(counts)}
    results["count_seconds"] = count_seconds
    with tempfile.TemporaryDirectory() as scratch:
        for learner in ("huggingface", "tensorflow_text"):
            vocabulary, seconds = timed(
                learn_wordpiece, counts, args.vocabulary_size, RESERVED_TOKENS, 1, learner
            )
            quality = vocabulary_quality(config, vocabulary, held_out, Path(scratch) / learner)
            results[learner] = {"seconds": seconds, **quality}
            print(
                f"{learner}: {seconds:.1f} s learning (+ {count_seconds:.1f} s counting), "
                f"{quality['vocabulary']:,} tokens; held-out {quality['pieces_per_word']:.3f} "
                f"pieces per word, [UNK] {quality['unknown_rate']:.3%}",
                flush=True,
            )
    fast, slow = results["huggingface"]["seconds"], results["tensorflow_text"]["seconds"]
    results["speedup_learning"] = slow / fast
    results["speedup_with_counting"] = (slow + count_seconds) / (fast + count_seconds)
    print(
        f"ratio (tensorflow-text / huggingface): {results['speedup_learning']:.1f}x learning, "
        f"{results['speedup_with_counting']:.1f}x counting included; load average "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
