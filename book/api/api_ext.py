"""Sphinx extension for the book's API reference (loaded through ``local_extensions``).

``.. api-part:: core`` opens a page with the package's docstring and gives each module of the
part (``API_MODULES``) a section: its docstring, then every name in its ``__all__`` that it
owns, by autodoc. A name a module only re-exports (``ctd_stats.online.eprocess`` re-exports the
thresholds) is listed with a link to the one place it is documented. A private module in
``NAMESPACES`` (the streaming protocol) is documented under its package (``ctd_stats.Step``, not
``ctd_stats._streaming.Step``).

Every public name has several import paths (``ctd_stats.Delegator``,
``ctd_stats.cascade.Delegator``, ``ctd_stats.cascade.delegator.Delegator``) and a type hint may
name a private defining module; the ``missing-reference`` handler sends each of them to the one
documented entry, so chapters and docstrings may use whichever path a user would import.
Docstring hooks keep napoleon from reading prose as types (see each hook).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_refnode

# Every module the reference documents, in page order (book/api/*.md use the same list, and
# tests/test_book_check.py checks that each public module's __all__ is covered).
API_MODULES: dict[str, list[str]] = {
    "core": [
        "ctd_stats._streaming",
        "ctd_stats.pvalues",
        "ctd_stats.fwer",
        "ctd_stats.ltt",
        "ctd_stats.grouped",
        "ctd_stats.risks",
        "ctd_stats.conditional_pvalues",
        "ctd_stats.pareto",
        "ctd_stats.logistic",
        "ctd_stats.splits",
        "ctd_stats.datasets",
        "ctd_stats.typing",
    ],
    "cascade": [
        "ctd_stats.cascade.metrics",
        "ctd_stats.cascade.signals",
        "ctd_stats.cascade.calibration",
        "ctd_stats.cascade.policies",
        "ctd_stats.cascade.grouped_policies",
        "ctd_stats.cascade.selective",
        "ctd_stats.cascade.baselines",
        "ctd_stats.cascade.protocol",
        "ctd_stats.cascade.sweeps",
        "ctd_stats.cascade.budget_validation",
        "ctd_stats.cascade.streaming",
        "ctd_stats.cascade.delegator",
        "ctd_stats.cascade.self_certifying",
        "ctd_stats.cascade.simulation",
    ],
    "online": [
        "ctd_stats.online.trajectories",
        "ctd_stats.online.monitors",
        "ctd_stats.online.crc",
        "ctd_stats.online.ucb",
        "ctd_stats.online.alarm_calibration",
        "ctd_stats.online.eprocess_thresholds",
        "ctd_stats.online.evaluator",
        "ctd_stats.online.eprocess",
        "ctd_stats.online.betting",
        "ctd_stats.online.monitor_metrics",
        "ctd_stats.online.anytime_state",
        "ctd_stats.online.anytime_ltt",
        "ctd_stats.online.anytime_audit",
        "ctd_stats.online.anytime_alarms",
    ],
    "probes": [
        "probes.data",
        "probes.models",
        "probes.extract",
        "probes.prefix_pool",
        "probes.store",
        "probes.distributed",
        "probes.expert_shards",
        "probes.linear",
        "probes.experts",
        "probes.embedding_expert",
        "probes.artifact_config",
        "probes.artifact",
        "probes.pipeline",
        "probes.probe_io",
        "probes.live",
        "probes.monitor_cli",
    ],
}
PART_PACKAGES = {
    "core": "ctd_stats",
    "cascade": "ctd_stats.cascade",
    "online": "ctd_stats.online",
    "probes": "probes",
}
# Private modules whose names are documented under a package namespace.
NAMESPACES = {"ctd_stats._streaming": "ctd_stats"}
# Packages that re-export names: ctd_stats.X, ctd_stats.cascade.X, ctd_stats.online.X.
PACKAGES = ("ctd_stats", "ctd_stats.cascade", "ctd_stats.online", "probes")


def _is_private(modname: str) -> bool:
    return any(part.startswith("_") for part in modname.split("."))


def _assigned_names(modname: str) -> set[str]:
    """Names a module assigns at top level (where a constant or a type alias is defined)."""
    module = importlib.import_module(modname)
    source = Path(inspect.getfile(module)).read_text(encoding="utf-8")
    names: set[str] = set()
    for node in ast.parse(source).body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def _defining_module(modname: str, name: str, obj: Any) -> str:
    owner = getattr(obj, "__module__", None)
    if (inspect.isclass(obj) or inspect.isfunction(obj)) and isinstance(owner, str):
        return owner
    if name in _assigned_names(modname):
        return modname
    # A re-exported constant: the module it is imported from (found by following the imports).
    module = importlib.import_module(modname)
    source = Path(inspect.getfile(module)).read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and any(a.name == name for a in node.names):
            base = modname.rsplit(".", node.level)[0] if node.level else ""
            target = ".".join(p for p in (base, node.module or "") if p)
            return _defining_module(target, name, obj)
    return modname


@dataclass
class Registry:
    """Where each public name is documented, and every path that leads to it."""

    canonical: dict[tuple[str, str], str] = field(default_factory=dict)  # (module, name) -> full
    aliases: dict[str, str] = field(default_factory=dict)  # any import path -> documented name
    _type_aliases: dict[str, str] | None = None
    _unique: dict[str, str] | None = None

    @classmethod
    def build(cls) -> Registry:
        reg = cls()
        documented = [m for page in API_MODULES.values() for m in page]
        by_identity: dict[str, str] = {}
        for modname in documented:
            module = importlib.import_module(modname)
            namespace = NAMESPACES.get(modname, modname)
            for name in getattr(module, "__all__", []):
                obj = getattr(module, name)
                definer = _defining_module(modname, name, obj)
                key = f"{definer}.{name}"
                if definer in documented and definer != modname:
                    continue  # documented in its own module
                if key in by_identity:
                    continue  # a private definer: the first public module that exports it
                full = f"{namespace}.{name}"
                by_identity[key] = full
                reg.canonical[(modname, name)] = full
                qualname = getattr(obj, "__qualname__", name)
                reg.aliases[f"{definer}.{qualname}"] = full
        for modname in [*documented, *PACKAGES, *NAMESPACES]:
            module = importlib.import_module(modname)
            for name in getattr(module, "__all__", []):
                obj = getattr(module, name)
                key = f"{_defining_module(modname, name, obj)}.{name}"
                found = by_identity.get(key) or next(
                    (
                        f
                        for (m, n), f in reg.canonical.items()
                        if n == name and getattr(importlib.import_module(m), n) is obj
                    ),
                    None,
                )
                if found is not None:
                    reg.aliases.setdefault(f"{modname}.{name}", found)
        return reg

    def owned(self, modname: str) -> list[str]:
        module = importlib.import_module(modname)
        return [n for n in getattr(module, "__all__", []) if (modname, n) in self.canonical]

    def reexported(self, modname: str) -> list[tuple[str, str]]:
        module = importlib.import_module(modname)
        return [
            (n, self.aliases[f"{modname}.{n}"])
            for n in getattr(module, "__all__", [])
            if (modname, n) not in self.canonical and f"{modname}.{n}" in self.aliases
        ]

    def unique_names(self) -> dict[str, str]:
        """Documented names whose last component no other documented name shares."""
        if self._unique is None:
            seen: dict[str, list[str]] = {}
            for full in self.canonical.values():
                seen.setdefault(full.rsplit(".", 1)[-1], []).append(full)
            self._unique = {k: v[0] for k, v in seen.items() if len(v) == 1}
        return self._unique

    def type_aliases(self) -> dict[str, str]:
        """Public type aliases (``FloatArray``, ``Order`` ...) shown by name in signatures."""
        if self._type_aliases is not None:
            return self._type_aliases
        out: dict[str, str] = {}
        for (modname, name), full in self.canonical.items():
            if _is_alias(getattr(importlib.import_module(modname), name)):
                out.setdefault(name, full)
        self._type_aliases = out
        return out


def _is_alias(obj: Any) -> bool:
    origin = getattr(obj, "__origin__", None)
    return origin is not None or type(obj).__name__ in {"UnionType", "_LiteralGenericAlias"}


_REGISTRY: Registry | None = None


def registry() -> Registry:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry.build()
    return _REGISTRY


def _module_rst(modname: str) -> list[str]:
    """reStructuredText documenting the names ``modname`` owns (see the module docstring)."""
    reg = registry()
    module = importlib.import_module(modname)
    names = reg.owned(modname)
    lines: list[str] = []
    if modname in NAMESPACES:
        lines += [f".. currentmodule:: {NAMESPACES[modname]}", ""]
    else:
        # The module's docstring; then each name, in __all__ order, by its own directive (an
        # undocumented constant or type alias is skipped by automodule's :members:).
        lines += [f".. automodule:: {modname}", "", f".. currentmodule:: {modname}", ""]
    for name in names:
        obj = getattr(module, name)
        if inspect.isclass(obj) and not _is_alias(obj):
            lines += [f".. autoclass:: {name}", "   :members:", ""]
        elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
            lines += [f".. autofunction:: {name}", ""]
        else:
            # A long value (the expert's prompts) would fill the page: its docstring says it.
            long = len(repr(obj)) > 300 and not _is_alias(obj)
            lines += [f".. autodata:: {name}", *(["   :no-value:"] if long else []), ""]
    again = reg.reexported(modname)
    if again:
        links = ", ".join(f":py:obj:`~{full}`" for _, full in again)
        lines += [f"Also importable from ``{modname}``: {links}.", ""]
    return lines


class ApiPart(SphinxDirective):
    """``.. api-part:: core`` — one section per module of ``API_MODULES[part]``."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        part = self.arguments[0]
        # The package's docstring opens the page (and gives ``:mod:`ctd_stats.cascade``` a target).
        intro = StringList([f".. automodule:: {PART_PACKAGES[part]}", ""], source="<api-part>")
        holder = nodes.container()
        self.state.nested_parse(intro, 0, holder)
        out: list[nodes.Node] = list(holder.children)
        for modname in API_MODULES[part]:
            section = nodes.section(ids=[nodes.make_id(f"api-{modname}")])
            if modname in NAMESPACES:
                title = nodes.title("", "The streaming protocol (")
                title += nodes.literal(NAMESPACES[modname], NAMESPACES[modname])
                title += nodes.Text(")")
            else:
                title = nodes.title("", "", nodes.literal(modname, modname))
            section += title
            content = StringList(_module_rst(modname), source=f"<api-part {modname}>")
            self.state.nested_parse(content, 0, section)
            out.append(section)
        return out


