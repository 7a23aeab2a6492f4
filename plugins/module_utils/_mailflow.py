# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mail-flow probe: send a tagged canary over SMTP, poll for it over IMAP, measure, clean up.

Only orchestration lives here: tokens come from ``_token``, sending from ``_send`` (which never
resends once the server may have the message data), IMAP from ``_imap``. The order of work
makes sure a canary is only sent when it can also be found and deleted:

1. validate every option (``ProbeConfig``), before any network call;
2. log in to the recipient over IMAP and look for canaries earlier runs left behind;
3. log in to the sender over SMTP (check mode stops here: both credentials are proven);
4. send exactly one canary, then poll for it with a bounded backoff until ``crit_s`` passes;
5. delete this canary and the stale ones (older than ``crit_s``) in one IMAP session.

Server faults never raise out of ``MailflowProbe.run``: they end as ``status: error`` with the
classified error. Bad options raise ``O365Error("config")``.
"""

from __future__ import annotations

import email.utils
import re
import secrets
import time
from typing import Callable, Iterable, List, NamedTuple, Optional

from ansible_collections.mailops.o365.plugins.module_utils._checks import HOST_RE
from ansible_collections.mailops.o365.plugins.module_utils._claims import iso_time, require_usable
from ansible_collections.mailops.o365.plugins.module_utils._clouds import DEFAULT_PORTS, get_cloud
from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error, config_error
from ansible_collections.mailops.o365.plugins.module_utils._imap import check_imap, imap_delete_uids, imap_fetch_headers, quote, validate_folder
from ansible_collections.mailops.o365.plugins.module_utils._message import parse_address
from ansible_collections.mailops.o365.plugins.module_utils._send import Prepared, SmtpSender
from ansible_collections.mailops.o365.plugins.module_utils._smtp import EHLOHOST_RE
from ansible_collections.mailops.o365.plugins.module_utils._tls import client_context
from ansible_collections.mailops.o365.plugins.module_utils._token import acquire_token
from ansible_collections.mailops.o365.plugins.module_utils.xoauth2 import encode_xoauth2

CANARY_HEADER = "X-Mailops-Canary"
CANARY_PREFIX = "canary-"
SUBJECT_PREFIX = "[mailops canary]"
STATUSES = ("ok", "warn", "crit", "lost", "error")
# Which statuses fail the task, per fail_on. "error" always fails: nothing was measured.
FAIL_ON = {
    "crit": ("crit", "lost", "error"),
    "warn": ("warn", "crit", "lost", "error"),
    "never": ("error",),
}
MAX_THRESHOLD_S = 86400.0
FIRST_POLL_S = 1.0          # most deliveries take seconds; look early, then back off
MAX_POLLS = 10000           # a safety net: the deadline ends the loop long before this
MAX_STALE = 500             # stale canaries handled per run, so one run stays short
POLL_ROUND_TRIPS = 6        # socket waits in one IMAP poll (connect, TLS, greeting, auth, 3 commands)
# Poll failures that more polling cannot cure: stop and report the error.
FATAL_POLL = ("auth", "disabled", "config", "tls")

_CANARY_ID = re.compile(r"canary-(\d{9,11})-[0-9a-f]{6,32}")


# ----------------------------------------------------------------------------- pure logic

def new_canary_id(now: Optional[float] = None) -> str:
    """``canary-<epoch>-<random>``: unique, and it carries its own send time for stale detection."""
    return "%s%d-%s" % (CANARY_PREFIX, int(time.time() if now is None else now), secrets.token_hex(6))


def canary_epoch(text: Optional[str]) -> Optional[int]:
    """The send time embedded in a canary id found in ``text`` (a subject), if any."""
    match = _CANARY_ID.search(text or "")
    return int(match.group(1)) if match else None


def classify_latency(latency_s: Optional[float], warn_s: float, crit_s: float) -> str:
    """ok below warn_s, warn below crit_s, crit at or above it; never arrived (None) is lost."""
    if latency_s is None:
        return "lost"
    if latency_s < warn_s:
        return "ok"
    if latency_s < crit_s:
        return "warn"
    return "crit"


def should_fail(status: str, fail_on: str) -> bool:
    return status in FAIL_ON[fail_on]


def next_interval(previous: float, cap: float) -> float:
    """Doubling backoff, capped at poll_interval_s."""
    return min(previous * 2.0, cap)


def canary_search(canary_id: str) -> str:
    return "HEADER %s %s" % (CANARY_HEADER, quote(canary_id))


def stale_search(sender: str) -> str:
    """Every canary this sender ever sent to the folder (only ours: other probes clean their own)."""
    return "HEADER %s %s FROM %s" % (CANARY_HEADER, quote(CANARY_PREFIX), quote(sender))


def canary_age(headers: dict, now: float) -> Optional[float]:
    """Age from the id in the subject (what we wrote), else from the Date header; None if neither parses."""
    epoch = canary_epoch(headers.get("subject"))
    if epoch is None and headers.get("date"):
        try:
            epoch = email.utils.parsedate_to_datetime(headers["date"]).timestamp()
        except (TypeError, ValueError, IndexError):
            epoch = None
    return None if epoch is None else now - epoch


def pick_stale(fetched: Iterable[dict], crit_s: float, now: float) -> List[int]:
    """UIDs of canaries older than crit_s: their run gave up on them (lost), so they are ours to delete.

    Younger ones may belong to a probe running right now and are left alone; a canary whose age
    cannot be told carries our header and sender, so it is a leftover too.
    """
    uids = []
    for item in fetched:
        age = canary_age(item, now)
        if age is None or age > crit_s:
            uids.append(item["uid"])
    return sorted(uids)[:MAX_STALE]


def canary_spec(sender: str, recipient: str, canary_id: str) -> dict:
    """The message spec for ``_message.build_message``: tagged by header and subject."""
    return {
        "sender": sender,
        "to": [recipient],
        "subject": "%s %s" % (SUBJECT_PREFIX, canary_id),
        "body": "Mail-flow probe canary %s sent by mailops.o365.\n"
                "It is deleted automatically; if you can read it, the probe could not clean up.\n" % canary_id,
        "headers": {CANARY_HEADER: canary_id, "Auto-Submitted": "auto-generated"},
    }


def error_from(result: dict, fallback: str) -> O365Error:
    """An O365Error again from a probe result's ``error`` dict (the IMAP core returns, never raises)."""
    err = result.get("error") or {}
    return O365Error(err.get("category") or "protocol", err.get("message") or fallback, hint=err.get("hint"),
                     server_reply=err.get("server_reply"), code=err.get("code"))


