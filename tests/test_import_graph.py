"""The import graph of tfadv (read from the source with ``ast``: module-level imports and those inside
functions alike): no cycle, the attacks layer imports nothing above it, the plotting module's
private helpers stay private, and the import contracts that CI's ``lint-imports`` checks
(``.importlinter``) place every module in a layer (docs/design.md, "Layering")."""

import ast
import configparser
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTRACTS = os.path.join(ROOT, ".importlinter")
# Layers that must stay above tfadv.attacks whatever else the contract says.
ABOVE_ATTACKS = ("tfadv.evaluation", "tfadv.callbacks", "tfadv.defenses", "tfadv.recipes",
                 "tfadv.experiment", "tfadv.flags", "tfadv.cli", "scripts")


def _modules(package="tfadv"):
    """module name -> file of every module of ``package`` (``tfadv/models`` links to the
    repository's ``models/`` folder: followed)."""
    out = {}
    for directory, _, files in os.walk(os.path.join(ROOT, package), followlinks=True):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                out[module[:-len(".__init__")] if module.endswith(".__init__") else module] = path
    return out


def _layers():
    """The layers contract of ``.importlinter``, highest first, each a list of module names."""
    config = configparser.ConfigParser()
    assert config.read(CONTRACTS) == [CONTRACTS], f"no import contracts at {CONTRACTS}"
    lines = config["importlinter:contract:layers"]["layers"].splitlines()
    return [[m.strip() for m in re.split(r"[|:]", line)] for line in lines if line.strip()]


def _above(module):
    """The modules of the layers above ``module``'s in the layers contract."""
    layers = _layers()
    index = next(i for i, layer in enumerate(layers) if module in layer)
    return [m for layer in layers[:index] for m in layer]


def _imported_names(path, module, is_package):
    """Every dotted name imported anywhere in the file (``from a import b`` gives ``a.b``)."""
    package = module if is_package else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def _graph():
    """module -> the tfadv modules it imports (a submodule when the name is one, else the
    module the name comes from). Edges to a module's own parent packages are left out: Python
    runs those first whatever the module imports."""
    modules = _modules()

    def resolve(name):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        targets = {resolve(n) for n in _imported_names(path, module, path.endswith("__init__.py"))}
        graph[module] = {t for t in targets
                         if t and t != module and not module.startswith(t + ".")}
    return graph


def _cycles(graph):
    """The strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_the_import_graph_finds_a_cycle_when_there_is_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_tfadv_has_no_import_cycle():
    graph = _graph()
    assert _cycles(graph) == []
    assert {"tfadv.attacks.generators", "tfadv.defenses.l2lda"} <= set(graph)  # read them all
    assert "tfadv.attacks" in graph["tfadv.defenses.l2lda"]


@pytest.mark.parametrize("module", sorted(m for m in _modules() if m.startswith("tfadv.attacks")))
def test_attacks_import_nothing_above_them(module):
    path = _modules()[module]
    names = _imported_names(path, module, path.endswith("__init__.py"))
    layers_above = _above("tfadv.attacks")
    assert set(ABOVE_ATTACKS) <= set(layers_above)
    above = [n for n in names if any(n == m or n.startswith(m + ".") for m in layers_above)]
    assert above == [], f"{module} imports {above}"


def test_the_import_contracts_place_every_module_in_one_layer():
    """A new top-level module of tfadv, or a renamed one, must be placed in the layers that
    ``lint-imports`` checks: a module named in no layer would escape them."""
    named = [m for layer in _layers() for m in layer]
    modules = {".".join(m.split(".")[:2]) for m in _modules() if m != "tfadv"}
    modules |= {"scripts"}
    assert sorted(named) == sorted(modules), (
        f"in no layer: {sorted(modules - set(named))}; "
        f"not a module: {sorted(set(named) - modules)}")
    assert _above("tfadv.attacks")[:4] == ["scripts", "tfadv.cli", "tfadv.interop", "tfadv.experiment"]
    assert "tfadv.attacks" in _above("tfadv.ranges") and "tfadv.defenses" in _above("tfadv.models")


def test_no_module_borrows_the_plotting_modules_private_helpers():
    offenders = []
    for package in ("tfadv", "scripts"):
        for module, path in _modules(package).items():
            if module == "tfadv.evaluation.plots":
                continue
            tree = ast.parse(open(path, encoding="utf-8").read())
            aliases = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module == "tfadv.evaluation":
                    aliases |= {a.asname or a.name for a in node.names if a.name == "plots"}
                elif isinstance(node, ast.ImportFrom) and node.module == "tfadv.evaluation.plots":
                    offenders += [f"{module}: {a.name}" for a in node.names
                                  if a.name.startswith("_")]
                elif isinstance(node, ast.Import):
                    aliases |= {a.asname for a in node.names
                                if a.name == "tfadv.evaluation.plots" and a.asname}
            offenders += [f"{module}: {node.value.id}.{node.attr}" for node in ast.walk(tree)
                          if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                          and node.value.id in aliases and node.attr.startswith("_")]
    assert offenders == []
