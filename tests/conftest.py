"""Make this checkout importable as ansible_collections.mailops.o365 and load the lab fixtures."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".venv", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "mailops", "o365")
if not os.path.exists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(ROOT, LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

# The lab's fixtures (`lab`, `lab_clean`) for every test that wants them.
pytest_plugins = ["tests.lab.pytest_lab"]


# These restart or stop lab services: run them after everything else that uses the lab.
_DISRUPTIVE = ("test_lab_lifecycle.py", "test_lab_faults.py", "test_faults.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.fspath.basename in _DISRUPTIVE)
