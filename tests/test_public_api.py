"""The public boundary of ``ctd_stats``: what a user may import, and what the package imports.

Rules checked here (each test states one):

1. Exports. Every name in the ``__all__`` of a public module (no path component with a leading
   underscore) is the same object as ``ctd_stats.<name>`` and is listed in ``ctd_stats.__all__``;
   a name of a module of ``ctd_stats.cascade`` / ``ctd_stats.online`` is also the same object as
   ``ctd_stats.<subpackage>.<name>`` and listed in that subpackage's ``__all__``. The one exception:
   a name that is also the name of a submodule of the package it would be exported from (the
   function ``ctd_stats.pvalues.pvalues``) is not exported there, and the package attribute must be
   the module (a function never shadows its module: ``import ctd_stats.pvalues as m`` gives it).
2. ``probes`` imports no underscore module or name from ``ctd_stats`` (checked on the AST).
3. Inside ``ctd_stats``, an import of another ``ctd_stats`` module ``T`` (relative or absolute,
   at any depth of the code) is allowed when

   * no component of ``T`` below ``ctd_stats`` starts with an underscore; or
   * ``T`` is the shared infrastructure: ``ctd_stats._validation``, ``._serialize``, ``._repr``,
     ``._streaming`` or ``._version``; or
   * ``T`` is a private module of the importer's own (sub)package (``online/crc.py`` may use
     ``online/_calibration_common.py``; ``cascade`` may not).

   Names with a leading underscore (dunders aside) may be imported from the shared
   infrastructure only, never from another module.
4. No module below the package face imports ``ctd_stats/__init__.py`` for a name (``from .. import
   x`` where ``x`` is not a submodule, or ``import ctd_stats``): the layers below never depend on
   the face.
5. ``ctd_stats.typing`` holds the public array aliases, defined there and nowhere else.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
from numpy.typing import NDArray

import ctd_stats
import ctd_stats.typing

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ctd_stats"
SHARED = {
    f"ctd_stats.{m}" for m in ("_validation", "_serialize", "_repr", "_streaming", "_version")
}
SUBPACKAGES = ("ctd_stats.cascade", "ctd_stats.online")


def _public_modules() -> Iterator[ModuleType]:
    yield ctd_stats
    for info in pkgutil.walk_packages(ctd_stats.__path__, "ctd_stats."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            yield importlib.import_module(info.name)


def _is_submodule(package: ModuleType, name: str) -> bool:
    path = getattr(package, "__path__", None)
    return path is not None and any(m.name == name for m in pkgutil.iter_modules(path))


def _exporters(module: ModuleType) -> list[ModuleType]:
    """The packages that must export ``module``'s names: ``ctd_stats`` and its subpackage."""
    out = [ctd_stats]
    for sub in SUBPACKAGES:
        if module.__name__.startswith(sub + "."):
            out.append(importlib.import_module(sub))
    return out


# ----------------------------------------------------------------------------- 1. exports
def test_every_public_module_declares_all() -> None:
    missing = [m.__name__ for m in _public_modules() if not hasattr(m, "__all__")]
    assert not missing, f"public modules without __all__: {missing}"


def test_every_public_name_is_exported_by_the_package_and_its_subpackage() -> None:
    problems: list[str] = []
    for module in _public_modules():
        for name in getattr(module, "__all__", ()):
            if not hasattr(module, name):
                problems.append(f"{module.__name__}.__all__ lists {name!r}, which it lacks")
                continue
            obj = getattr(module, name)
            for package in _exporters(module):
                where = f"{package.__name__}.{name} (from {module.__name__})"
                if _is_submodule(package, name):  # the rule-1 exception: the module wins
                    attr = getattr(package, name, None)
                    if not isinstance(attr, ModuleType):
                        problems.append(f"{where} shadows the module {package.__name__}.{name}")
                    continue
                if getattr(package, name, None) is not obj:
                    problems.append(f"{where} is not importable from {package.__name__}")
                elif name not in package.__all__:
                    problems.append(f"{where} is missing from {package.__name__}.__all__")
    assert not problems, "\n".join(problems)


def test_named_examples_of_the_boundary() -> None:
    import ctd_stats.online.monitor_metrics as metrics_module

    sweeps_module = importlib.import_module("ctd_stats.cascade.sweeps")  # the module `sweep` is in

    assert isinstance(metrics_module, ModuleType)
    assert isinstance(sweeps_module, ModuleType) and ctd_stats.cascade.sweep is sweeps_module.sweep
    assert isinstance(ctd_stats.pvalues, ModuleType)
    for name in ("split_by_trajectory", "NO_ALARM", "max_log_eprocess", "default_methods"):
        assert name in ctd_stats.__all__ and hasattr(ctd_stats, name), name
    assert ctd_stats.NO_ALARM == -1


def test_the_package_all_names_only_existing_objects() -> None:
    for package in (ctd_stats, *map(importlib.import_module, SUBPACKAGES)):
        absent = [n for n in package.__all__ if not hasattr(package, n)]
        assert not absent, f"{package.__name__}.__all__ lists missing names {absent}"


def test_version_is_the_projects() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert ctd_stats.__version__ == project["version"]


# ----------------------------------------------------------------------------- import graph
def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(path: Path, root: Path) -> str:
    module = _module_name(path, root)
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _is_module(dotted: str, root: Path) -> bool:
    where = root / Path(*dotted.split("."))
    return where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()


