"""OpenNMT-tf side of `bench/translate.py --opennmt-python PY` (run by PY, not textrnn's venv).

Builds an OpenNMT-tf 2.32 model of the Multi30k recipe's shape
(`tasks/translation/multi30k.toml`): embeddings 256, bidirectional GRU encoder of 256
per direction (outputs concatenated: 512-wide memory), a dense tanh bridge, a GRU
decoder of 512 with input feeding and Bahdanau attention of 256 units, the attentional
vector tanh(W [h; context]) of 256, dropout 0.25 on it, label smoothing 0.1, Adam.
Then, on the token files that `bench/translate.py` wrote (textrnn's WordPiece tokens,
so both toolkits see the same sequences and vocabularies):

- trains with OpenNMT-tf's own training step (`opennmt.training.Trainer`), batches of
  64 pairs, timing `--train-steps` steps after `--warmup-steps`;
- decodes the validation sentences with `model.infer` (OpenNMT-tf's inference path) in
  batches of 64, beam 5, exactly `--decode-length` tokens per sentence (end token
  blocked until then: an untrained model's lengths would otherwise be arbitrary; the
  textrnn side does the same), after one traced warm-up batch.

Prints one JSON line: train_pairs_per_s, beam5_sentences_per_s, mean_output_length.

Usage (by bench/translate.py): PY bench/opennmt_runner.py --data DIR [--train-steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import opennmt  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_addons as tfa  # noqa: E402
from opennmt.layers import common, rnn  # noqa: E402

EMBEDDING = 256
ENCODER_UNITS = 256
DECODER_UNITS = 512
ATTENTION_UNITS = 256
ATTENTIONAL = 256
DROPOUT = 0.25
BATCH = 64


class SameShapeDecoder(opennmt.decoders.AttentionalRNNDecoder):
    """OpenNMT-tf's attentional RNN decoder with textrnn's recipe sizes: the stock
    class ties the attention and attentional sizes to the cell size (512); here they
    are 256, as in the recipe."""

    def __init__(self):
        super().__init__(
            num_layers=1,
            num_units=DECODER_UNITS,
            bridge_class=lambda: opennmt.layers.DenseBridge(activation=tf.math.tanh),
            attention_mechanism_class=lambda _: tfa.seq2seq.BahdanauAttention(ATTENTION_UNITS),
            cell_class=tf.keras.layers.GRUCell,
            dropout=DROPOUT,
        )
        inner = rnn.make_rnn_cell(1, DECODER_UNITS, dropout=0.0, cell_class=tf.keras.layers.GRUCell)
        attentional = common.Dense(ATTENTIONAL, use_bias=False, activation=tf.math.tanh)
        self.cell = tfa.seq2seq.AttentionWrapper(
            inner, self.attention_mechanism, attention_layer=attentional
        )


def make_model() -> opennmt.models.SequenceToSequence:
    return opennmt.models.SequenceToSequence(
        source_inputter=opennmt.inputters.WordEmbedder(embedding_size=EMBEDDING),
        target_inputter=opennmt.inputters.WordEmbedder(embedding_size=EMBEDDING),
        encoder=opennmt.encoders.RNNEncoder(
            num_layers=1,
            num_units=ENCODER_UNITS,
            bidirectional=True,
            dropout=0.0,
            cell_class=tf.keras.layers.GRUCell,
        ),
        decoder=SameShapeDecoder(),
    )


def train_speed(model, data: str, warmup: int, steps: int) -> tuple[float, float]:
    optimizer = tf.keras.optimizers.legacy.Adam(0.002)
    model.create_variables(optimizer=optimizer)
    dataset = model.examples_inputter.make_training_dataset(
        os.path.join(data, "train.src"),
        os.path.join(data, "train.tgt"),
        BATCH,
        batch_type="examples",
        shuffle_buffer_size=100000,
        length_bucket_width=1,
        maximum_features_length=64,
        maximum_labels_length=64,
    )
    trainer = opennmt.training.Trainer(model, optimizer)
    # What Trainer.__call__ sets up before its loop over `_steps` (no checkpoints, no logs).
    trainer._training_stats = opennmt.training.TrainingStats(
        model, optimizer, reduce_fn=trainer._all_reduce_sum
    )
    started = None
    for index, _ in enumerate(trainer._steps(dataset)):  # OpenNMT-tf's own training step
        if index + 1 == warmup:
            started, cpu = time.perf_counter(), time.process_time()
        if index + 1 == warmup + steps:
            break
    pairs = steps * BATCH
    return pairs / (time.perf_counter() - started), (time.process_time() - cpu) / pairs


def decode_speed(model, data: str) -> tuple[float, float, float]:
    dataset = model.features_inputter.make_inference_dataset(os.path.join(data, "valid.src"), BATCH)
    infer = tf.function(model.infer, input_signature=(dataset.element_spec,))
    batches = list(dataset)
    infer(batches[0])  # trace once
    sentences, tokens = 0, 0
    started, cpu = time.perf_counter(), time.process_time()
    for features in batches:
        predictions = infer(features)
        sentences += int(predictions["length"].shape[0])
        tokens += int(tf.reduce_sum(predictions["length"][:, 0]))
    cpu_per_sentence = (time.process_time() - cpu) / sentences
    return sentences / (time.perf_counter() - started), cpu_per_sentence, tokens / sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="token files from bench/translate.py")
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--decode-length", type=int, default=80)
    parser.add_argument("--skip-decode", action="store_true")
    args = parser.parse_args()
    tf.get_logger().setLevel("ERROR")
    model = make_model()
    model.initialize(
        {
            "source_vocabulary": os.path.join(args.data, "vocab.src"),
            "target_vocabulary": os.path.join(args.data, "vocab.tgt"),
        },
        params={
            "label_smoothing": 0.1,
            "beam_width": 5,
            "length_penalty": 0.6,
            "maximum_decoding_length": args.decode_length,
            "minimum_decoding_length": args.decode_length,
        },
    )
    speed, cpu = train_speed(model, args.data, args.warmup_steps, args.train_steps)
    result = {"train_pairs_per_s": speed, "train_cpu_ms_per_pair": 1000 * cpu}
    if not args.skip_decode:
        speed, cpu, length = decode_speed(model, args.data)
        result["beam5_sentences_per_s"] = speed
        result["beam5_cpu_ms_per_sentence"] = 1000 * cpu
        result["mean_output_length"] = length
    print(json.dumps(result))


if __name__ == "__main__":
    main()
