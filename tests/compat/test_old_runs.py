"""Run directories and exports made by the old code still work, through the command line.

tests/fixtures/compat/<task>/ holds a tiny run directory (`run/`) and its SavedModel export
(`export.tar.xz`, unpacked here to `export/1/`) for each task, made by textrnn f3b689f (the
flat module layout, before the subpackages) with make_fixtures.py beside them, and in
`expected.json` what that code printed for each recorded command.

Each test works on a copy in a temporary directory (the fixtures are never written), runs the
recorded `textrnn` commands with the current code in-process (Typer's CliRunner on the `textrnn`
app, whatever modules it lives in now) and compares their stdout with the old code's:

- texts (generated text, translations, labels, signature names): exactly equal;
- numbers (metrics, probabilities, scores): within 1e-5 (relative or absolute); figures the
  old code rounded (translation loss to 4 places, perplexity to 2) within one unit of that place;
- timings (`volatile_keys` in expected.json) are not compared; keys the old code did not
  print are allowed (an addition is not a break), keys it printed must all be there.

It also exports each old run directory with the current code and replays the export commands on
the new export, and loads both exports in a fresh process that imports only TensorFlow and
tensorflow-text (as a serving client does) to check their signatures and `serving_default`
answers.

Only the command line and the SavedModel signatures are used: they are the user-visible
contract, and module paths are being changed. To add or refresh a fixture, run
make_fixtures.py with the OLD code (see its docstring), never the current one.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "compat"
TASKS = ("sentiment", "lm", "translation")
SUBPROCESS_TIMEOUT = 300  # seconds
TOLERANCE = 1e-5
# Figures the old code rounded before printing (translation evaluate): one unit of the last place.
ROUNDED = {"translation": {"loss": 1e-4, "perplexity": 1e-2}}


def load_expected(task: str) -> dict[str, Any]:
    return json.loads((FIXTURES / task / "expected.json").read_text(encoding="utf-8"))


EXPECTED = {task: load_expected(task) for task in TASKS}
OLD_COMMANDS = [
    pytest.param(task, command, id=f"{task}: {command['name']}")
    for task in TASKS
    for command in EXPECTED[task]["commands"]
    if command["name"] != "export"
]


# ----------------------------------------------------------------------------- helpers


def textrnn_app():
    """The Typer app behind the `textrnn` command."""
    try:
        from textrnn.cli.main import app
    except ImportError:
        # Moved: follow the console script (pyproject.toml: textrnn = "module:function").
        import tomllib

        project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
        module = project["project"]["scripts"]["textrnn"].split(":")[0]
        app = importlib.import_module(module).app
    return app


PATH_OPTIONS = {"--run-dir", "--model", "--data", "--source", "--target", "--out"}


def run_cli(cwd: Path, args: list[str]) -> str:
    """`textrnn ARGS` in `cwd`, in-process; its stdout (the exit code must be 0).

    Path arguments, relative to `cwd` in the fixture, are passed as absolute paths (and `cwd/`
    is cut from the output): in one process, vocabulary lookup tables read from files of the
    same name are one table (TensorFlow names them after the file), so `run/vocab.txt` of one
    task would answer for another's. One command a process, as from a shell, never shares them.
    """
    from typer.testing import CliRunner

    args = [
        str(cwd / value) if index and args[index - 1] in PATH_OPTIONS else value
        for index, value in enumerate(args)
    ]
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(textrnn_app(), args, catch_exceptions=False)
    finally:
        os.chdir(previous)
    try:
        stderr = result.stderr
    except ValueError:  # older Click: stderr mixed into output
        stderr = result.output
    assert result.exit_code == 0, (
        f"`textrnn {shlex.join(args)}` (in {cwd}) exited {result.exit_code}:\n{stderr}"
    )
    return result.stdout.replace(f"{cwd}{os.sep}", "")


def unpack_export(task_dir: Path) -> None:
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(task_dir / "export.tar.xz", "r:xz") as archive:
        archive.extractall(task_dir, **safe)


def copy_task(task: str, destination: Path) -> Path:
    """A writable copy of TASK's fixture, its export unpacked to export/1/."""
    target = destination / task
    shutil.copytree(FIXTURES / task, target)
    unpack_export(target)
    return target


