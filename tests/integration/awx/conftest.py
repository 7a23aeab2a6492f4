"""An AWX job without AWX: the private data directory AWX hands to ansible-runner, built by hand.

What AWX does for a job (awx/main/tasks/jobs.py, RunJob), and what :func:`build_private_data_dir`
reproduces:

* ``project/``: a copy of the project's checkout (here the repository's ``playbooks/``); the job
  runs ``ansible-playbook <playbook relative to project/>`` with ``project/`` as its working directory;
* ``requirements_collections/``: the project sync installs ``collections/requirements.yml`` there
  (``ansible-galaxy collection install -r ... -p <private_data_dir>/requirements_collections``),
  and the job's ``ANSIBLE_COLLECTIONS_PATHS`` starts with it. Here the requirement is the collection
  tarball built from this checkout (``ansible-galaxy collection build``), so the job sees what
  ``galaxy.yml``'s ``build_ignore`` lets through, not the working tree;
* ``inventory/hosts``: an executable script printing the inventory as JSON (``_meta.hostvars``);
* ``env/``: the credential's file injectors (private files, mode 0600), ``envvars`` (the credential's
  env injectors plus AWX's own variables), ``extravars`` (``awx_*`` meta variables and the job
  template's extra vars), ``cmdline`` (``--forks``);
* ``artifacts/<ident>/``: written by ansible-runner (job events, stdout, status, rc).

The credential is rendered with the unit tests' copy of AWX's injection
(tests/unit/awx/test_credential_type.py ``inject``), so both test the same rendering.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import yaml

from tests.unit.awx.test_credential_type import CREDENTIAL_TYPE, inject

ROOT = Path(__file__).resolve().parents[3]
BIN = ROOT / ".venv" / "bin"
GALAXY = ROOT / "galaxy.yml"


def credential_type() -> dict:
    with open(CREDENTIAL_TYPE, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def render_credential(inputs: dict, private_data_dir: Path) -> dict:
    """The env AWX injects for a credential of our type (file injectors written into env/)."""
    (private_data_dir / "env").mkdir(parents=True, exist_ok=True)
    return inject(credential_type(), inputs, private_data_dir)


def _clean_env() -> dict:
    """The controller's environment without anything that would steer the job from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "O365_", "LAB_"))}
    env["PATH"] = "%s%s%s" % (BIN, os.pathsep, env.get("PATH", ""))
    return env


def build_collection(out_dir: Path) -> Path:
    """ansible-galaxy collection build of this checkout (what a release or an EE would carry)."""
    with open(GALAXY, encoding="utf-8") as handle:
        galaxy = yaml.safe_load(handle)
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(out_dir), str(ROOT)],
                   check=True, capture_output=True, text=True, env=_clean_env(), cwd=str(out_dir), timeout=120)
    tarball = out_dir / ("%s-%s-%s.tar.gz" % (galaxy["namespace"], galaxy["name"], galaxy["version"]))
    assert tarball.is_file(), tarball
    return tarball


def project_sync(private_data_dir: Path, tarball: Path) -> Path:
    """AWX's project update: install project/collections/requirements.yml into requirements_collections."""
    requirements = private_data_dir / "project" / "collections" / "requirements.yml"
    requirements.parent.mkdir(parents=True, exist_ok=True)
    requirements.write_text(yaml.safe_dump({"collections": [{"name": str(tarball), "type": "file"}]}))
    target = private_data_dir / "requirements_collections"
    proc = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "-r", str(requirements), "-p", str(target)],
                          capture_output=True, text=True, env=_clean_env(), cwd=str(private_data_dir), timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (target / "ansible_collections" / "mailops" / "o365" / "MANIFEST.json").is_file()
    return target


def write_inventory_script(private_data_dir: Path, hosts: dict, group: str = "tenants") -> Path:
    """AWX's inventory/hosts: an executable that prints the inventory (with hostvars) as JSON."""
    data = {"all": {"children": [group]}, group: {"hosts": list(hosts)}, "_meta": {"hostvars": hosts}}
    path = private_data_dir / "inventory" / "hosts"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint(%r)\n" % json.dumps(data))
    path.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IXUSR)
    return path


def build_private_data_dir(private_data_dir: Path, tarball: Path) -> None:
    """project/ with the playbooks, the collection synced into requirements_collections/."""
    for sub in ("project", "inventory", "env"):
        (private_data_dir / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(private_data_dir, 0o700)
    shutil.copytree(ROOT / "playbooks", private_data_dir / "project" / "playbooks",
                    ignore=shutil.ignore_patterns("inventory"))
    project_sync(private_data_dir, tarball)


def awx_env(private_data_dir: Path, job_id: int = 4242) -> dict:
    """The variables AWX itself sets on a job (RunJob.build_env), outside the credential's."""
    collections = [str(private_data_dir / "requirements_collections"), "~/.ansible/collections",
                   "/usr/share/ansible/collections"]
    return {
        "AWX_PRIVATE_DATA_DIR": str(private_data_dir),
        "JOB_ID": str(job_id),
        "INVENTORY_ID": "7",
        "PROJECT_REVISION": "0" * 40,
        "MAX_EVENT_RES": "700000",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
        "ANSIBLE_FORCE_COLOR": "False",
        # Older AWX sets ANSIBLE_COLLECTIONS_PATHS; ansible-core 2.19 reads only the singular name.
        "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join(collections),
        "ANSIBLE_ROLES_PATH": os.pathsep.join([str(private_data_dir / "requirements_roles"), "~/.ansible/roles"]),
        "PATH": "%s%s%s" % (BIN, os.pathsep, os.environ.get("PATH", "")),
    }


def awx_meta_vars(job_id: int = 4242, name: str = "mailops health check") -> dict:
    """Job.awx_meta_vars(): what every AWX job gets as extra vars."""
    meta = {"job_id": job_id, "job_launch_type": "scheduled", "job_template_id": 11, "job_template_name": name,
            "user_id": 1, "user_name": "admin", "project_revision": "0" * 40, "project_scm_branch": "main",
            "execution_node": "awx-ee-node-1", "inventory_id": 7, "inventory_name": "mailops tenants"}
    out = {}
    for key, value in meta.items():
        out["awx_" + key] = value
        out["tower_" + key] = value
    return out


@contextlib.contextmanager
def scrubbed_environ():
    """ansible-runner (without a container) starts from os.environ: run with the controller's own
    ANSIBLE_*/O365_*/LAB_* variables removed, as a clean execution environment would be."""
    saved = dict(os.environ)
    try:
        for key in list(os.environ):
            if key.startswith(("ANSIBLE_", "O365_", "LAB_")):
                del os.environ[key]
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def walk_files(top: Path):
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            yield Path(dirpath) / name
