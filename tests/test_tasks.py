"""The task table: lookup by name or command, the typed contract each task package fulfils."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
from pathlib import Path

import pytest

from helpers import PYTHON, REPO, SUBPROCESS_TIMEOUT, subprocess_env
from textrnn import tasks
from textrnn.errors import ModelPathError, UserError

NAMES = [entry.name for entry in tasks.TABLE]


def test_find_by_name_and_by_command():
    assert [(e.name, e.command) for e in tasks.TABLE] == [
        ("sentiment", "sentiment"),
        ("language_model", "lm"),
        ("translation", "translation"),
    ]
    for entry in tasks.TABLE:
        assert tasks.find(entry.name) is entry
        assert tasks.find(entry.command) is entry
        assert entry.package == f"textrnn.{entry.name}" and entry.summary


@pytest.mark.parametrize("name", ["", "LM", "sentiments", "textrnn.sentiment", "generate"])
def test_an_unknown_task_names_the_known_ones(name):
    with pytest.raises(ModelPathError, match="unknown task") as error:
        tasks.find(name)
    assert repr(name) in str(error.value)
    assert "sentiment, language_model, translation" in str(error.value)
    assert isinstance(error.value, UserError)  # the CLI's exit code 2


def test_same_task_compares_names_and_commands():
    assert tasks.same_task("lm", "language_model")
    assert tasks.same_task("language_model", "lm") and tasks.same_task("lm", "lm")
    assert tasks.same_task("translation", "translation")
    assert not tasks.same_task("sentiment", "lm")
    assert not tasks.same_task("translation", "language_model")
    with pytest.raises(ModelPathError, match="unknown task 'nope'"):
        tasks.same_task("sentiment", "nope")


def test_finding_a_task_imports_no_tensorflow():
    code = (
        "import sys\nfrom textrnn import tasks\n"
        "assert tasks.find('lm').name == 'language_model'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))\n"
    )
    result = subprocess.run(
        [PYTHON, "-c", code],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=subprocess_env(),
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("name", NAMES)
def test_every_entry_loads_its_package_task_contract(name):
    entry = tasks.find(name)
    task = entry.load()
    assert isinstance(task, tasks.Task)
    assert task.name == entry.name
    assert dataclasses.is_dataclass(task.config_class)
    assert task.config_class().task == entry.name
    assert isinstance(task.run_files, tuple) and all(isinstance(f, str) for f in task.run_files)
    for function in (task.load_datasets, task.build_model, task.load_run, task.serving_signatures):
        assert callable(function), function
    assert entry.load() is task  # one TASK per package


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


@pytest.mark.parametrize("name", NAMES)
def test_tasks_never_import_each_other(name):
    others = [f"textrnn.{other}" for other in NAMES if other != name]
    for path in sorted((REPO / "textrnn" / name).glob("*.py")):
        for module in _imported_modules(path):
            assert not any(module == o or module.startswith(o + ".") for o in others), (
                f"{path.relative_to(REPO)} imports {module}"
            )
