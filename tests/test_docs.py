"""Docs that describe code are checked against it, so they cannot rot:

* the Python blocks of docs/api.md and docs/scenes.md run, in order, in one namespace, and
  so do those of docs/plugins.md's "Testing your plugin", whose ``test_`` functions are
  then called;
* every dotted name ``xhsi.a.b`` / ``xhsi_builtin.a`` and every ``from xhsi... import ...``
  in docs/*.md and README.md exists, and every repository path they name
  (``framework/xhsi/...py``, ``configs/...``, ...) is there;
* ``xhsi.get("kind", "name")`` in the docs names a registered plugin;
* docs/spectral_models.md's table of built-in models lists every built-in model, with the
  parameters, bounds and defaults the code declares;
* docs/api.md's table of exports is each package's ``__all__``.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

import xhsi

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
#: Pages (and, for pages with illustrative snippets elsewhere, the one section) whose every
#: ```python block runs as written.
RUNNABLE = [("api.md", None), ("scenes.md", None), ("plugins.md", "## Testing your plugin")]


def python_blocks(path: Path, section: str | None = None) -> list[tuple[int, str]]:
    """(line number, source) of each ```python block of a Markdown file, or of its section
    that starts at the heading ``section`` and ends at the next heading of that level."""
    blocks, lines, start, current = [], path.read_text().splitlines(), None, []
    inside = section is None
    level = section.split(" ", 1)[0] + " " if section else ""
    for number, line in enumerate(lines, 1):
        if section is not None and start is None:
            if line.strip() == section:
                inside = True
                continue
            if inside and line.startswith(level):
                inside = False
        if not inside:
            continue
        if start is None and line.strip() == "```python":
            start, current = number + 1, []
        elif start is not None and line.strip() == "```":
            blocks.append((start, "\n".join(current) + "\n"))
            start = None
        elif start is not None:
            current.append(line)
    assert start is None, f"{path.name}: a ```python block opened at line {start} is never closed"
    return blocks


@pytest.mark.parametrize("page, section", RUNNABLE, ids=[p for p, _ in RUNNABLE])
def test_python_blocks_run_in_order(page, section, monkeypatch, capsys):
    path = ROOT / "docs" / page
    blocks = python_blocks(path, section)
    assert blocks, f"{page} {section or ''} has no ```python block"
    monkeypatch.chdir(ROOT)  # paths in the docs are relative to the repository
    namespace: dict = {"__name__": f"docs_{page.replace('.', '_')}"}
    for line, source in blocks:
        code = compile("\n" * (line - 1) + source, str(path), "exec")  # tracebacks point into the page
        exec(code, namespace)
    if section is not None:  # an example test file: run its tests as pytest would
        tests = [f for name, f in namespace.items() if name.startswith("test_") and callable(f)]
        assert tests, f"{page} {section}: the example defines no test_ function"
        for test in tests:
            test()


def test_the_block_extractor_sees_blocks(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n```python\nx = 1\n```\n```toml\na = 1\n```\n## B\n```python\ny = x + 1\n```\n"
                    "### B.1\n```python\nz = 2\n```\n## C\n```python\nw = 3\n```\n")
    assert python_blocks(page) == [(3, "x = 1\n"), (10, "y = x + 1\n"), (14, "z = 2\n"), (18, "w = 3\n")]
    assert python_blocks(page, "## B") == [(10, "y = x + 1\n"), (14, "z = 2\n")]


