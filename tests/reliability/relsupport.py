"""What the reliability suite shares: the lab (from its env file, never hard-coded ports), closed
ports, module runs with a measured wall time, and small scripted servers for faults the lab lacks."""
from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

from tests.integration import support

ROOT = support.ROOT
COLLECTIONS = support.COLLECTIONS


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def idp_requests() -> int:
    return support.token_requests()


def run_module(name: str, args: dict, env: dict | None = None, timeout: float = 120,
               check_mode: bool = False) -> tuple[int, dict, float]:
    """support.run_module, plus the wall time in seconds."""
    start = time.monotonic()
    rc, out = support.run_module(name, args, check_mode=check_mode, env=env, timeout=timeout)
    return rc, out, time.monotonic() - start


def run_module_measured(name: str, args: dict, env: dict, timeout: float = 300) -> tuple[int, dict, float, int]:
    """Run a module in its own process; return rc, JSON, seconds and the process's peak RSS in KiB."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=False)}, handle)
    out_path = handle.name + ".out"
    # A wrapper process reads the peak RSS of exactly one child: no interference from other tests' children.
    wrapper = ("import resource, subprocess, sys\n"
               "with open(sys.argv[2], 'w') as out:\n"
               "    rc = subprocess.call([sys.executable, '-m', 'ansible_collections.mailops.o365.plugins.modules.' + sys.argv[1],"
               " sys.argv[3]], stdout=out)\n"
               "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-c", wrapper, name, out_path, handle.name], capture_output=True,
                              text=True, timeout=timeout, env=env, check=False)
        seconds = time.monotonic() - start
        rc, rss = (int(v) for v in proc.stdout.split())
        with open(out_path, encoding="utf-8") as result:
            return rc, json.load(result), seconds, rss
    finally:
        for path in (handle.name, out_path):
            if os.path.exists(path):
                os.unlink(path)


def self_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
