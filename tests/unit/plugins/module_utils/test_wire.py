"""The shared line wire: bounded reads, deadlines, phase timings, error mapping, no secrets."""

import time

import pytest

from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error
from ansible_collections.mailops.o365.plugins.module_utils._wire import (
    Wire,
    check_common,
    new_result,
    redact,
    secrets_of,
)
from ansible_collections.mailops.o365.plugins.module_utils.xoauth2 import encode_xoauth2
from ansible_collections.mailops.o365.tests.unit.fakes.mailserver import (
    FakeMailServer,
    client_context,
    closed_port,
    untrusting_context,
)

TOKEN = "EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA-secret-token"
SASL = encode_xoauth2("test@contoso.onmicrosoft.com", TOKEN)


def _wire(port, timeout=2.0, context=None):
    return Wire("127.0.0.1", port, timeout, context or client_context(), "IMAP")


def test_readline_strips_crlf_and_accepts_bare_lf():
    with FakeMailServer([("RAW", b"one\r\ntwo\nthree\r\n"), ("HANG", 0.2)]) as srv, _wire(srv.port) as wire:
        wire.connect(implicit_tls=False)
        assert [wire.readline() for _unused in range(3)] == [b"one", b"two", b"three"]


def test_read_exact_reads_a_literal_split_across_packets():
    steps = [("RAW", b"{5}\r\nab"), ("HANG", 0.1), ("RAW", b"cde)\r\n"), ("HANG", 0.2)]
    with FakeMailServer(steps) as srv, _wire(srv.port) as wire:
        wire.connect(implicit_tls=False)
        assert wire.readline() == b"{5}"
        assert wire.read_exact(5) == b"abcde"
        assert wire.readline() == b")"


def test_read_exact_refuses_oversized_literals():
    wire = _wire(1)
    with pytest.raises(O365Error) as info:
        wire.read_exact(10 ** 9)
    assert info.value.category == "protocol"


def test_line_too_long_is_protocol():
    with FakeMailServer([("RAW", b"* OK " + b"x" * 70000), ("HANG", 1)]) as srv, _wire(srv.port) as wire:
        wire.connect(implicit_tls=False)
        with pytest.raises(O365Error) as info:
            wire.readline()
    assert info.value.category == "protocol"
    assert "longer than" in info.value.message


def test_silent_server_times_out_within_the_deadline():
    with FakeMailServer([("HANG", 3)]) as srv, _wire(srv.port, timeout=0.5) as wire:
        wire.connect(implicit_tls=False)
        start = time.monotonic()
        with wire.timed("greeting"), pytest.raises(O365Error) as info:
            wire.readline()
        elapsed = time.monotonic() - start
    assert info.value.category == "timeout"
    assert "greeting" in info.value.message and "0.5 s" in info.value.message
    assert elapsed < 1.0


def test_dribbling_server_cannot_extend_the_line_deadline():
    steps = [step for _unused in range(20) for step in (("RAW", b"x"), ("HANG", 0.1))]
    with FakeMailServer(steps) as srv, _wire(srv.port, timeout=0.5) as wire:
        wire.connect(implicit_tls=False)
        start = time.monotonic()
        with pytest.raises(O365Error) as info:
            wire.readline()
    assert info.value.category == "timeout"
    assert time.monotonic() - start < 1.0


def test_connection_refused():
    port = closed_port()
    with _wire(port) as wire, pytest.raises(O365Error) as info:
        wire.connect(implicit_tls=False)
    assert info.value.category == "connection"
    assert f"127.0.0.1:{port}" in info.value.message and "connect" in info.value.message


def test_server_close_names_the_phase():
    with FakeMailServer([("CLOSE",)]) as srv, _wire(srv.port) as wire:
        wire.connect(implicit_tls=False)
        with wire.timed("auth"), pytest.raises(O365Error) as info:
            wire.readline()
    assert info.value.category == "connection"
    assert "connection closed by server during auth" in info.value.message


