"""Scale-out of playbooks/verify_mail.yml on one machine against the lab (numbers for docs/awx.md).

    LAB_STATE_DIR=... .venv/bin/python bench/scaleout/run.py [--protocols imap] [--only forks,fleet,slices]

Scenarios (every run: a fresh token cache, the lab's counters reset first, mail flow and alert mail off,
JSON reports only, mailbox_reachability_fail_on: never):

* forks:  10 tenants x 100 mailboxes (contoso fleet0001-0100 and tenant01-09 user001-100), one
          inventory host per tenant, ansible-playbook --forks 1, 5, 10 (max_workers 16);
* fleet:  1 tenant (contoso) x 1,000 mailboxes, --forks 1, max_workers 8, 16, 32;
* slices: the 10-tenant inventory split like AWX job slicing (host i of the inventory goes to slice
          i % N), N = 2, each slice one ansible-playbook --limit run with --forks 5, one after the other.

Prints a table and writes bench/scaleout/results.json (machine, versions, every run: wall time, token
requests the mock Entra ID answered, throttled rows, check counts, per-phase median/p95 of the modules'
timings). Must run against a lab nobody else uses at the same time (the counters are global).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.integration import support  # noqa: E402  (honours LAB_STATE_DIR)

PLAYBOOK = ROOT / "playbooks" / "verify_mail.yml"
RESULTS = Path(__file__).resolve().parent / "results.json"
PHASES = ("connect", "tls", "greeting", "auth", "command", "total")


def tenant_host(env: dict, name: str, tenant_id: str, client_id: str, secret_env: str, roles: list,
                mailboxes: list, protocols: list) -> dict:
    endpoint = {"host": env["LAB_HOST"]}
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "mailops_o365_tenant": {
            "name": name, "tenant_id": tenant_id,
            "authority_host": "{{ lookup('ansible.builtin.env', 'O365_AUTHORITY_HOST') }}",
            "ca_path": "{{ lookup('ansible.builtin.env', 'O365_CA_PATH') }}",
            "app": {"client_id": client_id, "auth": "client_secret", "client_secret_env": secret_env, "permissions": roles},
            "endpoints": {"imap": dict(endpoint, port=int(env["LAB_IMAP_PORT"]), security="tls"),
                          "pop": dict(endpoint, port=int(env["LAB_POP_PORT"]), security="tls"),
                          "smtp": dict(endpoint, port=int(env["LAB_SMTP_PORT"]), security="starttls")},
            "mailboxes": [{"address": m, "protocols": protocols} for m in mailboxes],
            "reports": {"formats": ["json"]},
        },
    }


def inventories(env: dict, protocols: list) -> tuple[dict, dict, dict]:
    """(10 tenants x 100, 1 tenant x 1000, secrets env)."""
    with open(env["LAB_IDENTITIES"], encoding="utf-8") as handle:
        identities = json.load(handle)
    main = next(t for t in identities["tenants"] if t.get("main"))
    app = next(a for a in main["apps"] if a["client_id"] == env["O365_CLIENT_ID"])
    prefix = identities.get("fleet_prefix", "fleet")
    fleet = ["%s%04d@%s" % (prefix, i, main["domain"]) for i in range(1, 1001)]
    secrets = {"BENCH_CONTOSO_SECRET": app["secret"]}
    ten = {"contoso": tenant_host(env, "contoso", main["id"], app["client_id"], "BENCH_CONTOSO_SECRET", app["roles"],
                                  fleet[:100], protocols)}
    for tenant in [t for t in identities["tenants"] if not t.get("main")][:9]:
        name = tenant["domain"].split(".")[0]
        tapp = tenant["apps"][0]
        secret_env = "BENCH_%s_SECRET" % name.upper()
        secrets[secret_env] = tapp["secret"]
        boxes = [m["address"] for m in tenant["mailboxes"][:100]]
        assert len(boxes) == 100, name
        ten[name] = tenant_host(env, name, tenant["id"], tapp["client_id"], secret_env, tapp["roles"], boxes, protocols)
    one = {"contoso": tenant_host(env, "contoso", main["id"], app["client_id"], "BENCH_CONTOSO_SECRET", app["roles"],
                                  fleet, protocols)}
    return ten, one, secrets


def percentile(values: list, p: float):
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))], 1)


def run(label: str, inventory: dict, env: dict, secrets: dict, work: Path, forks: int, max_workers: int,
        limit: list | None = None) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    inv = run_dir / "inventory.yml"
    inv.write_text(yaml.safe_dump({"tenants": {"hosts": inventory}}))
    proc_env = {k: v for k, v in os.environ.items() if not k.startswith(("O365_", "ANSIBLE_"))}
    proc_env.update(secrets)
    proc_env.update(O365_AUTHORITY_HOST=env["O365_AUTHORITY_HOST"], O365_CA_PATH=env["O365_CA_PATH"],
                    O365_TOKEN_CACHE_PATH=str(run_dir / "token_cache.json"),
                    ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                    PATH=str(ROOT / ".venv" / "bin") + os.pathsep + os.environ.get("PATH", ""))
    extra = {"verify_mail_reports_dir": str(run_dir / "reports"), "verify_mail_formats": ["json"],
             "mailbox_reachability_fail_on": "never", "mailbox_reachability_mailflow": False,
             "mailbox_reachability_alert": False, "mailbox_reachability_max_workers": max_workers}
    cmd = [str(ROOT / ".venv" / "bin" / "ansible-playbook"), str(PLAYBOOK), "-i", str(inv), "--forks", str(forks),
           "-e", json.dumps(extra)]
    if limit:
        cmd += ["--limit", ",".join(limit)]
    support.lab_call("POST", "/counters/reset", {})
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=proc_env, cwd=str(run_dir), timeout=900, check=False)
    wall = time.monotonic() - started
    counters = support.lab_call("GET", "/counters")
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit("%s: ansible-playbook failed (%d)" % (label, proc.returncode))
    report = json.loads((run_dir / "reports" / "report.json").read_text())
    checks = [c for t in report["tenants"] for c in t["checks"]]
    phases = {}
    for phase in PHASES:
        values = [c["timings"][phase] for c in checks if c.get("timings") and c["timings"].get(phase) is not None]
        phases[phase] = {"median": round(statistics.median(values), 1) if values else None, "p95": percentile(values, 95)}
    result = {
        "label": label, "tenants": len(report["tenants"]), "mailboxes": len({(c["mailbox"]) for c in checks}),
        "checks": len(checks), "forks": forks, "max_workers": max_workers, "limit": limit,
        "wall_s": round(wall, 1), "checks_per_s": round(len(checks) / wall, 1),
        "token_requests": counters.get("token_requests"),
        "idp_requests": sum(counters.get("endpoints", {}).values()),
        "throttled": sum(1 for c in checks if c.get("category") == "throttled"),
        "counts": report["counts"], "timings_ms": phases,
        "load_average_after": [round(x, 1) for x in os.getloadavg()],
    }
    bad = report["counts"]["fail"] + report["counts"]["crit"]
    result["not_ok"] = bad
    print("  %-34s %7.1f s  %6d checks  %5.1f checks/s  %3s token req  %d fail/crit" % (
        label, wall, len(checks), result["checks_per_s"], result["token_requests"], bad), flush=True)
    return result


def machine() -> dict:
    def version(mod):
        try:
            return __import__(mod).__version__
        except Exception:  # pylint: disable=broad-except
            return None
    import ansible.release
    mem = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            mem = round(int(handle.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((ln.split(":", 1)[1].strip() for ln in handle if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": mem, "python": platform.python_version(),
            "ansible_core": ansible.release.__version__, "msal": version("msal"),
            "load_average_at_start": os.getloadavg(), "lab": "same machine (mock Entra ID, Dovecot, Postfix on 127.0.0.1)"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocols", default="imap", help="comma list of imap,pop,smtp (default imap)")
    parser.add_argument("--only", default="forks,fleet,slices")
    parser.add_argument("--forks", default="1,5,10")
    parser.add_argument("--workers", default="8,16,32")
    parser.add_argument("--slices", type=int, default=2)
    args = parser.parse_args()
    protocols = args.protocols.split(",")
    only = set(args.only.split(","))
    env = support.lab_env()
    ten, one, secrets = inventories(env, protocols)
    out = {"machine": machine(), "protocols": protocols, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "runs": []}
    with tempfile.TemporaryDirectory(prefix="mailops-scaleout-") as tmp:
        work = Path(tmp)
        total = time.monotonic()
        if "forks" in only:
            print("10 tenants x 100 mailboxes (%s), forks across tenants" % "+".join(protocols), flush=True)
            for forks in map(int, args.forks.split(",")):
                out["runs"].append(dict(run("10x100 forks=%d" % forks, ten, env, secrets, work, forks, 16),
                                        scenario="forks"))
        if "fleet" in only:
            print("1 tenant x 1,000 mailboxes (%s), fleet mode" % "+".join(protocols), flush=True)
            for workers in map(int, args.workers.split(",")):
                out["runs"].append(dict(run("1x1000 max_workers=%d" % workers, one, env, secrets, work, 1, workers),
                                        scenario="fleet"))
        if "slices" in only:
            n = args.slices
            names = list(ten)
            print("job slicing: %d slices of the 10-tenant inventory, one after the other, forks 5" % n, flush=True)
            slice_runs = []
            for k in range(n):
                hosts = [h for i, h in enumerate(names) if i % n == k]
                slice_runs.append(dict(run("slice %d/%d (%s)" % (k + 1, n, ",".join(hosts)), ten, env, secrets, work,
                                           5, 16, limit=hosts), scenario="slices", slice=k + 1, slice_count=n))
            out["runs"].extend(slice_runs)
            out["slices_summary"] = {"slice_count": n, "per_slice_wall_s": [r["wall_s"] for r in slice_runs],
                                     "sequential_total_s": round(sum(r["wall_s"] for r in slice_runs), 1),
                                     "parallel_estimate_s": max(r["wall_s"] for r in slice_runs)}
        out["bench_wall_s"] = round(time.monotonic() - total, 1)
    out["machine"]["load_average_at_end"] = os.getloadavg()
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print()
    print("| scenario | tenants | mailboxes/tenant | checks | forks | max_workers | wall s | checks/s | token requests |"
          " throttled | median check ms (auth) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in out["runs"]:
        print("| %s | %d | %d | %d | %d | %d | %.1f | %.1f | %s | %d | %s (%s) |" % (
            r["label"], r["tenants"], r["mailboxes"] // max(r["tenants"], 1), r["checks"], r["forks"],
            r["max_workers"], r["wall_s"], r["checks_per_s"], r["token_requests"], r["throttled"],
            r["timings_ms"]["total"]["median"], r["timings_ms"]["auth"]["median"]))
    print("\nwritten %s (bench %.0f s)" % (RESULTS, out["bench_wall_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
