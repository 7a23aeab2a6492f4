"""The example execution environment builds a correct ansible-builder context (no container engine).

``ansible-builder create`` writes the build context (Containerfile/Dockerfile and ``_build/``)
without building an image. The collection tarball is built here first, from this checkout, into a
temporary directory, exactly as execution-environment.yml expects it (``dist/``). Then the built
collection is installed and ``ansible-builder introspect`` reads meta/execution-environment.yml the
way the image build does, so the collection's own dependency declaration is checked as well.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
EE_FILE = ROOT / "execution-environment.yml"

pytestmark = pytest.mark.slow


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if not found:
            pytest.fail("%s is not installed: pip install ansible-builder (it is in requirements-dev.txt)" % name)
        return found
    return str(path)


def run(args, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), PATH="%s:%s" % (BIN, os.environ.get("PATH", "")))
    proc = subprocess.run(args, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, "%s failed (%d):\n%s\n%s" % (
        " ".join(map(str, args)), proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def requirement_names(text: str) -> set:
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(line.split("[")[0].split("<")[0].split(">")[0].split("=")[0].split(";")[0].split("~")[0].strip().lower())
    return names


@pytest.fixture(scope="module")
def galaxy() -> dict:
    with open(ROOT / "galaxy.yml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def built(tmp_path_factory, galaxy):
    """A copy of the example EE next to a freshly built tarball, and the context ansible-builder made."""
    work = tmp_path_factory.mktemp("ee")
    shutil.copy(EE_FILE, work / "execution-environment.yml")
    shutil.copy(ROOT / "requirements.txt", work / "requirements.txt")
    shutil.copy(ROOT / "bindep.txt", work / "bindep.txt")
    run([tool("ansible-galaxy"), "collection", "build", "--output-path", str(work / "dist"), str(ROOT)], cwd=work)
    tarball = work / "dist" / ("%s-%s-%s.tar.gz" % (galaxy["namespace"], galaxy["name"], galaxy["version"]))
    assert tarball.is_file()
    run([tool("ansible-builder"), "create", "-f", "execution-environment.yml", "-c", "context", "-v", "2"], cwd=work)
    return {"work": work, "context": work / "context", "tarball": tarball}


def test_definition_is_version_3_and_names_this_version(galaxy):
    with open(EE_FILE, encoding="utf-8") as handle:
        ee = yaml.safe_load(handle)
    assert ee["version"] == 3
    assert ee["images"]["base_image"]["name"]
    tarball = "%s-%s-%s.tar.gz" % (galaxy["namespace"], galaxy["name"], galaxy["version"])
    sources = [f["src"] for f in ee["additional_build_files"]]
    assert "dist/" + tarball in sources, "execution-environment.yml must name dist/%s (galaxy.yml version)" % tarball
    names = [c["name"] for c in ee["dependencies"]["galaxy"]["collections"]]
    assert "/build/collections/" + tarball in names


def test_context_has_requirements_and_collection(built, galaxy):
    build_dir = built["context"] / "_build"
    containerfile = next(p for p in (built["context"] / "Containerfile", built["context"] / "Dockerfile") if p.exists())
    text = containerfile.read_text()
    assert "ansible-galaxy collection install" in text and "requirements.yml" in text
    assert "introspect" in text

    pip = requirement_names((build_dir / "requirements.txt").read_text())
    assert {"msal", "jsonschema"} <= pip
    assert "ca-certificates" in (build_dir / "bindep.txt").read_text()

    requirements = yaml.safe_load((build_dir / "requirements.yml").read_text())
    entry = requirements["collections"][0]
    assert entry["type"] == "file"
    in_context = build_dir / Path(entry["name"]).relative_to("/build")
    assert in_context.is_file(), "the galaxy requirement points at %s, missing from the context" % entry["name"]

    with tarfile.open(in_context) as tar:
        members = set(tar.getnames())
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == (galaxy["namespace"], galaxy["name"], galaxy["version"])
    for needed in ("meta/execution-environment.yml", "meta/runtime.yml", "requirements.txt", "bindep.txt",
                   "plugins/modules/o365_token.py"):
        assert needed in members, "%s is not in the collection tarball" % needed
    assert not any(m.startswith((".venv/", ".lab/")) for m in members)


def test_collection_metadata_is_what_introspection_finds(built, tmp_path):
    """The builder stage runs `introspect` on the installed collections: it must find our deps."""
    install_dir = tmp_path / "collections"
    run([tool("ansible-galaxy"), "collection", "install", "--offline", "--force", "-p", str(install_dir), str(built["tarball"])],
        cwd=tmp_path)
    proc = run([tool("ansible-builder"), "introspect", "--sanitize", str(install_dir)], cwd=tmp_path)
    out = proc.stdout
    assert "msal" in out and "jsonschema" in out, out
    assert "ca-certificates" in out, out
    assert "mailops.o365" in out, out
