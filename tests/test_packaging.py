"""The wheel ships what the service reads at run time: templates/ and migrations/ (kept
at the top of the repository) inside the package, and the static files. The full
install-and-send check is `.ci/wheel-smoke`."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_the_wheel_ships_templates_migrations_and_static_files(tmp_path):
    """Every template, migration and static file of the checkout is in the wheel, at
    the place `mailprefs.config` looks for it when there is no checkout."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("mailprefs-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for folder, inside in (
        ("templates", "mailprefs/templates"),
        ("migrations", "mailprefs/migrations"),
    ):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                expected.add(f"{inside}/{path.relative_to(ROOT / folder).as_posix()}")
    for path in (ROOT / "mailprefs" / "static").rglob("*"):
        if path.is_file():
            expected.add(path.relative_to(ROOT).as_posix())
    assert expected and expected <= shipped, sorted(expected - shipped)
    assert not any(name.startswith(("tests/", "bench/")) for name in shipped)
