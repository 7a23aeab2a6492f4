# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""msal's SerializableTokenCache persisted to one file: locked, atomic, mode 0600.

The lock is held for the whole read -> acquire -> write cycle, so parallel forks never lose a
rotated refresh token and only the first of them asks Entra ID: the others wait and then find
the token cached. A corrupt or unreadable file gives a warning and a fresh cache, never a crash.
A cache hit is served from the JSON alone: msal (a large import) is loaded only to ask Entra ID.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import time
from typing import Callable, Iterator, Optional

from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error


@contextlib.contextmanager
def _file_lock(lock_path: str, timeout: float) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise O365Error("timeout", "token_cache_path: waited %.0f s for the lock on %s"
                                    % (timeout, lock_path)) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # closing releases the flock


class PersistentCache:
    """Use as ``with PersistentCache(path, timeout, warn) as store:`` around one acquisition.

    ``store.data`` is the cache file's JSON (msal's documented cache format), enough to serve a
    cached token without importing msal at all; ``store.msal_cache()`` builds msal's
    SerializableTokenCache from it only when Entra ID must be asked.
    """

    def __init__(self, path: str, timeout: float, warn: Optional[Callable[[str], None]] = None) -> None:
        self.path = os.path.abspath(path)
        self.timeout = timeout
        self.warn = warn or (lambda msg: None)
        self.data: dict = {}
        self.changed = False
        self._msal_cache = None
        self._lock = None

    def __enter__(self) -> PersistentCache:
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._lock = _file_lock(self.path + ".lock", self.timeout)
        self._lock.__enter__()
        self._load()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._msal_cache is not None and self._msal_cache.has_state_changed:
                self._save(self._msal_cache.serialize())
            elif self._msal_cache is None and self.changed:
                self._save(json.dumps(self.data))
        finally:
            self._lock.__exit__(exc_type, exc, tb)

    def entries(self, section: str) -> list:
        """The entries of one section ("AccessToken", "Account", ...) as dicts."""
        values = self.data.get(section)
        return [v for v in values.values() if isinstance(v, dict)] if isinstance(values, dict) else []

    def remove(self, section: str, entry: dict) -> None:
        values = self.data.get(section) or {}
        for key in [k for k, v in values.items() if v is entry]:
            del values[key]
            self.changed = True

    def msal_cache(self):
        """msal's SerializableTokenCache over the same data (imports msal: only when needed)."""
        if self._msal_cache is None:
            try:
                import msal
            except ImportError:
                raise O365Error("config", "flow: the msal Python library is not installed on this host; "
                                "run 'pip install msal' (or give access_token)") from None
            self._msal_cache = msal.SerializableTokenCache()
            self._msal_cache.deserialize(json.dumps(self.data))
            self._msal_cache.has_state_changed = self.changed
        return self._msal_cache

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            self.warn("token cache %s is unreadable (%s); starting with an empty cache" % (self.path, exc.strerror))
            return
        if not text.strip():
            return
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            self.warn("token cache %s is corrupt (%s); starting with an empty cache, it will be rewritten"
                      % (self.path, type(exc).__name__))
            self.changed = True
            return
        self.data = data

    def _save(self, text: str) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".token_cache.", dir=os.path.dirname(self.path))
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
