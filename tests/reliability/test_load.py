"""Load: one o365_imap_check task over fleet0001..fleet5000 with 5% injected failures (every 20th entry at a
closed port): one result per mailbox, in order, counts add up, the module's peak RSS stays bounded."""
from __future__ import annotations

import pytest

from tests.integration import support
from tests.reliability.relsupport import closed_port, run_module_measured

pytestmark = [pytest.mark.lab, pytest.mark.slow]

SIZE = 5000
RSS_LIMIT_MIB = 512


def test_5000_mailbox_fleet_with_5_percent_failures(tmp_path):
    env = support.lab_env()
    dead = closed_port()
    mailboxes = ["%s%04d@%s" % (env["LAB_FLEET_PREFIX"], i, env["LAB_DOMAIN"]) for i in range(1, SIZE + 1)]
    entries = [{"address": m, "port": dead} if i % 20 == 7 else m for i, m in enumerate(mailboxes)]
    args = {"mailboxes": entries, "host": env["LAB_HOST"], "port": int(env["LAB_IMAP_PORT"]), "timeout": 20,
            "max_workers": 32, "fail_on_error": False}
    module_env = support.module_env({"O365_ACCESS_TOKEN": support.mint("app", env["LAB_MAILBOX"])})
    rc, out, seconds, rss_kib = run_module_measured("o365_imap_check", args, module_env, timeout=280)
    print("5000-mailbox fleet: %.1f s, peak RSS %.1f MiB" % (seconds, rss_kib / 1024.0))
    assert rc == 0, str(out)[:2000]
    results = out["results"]
    assert [r["mailbox"] for r in results] == mailboxes          # one each, in order, none lost
    failed = [i for i, r in enumerate(results) if not r["ok"]]
    unexpected = [(i, results[i]["error"]) for i in failed if i % 20 != 7]
    assert not unexpected, unexpected[:5]
    assert failed == [i for i in range(SIZE) if i % 20 == 7]
    assert all(results[i]["error"]["category"] == "connection" for i in failed)
    summary = out["summary"]
    assert (summary["total"], summary["ok"], summary["failed"]) == (SIZE, SIZE - 250, 250)
    assert summary["by_category"] == {"connection": 250}
    assert rss_kib / 1024.0 < RSS_LIMIT_MIB, "peak RSS %.0f MiB" % (rss_kib / 1024.0)
    assert seconds < 150