# -- names and paths -----------------------------------------------------------------------
DOTTED = re.compile(r"(?<![\w/.])(xhsi(?:_builtin)?(?:\.[A-Za-z_]\w*)+)")
FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+(xhsi[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[\w, \t]+)", re.MULTILINE)
PATH = re.compile(r"(?<![\w/.-])((?:framework|plugins|tests|configs|instruments|bench|docs)/[\w./-]*\w)")


def resolves(dotted: str) -> bool:
    """``dotted`` is an importable module, or attributes of the longest importable prefix; a
    module's attribute must be public: in its ``__all__`` when it has one (a name a module
    merely imports, like ``xhsi.simulate.ModelGrid``, is not where the docs should send you)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        module = ".".join(parts[:i])
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            obj = importlib.import_module(module)
            if i < len(parts) and parts[i] not in getattr(obj, "__all__", [parts[i]]):
                return False
            for attr in parts[i:]:
                if not hasattr(obj, attr):
                    return False
                obj = getattr(obj, attr)
            return True
    return False


def stale_references(text: str) -> list[str]:
    stale = sorted({name for name in DOTTED.findall(text) if not resolves(name)})
    for module, names in FROM_IMPORT.findall(text):
        for name in (n.strip() for n in names.strip("()").replace("\n", ",").split(",")):
            if name and not resolves(f"{module}.{name}"):
                stale.append(f"from {module} import {name}")
    for path in sorted(set(PATH.findall(text))):
        # `instruments/loading.py` in a page about the core is framework/xhsi/instruments/...
        if not ((ROOT / path).exists() or (ROOT / "framework" / "xhsi" / path).exists()):
            stale.append(path)
    return stale


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_names_and_paths_in_the_docs_exist(path):
    stale = stale_references(path.read_text())
    assert not stale, f"{path.relative_to(ROOT)} names what does not exist (renamed or moved?): {stale}"


def test_the_reference_check_sees_stale_names():
    text = ("`xhsi.spectral.models.SpectralModel`, `xhsi.simulate.ModelGrid` (imported there, not its own), "
            "`xhsi.spectra.thermal`, `framework/xhsi/spectral/models.py`, `framework/xhsi/spectra.py`, "
            "`instruments/loading.py`, `xhsi_builtin.spectral_models`\n"
            "from xhsi.grid import ModelGrid, NoSuchThing\nfrom xhsi.simulate import ModelGrid, simulate_counts\n")
    assert stale_references(text) == ["xhsi.simulate.ModelGrid", "xhsi.spectra.thermal",
                                      "from xhsi.grid import NoSuchThing", "from xhsi.simulate import ModelGrid",
                                      "framework/xhsi/spectra.py"]


GET = re.compile(r"""xhsi\.get\(\s*["'](\w+)["']\s*,\s*["'](\w+)["']""")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_registered_names_in_the_docs_exist(path):
    missing = [(kind, name) for kind, name in GET.findall(path.read_text())
               if kind not in xhsi.KINDS or name not in xhsi.available(kind)]
    assert not missing, f"{path.name} calls xhsi.get on unregistered (kind, name): {missing}"


# -- the spectral-model table ----------------------------------------------------------------
ROW = re.compile(r"^\| `(\w+)` \| (.*?) \|", re.MULTILINE)
PARAM = re.compile(r"`(\w+)`[^`(]*\(([^,()]*), ([−\-]?[\d.e]+)–([−\-]?[\d.e]+), ([−\-]?[\d.e]+)\)")


def _number(text: str) -> float:
    return float(text.replace("−", "-"))


def test_spectral_model_table_matches_the_code():
    text = (ROOT / "docs" / "spectral_models.md").read_text()
    table = text[text.index("## Built-in models"):]
    rows = dict(ROW.findall(table.split("\n\n", 2)[1]))
    builtin = [n for n in xhsi.available("spectral_model")
               if xhsi.get("spectral_model", n).__module__.startswith("xhsi_builtin")]
    assert set(rows) == set(builtin), f"docs/spectral_models.md lists {sorted(rows)}, the plugin registers {builtin}"
    for name in builtin:
        cls = xhsi.get("spectral_model", name)
        try:
            model = cls()
        except Exception:  # models that need a file (table, surrogate): their row says so
            assert "from the file" in rows[name], f"{name}: parameters come from a file; say so in its row"
            continue
        documented = {p: (_number(lo), _number(hi), _number(default)) for p, _unit, lo, hi, default in
                      PARAM.findall(rows[name])}
        declared = {p.name: (p.bounds[0], p.bounds[1], p.default) for p in model.parameters}
        assert documented == declared, f"{name}: the table says {documented}, the code declares {declared}"


# -- the export table of docs/api.md ---------------------------------------------------------
def test_api_export_table_is_each_package_all():
    text = (ROOT / "docs" / "api.md").read_text()
    table = text[text.index("## What each package exports"):]
    rows = re.findall(r"^\| `(xhsi[\w.]*)` \| (.*) \|$", table, re.MULTILINE)
    assert len(rows) >= 10
    for package, names in rows:
        listed = set(re.findall(r"`(\w+)`", names))
        exported = set(importlib.import_module(package).__all__)
        assert listed == exported, (f"docs/api.md, row {package}: missing {sorted(exported - listed)}, "
                                    f"not exported {sorted(listed - exported)}")


# -- the spectral shapes of docs/scenes.md ---------------------------------------------------
def test_every_spectral_shape_in_scenes_md_documents_its_derivatives():
    """The table of ``xhsi.spectral.spectra`` shapes in docs/scenes.md: each shape there has
    its exact ``*_derivatives`` function in the code, and the page names it."""
    from xhsi.spectral import spectra

    text = (ROOT / "docs" / "scenes.md").read_text()
    section = text[text.index("## Spectral shapes"):]
    shapes = re.findall(r"^\| `(\w+)\(", section, re.MULTILINE)
    assert set(shapes) >= {"powerlaw", "thermal", "absorption"}, shapes
    for shape in shapes:
        assert f"{shape}_derivatives" in spectra.__all__, f"xhsi.spectral.spectra has no {shape}_derivatives"
        assert f"`{shape}_derivatives(" in section, f"docs/scenes.md does not document {shape}_derivatives"
