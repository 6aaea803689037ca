"""core/ never pulls in textual: the engine must run where no console is drawn."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import rollgate.core


def test_importing_every_core_module_leaves_textual_unloaded() -> None:
    modules = [m.name for m in pkgutil.walk_packages(rollgate.core.__path__, "rollgate.core.")]
    assert "rollgate.core.plan" in modules and "rollgate.core.inventory" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""
