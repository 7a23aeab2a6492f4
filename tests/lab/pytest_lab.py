"""pytest plugin for the local M365 lab.

Register from the root conftest:   pytest_plugins = ["tests.lab.pytest_lab"]
(or `-p tests.lab.pytest_lab`). Provides the session fixture `lab`
(a tests.lab.labclient.Lab). If the lab is not up the fixture FAILS (it never
skips) with "run make lab-up".
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from labclient import Lab, LabNotRunning  # noqa: E402


@pytest.fixture(scope="session")
def lab():
    try:
        lab = Lab.load(_HERE.parent.parent)
    except LabNotRunning as e:
        pytest.fail(f"the local M365 lab is not running: run make lab-up ({e})", pytrace=False)
    yield lab
    try:
        lab.clear_faults()
    except Exception:  # noqa: BLE001
        pass


@pytest.fixture
def lab_clean(lab):
    """The lab with faults cleared and counters reset before and after the test."""
    lab.clear_faults()
    lab.reset_counters()
    yield lab
    lab.clear_faults()
