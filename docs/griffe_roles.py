"""Griffe extension for the docs build: Sphinx roles become checked links; re-exports are shown once.

The docstrings name other objects the way Sphinx does (``:class:`~lit_superposition.steps.StepLoop```).
MkDocs does not read those roles, so this turns each into a cross-reference that mkdocs-autorefs
resolves: a role naming a ``lit_superposition`` object that the reference does not render is a
broken link, and ``mkdocs build --strict`` fails on it. A short name (``:class:`StepScheduled```)
is looked up beside the object that uses it; anything outside the package (Lightning, torch), or a
short name that is not an object of the package (a parameter, an attribute), stays inline code.

A package's ``__init__`` re-exports its modules' classes (``lit_superposition.callbacks.GeometryReport``);
the reference documents each where it is defined, and links to either name reach it there.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|obj|exc):`(~?)([\w.]+)`")
PACKAGE = "lit_superposition"


class SphinxRoles(griffe.Extension):
    """Rewrite ``:role:`target``` in every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path == PACKAGE:
            _rewrite(pkg, pkg, seen=set())
            _hide_reexports(pkg)


def _hide_reexports(module: griffe.Module) -> None:
    """Render a re-exported object only where it is defined (its aliases still resolve as link targets)."""
    for member in module.members.values():
        if member.is_alias:
            member.public = False
        elif member.is_module:
            _hide_reexports(member)


def _rewrite(obj: griffe.Object, package: griffe.Module, seen: set[str]) -> None:
    if obj.path in seen:
        return
    seen.add(obj.path)
    if obj.docstring is not None:
        obj.docstring.value = ROLE.sub(lambda match: _link(match, obj, package), obj.docstring.value)
    for member in obj.members.values():
        if not member.is_alias:
            _rewrite(member, package, seen)


def _link(match: re.Match[str], obj: griffe.Object, package: griffe.Module) -> str:
    short, target = match.group(1) == "~", match.group(2)
    shown = target.rsplit(".", 1)[-1] if short else target
    path = _resolve(target, obj, package)
    return f"[`{shown}`][{path}]" if path is not None else f"`{shown}`"


def _resolve(target: str, obj: griffe.Object, package: griffe.Module) -> str | None:
    """The full path of ``target`` as seen from ``obj``, or None when it is no object of the package."""
    if target.split(".", 1)[0] == PACKAGE:
        return target  # named in full: it must exist (autorefs reports it if not)
    scope: griffe.Object | None = obj
    while scope is not None:
        candidate = f"{scope.path}.{target}"
        if _exists(candidate, package):
            return candidate
        scope = scope.parent
    return None


def _exists(path: str, package: griffe.Module) -> bool:
    try:
        package[path.removeprefix(PACKAGE + ".")]
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return False
    return True