def _imports(path: Path, root: Path) -> Iterator[tuple[int, str, str | None]]:
    """``(line, target module, imported name or None)`` for every import in the file.

    ``from P import x`` where ``x`` is a submodule of ``P`` is reported as a module import of
    ``P.x``; a relative import is resolved against the file's package.
    """
    package = _package_of(path, root)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if _is_module(sub, root):
                    yield node.lineno, sub, None
                else:
                    yield node.lineno, target, alias.name


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _in_ctd_stats(target: str) -> bool:
    return target == "ctd_stats" or target.startswith("ctd_stats.")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _probes_offenders(root: Path) -> list[str]:
    """Rule 2: imports of an underscore module or name of ctd_stats by probes."""
    offenders = []
    for path in _files(root / "probes"):
        for line, target, name in _imports(path, root):
            private = any(_private(p) for p in target.split(".")) or (name and _private(name))
            if _in_ctd_stats(target) and private:
                offenders.append(f"{path.relative_to(root)}:{line}: {target} {name or ''}")
    return offenders


def _private_import_offenders(root: Path) -> list[str]:
    """Rule 3: private cross-module imports inside ctd_stats beyond the shared infrastructure."""
    offenders = []
    for path in _files(root / "ctd_stats"):
        here = _package_of(path, root)
        for line, target, name in _imports(path, root):
            if not _in_ctd_stats(target):
                continue
            parts = target.split(".")
            private_parts = [p for p in parts[1:] if _private(p)]
            # a private module of the importer's own (sub)package
            own = target.rpartition(".")[0] == here and private_parts == [parts[-1]]
            module_ok = not private_parts or target in SHARED or own
            name_ok = name is None or not _private(name) or target in SHARED
            if not (module_ok and name_ok):
                offenders.append(f"{path.relative_to(root)}:{line}: {target} {name or ''}")
    return offenders


def _face_offenders(root: Path) -> list[str]:
    """Rule 4: modules below the face that import ctd_stats/__init__.py for a name."""
    offenders = []
    for path in _files(root / "ctd_stats"):
        if path == root / "ctd_stats" / "__init__.py":
            continue
        for line, target, name in _imports(path, root):
            if target == "ctd_stats":  # ``import ctd_stats`` or ``from ctd_stats import name``
                offenders.append(f"{path.relative_to(root)}:{line}: {name or 'import ctd_stats'}")
    return offenders


def test_probes_import_no_private_ctd_stats_name() -> None:
    offenders = _probes_offenders(ROOT)
    assert not offenders, "probes imports private ctd_stats names:\n" + "\n".join(offenders)


def test_private_imports_inside_ctd_stats_are_limited_to_the_shared_infrastructure() -> None:
    offenders = _private_import_offenders(ROOT)
    assert not offenders, "private cross-module imports:\n" + "\n".join(offenders)


def test_no_lower_layer_imports_the_package_face() -> None:
    offenders = _face_offenders(ROOT)
    assert not offenders, "modules importing ctd_stats/__init__.py:\n" + "\n".join(offenders)


def test_the_import_checks_catch_planted_violations(tmp_path: Path) -> None:
    """Negative control: a small fake tree with one allowed and one forbidden import per rule."""
    files = {
        "ctd_stats/__init__.py": "from . import _streaming\nfrom .ltt import x\n",
        "ctd_stats/_validation.py": "_INT64_MAX = 1\n",
        "ctd_stats/_streaming.py": "",
        "ctd_stats/ltt.py": (
            "from ._validation import _INT64_MAX\n"  # allowed: shared infrastructure
            "from .fwer import _fwer\n"  # forbidden: private name of another module
            "from . import __version__\n"  # forbidden: the package face
        ),
        "ctd_stats/fwer.py": "_fwer = 1\n",
        "ctd_stats/online/__init__.py": "",
        "ctd_stats/online/_bet.py": "",
        "ctd_stats/online/betting.py": "from ._bet import bet_step\n",  # allowed: own package
        "ctd_stats/cascade/__init__.py": "",
        "ctd_stats/cascade/streaming.py": "from ..online._bet import bet_step\n",  # forbidden
        "probes/__init__.py": "",
        "probes/linear.py": (
            "from ctd_stats.typing import FloatArray\n"  # allowed
            "from ctd_stats._validation import as_float_array\n"  # forbidden
            "from ctd_stats.logistic import _fit\n"  # forbidden
        ),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert _private_import_offenders(tmp_path) == [
        "ctd_stats/cascade/streaming.py:1: ctd_stats.online._bet bet_step",
        "ctd_stats/ltt.py:2: ctd_stats.fwer _fwer",
    ]
    assert _face_offenders(tmp_path) == ["ctd_stats/ltt.py:3: __version__"]
    assert _probes_offenders(tmp_path) == [
        "probes/linear.py:2: ctd_stats._validation as_float_array",
        "probes/linear.py:3: ctd_stats.logistic _fit",
    ]


# ----------------------------------------------------------------------------- 5. typing
def test_the_array_aliases_are_public_in_ctd_stats_typing() -> None:
    from ctd_stats.typing import BoolArray, FloatArray, IntArray

    assert ctd_stats.typing.__all__ == ["BoolArray", "FloatArray", "IntArray"]
    assert FloatArray == NDArray[np.float64]
    assert IntArray == NDArray[np.int64]
    assert BoolArray == NDArray[np.bool_]
    defined_elsewhere = []
    for path in _files(PACKAGE):
        if path == PACKAGE / "typing.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            else:
                continue
            for target in targets:
                if isinstance(target, ast.Name) and target.id in ctd_stats.typing.__all__:
                    defined_elsewhere.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not defined_elsewhere, f"array aliases defined outside typing.py: {defined_elsewhere}"