def test_implicit_tls_and_untrusted_certificate():
    with (
        FakeMailServer([("S", "* OK hi"), ("HANG", 0.2)], implicit_tls=True) as srv,
        _wire(srv.port) as wire,
    ):
        wire.connect(implicit_tls=True)
        assert wire.readline() == b"* OK hi"
        assert wire.secure
    with (
        FakeMailServer([("S", "* OK hi")], implicit_tls=True) as srv,
        _wire(srv.port, context=untrusting_context()) as wire, pytest.raises(O365Error) as info,
    ):
        wire.connect(implicit_tls=True)
    assert info.value.category == "tls"


def test_tls_to_a_plain_port_hints_at_starttls():
    with (
        FakeMailServer([("S", "* OK plain text"), ("HANG", 1)]) as srv,
        _wire(srv.port) as wire, pytest.raises(O365Error) as info,
    ):
        wire.connect(implicit_tls=True)
    assert info.value.category in ("tls", "connection")


def test_data_queued_before_starttls_is_refused():
    with (
        FakeMailServer([("RAW", b"A1 OK begin TLS\r\n* OK injected\r\n"), ("HANG", 0.5)]) as srv,
        _wire(srv.port) as wire,
    ):
        wire.connect(implicit_tls=False)
        time.sleep(0.1)
        assert wire.readline() == b"A1 OK begin TLS"
        with pytest.raises(O365Error) as info:
            wire.start_tls()
    assert info.value.category == "protocol"


def test_send_line_refuses_crlf_without_echoing():
    with FakeMailServer([("HANG", 0.2)]) as srv, _wire(srv.port) as wire:
        wire.connect(implicit_tls=False)
        with pytest.raises(O365Error) as info:
            wire.send_line(SASL + "\r\nX")
    assert SASL not in str(info.value) and TOKEN not in str(info.value)


def test_timings_are_per_phase_rounded_and_total_frozen():
    with FakeMailServer([("S", "* OK"), ("HANG", 0.2)]) as srv, _wire(srv.port) as wire:
        wire.connect(implicit_tls=False)
        with wire.timed("greeting"):
            wire.readline()
    timings = wire.timings
    assert set(timings) == {"connect", "greeting", "total"}
    assert all(isinstance(v, float) and v >= 0 for v in timings.values())
    assert timings["total"] >= timings["connect"] + timings["greeting"] - 0.2
    assert wire.timings["total"] == timings["total"]  # frozen at close


def test_repr_has_no_secrets():
    wire = _wire(1)
    assert "127.0.0.1:1" in repr(wire) and SASL not in repr(wire)


def test_redact_and_secrets_of():
    secrets = secrets_of(SASL)
    assert SASL in secrets and TOKEN in secrets
    out = redact({"a": [f"x{TOKEN}y", ("z", SASL)], "b": 3}, secrets)
    assert TOKEN not in str(out) and SASL not in str(out)
    assert out["b"] == 3
    assert secrets_of("not base64!") == ["not base64!"]


@pytest.mark.parametrize("kwargs", [
    {"host": ""}, {"host": "a b"}, {"port": 0}, {"port": True}, {"port": "993"}, {"security": "ssl"},
    {"sasl": ""}, {"sasl": "a\r\nb"}, {"context": None}, {"timeout": 0}, {"timeout": True},
])
def test_check_common_rejects_bad_arguments(kwargs):
    args = {"host": "h", "port": 993, "security": "tls", "sasl": SASL, "context": client_context(), "timeout": 5}
    args.update(kwargs)
    with pytest.raises(O365Error) as info:
        check_common(**args)
    assert info.value.category == "config"
    assert SASL not in str(info.value)


def test_new_result_shape():
    assert new_result() == {"ok": False, "authenticated": False, "capabilities": [],
                            "server_greeting": None, "timings": {}}