def _import(path: str) -> Any:
    """The object at a dotted path, or ``_MISSING``."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr, _MISSING)
        return obj
    return _MISSING


_MISSING = object()


def _internal(path: str, obj: Any) -> bool:
    """A private object, type alias or type variable: it has no entry; its name is shown as is."""
    if any(part.startswith("_") for part in path.split(".")):
        return True
    return _is_alias(obj) or type(obj).__name__ == "TypeVar"


def _documented(reg: Registry, objects: dict[str, Any], path: str) -> str | None:
    """The entry for ``path``: the name itself, or the deepest documented object above it.

    A method or field without its own entry (a dataclass field, an inherited method) links to
    its class.
    """
    full = reg.aliases.get(path, path)
    if full in objects:
        return full
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:i])
        canonical = reg.aliases.get(head, head)
        if canonical in objects:
            deeper = ".".join([canonical, *parts[i:]])
            if deeper in objects:
                return deeper
            return canonical if _exists(deeper) else None
    return None


def _exists(path: str) -> bool:
    """An attribute, or a dataclass field / annotated attribute without a class-level value."""
    if _import(path) is not _MISSING:
        return True
    owner, _, name = path.rpartition(".")
    parent = _import(owner)
    return parent is not _MISSING and name in getattr(parent, "__annotations__", {})


def _candidates(reg: Registry, node: Any) -> list[str]:
    """The paths a target may mean, from the module and class it is written in."""
    target = node.get("reftarget", "")
    module, cls = node.get("py:module"), node.get("py:class")
    out = [target]
    if module:
        if cls:
            out.append(f"{module}.{cls}.{target}")
            owner = _import(f"{module}.{cls}")
            if owner is not _MISSING and hasattr(owner, "__module__"):
                out.append(f"{owner.__module__}.{target}")  # documented under a namespace
        out.append(f"{module}.{target}")
    head, _, rest = target.partition(".")
    unique = reg.unique_names()
    if head in unique:  # a bare name (``AnytimeLTT.run``) that one public object has
        out.append(".".join(p for p in (unique[head], rest) if p))
    return out


def _resolve(
    app: Sphinx, env: BuildEnvironment, node: Any, contnode: nodes.Element
) -> nodes.Element | None:
    """Send ``ctd_stats.Delegator`` (or a private module's path) to the documented entry."""
    if node.get("refdomain") != "py":
        return None
    reg = registry()
    objects = env.get_domain("py").objects  # type: ignore[attr-defined]
    candidates = _candidates(reg, node)
    for candidate in candidates:
        full = _documented(reg, objects, candidate)
        if full is not None:
            entry = objects[full]
            return make_refnode(
                app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, full
            )
    if node.get("reftype") == "mod" and candidates[0] in PACKAGES:
        return None
    # Internal names (a module's private type alias, a TypeVar, a private helper): no entry to
    # link to, so the name is shown as text.
    for candidate in candidates:
        obj = _import(candidate)
        if obj is not _MISSING and _internal(candidate, obj):
            return contnode
    # A bare type alias imported under TYPE_CHECKING only (``GroupAlpha``): found in the module
    # that defines it.
    target = candidates[0]
    if target.isidentifier():
        for modname, module in list(sys.modules.items()):
            if modname.split(".")[0] in {"ctd_stats", "probes"} and _is_alias(
                getattr(module, target, None)
            ):
                return contnode
    return None


def _keep_module_data(
    app: Sphinx, what: str, name: str, obj: Any, skip: bool, options: Any
) -> bool | None:
    """Document every listed module member, constants and type aliases without docstrings too."""
    if what == "module" and not name.startswith("_"):
        return False
    return None


_JOIN = ",\u200b"  # a comma and a zero-width space: not whitespace to Sphinx's field parser


_FIRST_LINES: dict[str, str] = {}


def _remember_first_line(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    if what in {"data", "attribute", "property"}:
        _FIRST_LINES[name] = next((line for line in lines if line.strip()), "")


def _no_inline_type(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Napoleon reads a constant's or property's first line ``text: more`` as ``type: text``.

    These docstrings are prose ("Fault injection for the crash tests: ..."): the text goes back
    where it was, and is not linked as a class.
    """
    first = _FIRST_LINES.pop(name, "")
    for i, line in enumerate(lines):
        kind = line.partition(" ")[0]
        if kind == ":type:" and first.startswith(line[len(kind) + 1 :].strip() + ":"):
            del lines[i]
            while lines and not lines[-1].strip():
                lines.pop()
            body = next(j for j, text in enumerate(lines) if text.strip())
            lines[body] = first.strip()[: len(line) - len(kind) - 1] + ": " + lines[body].lstrip()
            return


def _drop_borrowed_docstring(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """A constant or alias without a ``#:`` comment shows its value, not its type's docstring.

    (``FloatArray`` would otherwise carry numpy.ndarray's docstring, ``METHODS`` tuple's.)
    """
    if what != "data" or not lines:
        return
    borrowed = [getattr(type(obj), "__doc__", None), getattr(obj, "__doc__", None)]
    origin = getattr(obj, "__origin__", None)
    if origin is not None:
        borrowed.append(getattr(origin, "__doc__", None))
    first = next((line.strip() for line in lines if line.strip()), "")
    for doc in borrowed:
        if isinstance(doc, str) and first and first in doc:
            lines[:] = []
            return


def _split_joined_fields(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """``:ivar alpha, delta: ...`` (napoleon, from ``alpha, delta`` in Attributes) names one field.

    Sphinx would read the first word as the type and link "alpha" as a class; a zero-width space
    after each comma keeps the names together.
    """
    for i, line in enumerate(lines):
        if line.startswith(":vartype "):
            # From the annotation (``NDArray[np.str_]``): a trailing ``_`` is a link in rst.
            lines[i] = re.sub(r"(\w)_\b", r"\1\\_", line)
        if line.startswith((":ivar ", ":param ")) and ", " in line.split(":")[1]:
            field, rest = line[1:].split(":", 1)
            kind, names = field.split(" ", 1)
            lines[i] = f":{kind} {names.replace(', ', _JOIN)}:{rest}"


def _config_inited(app: Sphinx, config: Any) -> None:
    aliases = dict(registry().type_aliases())
    aliases.update(config.autodoc_type_aliases or {})
    config.autodoc_type_aliases = aliases


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("api-part", ApiPart)
    app.connect("config-inited", _config_inited)
    app.connect("missing-reference", _resolve)
    app.connect("autodoc-skip-member", _keep_module_data)
    app.connect("autodoc-process-docstring", _drop_borrowed_docstring, priority=400)
    app.connect("autodoc-process-docstring", _remember_first_line, priority=450)
    app.connect("autodoc-process-docstring", _no_inline_type, priority=550)
    app.connect("autodoc-process-docstring", _split_joined_fields, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
