"""Imports run one way: ``core <- protocol <- {storage, net} <- engine <- {node, hub, relay}
<- web <- run <- cli`` (issue #13; STYLE.md "Layout").

Every module of the package is read with ``ast`` (no import runs), and every ``import`` in
it, at the top or inside a function, is an arrow. An arrow may point to a lower layer or
inside its own part; the arrows that still run the wrong way are listed in ``KNOWN`` with
the reason, so this test fails on any *new* backwards arrow, and also on a listed one that
is gone (strike it from the list then).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import swarmget

PACKAGE = Path(swarmget.__file__).parent

#: (part, layer) by module-name prefix; the longest prefix wins. Parts on one layer must not
#: import each other (the node, the hub and the relay are siblings).
PARTS: dict[str, tuple[str, int]] = {
    "swarmget": ("version", 0),  # the package itself: ``__version__`` only
    "swarmget.core": ("core", 0),
    "swarmget.protocol": ("protocol", 1),
    "swarmget.defaults": ("base", 2),
    "swarmget.config": ("base", 2),
    "swarmget.locations": ("base", 2),
    "swarmget.logs": ("base", 2),
    "swarmget.db": ("base", 2),
    "swarmget.extras": ("base", 2),  # which optional dependencies a service needs
    "swarmget.safe_files": ("base", 2),
    "swarmget.destination": ("base", 2),
    "swarmget.storage": ("base", 2),
    "swarmget.hashing": ("base", 2),
    "swarmget.net": ("base", 2),
    "swarmget.engine": ("engine", 3),
    "swarmget.node": ("node", 4),
    "swarmget.hub": ("hub", 4),
    "swarmget.relay": ("relay", 4),
    "swarmget.web": ("web", 5),
    "swarmget.run": ("run", 6),
    "swarmget.progress": ("run", 6),  # the CLI's progress display (reads engine snapshots)
    "swarmget.doctor": ("run", 6),  # ``swarmget doctor``'s checks
    "swarmget.cli": ("cli", 7),
    "swarmget.api": ("api", 7),  # the public Python API: beside the CLI, on ``run.get``
    "swarmget.demo": ("testing", 8),
    "swarmget.testing": ("testing", 8),  # fakes and stand-ins: may use anything
}

#: Arrows known to run the wrong way, each with why it is still there.
KNOWN: frozenset[tuple[str, str]] = frozenset(
    {
        # ``swarmget.download`` (issue #16): the package re-exports the public API, imported
        # on first use (PEP 562 ``__getattr__``), so ``import swarmget`` still imports nothing
        ("swarmget", "swarmget.api"),
    }
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path) -> Iterator[str]:
    """The package's modules ``path`` imports (``from a import b`` is ``a.b`` when b is a
    module, else ``a``)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "swarmget")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "swarmget":
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield sub if sub in MODULES else node.module


def arrows() -> set[tuple[str, str]]:
    return {(mod, target) for mod, path in MODULES.items() for target in imported(path)}


def part_of(module: str) -> tuple[str, int]:
    prefixes = [p for p in PARTS if module == p or module.startswith(p + ".")]
    assert prefixes, f"{module} is in no part: add it to PARTS"
    return PARTS[max(prefixes, key=len)]


def backwards(source: str, target: str) -> bool:
    (src_part, src_layer), (dst_part, dst_layer) = part_of(source), part_of(target)
    return src_part != dst_part and dst_layer >= src_layer


def test_every_module_has_a_part() -> None:
    for module in MODULES:
        part_of(module)


def test_no_new_arrow_runs_back_up() -> None:
    wrong = {a for a in arrows() if backwards(*a)}
    assert wrong - KNOWN == set(), "imports running the wrong way"


def test_every_known_wrong_arrow_is_still_there() -> None:
    # when one is fixed, strike it from KNOWN so that it cannot come back
    assert KNOWN - arrows() == set()
    assert all(backwards(*a) for a in KNOWN)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("swarmget.node.daemon", "swarmget.web.portal"),  # was there before #13
        ("swarmget.relay.store", "swarmget.hub.store"),  # was there before #13
        ("swarmget.core.ranges", "swarmget.net.origin"),
        ("swarmget.hub.app", "swarmget.node.downloads"),
        ("swarmget.web.portal", "swarmget.run.node"),
        ("swarmget.run.node", "swarmget.cli"),
    ],
)
def test_the_rule_sees_a_backwards_arrow(source: str, target: str) -> None:
    assert backwards(source, target)


def test_the_core_imports_nothing_but_the_core() -> None:
    outside = {
        (m, t)
        for m, t in arrows()
        if part_of(m)[0] == "core" and part_of(t)[0] not in ("core", "protocol")
    }
    assert outside == set()


def closure(start: set[str], edges: set[tuple[str, str]]) -> set[str]:
    seen, todo = set(start), list(start)
    while todo:
        module = todo.pop()
        for source, target in edges:
            if source == module and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_hub_never_reaches_the_node_the_web_or_the_wiring() -> None:
    """ "The hub never downloads": nothing the hub imports, directly or not (known wrong
    arrows aside), is the node, the engine, the web portal, the wiring or the CLI."""
    hub = {m for m in MODULES if part_of(m)[0] == "hub"}
    reached = closure(hub, arrows() - KNOWN)
    parts = {part_of(m)[0] for m in reached}
    assert parts & {"node", "engine", "relay", "web", "run", "cli", "testing"} == set()


def test_the_node_imports_neither_the_web_nor_the_wiring() -> None:
    node = {m for m in MODULES if part_of(m)[0] == "node"}
    reached = closure(node, arrows() - KNOWN)
    assert {part_of(m)[0] for m in reached} & {"web", "run", "cli", "hub", "testing"} == set()


def test_the_relay_reaches_the_node_only_through_the_engine() -> None:
    relay = {m for m in MODULES if part_of(m)[0] == "relay"}
    reached = closure(relay, arrows() - KNOWN)
    assert {part_of(m)[0] for m in reached} & {"node", "hub", "web", "run", "cli"} == set()
