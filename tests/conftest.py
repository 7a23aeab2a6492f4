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
