"""The explicit package list of pyproject.toml must name every source folder, or a plain
(non-editable) install silently drops modules that an editable install still finds."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_source_folder_is_a_listed_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setup = project["tool"]["setuptools"]
    listed = set(setup["packages"])
    roots = setup["package-dir"]
    found = set()
    for package, folder in roots.items():
        base = ROOT / folder
        for sub in [base, *[p for p in base.rglob("*") if p.is_dir() and p.name != "__pycache__"]]:
            if any(sub.glob("*.py")) or any(sub.iterdir()) and package == "xhsi_instruments":
                rel = sub.relative_to(base).parts
                found.add(".".join((package, *rel)))
    missing = sorted(found - listed)
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_entry_points_name_existing_modules():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for name, target in project["project"]["entry-points"]["xhsi"].items():
        package, _, module = target.partition(".")
        path = ROOT / "plugins" / package / module.replace(".", "/")
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), (name, target)


@pytest.mark.parametrize("folder", ["framework", "plugins"])
def test_no_pickle_or_module_level_cupy(folder):
    for path in (ROOT / folder).rglob("*.py"):
        text = path.read_text()
        for line in text.splitlines():
            stripped = line.strip()
            assert not stripped.startswith(("import pickle", "from pickle")), path
            assert "allow_pickle=True" not in stripped, path
            if line.startswith(("import cupy", "from cupy")):
                pytest.fail(f"{path}: module-level cupy import; import it lazily through the backend")
