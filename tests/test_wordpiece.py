"""WordPiece vocabularies learned by Hugging Face `tokenizers`' trainer cut words in the graph
(FastWordpieceTokenizer) exactly as that library's own WordPiece model does."""

from __future__ import annotations

import pytest
import tensorflow as tf
from tokenizers import Tokenizer as HuggingFaceTokenizer
from tokenizers import models

from textrnn.config import TokenizerConfig
from textrnn.errors import ConfigError
from textrnn.tokenizers import RESERVED_TOKENS, UNK, build_tokenizer, count_pieces
from textrnn.wordpiece import learn_wordpiece

CORPUS = [
    "A gripping, funny film; the acting is superb and the story moves.",
    "The film's story drags: acting wooden, dialogue flat, ending predictable.",
    "Über-long but gorgeous — a dreamlike, unforgettable journey.",
    "the funniest, most unpredictable comedy of the year",
    "predictably dull and unfunny, with wooden acting throughout",
] * 3
HELD_OUT = [
    "An unpredictable, gorgeous and gripping comedy.",
    "Dreamlike acting; wooden storytelling (über-dull!)",
    "zebra quartz 日本 films",  # letters and characters the corpus never had
]


def _words(tokenizer, texts) -> list[list[str]]:
    return [
        [word.decode("utf-8") for word in row] for row in tokenizer.split_words(texts).to_list()
    ]


def test_learned_vocabulary_cuts_words_in_the_graph_as_the_trainer_s_own_model_does(tmp_path):
    config = TokenizerConfig(kind="subword", vocabulary_size=120)
    tokenizer = build_tokenizer(config, CORPUS, tmp_path)
    vocabulary = tokenizer.vocabulary
    assert vocabulary[: len(RESERVED_TOKENS)] == list(RESERVED_TOKENS)
    assert len(vocabulary) == len(set(vocabulary)) <= 120
    for character in "gripng":  # every character, at the start of a word and inside one
        assert character in vocabulary and "##" + character in vocabulary
    reference = HuggingFaceTokenizer(
        models.WordPiece({token: i for i, token in enumerate(vocabulary)}, unk_token=UNK)
    )
    texts = tf.constant(CORPUS[:5] + HELD_OUT)
    in_graph = tokenizer.id_to_token(tokenizer.tokenize(texts)).to_list()
    for row, words in zip(in_graph, _words(tokenizer, texts), strict=True):
        expected = reference.encode(words, is_pretokenized=True).tokens
        assert [piece.decode("utf-8") for piece in row] == expected
    unknown_row = [piece.decode("utf-8") for piece in in_graph[-1]]
    assert unknown_row[0] == UNK and "film" in "".join(unknown_row)  # "zebra": unseen "z"


def test_learning_is_repeatable_and_keeps_the_counts_order_free():
    counts = count_pieces(TokenizerConfig(kind="subword"), CORPUS)
    first = learn_wordpiece(counts, 100, RESERVED_TOKENS)
    shuffled = dict(sorted(counts.items(), key=lambda item: item[1]))
    assert learn_wordpiece(shuffled, 100, RESERVED_TOKENS) == first


def test_rare_words_are_left_out_and_both_learners_give_a_usable_vocabulary():
    counts = count_pieces(TokenizerConfig(kind="subword"), CORPUS + ["xylophone"])
    assert counts["xylophone"] == 1 and counts["the"] > 3
    common = learn_wordpiece(counts, 200, RESERVED_TOKENS, min_frequency=2)
    assert not any("x" in token for token in common)
    for learner in ("huggingface", "tensorflow_text"):
        vocabulary = learn_wordpiece(counts, 200, RESERVED_TOKENS, learner=learner)
        assert vocabulary[:4] == list(RESERVED_TOKENS) and "##x" in vocabulary
    with pytest.raises(ValueError, match="learner must be one of"):
        learn_wordpiece(counts, 200, RESERVED_TOKENS, learner="bpe")
    assert learn_wordpiece({}, 200, RESERVED_TOKENS) == list(RESERVED_TOKENS)


def test_the_recipe_key_tokenizer_learner_picks_the_learner(tmp_path):
    counts = count_pieces(TokenizerConfig(kind="subword"), CORPUS)
    for learner in ("huggingface", "tensorflow_text"):
        config = TokenizerConfig(kind="subword", vocabulary_size=150, learner=learner)
        tokenizer = build_tokenizer(config, CORPUS, tmp_path / learner)
        assert tokenizer.vocabulary == learn_wordpiece(
            counts, 150, RESERVED_TOKENS, learner=learner
        )
    with pytest.raises(ConfigError, match="tokenizer.learner must be one of"):
        TokenizerConfig(kind="subword", learner="bpe")