# ----------------------------------------------------------------------------- options

class ProbeConfig(NamedTuple):
    sender: str
    recipient: str
    smtp_host: str
    smtp_port: int
    smtp_security: str
    imap_host: str
    imap_port: int
    imap_security: str
    folder: str
    warn_s: float
    crit_s: float
    poll_interval_s: float
    cleanup: bool
    fail_on: str
    ehlohost: Optional[str] = None

    @classmethod
    def from_params(cls, params: dict, cloud_name: str) -> ProbeConfig:
        """Validate and resolve the module's options (hosts and ports from the cloud table)."""
        cloud = get_cloud(cloud_name)
        smtp_security = params.get("smtp_security") or "starttls"
        imap_security = params.get("imap_security") or "tls"
        config = cls(
            sender=parse_address("sender_mailbox", params.get("sender_mailbox")).addr_spec,
            recipient=parse_address("recipient_mailbox", params.get("recipient_mailbox")).addr_spec,
            smtp_host=params.get("smtp_host") or cloud.smtp_host,
            smtp_port=_given(params.get("smtp_port"), DEFAULT_PORTS[("smtp", smtp_security)]),
            smtp_security=smtp_security,
            imap_host=params.get("imap_host") or cloud.imap_host,
            imap_port=_given(params.get("imap_port"), DEFAULT_PORTS[("imap", imap_security)]),
            imap_security=imap_security,
            folder=validate_folder(params.get("folder") or "INBOX"),
            warn_s=float(params.get("warn_s", 60.0)),
            crit_s=float(params.get("crit_s", 300.0)),
            poll_interval_s=float(params.get("poll_interval_s", 5.0)),
            cleanup=bool(params.get("cleanup", True)),
            fail_on=params.get("fail_on") or "crit",
            ehlohost=params.get("ehlohost"),
        )
        config.validate()
        return config

    def validate(self) -> None:
        if not 0 < self.warn_s <= MAX_THRESHOLD_S:
            raise config_error("warn_s", "must be above 0 and at most %d seconds (got %s)" % (MAX_THRESHOLD_S, self.warn_s))
        if not self.warn_s <= self.crit_s <= MAX_THRESHOLD_S:
            raise config_error("crit_s", "must be at least warn_s (%s) and at most %d seconds (got %s)"
                               % (self.warn_s, MAX_THRESHOLD_S, self.crit_s))
        if not 0 < self.poll_interval_s <= self.crit_s:
            raise config_error("poll_interval_s", "must be above 0 and at most crit_s (got %s)" % self.poll_interval_s)
        if self.fail_on not in FAIL_ON:
            raise config_error("fail_on", "must be one of %s" % ", ".join(FAIL_ON))
        for name in ("smtp_security", "imap_security"):
            if getattr(self, name) not in ("starttls", "tls"):
                raise config_error(name, "must be 'starttls' or 'tls'")
        for name in ("smtp_port", "imap_port"):
            port = getattr(self, name)
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise config_error(name, "must be an integer between 1 and 65535 (got %r)" % (port,))
        for name in ("smtp_host", "imap_host"):
            host = getattr(self, name)
            if not isinstance(host, str) or not HOST_RE.fullmatch(host):
                raise config_error(name, "%r is not a host name or address" % (str(host)[:100],))
        if self.ehlohost is not None and not (isinstance(self.ehlohost, str) and EHLOHOST_RE.match(self.ehlohost)):
            raise config_error("ehlohost", "must be a host name or address literal without spaces")


