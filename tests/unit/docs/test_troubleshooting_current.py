"""docs/troubleshooting.md is generated from _errors.RULES and must be current."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.mailops.o365.plugins.module_utils._errors import CATEGORIES, RULES, troubleshooting_rows

ROOT = Path(__file__).resolve().parents[3]
GENERATOR = ROOT / "tools" / "gen_troubleshooting.py"
PAGE = ROOT / "docs" / "troubleshooting.md"


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("gen_troubleshooting", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def test_page_is_what_the_generator_writes_now(gen, page):
    expected = gen.render(gen._import_errors())
    assert page == expected, "docs/troubleshooting.md is stale: run python tools/gen_troubleshooting.py"


def test_check_mode(tmp_path):
    ok = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    stale = tmp_path / "troubleshooting.md"
    stale.write_text("# old\n")
    bad = subprocess.run([sys.executable, str(GENERATOR), "--check", "--output", str(stale)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 1
    assert "not current" in bad.stderr


def test_every_rule_is_on_the_page(gen, page):
    rows = troubleshooting_rows()
    assert len(rows) == len(RULES)
    table = [line for line in page.splitlines() if line.startswith("| ")][1:]
    assert len(table) == len(RULES), "one table row per rule"
    for rule, (_where, _seen, category, cause, fix) in zip(RULES, rows):
        if rule.source == "entra":
            assert "`AADSTS%s`" % rule.pattern in page
        else:
            assert rule.example.replace("|", "\\|") in page
        line = next(row for row in table if gen.escape(cause) in row and gen.escape(fix) in row)
        assert "[%s](#%s)" % (category, category) in line


def test_every_category_has_a_section(page):
    for category in CATEGORIES:
        assert "\n### %s\n" % category in page


def test_no_raw_html_from_placeholders(page):
    """Placeholders such as <mailbox> are escaped, or a Markdown renderer would drop them as tags."""
    body = page.split("-->", 1)[1]
    assert "<mailbox>" not in body and "&lt;mailbox&gt;" in body
