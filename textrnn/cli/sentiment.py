"""`textrnn sentiment`: train, evaluate, predict, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from textrnn import tasks
from textrnn.cli import console, options
from textrnn.cli.export import add_export_command
from textrnn.cli.runner import command, training_startup

app = typer.Typer(help="Text classification (sentiment analysis).", no_args_is_help=True)

TextColumn = Annotated[str | None, typer.Option("--text-column", help="Column holding the text.")]
LabelColumn = Annotated[
    str | None, typer.Option("--label-column", help="Column holding the label.")
]


@app.command()
@command(startup=training_startup)
@options.training_options
def train(
    config: options.ConfigOption = None,
    train: options.TrainOption = None,
    valid: options.ValidOption = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    encoding: options.EncodingOption = None,
    tokenizer: Annotated[
        str | None, typer.Option("--tokenizer", help="word | subword | char")
    ] = None,
    max_length: Annotated[
        int | None, typer.Option("--max-length", min=1, help="Tokens kept per text.")
    ] = None,
    run_dir: options.RunDir = Path("runs/sentiment"),
    restart: options.RestartOption = False,
    init_from: Annotated[
        Path | None,
        typer.Option(
            "--init-from",
            help="Language-model run directory: start from its embedding, stack and vocabulary.",
        ),
    ] = None,
    gradual_unfreeze: Annotated[
        bool | None,
        typer.Option(
            "--gradual-unfreeze/--no-gradual-unfreeze",
            help="ULMFiT: train the top layer group first, one more each epoch.",
        ),
    ] = None,
    shared_flags: dict[str, Any] | None = None,  # filled by options.training_options
) -> None:
    """Train a classifier; rerunning the same command resumes from --run-dir."""
    from textrnn import sentiment
    from textrnn.config import load_config
    from textrnn.training import fit

    overrides = {
        "data.train": train,
        "data.valid": valid,
        "data.text_column": text_column,
        "data.label_column": label_column,
        "data.encoding": encoding,
        "data.max_length": max_length,
        "tokenizer.kind": tokenizer,
        "model.init_from": str(init_from) if init_from else None,
        "training.gradual_unfreeze": gradual_unfreeze,
        **(shared_flags or {}),
    }
    resolved = load_config(sentiment.Config, config, overrides)
    fit.train(sentiment.TASK, resolved, run_dir, restart=restart, echo=typer.echo)


@app.command()
@command
def evaluate(
    run_dir: options.RunDirRequired,
    data: Annotated[str, typer.Option("--data", help="Labelled data to evaluate on.")],
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    encoding: options.EncodingOption = None,
    json_output: options.JSONOption = False,
) -> None:
    """Accuracy, macro-F1, per-class precision / recall and the confusion matrix."""
    from textrnn import sentiment

    metrics = sentiment.evaluate(run_dir, data, text_column, label_column, encoding)
    if json_output:
        console.print_json(metrics)
        return
    typer.echo(
        f"examples: {metrics['examples']}   accuracy: {metrics['accuracy']:.4f}   "
        f"macro-F1: {metrics['macro_f1']:.4f}"
    )
    for name, values in metrics["per_class"].items():
        typer.echo(
            f"  {name:>12}  precision {values['precision']:.4f}  recall {values['recall']:.4f}  "
            f"f1 {values['f1']:.4f}  support {values['support']}"
        )
    matrix = metrics["confusion_matrix"]
    typer.echo("confusion matrix (rows: truth, columns: predicted): " + ", ".join(matrix["labels"]))
    for name, row in zip(matrix["labels"], matrix["rows_truth_columns_predicted"], strict=True):
        typer.echo(f"  {name:>12}  " + "  ".join(f"{v:6d}" for v in row))
    if metrics["skipped_unknown_label"]:
        typer.echo(
            f"skipped {metrics['skipped_unknown_label']} row(s) with labels unseen in training: "
            + ", ".join(f"{k!r} ({v})" for k, v in metrics["unknown_labels"].items())
        )


@app.command()
@command
def predict(
    model: options.ModelOption,
    texts: Annotated[
        list[str] | None, typer.Argument(help="Texts to classify; default: lines on stdin.")
    ] = None,
    encoding: options.EncodingOption = None,
    batch_size: options.BatchSizeInference = 256,
    json_output: options.JSONLinesOption = False,
) -> None:
    """Label and probability for each text (batched)."""
    from textrnn import export, sentiment

    inputs = console.read_inputs(texts, encoding or "utf-8")
    serving = export.load_serving(model, expected_task="sentiment")
    options = sentiment.PredictOptions(batch_size=batch_size)
    results = sentiment.predict(serving.signatures["serving_default"], inputs, options)
    for text, result in zip(inputs, results, strict=True):
        if json_output:
            console.print_json({"text": text, **result})
        else:
            typer.echo(f"{result['label']}\t{result['probability']:.4f}\t{text}")


add_export_command(app, tasks.find("sentiment"), "raw strings in: label and probabilities out")
