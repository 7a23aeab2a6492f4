"""Token cache file: 0600, atomic, locked, and a corrupt file never crashes."""
import json
import multiprocessing
import os
import stat
import time

import pytest

from ansible_collections.mailops.o365.plugins.module_utils._cache import PersistentCache, _file_lock
from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error


def _add_entry(store, key):
    # Shape of an msal AppMetadata entry, written through msal: enough to prove what was written survives.
    store.msal_cache().modify("AppMetadata", {"client_id": key, "environment": "example.test"},
                              {"client_id": key, "environment": "example.test"})


def test_written_with_mode_0600_in_a_0700_directory(tmp_path):
    path = tmp_path / "sub" / "cache.json"
    with PersistentCache(str(path), 5) as cache:
        _add_entry(cache, "one")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert "one" in json.dumps(json.loads(path.read_text()))


def test_unchanged_cache_is_not_rewritten(tmp_path):
    path = tmp_path / "cache.json"
    with PersistentCache(str(path), 5):
        pass
    assert not path.exists()


def test_a_cache_hit_needs_no_msal(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "cache.json"
    path.write_text(json.dumps({"AccessToken": {"k": {"secret": "s", "client_id": "c"}}}))
    code = ("import sys; from ansible_collections.mailops.o365.plugins.module_utils._cache import PersistentCache\n"
            "with PersistentCache(%r, 5) as store: entries = store.entries('AccessToken')\n"
            "assert entries[0]['client_id'] == 'c'\n"
            "print(any(m == 'msal' or m.startswith('msal.') for m in sys.modules))" % str(path))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"


def test_removed_entries_are_written_back(tmp_path):
    path = tmp_path / "cache.json"
    path.write_text(json.dumps({"AccessToken": {"a": {"secret": "s1"}, "b": {"secret": "s2"}}}))
    with PersistentCache(str(path), 5) as store:
        store.remove("AccessToken", store.entries("AccessToken")[0])
    assert len(json.loads(path.read_text())["AccessToken"]) == 1


@pytest.mark.parametrize("content", ["{truncated", "[1, 2]", "\x00\x01garbage"])
def test_corrupt_cache_warns_and_starts_fresh(tmp_path, content):
    path = tmp_path / "cache.json"
    path.write_text(content)
    warnings = []
    with PersistentCache(str(path), 5, warnings.append) as cache:
        _add_entry(cache, "fresh")
    assert warnings and "corrupt" in warnings[0]
    assert isinstance(json.loads(path.read_text()), dict)


def test_lock_times_out_with_a_classified_error(tmp_path):
    lock = str(tmp_path / "x.lock")
    with _file_lock(lock, 5):
        child = multiprocessing.get_context("fork").Process(target=_try_lock, args=(lock,))
        child.start()
        child.join(10)
    assert child.exitcode == 42


def _try_lock(lock):
    start = time.monotonic()
    try:
        with _file_lock(lock, 0.3):
            os._exit(1)
    except O365Error as err:
        ok = err.category == "timeout" and "token_cache_path" in err.message and time.monotonic() - start < 2
        os._exit(42 if ok else 2)


def _writer(path, key):
    with PersistentCache(path, 30) as cache:
        time.sleep(0.01)
        _add_entry(cache, key)


def test_parallel_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "cache.json")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, "client-%d" % i)) for i in range(10)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    data = json.loads(open(path).read())
    assert {v["client_id"] for v in data["AppMetadata"].values()} == {"client-%d" % i for i in range(10)}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
