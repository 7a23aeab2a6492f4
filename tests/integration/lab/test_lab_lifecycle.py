"""labctl lifecycle: up/down twice leaves nothing behind; up is idempotent.

Stops and restarts the whole lab: run this file on its own (before or after the
rest) or last; it always leaves the lab running.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[3]
LABCTL = REPO / "tests" / "lab" / "labctl.py"
sys.path.insert(0, str(REPO / "tests" / "lab"))
import labctl  # noqa: E402


def run(*args, timeout=60):
    r = subprocess.run([sys.executable, str(LABCTL), *args], cwd=str(REPO),
                       capture_output=True, text=True, timeout=timeout, check=False)
    return r.returncode, r.stdout + r.stderr


def all_ports():
    p = labctl.ports()
    return [p[k] for keys in labctl.SERVICE_PORTS.values() for k in keys]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def assert_down():
    lab = labctl.state_dir()
    assert labctl.lab_processes(lab) == []
    assert not any(port_open(p) for p in all_ports())
    for tool in (["pgrep", "-f", str(lab)], ["pgrep", "-f", "dovecot-" + labctl.instance_name(lab) + "/"]):
        r = subprocess.run(tool, capture_output=True, text=True, check=False)
        assert r.stdout.strip() == "", (tool, r.stdout)


def assert_up():
    assert all(port_open(p) for p in all_ports())
    rc, out = run("status")
    assert rc == 0, out


def test_up_down_twice_leaves_nothing():
    try:
        for _unused in range(2):
            rc, out = run("down")
            assert rc == 0, out
            assert_down()
            t = time.monotonic()
            rc, out = run("up")
            assert rc == 0, out
            assert time.monotonic() - t < 15, "up should take ~5 s"
            assert_up()
        # idempotent
        rc, out = run("up")
        assert rc == 0 and "already running" in out
        env = labctl.state_dir() / "env"
        text = env.read_text()
        for key in ("O365_AUTHORITY_HOST", "O365_CA_PATH", "O365_TENANT_ID", "O365_CLIENT_ID",
                    "O365_CLIENT_SECRET", "LAB_CERT_CLIENT_ID", "LAB_CERT_PATH",
                    "LAB_CERT_PATH_ENCRYPTED", "LAB_CERT_PASSWORD", "LAB_PUBLIC_CLIENT_ID",
                    "LAB_IMAP_PORT", "LAB_SMTP_PORT", "LAB_MINT_URL", "LAB_STATE_DIR"):
            assert f"\n{key}=" in "\n" + text, key
        # shell-sourceable
        r = subprocess.run(["bash", "-c", f"set -e; . {env}; echo $LAB_MAILBOX"],
                           capture_output=True, text=True, timeout=10, check=False)
        assert r.stdout.strip() == "adele@contoso.test"
    finally:
        run("up")
    assert_up()


def test_service_knob_down_then_up():
    try:
        rc, _unused = run("stop-dovecot")
        assert rc == 0
        assert not port_open(labctl.ports()["LAB_IMAP_PORT"])
        rc, out = run("status")
        assert rc == 1 and "dovecot  stopped" in out
    finally:
        run("start-dovecot")
    assert_up()