def assert_same(expected: Any, actual: Any, where: str, rounded: dict[str, float]) -> None:
    """Equal texts, ints and bools; floats within TOLERANCE (or the rounding of `rounded` keys)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        missing = sorted(set(expected) - set(actual))
        assert not missing, f"{where}: keys {missing} are gone (got {sorted(actual)})"
        for key, value in expected.items():
            tolerance = rounded.get(key)
            if tolerance is not None and isinstance(value, float):
                assert isinstance(actual[key], (int, float)), f"{where}.{key}: {actual[key]!r}"
                assert abs(actual[key] - value) <= tolerance * 1.0001, (
                    f"{where}.{key}: {actual[key]!r} != {value!r} (printed rounded)"
                )
            else:
                assert_same(value, actual[key], f"{where}.{key}", rounded)
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {actual!r}"
        assert len(actual) == len(expected), f"{where}: {len(actual)} items, not {len(expected)}"
        for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
            assert_same(e, a, f"{where}[{index}]", rounded)
    elif isinstance(expected, float) and not isinstance(expected, bool):
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), (
            f"{where}: expected a number, got {actual!r}"
        )
        assert math.isclose(actual, expected, rel_tol=TOLERANCE, abs_tol=TOLERANCE) or (
            math.isnan(expected) and math.isnan(actual)
        ), f"{where}: {actual!r} != {expected!r}"
    else:
        assert type(actual) is type(expected) and actual == expected, (
            f"{where}: {actual!r} != {expected!r}"
        )


def assert_same_stdout(task: str, command: dict[str, Any], stdout: str) -> None:
    """`stdout` of a replayed command against the old code's, by the command's format."""
    where = f"`textrnn {shlex.join(command['args'])}`"
    expected = command["stdout"]
    if command["format"] == "text":
        assert stdout == expected, f"{where} printed\n{stdout!r}\nnot\n{expected!r}"
        return
    volatile = set(EXPECTED[task]["volatile_keys"])

    def parse(text: str) -> list[Any]:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [
            {k: v for k, v in row.items() if k not in volatile} if isinstance(row, dict) else row
            for row in rows
        ]

    expected_rows, actual_rows = parse(expected), parse(stdout)
    if command["format"] == "json":
        assert len(expected_rows) == 1, f"{where}: the fixture holds {len(expected_rows)} objects"
        assert len(actual_rows) == 1, f"{where} printed {len(actual_rows)} JSON objects:\n{stdout}"
    assert_same(expected_rows, actual_rows, where, ROUNDED.get(task, {}))


def on_new_export(args: list[str]) -> list[str]:
    """The same command with `--model` on the export the current code made (new_export/)."""
    args = list(args)
    index = args.index("--model") + 1
    args[index] = {"export/1": "new_export/1", "export": "new_export"}[args[index]]
    return args


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A copy of every task's fixture, shared by this module's tests (they only add files)."""
    base = tmp_path_factory.mktemp("compat")
    return {task: copy_task(task, base) for task in TASKS}


@pytest.fixture(scope="module")
def new_exports(workspace: dict[str, Path]):
    """`textrnn TASK export --run-dir run --out new_export` by the current code, once per task."""
    done: dict[str, Path] = {}

    def make(task: str) -> Path:
        if task not in done:
            (command,) = [c for c in EXPECTED[task]["commands"] if c["name"] == "export"]
            stdout = run_cli(workspace[task], command["args"])
            assert_same_stdout(task, command, stdout)
            done[task] = workspace[task] / "new_export" / "1"
            assert (done[task] / "saved_model.pb").is_file()
        return done[task]

    return make


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("task", TASKS)
def test_fixture_is_complete(task: str) -> None:
    """The fixture holds what the other tests replay, and no path of the machine that made it."""
    directory = FIXTURES / task
    for name in ("config.json", "model.weights.h5", "state.json"):
        assert (directory / "run" / name).is_file(), f"{task}/run/{name} is missing"
    assert (directory / "export.tar.xz").is_file()
    config = (directory / "run" / "config.json").read_text(encoding="utf-8")
    assert "/tmp" not in config and '"/' not in config, f"{task}: absolute paths in config.json"
    commands = EXPECTED[task]["commands"]
    models = {c["model"] for c in commands}
    assert {"run", "export", None} <= models, f"{task}: expected.json lacks some kinds: {models}"
    assert any(c["args"][1:2] == ["evaluate"] for c in commands)
    assert any(c["name"] == "export" for c in commands)
    assert EXPECTED[task]["serving"]["answers"]


