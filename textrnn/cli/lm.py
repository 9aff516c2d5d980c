"""`textrnn lm`: train, evaluate, export; and the root `textrnn generate` command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from textrnn import tasks
from textrnn.cli import console, options
from textrnn.cli.export import add_export_command
from textrnn.cli.runner import command, training_startup

app = typer.Typer(
    help="Language models: character, word or subword; perplexity; export.", no_args_is_help=True
)


@app.command()
@command(startup=training_startup)
@options.training_options
def train(
    config: options.ConfigOption = None,
    train: options.TrainOption = None,
    valid: Annotated[
        str | None, typer.Option("--valid", help="Validation text; default: the end of --train.")
    ] = None,
    encoding: options.EncodingOption = None,
    tokenizer: Annotated[
        str | None, typer.Option("--tokenizer", help="char | word | subword")
    ] = None,
    layout: Annotated[
        str | None,
        typer.Option("--layout", help="continuous (one stream) | lines (one sentence a line)."),
    ] = None,
    seq_len: Annotated[
        int | None, typer.Option("--seq-len", min=1, help="Tokens per training window.")
    ] = None,
    carry_state: Annotated[
        bool | None,
        typer.Option(
            "--carry-state/--no-carry-state",
            help="Carry RNN states across batches (truncated BPTT).",
        ),
    ] = None,
    run_dir: options.RunDir = Path("runs/lm"),
    restart: options.RestartOption = False,
    init_from: Annotated[
        Path | None,
        typer.Option(
            "--init-from",
            help="Language-model run directory: fine-tune it on --train, keeping its vocabulary.",
        ),
    ] = None,
    shared_flags: dict[str, Any] | None = None,  # filled by options.training_options
) -> None:
    """Train a language model; rerunning the same command resumes from --run-dir.

    Without --config, the settings no flag gives are chosen for the tokenizer
    kind and the corpus size (printed first).
    """
    from textrnn import language_model
    from textrnn.config import given_keys, load_config
    from textrnn.language_model.defaults import choose_defaults
    from textrnn.training import fit

    overrides = {
        "data.train": train,
        "data.valid": valid,
        "data.encoding": encoding,
        "data.layout": layout,
        "data.seq_len": seq_len,
        "data.carry_state": carry_state,
        "tokenizer.kind": tokenizer,
        "model.init_from": str(init_from) if init_from else None,
        **(shared_flags or {}),
    }
    resolved = load_config(language_model.Config, config, overrides)
    if config is None:  # a recipe's own values and defaults hold as they are
        resolved, lines = choose_defaults(resolved, given_keys(None, overrides))
        for line in lines:
            typer.echo(line)
    fit.train(language_model.TASK, resolved, run_dir, restart=restart, echo=typer.echo)


@app.command()
@command
def evaluate(
    run_dir: options.RunDirRequired,
    data: Annotated[str, typer.Option("--data", help="Text to score (every token counts).")],
    encoding: options.EncodingOption = None,
    batch_size: options.BatchSizeInference = 32,
    json_output: options.JSONOption = False,
) -> None:
    """Cross-entropy (nats per token), perplexity and bits per character."""
    from textrnn import language_model

    metrics = language_model.evaluate(run_dir, data, encoding, batch_size)
    if json_output:
        console.print_json(metrics)
        return
    typer.echo(
        f"tokens: {metrics['tokens']}   nats/token: {metrics['nats_per_token']:.4f}   "
        f"perplexity: {metrics['perplexity']:.2f}   bits/char: {metrics['bits_per_character']:.4f}"
    )
    if metrics["unknown_tokens"]:
        typer.echo(f"{metrics['unknown_tokens']} token(s) unseen in training, scored as [UNK]")


add_export_command(app, tasks.find("lm"), "generate, score and step signatures")


@command
def generate(
    model: options.ModelOption,
    prompt: Annotated[
        str | None,
        typer.Option("--prompt", help="Text to continue; default: stdin (one prompt a line)."),
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="New tokens per sample.")] = 200,
    temperature: Annotated[
        float, typer.Option("--temperature", help="0 is greedy; higher is more random.")
    ] = 1.0,
    top_k: Annotated[
        int, typer.Option("--top-k", help="Sample among the k likeliest tokens; 0: off.")
    ] = 0,
    top_p: Annotated[
        float, typer.Option("--top-p", help="Nucleus sampling mass in (0, 1]; 1: off.")
    ] = 1.0,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Same seed, same text; default: random.")
    ] = None,
    num_samples: Annotated[
        int, typer.Option("--num-samples", min=1, help="Samples per prompt.")
    ] = 1,
    stream: Annotated[
        bool, typer.Option("--stream", help="Print tokens as they are produced.")
    ] = False,
    encoding: options.EncodingOption = None,
) -> None:
    """Generate text from a language model (run directory or export)."""
    from textrnn import export
    from textrnn import language_model as lm

    if prompt is not None:
        prompts = [prompt]
    elif sys.stdin is not None and not sys.stdin.isatty():
        prompts = console.read_inputs(None, encoding or "utf-8") or [""]
    else:
        prompts = [""]
    serving = export.load_serving(model, expected_task="language_model")
    options = lm.GenerationOptions(max_tokens, temperature, top_k, top_p, seed, num_samples)
    lm.check_options(serving, options)
    unknown = lm.count_prompt_unknown(serving, prompts)
    if unknown:
        typer.echo(
            f"warning: {unknown} prompt token(s) unseen in training, read as [UNK]", err=True
        )
    separator = "" if serving.manifest.get("tokenizer", {}).get("kind") == "char" else " "
    if stream:
        for index, text in enumerate(prompts):
            for sample in range(num_samples):
                if index or sample:
                    typer.echo("")
                typer.echo(text + separator, nl=False)
                for piece in lm.stream_tokens(
                    serving, text, options, row=index * num_samples + sample
                ):
                    sys.stdout.write(piece)
                    sys.stdout.flush()
                typer.echo("")
        return
    results = lm.generate_texts(serving, prompts, options)
    for number, (text, sample) in enumerate(results):
        if number:
            typer.echo("")
        typer.echo(text + (separator if text else "") + sample)
