"""Packaging: everything is declared in setup.cfg; this file only ships the data.

`templates/` and `migrations/` stay at the top of the repository (the project's layout)
and go into the wheel inside the package, as `mailprefs/templates` and
`mailprefs/migrations`, where `mailprefs.config` finds them when there is no checkout.
An editable install (`pip install -e`) reads them from the checkout instead.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("templates", "migrations")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name in SHIPPED:
            target = Path(self.build_lib) / "mailprefs" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(
                ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )


setup(cmdclass={"build_py": BuildWithData})