def _given(value, default):
    """An option's value when set (0 included, so validation can refuse it), else the default."""
    return default if value is None else value


# ----------------------------------------------------------------------------- the probe

def new_result(canary_id: str) -> dict:
    return {"ok": False, "status": "error", "changed": False, "latency_s": None, "canary_id": canary_id,
            "message_id": None, "sent_at": None, "received_at": None, "stale_found": 0, "stale_removed": 0,
            "removed": False, "polls": 0, "timings": {}}


class _Found(NamedTuple):
    uid: int
    uidvalidity: Optional[int]
    at: float           # monotonic
    wall: float


class MailflowProbe:
    """One probe run. ``clock``/``wall``/``sleep`` are injectable for tests."""

    def __init__(self, settings, config: ProbeConfig, warn: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 sleep: Callable[[float], object] = time.sleep) -> None:
        self.settings = settings
        self.config = config
        self.warn = warn
        self.clock, self.wall, self.sleep = clock, wall, sleep
        self.context = client_context(settings.ca_path, settings.validate_certs)
        self.canary_id = new_canary_id(wall())
        self.result = new_result(self.canary_id)
        # Built (and validated) before any network call.
        self.canary = Prepared(None, canary_spec(config.sender, config.recipient, self.canary_id), None)
        self._stale: List[int] = []
        self._uidvalidity: Optional[int] = None
        self._found: Optional[_Found] = None
        self._failed_polls = 0

    # -- public ------------------------------------------------------------------------------

    def run(self, check_mode: bool) -> dict:
        try:
            self._timed("login", self._precheck)
            sender = self._timed("login", self._open_smtp)
            try:
                if check_mode:
                    self.result.update(ok=True, status="ok")
                    return self.result
                sent = self._timed("send", lambda: self._send(sender))
            finally:
                sender.close()
            self._measure(sent, self._timed("poll", lambda: self._poll(sent)))
        except O365Error as err:
            self.result.update(ok=False, status="error", error=err.as_dict())
        if self.config.cleanup and not check_mode:
            self._timed("cleanup", self._cleanup)
        return self.result

    # -- steps -------------------------------------------------------------------------------

    def _precheck(self) -> None:
        """IMAP login to the recipient before anything is sent, and the leftovers of earlier runs."""
        c = self.config
        found = self._imap(check_imap, folder=c.folder, search=stale_search(c.sender))
        if not found.get("ok"):
            raise error_from(found, "IMAP check of %s failed" % c.recipient)
        self._uidvalidity = found.get("uidvalidity")
        candidates = found.get("search_uids") or []
        if candidates:
            fetched = self._imap(imap_fetch_headers, folder=c.folder, uids=candidates[:MAX_STALE])
            if not fetched.get("ok"):
                raise error_from(fetched, "IMAP header fetch from %s failed" % c.recipient)
            self._stale = pick_stale(fetched["headers"], c.crit_s, self.wall())
        self.result["stale_found"] = len(self._stale)

    def _open_smtp(self) -> SmtpSender:
        c = self.config
        sender = SmtpSender(self.settings, c.sender, c.smtp_host, c.smtp_port, c.smtp_security, c.ehlohost,
                            self.warn)
        try:
            sender.open()
        except O365Error:
            sender.close()
            raise
        return sender

    def _send(self, sender: SmtpSender) -> float:
        """Send the one canary; return the monotonic time the server accepted it. Never retried here."""
        sent_wall = self.wall()
        outcome = sender.send_all([self.canary])[0]
        sent_at = self.clock()
        if outcome["delivery"] in ("accepted", "unknown"):
            # "unknown": the connection failed after the data went out, so it may be delivered; it is mail all the same.
            self.result.update(changed=True, message_id=outcome["message_id"])
        if outcome["delivery"] != "accepted":
            err = outcome.get("error") or {}
            raise O365Error(err.get("category") or "protocol", "the canary was not accepted (%s): %s"
                            % (outcome["delivery"], err.get("message") or "no reply"),
                            hint=err.get("hint"), server_reply=err.get("server_reply"))
        self.result["sent_at"] = iso_time(sent_wall)
        return sent_at

    def _poll(self, sent_at: float) -> Optional[_Found]:
        """Search for the canary until found or crit_s after sending; the last poll is at the deadline."""
        c = self.config
        deadline = sent_at + c.crit_s
        hard_stop = deadline + self.settings.timeout
        interval, last_error = min(FIRST_POLL_S, c.poll_interval_s), None
        for _attempt in range(MAX_POLLS):
            self.sleep(max(0.0, min(interval, deadline - self.clock())))
            self.result["polls"] += 1
            found = self._imap(check_imap, timeout=self._poll_timeout(hard_stop), folder=c.folder,
                               search=canary_search(self.canary_id))
            now = self.clock()
            if found.get("ok") and found.get("search_uids"):
                return _Found(found["search_uids"][0], found.get("uidvalidity"), now, self.wall())
            if not found.get("ok"):
                # Transient faults (connection, timeout, throttling) are retried until the deadline.
                self._failed_polls += 1
                last_error = error_from(found, "IMAP poll of %s failed" % c.recipient)
                if last_error.category in FATAL_POLL:
                    raise last_error
            if now >= deadline:
                break
            interval = next_interval(interval, c.poll_interval_s)
        if last_error is not None and self._failed_polls >= self.result["polls"]:
            raise last_error  # not one look into the folder succeeded: "lost" would be a guess
        return None

    def _poll_timeout(self, hard_stop: float) -> float:
        # Shrink the socket timeout near the end so the whole poll phase ends by crit_s + timeout.
        left = (hard_stop - self.clock()) / POLL_ROUND_TRIPS
        return max(0.5, min(self.settings.timeout, left))

    def _measure(self, sent_at: float, found: Optional[_Found]) -> None:
        c = self.config
        latency = None if found is None else round(max(found.at - sent_at, 0.001), 3)
        status = classify_latency(latency, c.warn_s, c.crit_s)
        self.result.update(status=status, ok=status == "ok", latency_s=latency)
        if found is not None:
            self.result["received_at"] = iso_time(found.wall)
            self._found = found

    def _cleanup(self) -> None:
        """Delete this canary and the stale ones in one session; a failure here is only a warning."""
        found = self._found
        uids = list(self._stale) + ([found.uid] if found else [])
        if not uids:
            return
        uidvalidity = found.uidvalidity if found else self._uidvalidity
        done = self._imap(imap_delete_uids, folder=self.config.folder, uids=sorted(set(uids)), uidvalidity=uidvalidity)
        if not done.get("ok"):
            self.warn("the canaries could not be deleted from %s: %s"
                      % (self.config.recipient, (done.get("error") or {}).get("message")))
            return
        self.result["stale_removed"] = len(self._stale)
        self.result["removed"] = found is not None

    # -- helpers -----------------------------------------------------------------------------

    def _imap(self, call: Callable[..., dict], timeout: Optional[float] = None, **kwargs) -> dict:
        """One IMAP session as the recipient; a token problem comes back as a failed result."""
        c = self.config
        try:
            sasl = imap_sasl(self.settings, c.recipient, self.warn)
        except O365Error as err:
            return {"ok": False, "error": err.as_dict()}
        return call(c.imap_host, c.imap_port, c.imap_security, c.recipient, sasl, self.context,
                    timeout or self.settings.timeout, **kwargs)

    def _timed(self, phase: str, step: Callable[[], object]) -> object:
        start = self.clock()
        try:
            return step()
        finally:
            timings = self.result["timings"]
            timings[phase] = round(timings.get(phase, 0.0) + (self.clock() - start) * 1000, 1)


def imap_sasl(settings, mailbox: str, warn: Callable[[str], None]) -> str:
    """XOAUTH2 for IMAP as ``mailbox``: token from the shared core (cached), claims checked first."""
    token = acquire_token(settings, ["imap"], username=mailbox, warn=warn)
    require_usable(token.access_token, "imap", get_cloud(settings.cloud), settings.tenant_id)
    return encode_xoauth2(mailbox, token.access_token)
