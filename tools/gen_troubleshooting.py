"""Generate docs/troubleshooting.md from the classifier's own rule table.

    python tools/gen_troubleshooting.py           # (re)write docs/troubleshooting.md
    python tools/gen_troubleshooting.py --check   # exit 1 if the committed page is not current

The table comes from ``troubleshooting_rows()`` in plugins/module_utils/_errors.py, the same
``RULES`` the modules use to classify failures, so the page cannot drift from the code.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "docs", "troubleshooting.md")


def _import_errors():
    """Import _errors through the collection path (ansible_collections.mailops.o365)."""
    link_root = os.path.join(ROOT, ".venv", "collections")
    link = os.path.join(link_root, "ansible_collections", "mailops", "o365")
    if not (os.path.isdir(link) and os.path.samefile(link, ROOT)):
        # No development link (make venv makes one): point a private one at this checkout.
        link_root = tempfile.mkdtemp(prefix="gen_troubleshooting_")
        os.makedirs(os.path.join(link_root, "ansible_collections", "mailops"))
        os.symlink(ROOT, os.path.join(link_root, "ansible_collections", "mailops", "o365"))
    if link_root not in sys.path:
        sys.path.insert(0, link_root)
    from ansible_collections.mailops.o365.plugins.module_utils import _errors
    return _errors


# One explanation per error category (keys must be exactly _errors.CATEGORIES).
CATEGORY_TEXT = {
    "config": (
        "Bad input, found before any network call: a malformed tenant or client id, two credentials "
        "at once (`client_secret` and `client_certificate_path`), a missing file, an unwritable token "
        "cache directory. The message starts with the option's name. Remember that options also come "
        "from `O365_*` environment variables (an AWX credential sets them): check those too."
    ),
    "token": (
        "Entra ID refused the token request, or could not be reached. The result carries the `AADSTS` "
        "code; the table below lists the common ones. Most are set-up problems in the app registration "
        "(permissions, consent, secret expiry) or an expired refresh token."
    ),
    "connection": (
        "The TCP connection to the mail server or to Entra ID failed, was reset or closed early. Check "
        "DNS, the firewall (outbound 993, 995, 587 and 443), the proxy, and the host for national clouds."
    ),
    "tls": (
        "The TLS handshake failed: an untrusted certificate (an inspecting proxy: give its CA with "
        "`ca_path`), a host name that does not match, or a protocol mismatch (`security: tls` against a "
        "STARTTLS port or the reverse). Verification is never switched off silently."
    ),
    "timeout": (
        "A network operation took longer than `timeout` seconds. The result's phase timings show where "
        "(connect, TLS, greeting, authentication, command). Raise `timeout` for slow links, lower "
        "fleet concurrency if many checks share one link."
    ),
    "auth": (
        "The mail server refused the token or the mailbox. The token was issued, so the app registration "
        "works; what is wrong is usually the scope or audience, the token's user versus `mailbox`, or, "
        "for app-only tokens, the Exchange service principal and its mailbox permission."
    ),
    "disabled": (
        "The protocol is switched off: SMTP AUTH for the tenant or the mailbox, or IMAP / POP for the "
        "mailbox (`Set-CASMailbox`). Microsoft turns basic SMTP AUTH off by default for existing tenants "
        "at the end of December 2026; OAuth2 SMTP AUTH still needs SMTP AUTH enabled."
    ),
    "throttled": (
        "Exchange Online or Entra ID asked to slow down (HTTP 429, SMTP 4.x.x, too many connections). "
        "Exchange allows 3 concurrent SMTP connections and 30 messages a minute per mailbox. The modules "
        "back off and retry within `timeout`; lower the fleet's per-mailbox concurrency."
    ),
    "protocol": (
        "An unexpected reply: a server that does not offer XOAUTH2, a folder that does not exist, a "
        "recipient's mailbox over quota. The server's own words are kept in `server_reply`."
    ),
}


def escape(cell: str) -> str:
    """Text safe inside a Markdown table cell (no pipes, no HTML, no line breaks)."""
    return (str(cell).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("|", "\\|").replace("\r", " ").replace("\n", " "))


def render(errors) -> str:
    categories = tuple(errors.CATEGORIES)
    if set(CATEGORY_TEXT) != set(categories):
        missing = sorted(set(categories) - set(CATEGORY_TEXT))
        extra = sorted(set(CATEGORY_TEXT) - set(categories))
        raise SystemExit("tools/gen_troubleshooting.py: CATEGORY_TEXT does not match CATEGORIES "
                         "(missing: %s; unknown: %s)" % (missing, extra))
    rows = errors.troubleshooting_rows()
    out = [
        "<!-- Generated by tools/gen_troubleshooting.py from plugins/module_utils/_errors.py (RULES). "
        "Do not edit: change the rules or the generator and run `python tools/gen_troubleshooting.py`. -->",
        "",
        "# Troubleshooting",
        "",
        "Every failure of a mailops.o365 module carries an `error` with a **category**, a **message**, and",
        "where one is known a **hint** (the fix), plus the server's own reply (`server_reply`) or the Entra ID",
        "code (`code`, for example `AADSTS7000215`). In fleet mode each mailbox has its own `error` and the",
        "`summary` counts the categories. For example:",
        "",
        "```yaml",
        "error:",
        "  category: auth",
        "  message: \"IMAP server refused: NO AUTHENTICATE failed.\"",
        "  hint: \"The token was refused: wrong scope or audience, ...\"",
        "  server_reply: \"NO AUTHENTICATE failed.\"",
        "```",
        "",
        "Look the reply or code up in the table, then read the section of its category. The table is the",
        "same rule table the modules use to classify failures, so a reply listed here gets this hint in the",
        "module's result. Server wording changes over time: the rules match codes and stable phrases.",
        "",
        "See the [user guide](user-guide.md) for the set-up steps the fixes refer to.",
        "",
        "## Known replies and codes",
        "",
        "| where | reply or code | category | cause | fix |",
        "|---|---|---|---|---|",
    ]
    for where, seen, category, cause, fix in rows:
        out.append("| %s | `%s` | [%s](#%s) | %s | %s |" % (
            escape(where), str(seen).replace("`", "'").replace("|", "\\|"), category, category,
            escape(cause), escape(fix)))
    out += ["", "## Categories", ""]
    for category in categories:
        count = sum(1 for row in rows if row[2] == category)
        out += ["### %s" % category, "", CATEGORY_TEXT[category], ""]
        if count:
            out += ["Known replies in this category: %d (see the table)." % count, ""]
    out += [
        "## Still stuck",
        "",
        "- Look at the result's `error`, `timings` (milliseconds per phase) and `problems` (what the",
        "  token's claims rule out before connecting).",
        "- Get the token alone with `mailops.o365.o365_token`: it returns the token's `claims` (audience,",
        "  scopes or roles, expiry; never the token itself) and `problems`. If the token is right, the",
        "  problem is on the Exchange side (permissions, protocol switched off), not in Entra ID.",
        "- Entra ID's sign-in logs (Enterprise applications > your app > Sign-in logs, including service",
        "  principal sign-ins) show the reason behind an `AADSTS` code.",
        "",
    ]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if %s is not current" % OUTPUT)
    parser.add_argument("--output", default=OUTPUT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    text = render(_import_errors())
    if args.check:
        try:
            with open(args.output, encoding="utf-8") as handle:
                current = handle.read()
        except FileNotFoundError:
            current = ""
        if current != text:
            sys.stderr.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                                       args.output, "generated"))
            sys.stderr.write("\n%s is not current: run python tools/gen_troubleshooting.py\n" % args.output)
            return 1
        return 0
    with open(args.output, "w", encoding="utf-8") as handle:
        handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
