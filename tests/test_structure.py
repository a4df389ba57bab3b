"""The code's shape: the package stands alone, each setting is declared once, one argument parser,
and ``pip install -e .`` gives the three commands."""
from __future__ import annotations

import ast
import dataclasses
import re
import site
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "iris_fpga"
# What a module of the package must never import: the top-level scripts (they import the package).
SCRIPTS = {"BuildModel", "on_target", "utilities"} | {p.stem for p in (REPO / "utilities").glob("*.py")}


def imported_scripts(source: str) -> list[str]:
    """Top-level scripts that ``source`` imports: import statements and importlib/__import__ calls."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names.append(str(node.args[0].value))
    return [name for name in names if name.split(".")[0] in SCRIPTS]


@pytest.mark.parametrize("source", [
    "import BuildModel", "from BuildModel import parse_args", "import on_target as board",
    "def f():\n    from utilities.validate_model import main", "import validate_model",
    "import importlib\nimportlib.import_module('BuildModel')", "__import__('on_target')",
])
def test_the_import_check_sees_every_form(source):
    assert imported_scripts(source), source


def test_no_module_of_the_package_imports_a_top_level_script():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 40  # the whole package is walked
    found = {str(p.relative_to(REPO)): names for p in modules
             if (names := imported_scripts(p.read_text(encoding="utf-8")))}
    assert found == {}


def test_one_argument_parser_class_for_the_workstation_commands():
    """Only iris_fpga/arguments.py subclasses argparse's parser (on_target.py keeps its own: it runs alone)."""
    subclasses = []
    for path in [*PACKAGE.rglob("*.py"), REPO / "BuildModel.py", *(REPO / "utilities").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any("ArgumentParser" in ast.unparse(b) for b in node.bases):
                subclasses.append(f"{path.relative_to(REPO)}:{node.name}")
    assert subclasses == ["iris_fpga/arguments.py:OneLineParser"]


def test_buildmodel_docstring_names_every_step_in_order():
    import BuildModel

    from iris_fpga.flow.steps import STEP_NAMES

    listed = BuildModel.__doc__.split("steps (", 1)[1].split(")", 1)[0]
    assert tuple(name.strip() for name in listed.split(",")) == STEP_NAMES


# -- settings declared once ---------------------------------------------------------------------
def _option_fields():
    from iris_fpga.flow.cli import option_fields

    return option_fields()


def _other_value(field: dataclasses.Field) -> tuple[list[str], object]:
    """Command-line words that set ``field`` to a value other than its default, and that value."""
    from iris_fpga.config import SETTING

    declared, default = field.metadata[SETTING], field.default
    if isinstance(default, bool):
        return [], True
    if default is None:  # --cv-fold: off unless given
        return ["1/3"], (1, 3)
    if declared.choices:
        value = next(c for c in declared.choices if c != default)
    elif isinstance(default, tuple):
        return ["16,8"], (16, 8)
    elif declared.check is not None and "<" in str(default):
        value = "ap_fixed<12,4>"
    elif isinstance(default, str):
        value = default + "-elsewhere"
    else:
        value = default + 1 if isinstance(default, int) else default / 2
    return [str(value)], value


def test_every_option_sets_the_field_of_its_name():
    """Each declared option, named after its field, reaches that field and no other."""
    from iris_fpga.config import BuildConfig, option_name
    from iris_fpga.flow.cli import parse_args

    fields = _option_fields()
    assert {"rtl_random", "hidden", "accelerator", "seed"} <= {f.name for f in fields}
    for field in fields:
        if field.name == "board":  # one board works end to end: nothing else to set it to
            continue
        if field.name in ("csv", "target"):  # they go together (tests/test_datasets.py sets them)
            continue
        words, value = _other_value(field)
        _, config = parse_args([option_name(field.name), *words])
        changed = {f.name for f in dataclasses.fields(BuildConfig) if getattr(config, f.name) != f.default}
        assert getattr(config, field.name) == value, field.name
        assert changed == {field.name} or field.name == "recipe", (field.name, changed)


def test_a_recipe_fills_the_training_settings_not_given():
    from iris_fpga.config import RECIPES
    from iris_fpga.flow.cli import parse_args

    _, article = parse_args(["--recipe", "article"])
    assert all(getattr(article, name) == value for name, value in RECIPES["article"].items())
    _, mixed = parse_args(["--recipe", "article", "--lr", "0.01", "--epochs", "3"])
    assert (mixed.lr, mixed.epochs, mixed.sparsity) == (0.01, 3, RECIPES["article"]["sparsity"])
    assert mixed.pruning_begin_step == RECIPES["article"]["pruning_begin_step"]


def test_help_lists_every_option_with_its_default():
    from iris_fpga.config import RECIPES, SETTING, option_name

    result = subprocess.run([sys.executable, str(REPO / "BuildModel.py"), "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    entries = [" ".join(entry.split()) for entry in re.split(r"\n(?=  -)", result.stdout.split("options:", 1)[1])]
    by_option = {entry.split()[0]: entry for entry in entries if entry}
    for field in _option_fields():
        line = by_option[option_name(field.name)]
        declared = field.metadata[SETTING]
        if field.name in RECIPES["default"]:
            assert "(default: the recipe's)" in line, line
        elif field.default not in (False, None):  # the help shows no empty default
            shown = declared.show(field.default) if declared.show else field.default
            assert line.endswith(f"(default: {shown})"), line
    for option in ("--from", "--to", "--quiet", "--host", "--emulate", "--timeout"):
        assert option in result.stdout


def test_readme_shows_the_real_declaration_and_use():
    """README's example of a setting (Options) is the declaration and the use in the code."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    declaration = readme.split("```python\n", 1)[1].split("\n```", 1)[0]
    assert declaration.startswith("rtl_random: int = setting(")
    assert f"    {declaration}\n" in (PACKAGE / "config.py").read_text(encoding="utf-8")
    assert "n_random=build.config.rtl_random" in (PACKAGE / "flow" / "steps.py").read_text(encoding="utf-8")


def test_each_step_keys_the_settings_that_name_it():
    """The table lists no settings: a step's are the fields whose declaration names it."""
    from iris_fpga.config import SETTING, BuildConfig
    from iris_fpga.flow.steps import STEP_NAMES, STEPS

    named = {step for f in dataclasses.fields(BuildConfig) for step in f.metadata[SETTING].keys}
    assert named <= set(STEP_NAMES)  # no declaration names a step that does not exist
    by_step = {step.name: set(step.settings) for step in STEPS}
    assert by_step["csim"] == {"rtl_random"} and by_step["ip"] == {"latency_cutoff", "seed"}
    assert "seed" in by_step["train"] and by_step["deploy"] == set()


def test_the_range_checks_come_from_the_declarations():
    from iris_fpga.config import SETTING, BuildConfig, option_name
    from iris_fpga.errors import ExitCode, ToolError

    ranged = [f for f in dataclasses.fields(BuildConfig) if f.metadata[SETTING].within is not None]
    assert len(ranged) >= 10
    for field in ranged:
        within = field.metadata[SETTING].within
        edge = within.low if within.low is not None else within.high
        outside = edge - 1 if within.low is not None else edge + 1
        with pytest.raises(ToolError) as refused:
            dataclasses.replace(BuildConfig(), **{field.name: outside}).validated()
        label = option_name(field.name) if field.metadata[SETTING].option else field.name.replace("_", " ")
        assert str(refused.value).startswith(f"{label} must be {within.describe()} (got ")
        assert refused.value.code == ExitCode.USAGE


# -- pip install -e . -----------------------------------------------------------------------------
def test_pip_install_gives_the_three_commands(tmp_path):
    """An editable install into a throwaway venv that sees the project's packages: the console
    commands run this checkout's code, print their help, and refuse bad input in one line (exit 2)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    purelib = Path(subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "project.pth").write_text("\n".join(site.getsitepackages()) + "\n")  # numpy, setuptools, pip
    before = sorted(p.name for p in REPO.iterdir())
    install = subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                              "--disable-pip-version-check", "--no-cache-dir", "--quiet", "-e", str(REPO)],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert install.returncode == 0, install.stdout + install.stderr
    assert sorted(p.name for p in REPO.iterdir()) == before  # the install left nothing in the checkout

    def command(name: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([venv / "bin" / name, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)

    where = subprocess.run([venv / "bin" / "python", "-c", "import iris_fpga; print(iris_fpga.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, check=True).stdout.strip()
    assert Path(where).parent == PACKAGE
    helped = command("iris-fpga-build", "--help")
    assert helped.returncode == 0 and "--rtl-random RTL_RANDOM" in helped.stdout, helped.stderr
    for name, args, message in (("iris-fpga-build", ["--reuse-factor", "0"], "--reuse-factor must be at least 1"),
                                ("iris-fpga-validate", ["--tolerance", "-1"], "argument --tolerance"),
                                ("iris-fpga-explore", ["--folds", "1"], "--folds must be 2 to")):
        refused = command(name, *args)
        assert refused.returncode == 2 and refused.stdout == "", (name, refused.stdout, refused.stderr)
        assert refused.stderr.startswith("error: ") and refused.stderr.count("\n") == 1, (name, refused.stderr)
        assert message in refused.stderr, refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["venv"]  # refused before any work
