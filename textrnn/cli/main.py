"""The `textrnn` command."""

from __future__ import annotations

from typing import Annotated

import typer

from textrnn import __version__
from textrnn.cli import runner

runner.quiet_tensorflow()

# The task CLIs import nothing heavy at module level, but keep them after the
# environment is set so TensorFlow, wherever it is first imported, sees it.
from textrnn.cli import lm, sentiment, translation  # noqa: E402
from textrnn.cli import plot as plot_cli  # noqa: E402
from textrnn.cli import serve as serve_cli  # noqa: E402

app = typer.Typer(
    help="Recurrent-network text models: sentiment analysis, language modeling, translation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(sentiment.app, name="sentiment")
app.add_typer(lm.app, name="lm")
app.add_typer(translation.app, name="translation")
app.command("generate")(lm.generate)
app.command("serve")(serve_cli.serve)
app.command("plot")(plot_cli.plot)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"textrnn {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """textrnn: one LSTM/GRU stack, three tasks, string-in SavedModels."""
    runner.STATE["debug"] = debug


def main() -> None:
    app()
