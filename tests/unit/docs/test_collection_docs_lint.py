"""antsibull-docs lint-collection-docs reports nothing for this collection (plugin docs included)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
COLLECTIONS = ROOT / ".venv" / "collections"

pytestmark = pytest.mark.slow


def antsibull_docs() -> str:
    candidate = BIN / "antsibull-docs"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("antsibull-docs")
    if not found:
        pytest.fail("antsibull-docs is not installed: pip install antsibull-docs (add it to requirements-dev.txt)")
    return found


def test_lint_collection_docs():
    link = COLLECTIONS / "ansible_collections" / "mailops" / "o365"
    assert link.exists(), "the collection link %s is missing (tests/conftest.py or make venv creates it)" % link
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
               PATH="%s%s%s" % (BIN, os.pathsep, os.environ.get("PATH", "")))
    env.pop("ANSIBLE_CONFIG", None)
    proc = subprocess.run([antsibull_docs(), "lint-collection-docs", "--plugin-docs", "."], cwd=str(link),
                          env=env, capture_output=True, text=True, timeout=280, check=False)
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0 and not output, "antsibull-docs lint-collection-docs:\n" + output
