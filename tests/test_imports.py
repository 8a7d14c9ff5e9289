"""The import graph of tfvssl has no cycle (every import counts, also inside functions)."""

import ast
import os

PACKAGE = os.path.join(os.path.dirname(__file__), os.pardir, "tfvssl")


def module_name(path):
    relative = os.path.relpath(path, os.path.dirname(PACKAGE))[: -len(".py")].split(os.sep)
    return ".".join(relative[:-1] if relative[-1] == "__init__" else relative)


def import_graph():
    """`{module: set of tfvssl modules it imports}`, from the sources alone."""
    paths = [os.path.join(root, name) for root, _, names in os.walk(PACKAGE) for name in names if name.endswith(".py")]
    modules = {module_name(path): path for path in paths}
    graph = {}
    for module, path in modules.items():
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # Relative: from the package, up level - 1 parents.
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                # `from a import b` imports the module a.b when there is one, else a.
                imported.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
        graph[module] = {name for name in imported if name in modules and name != module}
    return graph


def find_cycle(graph):
    """One cycle of `graph` as a list of modules (first == last), or None."""
    state = {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target, path + [target])
                if cycle:
                    return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [module])
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert "tfvssl.methods.dpc" in graph["tfvssl.methods"]  # The graph sees the package's imports.
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_models_import_no_method():
    """The Keras models stand alone: a method module imports its model, never the reverse."""
    graph = import_graph()
    for module, imported in graph.items():
        if module.startswith("tfvssl.models"):
            assert not [name for name in imported if name.startswith("tfvssl.methods")], module


def test_no_two_modules_share_a_basename():
    names = [name for _, _, names in os.walk(PACKAGE) for name in names if name.endswith(".py") and name[0] != "_"]
    assert sorted({name for name in names if names.count(name) > 1}) == []
