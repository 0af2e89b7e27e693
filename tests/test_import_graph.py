"""The architecture is one-way: no import cycle between modules or between packages, and drivers/
never imports the spooler (tests/import_graph.py, run as `python -m import_graph`); and the README's
"How a job travels" names modules that exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from import_graph import between_packages, cycles, forbidden, import_graph

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def check(*arguments: str, root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "import_graph", "--root", str(root), *arguments],
                          cwd=TESTS, capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.mark.parametrize("mode", [[], ["--between-packages"]], ids=["modules", "packages"])
def test_the_project_has_no_import_cycle(mode: list[str]) -> None:
    checked = check("spooler", "drivers", "--forbid", "drivers:spooler", *mode)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert " 0 cycle(s), 0 forbidden" in checked.stdout


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_cycle_through_a_deferred_import_is_found_and_fails_the_check(tmp_path: Path) -> None:
    root = write(tmp_path, {
        "app/__init__.py": "",
        "app/a.py": "from app.b import thing\n",
        "app/b.py": "def later():\n    from app import c\n",
        "app/c.py": "import app.a\n",
        "app/d.py": "from .a import thing  # relative\n",
        "app/e.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.f import F\nelse:\n    import app.a\n",
        "app/f.py": "import app.e\n",
    })  # fmt: skip
    graph = import_graph(root, ["app"])
    assert graph["app.b"] == {"app.c"} and graph["app.d"] == {"app.a"}
    assert graph["app.e"] == {"app.a"}  # a type-only import does not run: no cycle with app.f
    assert cycles(graph) == [["app.a", "app.b", "app.c", "app.a"]]
    checked = check("app", root=root)
    assert checked.returncode == 1 and "cycle: app.a -> app.b -> app.c -> app.a" in checked.stdout


def test_packages_that_import_each_other_are_a_cycle_between_packages(tmp_path: Path) -> None:
    root = write(tmp_path, {
        "app/__init__.py": "", "app/config.py": "",
        "app/store/__init__.py": "", "app/store/db.py": "from app.records.maker import Maker\n",
        "app/records/__init__.py": "", "app/records/maker.py": "from app.store.other import x\nimport app.config\n",
        "app/store/other.py": "",
    })  # fmt: skip
    graph = import_graph(root, ["app"])
    assert cycles(graph) == []  # module by module it is one-way ...
    packages = between_packages(graph, ["app"])
    assert packages["app.records"] == {"app.store", "app.config"}
    assert cycles(packages) == [["app.records", "app.store", "app.records"]]  # ... package by package it is not
    assert check("app", "--between-packages", root=root).returncode == 1


def test_a_forbidden_direction_is_reported(tmp_path: Path) -> None:
    root = write(tmp_path, {"lib/__init__.py": "", "lib/x.py": "from app.y import z\n",
                            "app/__init__.py": "", "app/y.py": "import lib.x\n"})  # fmt: skip
    graph = import_graph(root, ["lib", "app"])
    assert forbidden(graph, [("lib", "app")]) == [("lib.x", "app.y")]
    checked = check("lib", "app", "--forbid", "lib:app", root=root)
    assert checked.returncode == 1 and "forbidden: lib.x imports app.y" in checked.stdout


def test_the_readme_names_the_real_modules_on_a_jobs_path() -> None:
    text = (ROOT / "README.md").read_text()
    path = text.split("## How a job travels", 1)[1].split("```", 2)[1]  # the diagram
    files = {str(p.relative_to(ROOT)) for p in ROOT.glob("spooler/**/*.py")} | {
        str(p.relative_to(ROOT)) for p in ROOT.glob("drivers/**/*.py")}  # fmt: skip
    named = set(re.findall(r"[\w/]+\.py\b", path))
    assert len(named) >= 20, named
    for name in sorted(named):
        assert any(f == f"spooler/{name}" or f.endswith("/" + name) for f in files), f"{name} is not a module"
    for folder in sorted(set(re.findall(r"(?<![\w/.])(\w+)/(?![\w])", path))):
        assert (ROOT / "spooler" / folder).is_dir() or (ROOT / folder).is_dir(), f"{folder}/ is not a package"
