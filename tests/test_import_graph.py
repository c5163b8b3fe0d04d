"""The import graph of the jax_local package is acyclic (docs/design.md §2).

Every `import` and `from ... import` in jax_local/**/*.py, module-level or inside a function, is an
edge from the importing module to each jax_local module it executes: `from jax_local import splits`
runs jax_local/splits.py, `from jax_local.models.backbone import X` runs jax_local/models/__init__.py
and backbone.py (the importer's own parent packages are already running and are not edges). A cycle
means one of its modules sees the other half-initialised, depending on which is imported first.
"""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "jax_local"


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for path in sorted((ROOT / PACKAGE).rglob("*.py")):
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join(parts)] = path
  return out


def _executed(target: str, importer: str, modules) -> set[str]:
  """jax_local modules run by importing `target`: it and its parent packages, minus the
  importer's own parents."""
  parts, out = target.split("."), set()
  for i in range(1, len(parts) + 1):
    name = ".".join(parts[:i])
    if name in modules and not (importer + ".").startswith(name + "."):
      out.add(name)
  return out


def import_graph() -> dict[str, set[str]]:
  modules = _modules()
  graph = {}
  for name, path in modules.items():
    is_pkg = path.name == "__init__.py"
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      targets = []
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative import
          pkg = name.split(".") if is_pkg else name.split(".")[:-1]
          pkg = pkg[:len(pkg) - node.level + 1]
          base = ".".join(pkg + ([base] if base else []))
        targets = [base] + [f"{base}.{a.name}" for a in node.names]
      for t in targets:
        if t == PACKAGE or t.startswith(PACKAGE + "."):
          edges |= _executed(t, name, modules)
    edges.discard(name)
    graph[name] = edges
  return graph


def find_cycle(graph):
  """One cycle as a list of modules, or None (depth-first search with three colours)."""
  state, stack = {}, []

  def visit(u):
    state[u] = "open"
    stack.append(u)
    for v in sorted(graph[u]):
      if state.get(v) == "open":
        return stack[stack.index(v):] + [v]
      if v not in state:
        cycle = visit(v)
        if cycle:
          return cycle
    stack.pop()
    state[u] = "done"
    return None

  for u in sorted(graph):
    if u not in state:
      cycle = visit(u)
      if cycle:
        return cycle
  return None


def test_graph_sees_the_package():
  graph = import_graph()
  assert "jax_local.splits" in graph["jax_local.config_validation"]
  assert "jax_local.models.backbone" in graph["jax_local.plan"]
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle():
  cycle = find_cycle(import_graph())
  assert cycle is None, "import cycle: " + " -> ".join(cycle)
