"""The library's layers, listed once: no module imports a layer above its own, and no import cycles.

Every module of ``face_perception/`` is read with ``ast`` (no import runs): every ``import`` and
``from ... import`` at any depth counts, including those inside functions (lazy imports are still
dependencies), and so does a string in a package's ``__init__`` that is exactly a module's
dotted name (the lazy export tables, read by importlib); only ``if TYPE_CHECKING:`` blocks are
left out. ``from pkg import name`` depends on the module ``pkg.name`` when there is one, else on
``pkg`` itself (its ``__init__``).

LAYERS goes from the bottom up. Each entry is a list of module or package names relative to
``face_perception`` ("" is the package's own ``__init__``); a module belongs to the entry whose name
is its longest prefix, so ``recognition.training`` can sit above ``recognition``. A module may
import its own layer and any layer below it. docs/architecture.md draws the same list.
Run ``python -m test.test_layers`` to print every finding at once.
"""
from __future__ import annotations

import ast
import collections
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1] / "face_perception"
PACKAGE = "face_perception"

# Bottom to top.
LAYERS: list[tuple[str, list[str]]] = [
    ("foundation", ["", "types", "files", "threads", "devices", "download", "imageio",
                    "alignment", "open_set", "rendering", "head_pose"]),
    ("messages", ["messages"]),
    ("data", ["data"]),
    ("onnx", ["onnx"]),
    ("training core", ["training"]),  # the shared training core of detection and recognition
    ("detection", ["detection"]),
    ("detection training", ["detection.training"]),
    ("gallery", ["gallery"]),
    ("recognition core", ["recognition"]),
    ("recognition training", ["recognition.training"]),
    ("tracking", ["tracking"]),
    ("pipeline", ["pipeline"]),
    ("bag", ["bag"]),
    ("enrolment", ["enrolment"]),
    ("learners", ["learners"]),
    ("cli", ["cli"]),
    ("ros", ["ros"]),
]

# Generated at build time (CMakeLists.txt), not in the source tree.
GENERATED = ("srv", "action", "msg")


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Import statements and strings naming a module, at any depth, skipping the bodies of
    ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                node.value.startswith(PACKAGE + "."):
            yield node  # maybe a module named for importlib: see imports_of
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: pathlib.Path, modules) -> list[tuple[str, int]]:
    """(imported face_perception module, line) for every import of another module in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant):
            # Only a package's lazy export table names modules in strings; elsewhere such a
            # string is a label (a file format's name), not an import.
            targets = [node.value] if path.name == "__init__.py" and node.value in modules else []
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                       for alias in node.names]
        for target in targets:
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            if target.split(".")[1:2] and target.split(".")[1] in GENERATED:
                continue
            owner = target if target in modules else f"missing:{target}"  # reported below
            if owner != name and (owner, node.lineno) not in found:
                found.append((owner, node.lineno))
    return found


def layer_of(name: str) -> tuple[int, str] | None:
    """(layer index, matching prefix) by the longest listed prefix, or None when unplaced."""
    relative = name[len(PACKAGE) + 1:] if name != PACKAGE else ""
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (prefix == relative or (prefix and relative.startswith(prefix + "."))) and (
                    best is None or len(prefix) > len(best[1])):
                best = (index, prefix)
    return best


def import_graph():
    modules = find_modules()
    edges = {name: imports_of(name, path, modules) for name, path in modules.items()}
    return modules, edges


def _where(modules, name, line):
    return f"{modules[name].relative_to(ROOT.parent)}:{line}"


def unresolved_imports(modules, edges) -> list[str]:
    return [f"{_where(modules, name, line)} imports {target[8:]}, which is not a module"
            for name, found in edges.items() for target, line in found
            if target.startswith("missing:")]


def upward_imports(modules, edges) -> list[str]:
    problems = []
    for name, found in edges.items():
        own = layer_of(name)
        for target, line in found:
            theirs = None if target.startswith("missing:") else layer_of(target)
            if own and theirs and theirs[0] > own[0]:
                problems.append(f"{_where(modules, name, line)}: {name} (layer "
                                f"{LAYERS[own[0]][0]!r}) imports {target} (layer "
                                f"{LAYERS[theirs[0]][0]!r}, above)")
    return problems


def unplaced_modules(modules) -> list[str]:
    return [f"{name} ({modules[name].relative_to(ROOT.parent)}) is in no layer: add it to LAYERS"
            for name in modules if layer_of(name) is None]


def listed_twice() -> list[str]:
    seen = collections.Counter(p for _, prefixes in LAYERS for p in prefixes)
    return [f"{prefix!r} is listed {count} times in LAYERS" for prefix, count in seen.items()
            if count > 1]


def cycles(modules, edges) -> list[str]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph = {name: sorted({t for t, _ in found if t in modules}) for name, found in edges.items()}
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    for start in graph:
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if child < len(graph[node]):
                work.append((node, child + 1))
                nxt = graph[node][child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    problems = []
    for component in components:
        inside = [f"{_where(modules, name, line)} -> {target}" for name in component
                  for target, line in edges[name] if target in component]
        problems.append(f"import cycle between {', '.join(component)}:\n    "
                        + "\n    ".join(inside))
    return problems


def _report(problems: list[str]) -> str:
    return f"{len(problems)} found:\n  " + "\n  ".join(problems)


def test_every_module_is_in_exactly_one_layer():
    modules = find_modules()
    problems = listed_twice() + unplaced_modules(modules)
    assert not problems, _report(problems)


def test_every_face_perception_import_names_a_module():
    problems = unresolved_imports(*import_graph())
    assert not problems, _report(problems)


def test_no_module_imports_a_layer_above_its_own():
    problems = upward_imports(*import_graph())
    assert not problems, _report(problems)


def test_no_import_cycles_between_modules():
    problems = cycles(*import_graph())
    assert not problems, _report(problems)


def test_architecture_page_lists_the_same_layers():
    # docs/architecture.md draws this list for readers: same layers, same order.
    page = (ROOT.parent / "docs" / "architecture.md").read_text()
    table = page.split("| layer | modules", 1)[1].split("\n\n", 1)[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert rows == [name for name, _ in LAYERS]


def test_the_check_sees_lazy_imports_and_skips_type_checking_blocks(tmp_path):
    # The finder itself: an import inside a function counts, one under TYPE_CHECKING does not.
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import face_perception.a\n"
              "def f():\n    from face_perception import b\n")
    path = tmp_path / "m.py"
    path.write_text(source)
    modules = {"face_perception.a": None, "face_perception.b": None, "face_perception.m": path}
    assert imports_of("face_perception.m", path, modules) == [("face_perception.b", 5)]


if __name__ == "__main__":
    found_modules, found_edges = import_graph()
    everything = (listed_twice() + unplaced_modules(found_modules)
                  + unresolved_imports(found_modules, found_edges)
                  + upward_imports(found_modules, found_edges) + cycles(found_modules, found_edges))
    print(_report(everything))
    sys.exit(1 if everything else 0)
