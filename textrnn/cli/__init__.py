"""textrnn's Typer command line: one sub-app per task over typed library functions."""
