"""docs/user-guide.md tables agree with the code: the cloud table and the env var table."""

from __future__ import annotations

import re
from pathlib import Path

from ansible_collections.mailops.o365.plugins.module_utils._clouds import CLOUDS
from ansible_collections.mailops.o365.plugins.module_utils._options import AUTH_ARGUMENT_SPEC

ROOT = Path(__file__).resolve().parents[3]
GUIDE = (ROOT / "docs" / "user-guide.md").read_text(encoding="utf-8")


def table_rows(first_cell: str) -> list:
    rows = []
    for line in GUIDE.splitlines():
        if line.startswith("| `%s`" % first_cell) or line.startswith("| `%s` " % first_cell):
            rows.append([c.strip().strip("`") for c in line.strip().strip("|").split("|")])
    return rows


def test_cloud_table_is_the_cloud_table():
    for name, cloud in CLOUDS.items():
        rows = table_rows(name)
        assert len(rows) == 1, "docs/user-guide.md: no single row for cloud %s" % name
        cells = rows[0]
        assert re.sub(r" \(.*\)$", "", cells[0]).strip("`") == name
        assert cells[1:] == [cloud.authority_host, cloud.delegated_resource, cloud.app_resource,
                             cloud.imap_host, cloud.smtp_host], "cloud %s drifted from _clouds.py" % name
        assert cloud.imap_host == cloud.pop_host, "the guide shows one IMAP / POP column"


def test_env_table_lists_every_fallback():
    for option, spec in AUTH_ARGUMENT_SPEC.items():
        if spec.get("fallback"):
            env = spec["fallback"][1][0]
            assert "| `%s` | `%s` |" % (option, env) in GUIDE, "user guide: %s -> %s missing" % (option, env)


def test_links_to_the_other_pages():
    for page in ("troubleshooting.md", "awx.md"):
        assert "](%s)" % page in GUIDE
        assert (ROOT / "docs" / page).exists() or page == "awx.md"
