"""Lab integration tests: the `lab` fixture comes from tests/lab/pytest_lab.py."""
from tests.lab.pytest_lab import lab, lab_clean  # noqa: F401 (fixtures)  # pylint: disable=unused-import
