"""`textrnn translation`: train, evaluate, translate, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from textrnn import tasks
from textrnn.cli import console, options
from textrnn.cli.export import add_export_command
from textrnn.cli.runner import command, training_startup

app = typer.Typer(help="Translation: encoder-decoder with attention.", no_args_is_help=True)

SourceColumn = Annotated[
    str | None, typer.Option("--source-column", help="Table column holding the source text.")
]
TargetColumn = Annotated[
    str | None, typer.Option("--target-column", help="Table column holding the target text.")
]
BeamSize = Annotated[
    int | None,
    typer.Option("--beam-size", help="Beam size; 1 is greedy (default: the run's config)."),
]
LengthPenalty = Annotated[
    float | None, typer.Option("--length-penalty", help="GNMT length penalty alpha (0: none).")
]
MaxLengthRatio = Annotated[
    float | None,
    typer.Option("--max-length-ratio", help="Output tokens <= ratio * source tokens + offset."),
]
NoRepeatNgram = Annotated[
    int | None,
    typer.Option(
        "--no-repeat-ngram",
        help="Never repeat an N-gram of subword tokens in an output (0: off; default: the run's).",
    ),
]
CoveragePenalty = Annotated[
    float | None,
    typer.Option(
        "--coverage-penalty",
        help="GNMT coverage penalty beta: favour outputs that attend to every source token "
        "(0: off; default: the run's).",
    ),
]


@app.command()
@command(startup=training_startup)
@options.training_options
def train(
    config: options.ConfigOption = None,
    source: Annotated[
        str | None,
        typer.Option("--source", help="Source-language training file, one sentence a line."),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", help="Target-language training file, aligned with --source."),
    ] = None,
    train: Annotated[
        str | None,
        typer.Option(
            "--train", help="Or one table of pairs (.tsv/.csv/.jsonl/.parquet or a data set name)."
        ),
    ] = None,
    valid_source: Annotated[
        str | None, typer.Option("--valid-source", help="Validation source file.")
    ] = None,
    valid_target: Annotated[
        str | None, typer.Option("--valid-target", help="Validation target file.")
    ] = None,
    valid: Annotated[str | None, typer.Option("--valid", help="Or one validation table.")] = None,
    source_column: SourceColumn = None,
    target_column: TargetColumn = None,
    encoding: options.EncodingOption = None,
    run_dir: options.RunDir = Path("runs/translation"),
    restart: options.RestartOption = False,
    shared_flags: dict[str, Any] | None = None,  # filled by options.training_options
) -> None:
    """Train a translation model; rerunning the same command resumes from --run-dir."""
    from textrnn import translation
    from textrnn.config import load_config
    from textrnn.training.fit import train as train_task

    overrides = {
        "data.source": source,
        "data.target": target,
        "data.train": train,
        "data.valid_source": valid_source,
        "data.valid_target": valid_target,
        "data.valid": valid,
        "data.source_column": source_column,
        "data.target_column": target_column,
        "data.encoding": encoding,
        **(shared_flags or {}),
    }
    resolved = load_config(translation.Config, config, overrides)
    train_task(translation.TASK, resolved, run_dir, restart=restart, echo=typer.echo)


@app.command()
@command
def evaluate(
    run_dir: options.RunDirRequired,
    source: Annotated[str, typer.Option("--source", help="Source sentences, one a line.")],
    target: Annotated[
        str, typer.Option("--target", help="Reference translations, aligned with --source.")
    ],
    beam_size: BeamSize = None,
    length_penalty: LengthPenalty = None,
    max_length_ratio: MaxLengthRatio = None,
    no_repeat_ngram: NoRepeatNgram = None,
    coverage_penalty: CoveragePenalty = None,
    batch_size: options.BatchSizeInference = 64,
    output: Annotated[
        Path | None, typer.Option("--output", help="Write the hypotheses here, one a line.")
    ] = None,
    encoding: options.EncodingOption = None,
    json_output: options.JSONOption = False,
) -> None:
    """sacreBLEU BLEU and chrF on detokenized output against the raw references, plus the loss."""
    from textrnn import translation

    metrics = translation.evaluate(
        run_dir,
        source,
        target,
        beam_size,
        length_penalty,
        max_length_ratio,
        batch_size,
        output,
        encoding,
        no_repeat_ngram,
        coverage_penalty,
    )
    if json_output:
        console.print_json(metrics)
        return
    typer.echo(
        f"sentences: {metrics['sentences']}   BLEU: {metrics['bleu']:.2f}   "
        f"chrF: {metrics['chrf']:.2f}   "
        f"loss: {metrics['loss']:.4f} (perplexity {metrics['perplexity']:.2f})   "
        f"beam {metrics['beam_size']}   "
        f"{metrics['sentences_per_second']:.1f} sentences/s"
    )
    typer.echo(f"  {metrics['bleu_details']}")
    typer.echo(f"  {metrics['bleu_signature']}  |  {metrics['chrf_signature']}")
    if metrics["skipped_empty"]:
        typer.echo(f"skipped {metrics['skipped_empty']} pair(s) with an empty line")
    typer.echo(
        f"  capped: {metrics['capped']} ({metrics['capped_fraction']:.1%}) reached the length "
        f"cap   repeated word 3-grams: {metrics['repeated_ngram_rate']:.2%} "
        f"(references {metrics['reference_repeated_ngram_rate']:.2%})   "
        f"no-repeat-ngram {metrics['no_repeat_ngram']}   "
        f"coverage penalty {metrics['coverage_penalty']:g}"
    )
    if output:
        typer.echo(f"hypotheses written to {output}")


@app.command()
@command
def translate(
    model: options.ModelOption,
    texts: Annotated[
        list[str] | None, typer.Argument(help="Sentences to translate; default: lines on stdin.")
    ] = None,
    beam_size: BeamSize = None,
    length_penalty: LengthPenalty = None,
    max_length_ratio: MaxLengthRatio = None,
    no_repeat_ngram: NoRepeatNgram = None,
    coverage_penalty: CoveragePenalty = None,
    max_length: Annotated[
        int, typer.Option("--max-length", help="Cap on output tokens (0: from the ratio).")
    ] = 0,
    n_best: Annotated[
        int, typer.Option("--n-best", help="Print the N best hypotheses with scores.")
    ] = 1,
    plot_attention: Annotated[
        Path | None,
        typer.Option(
            "--plot-attention", help="Draw the first sentence's attention as a PNG heatmap."
        ),
    ] = None,
    encoding: options.EncodingOption = None,
    batch_size: options.BatchSizeInference = 64,
    json_output: options.JSONLinesOption = False,
) -> None:
    """Translate sentences (arguments or stdin lines) with a run directory or an export."""
    from textrnn import translation

    inputs = console.read_inputs(texts, encoding or "utf-8")
    serving = translation.open_model(model)
    options = translation.TranslationOptions(
        beam_size=beam_size,
        n_best=n_best,
        length_penalty=length_penalty,
        max_length_ratio=max_length_ratio,
        max_length=max_length,
        no_repeat_ngram=no_repeat_ngram,
        coverage_penalty=coverage_penalty,
        batch_size=batch_size,
        with_attention=plot_attention is not None,
    )
    results = translation.translate_texts(
        serving,
        inputs,
        options,
        warn=lambda message: typer.echo(f"warning: {message}", err=True),
    )
    for result in results:
        if json_output:
            console.print_json(
                {
                    "source": result.source,
                    "translation": result.translation,
                    "score": result.score,
                    "n_best": [{"translation": t, "score": s} for t, s in result.hypotheses],
                }
            )
        elif n_best > 1:
            for text, score in result.hypotheses:
                typer.echo(f"{score:.4f}\t{text}")
            typer.echo("")
        else:
            typer.echo(result.translation)
    if plot_attention is not None and results:
        path = translation.plot_attention(results[0], plot_attention)
        typer.echo(f"attention of sentence 1 drawn in {path}", err=True)


add_export_command(app, tasks.find("translation"), "raw strings in, translations out")
