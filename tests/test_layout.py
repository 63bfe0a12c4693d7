"""The layout the code promises (docs/architecture.md): the core imports none of the sweeps,
studies, TPU or CPU parts except through the one seam, nothing edits sys.path, modules stay
readable, and the project speaks of itself as it is now."""
import ast
import os
import re

from conftest import ROOT

PARTS = ("research.cpu", "research.sweeps", "research.studies", "research.tpu")


def _modules(folder):
  for base, _, files in os.walk(os.path.join(ROOT, folder)):
    for name in files:
      if name.endswith(".py"):
        yield os.path.join(base, name)


def _imports(path):
  """(module imported, name of the enclosing function or '') for every import in `path`."""
  tree = ast.parse(open(path).read())
  out = []

  def visit(node, where):
    for child in ast.iter_child_nodes(node):
      inner = child.name if isinstance(child, (ast.FunctionDef, ast.ClassDef)) else where
      if isinstance(child, ast.Import):
        out.extend((a.name, where) for a in child.names)
      elif isinstance(child, ast.ImportFrom) and child.module:
        out.extend((f"{child.module}.{a.name}", where) for a in child.names)
      visit(child, inner)

  visit(tree, "")
  return out


def test_the_core_reaches_the_other_parts_only_through_the_seam():
  core = [os.path.join(ROOT, "research", n) for n in os.listdir(os.path.join(ROOT, "research"))
          if n.endswith(".py")]
  assert len(core) >= 10
  crossings = []
  for path in core:
    for module, where in _imports(path):
      if module.startswith(PARTS):
        crossings.append((os.path.basename(path), module, where))
  # research.main may not import them either; the only arrow is models.conv_block -> research.cpu
  assert crossings == [("models.py", "research.cpu", "conv_block")], crossings


def test_nothing_edits_sys_path():
  for folder in ("research", "configs", "scripts"):
    for path in _modules(folder):
      assert "sys.path.insert" not in open(path).read(), path


def test_modules_stay_readable():
  for folder in ("research", "configs", "scripts"):
    for path in _modules(folder):
      lines = sum(1 for _ in open(path))
      assert lines <= 400, f"{path}: {lines} lines"


def test_the_project_speaks_of_itself_as_it_is_now():
  words = re.compile(r"issue [0-9]|issue #|this box|this session|earlier session|an earlier run",
                     re.I)
  paths = [os.path.join(ROOT, "README.md")]
  for folder in ("docs", "research", "configs", "scripts"):
    for base, _, files in os.walk(os.path.join(ROOT, folder)):
      paths += [os.path.join(base, n) for n in files
                if n.endswith((".py", ".md", ".sh", ".cc", ".h"))]
  found = [(p, l.strip()) for p in paths for l in open(p, errors="replace") if words.search(l)]
  assert found == []
