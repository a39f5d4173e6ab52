"""The project's form, checked: what a newcomer and a maintainer rely on.

- README.md stays short (at most 350 lines) and the details live in docs/.
- `import keras_relaxprune` loads the library only (no module of the
  applications package) and leaves the process's stderr alone.
- No Keras layer class is used as a class object (isinstance, tuples,
  registries) outside `layer_support/` and `keras_internals.py`: per-layer
  facts live in the layer's `LayerSupport` record.
- The library never imports the applications package.
- Examples import only public names (`keras_relaxprune` and
  `keras_relaxprune_apps`, names in their `__all__`).
- Every library module with behaviour has its test file, `tests/test_<module>.py`.
- `ruff check .` passes with the project's configuration.
"""

import ast
import os
import pathlib
import shutil
import subprocess
import sys

import keras
import pytest

import keras_relaxprune
import keras_relaxprune_apps

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "keras_relaxprune"
# Base classes every layer (ours included) derives from: not a per-layer fact.
BASE_CLASSES = {"Layer", "InputLayer"}
# Modules without behaviour of their own, or tested through another file.
UNTESTED_MODULES = {
    "__init__",  # re-exports only
}


def _library_files():
    return sorted(LIBRARY.rglob("*.py"))


def test_readme_is_short_and_docs_hold_the_rest():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= 350, f"README.md has {lines} lines; move details into docs/"
    pages = sorted((ROOT / "docs").glob("*.md"))
    assert len(pages) >= 4, pages


def test_import_loads_the_library_only_and_leaves_stderr_alone():
    script = (
        "import os, sys\n"
        "before = (os.fstat(2).st_ino, os.fstat(2).st_dev, sys.stderr)\n"
        "import keras_relaxprune\n"
        "after = (os.fstat(2).st_ino, os.fstat(2).st_dev, sys.stderr)\n"
        "apps = sorted(m for m in sys.modules if m.startswith('keras_relaxprune_apps'))\n"
        "print(repr((apps, before == after)))\n"
    )
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    apps, same_stderr = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert apps == [], f"import keras_relaxprune loaded {apps}"
    assert same_stderr, "import keras_relaxprune replaced the process's stderr"


def _keras_layer_class_names():
    return {
        name for name in dir(keras.layers) if isinstance(getattr(keras.layers, name), type)
    } - BASE_CLASSES


def _layer_class_references(tree, classes):
    """`keras.layers.X` / `layers.X` attributes and `from keras.layers import X` names."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in classes:
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id == "layers") or (
                isinstance(owner, ast.Attribute) and owner.attr == "layers"
            ):
                found.append((node.lineno, node.attr))
        elif isinstance(node, ast.ImportFrom) and node.module in (
            "keras.layers",
            "keras.src.layers",
        ):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name in classes]
    return found


def test_no_keras_layer_class_outside_layer_support():
    classes = _keras_layer_class_names()
    offenders = []
    for path in _library_files():
        relative = path.relative_to(LIBRARY)
        if relative.parts[0] == "layer_support" or relative.name == "keras_internals.py":
            continue
        tree = ast.parse(path.read_text())
        offenders += [
            f"{relative}:{line} {name}" for line, name in _layer_class_references(tree, classes)
        ]
    assert not offenders, (
        f"Keras layer classes named outside layer_support/ and keras_internals.py: {offenders}"
    )


def _imported_modules(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module, [alias.name for alias in node.names]


def test_the_library_never_imports_the_applications():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _library_files()
        for line, module, _ in _imported_modules(ast.parse(path.read_text()))
        if module.split(".")[0] == "keras_relaxprune_apps"
    ]
    assert not offenders, offenders


def test_examples_import_only_public_names():
    public = {
        "keras_relaxprune": set(keras_relaxprune.__all__),
        "keras_relaxprune_apps": set(keras_relaxprune_apps.__all__),
    }
    offenders = []
    for path in sorted((ROOT / "examples").glob("*.py")):
        tree = ast.parse(path.read_text())
        for line, module, names in _imported_modules(tree):
            if module.split(".")[0] not in public:
                continue
            where = f"{path.name}:{line} {module}"
            if module not in public or names is None and module != module.split(".")[0]:
                offenders.append(f"{where} (a submodule)")
            elif names is not None:
                offenders += [f"{where}.{name}" for name in names if name not in public[module]]
        aliases = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
            if alias.name in public
        }
        offenders += [
            f"{path.name}:{node.lineno} {node.value.id}.{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
        ]
    assert not offenders, f"examples use names that are not public: {offenders}"


def test_every_library_module_with_behaviour_has_its_test_file():
    tests = {path.name for path in (ROOT / "tests").glob("test_*.py")}
    missing = []
    for path in _library_files():
        name = path.stem
        if name in UNTESTED_MODULES:
            continue
        if path.parent.name == "layer_support":
            expected = "test_layer_support.py"  # one file for the records
        else:
            expected = f"test_{name}.py"
        if expected not in tests:
            missing.append(f"{path.relative_to(ROOT)} -> tests/{expected}")
    assert not missing, missing


def test_ruff_passes_with_the_project_configuration():
    ruff = shutil.which("ruff") or str(pathlib.Path(sys.executable).with_name("ruff"))
    if not os.path.exists(ruff):
        pytest.fail("ruff is not installed: the dev extra installs it")
    done = subprocess.run(
        [ruff, "check", "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