@pytest.mark.parametrize(("task", "command"), OLD_COMMANDS)
def test_old_fixture_gives_the_old_output(
    task: str, command: dict[str, Any], workspace: dict[str, Path]
) -> None:
    """Each recorded evaluate / predict / generate / translate command, on the old run
    directory or the old export, prints what the old code printed."""
    stdout = run_cli(workspace[task], command["args"])
    assert_same_stdout(task, command, stdout)


# Exporting and loading the language model and translation exports (their decoding loops) takes
# most of this module's time: those run with the slow tests, as the other served-export tests do.
EXPORT_TASKS = [
    pytest.param(task, marks=[pytest.mark.slow] if task != "sentiment" else []) for task in TASKS
]


@pytest.mark.parametrize("task", EXPORT_TASKS)
def test_new_export_of_old_run_gives_the_old_output(
    task: str, workspace: dict[str, Path], new_exports
) -> None:
    """The current code exports the old run directory; the export answers as the old one did."""
    new_exports(task)
    replayed = [c for c in EXPECTED[task]["commands"] if c["model"] == "export"]
    assert replayed
    for command in replayed:
        stdout = run_cli(workspace[task], on_new_export(command["args"]))
        assert_same_stdout(task, command, stdout)


@pytest.mark.parametrize("task", EXPORT_TASKS)
def test_exports_answer_in_a_bare_tensorflow_process(
    task: str, workspace: dict[str, Path], new_exports, tmp_path: Path
) -> None:
    """The old export and the current code's export of the old run, loaded by a process that
    imports only tensorflow and tensorflow_text: same signatures, same serving_default answers."""
    new_exports(task)
    serving = EXPECTED[task]["serving"]
    requests = [
        {**request, "export": export}
        for export in ("export/1", "new_export/1")
        for request in serving["requests"]
    ]
    request_file = tmp_path / "requests.json"
    request_file.write_text(json.dumps(requests), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    completed = subprocess.run(
        [sys.executable, str(FIXTURES / "serve_fresh.py"), str(request_file)],
        cwd=workspace[task],
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    served = json.loads(completed.stdout)
    count = len(serving["requests"])
    for name, answers in (
        ("the old export", served["answers"][:count]),
        ("the new export", served["answers"][count:]),
    ):
        assert_same(serving["answers"], answers, f"{task}: {name}'s serving answers", {})
    assert served["signatures"]["export/1"] == serving["signatures"], "the old export changed"
    # A new export may add signatures (the language model's `generate_chunk`) and inputs
    # that its manifest gives defaults for (translate's decoding options, filled in by
    # `textrnn serve` for requests that leave them out); the rest is unchanged.
    signatures = served["signatures"]["new_export/1"]
    manifest = json.loads(
        (workspace[task] / "new_export" / "1" / "assets.extra" / "textrnn.json").read_text()
    )
    defaulted = manifest.get("input_defaults", {})
    for name, old in serving["signatures"].items():
        new = signatures.get(name)
        assert new is not None, f"{task}: the new export lost the {name!r} signature"
        assert new["outputs"] == old["outputs"], f"{task}: {name}'s outputs changed"
        added = set(new["inputs"]) - set(old["inputs"])
        assert {k: new["inputs"][k] for k in old["inputs"]} == old["inputs"], name
        assert added <= set(defaulted.get(name, {})), f"{task}: {name} gained {added}"


def test_damaged_weights_fall_back_to_the_old_checkpoints(tmp_path: Path) -> None:
    """An old run directory whose model.weights.h5 is damaged still evaluates, from the
    checkpoints/ it holds (the old code's final weights are its best checkpoint)."""
    task_dir = copy_task("sentiment", tmp_path)
    weights = task_dir / "run" / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:100])
    (command,) = [c for c in EXPECTED["sentiment"]["commands"] if c["args"][1:2] == ["evaluate"]]
    assert_same_stdout("sentiment", command, run_cli(task_dir, command["args"]))
