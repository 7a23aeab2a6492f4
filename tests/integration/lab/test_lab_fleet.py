"""Fleet sizing: the lab takes 1,000 XOAUTH2 logins from 16 clients well under 20 s."""
from __future__ import annotations

import concurrent.futures as cf
import time

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(120)]


def test_fleet_env(lab):
    assert int(lab.env["LAB_FLEET_SIZE"]) >= 1000
    fleet = lab.fleet()
    assert len(fleet) == int(lab.env["LAB_FLEET_SIZE"])
    assert fleet[0] == f"{lab.env['LAB_FLEET_PREFIX']}0001@contoso.test"
    t = lab.tenant("tenant09.test")
    assert len(t["mailboxes"]) == 100 and t["apps"][0]["secret"]


def test_1000_imap_logins_16_clients(lab):
    token = lab.mint("app")          # one app-only token is valid on every fleet mailbox
    users = lab.fleet(1000)

    def one(user):
        c = lab.imap_login(user, token)
        c.select("INBOX")
        c.logout()
        return 1

    t = time.monotonic()
    with cf.ThreadPoolExecutor(16) as ex:
        done = sum(ex.map(one, users))
    elapsed = time.monotonic() - t
    assert done == 1000
    assert elapsed < 20, f"1000 logins took {elapsed:.1f}s"
