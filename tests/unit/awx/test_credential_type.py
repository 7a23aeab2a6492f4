"""awx/credential_type.yml: AWX's own rules for custom credential types, and the env it injects.

The rules mirror AWX's validation of custom credential types (``CredentialTypeInputField`` and
``CredentialTypeInjectorField``: JSON schema, reserved names, the env blocklist, a StrictUndefined
render with every field set to ``EXAMPLE``). Injection is rendered the way AWX does it at job
start: empty inputs are left out of the namespace, booleans default to False, every file
template is written to a private file whose path becomes ``tower.filename.<name>``, and every
env template is rendered (so an empty field yields an empty string, never a missing variable).

The injected names are read from ``AUTH_ARGUMENT_SPEC``'s env fallbacks, so a renamed variable
breaks this test, and the rendered env is fed through the modules' own argument validation.
"""

from __future__ import annotations

import os
import re
import stat
import types
from pathlib import Path

import jsonschema
import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from jinja2 import StrictUndefined, Undefined, meta
from jinja2.exceptions import UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ansible_collections.mailops.o365.plugins.module_utils._clouds import CLOUDS
from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error
from ansible_collections.mailops.o365.plugins.module_utils._options import AUTH_ARGUMENT_SPEC, AuthSettings

ROOT = Path(__file__).resolve().parents[3]
CREDENTIAL_TYPE = ROOT / "awx" / "credential_type.yml"

# AWX: awx_plugins.interfaces injectors / awx.main.constants ENV_BLOCKLIST (plus ANSIBLE_* as a prefix).
ENV_BLOCKLIST = frozenset((
    "VIRTUAL_ENV", "PATH", "PYTHONPATH", "PROOT_TMP_DIR", "JOB_ID", "INVENTORY_ID", "INVENTORY_SOURCE_ID",
    "INVENTORY_UPDATE_ID", "AD_HOC_COMMAND_ID", "REST_API_URL", "REST_API_TOKEN", "MAX_EVENT_RES",
    "CALLBACK_QUEUE", "CALLBACK_CONNECTION", "CACHE", "JOB_CALLBACK_DEBUG", "INVENTORY_HOSTVARS",
    "AWX_HOST", "TOWER_HOST", "PROJECT_REVISION", "SUPERVISOR_CONFIG_PATH", "SUPERVISOR_WEB_CONFIG_PATH",
))

# AWX: CredentialTypeInputField.schema
INPUTS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "required": {"type": "array", "items": {"type": "string"}},
        "fields": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "type": {"enum": ["string", "boolean"]},
                    "format": {"enum": ["ssh_private_key", "url"]},
                    "choices": {"type": "array", "minItems": 1, "items": {"type": "string"}, "uniqueItems": True},
                    "id": {"type": "string", "pattern": "^[a-zA-Z_]+[a-zA-Z0-9_]*$"},
                    "label": {"type": "string"},
                    "help_text": {"type": "string"},
                    "multiline": {"type": "boolean"},
                    "secret": {"type": "boolean"},
                    "ask_at_runtime": {"type": "boolean"},
                    "default": {},
                },
                "additionalProperties": False,
                "required": ["id", "label"],
            },
        },
    },
}

# AWX: CredentialTypeInjectorField.schema
INJECTORS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "file": {
            "type": "object",
            "patternProperties": {r"^template(\.[a-zA-Z_]+[a-zA-Z0-9_]*)?$": {"type": "string"}},
            "additionalProperties": False,
        },
        "env": {
            "type": "object",
            "patternProperties": {"^[a-zA-Z_]+[a-zA-Z0-9_]*$": {"type": "string", "pattern": "^[\x00-\x7F]*$"}},
            "additionalProperties": False,
        },
        "extra_vars": {
            "type": "object",
            "patternProperties": {"^[a-zA-Z_]+[a-zA-Z0-9_]*$": {"type": "string"}},
            "additionalProperties": False,
        },
    },
}

# Shared options deliberately not injected, and why.
NOT_INJECTED = {
    "O365_ACCESS_TOKEN": "an access token lives about an hour: nothing to store in AWX",
    "O365_TOKEN_CACHE_PATH": "a job's container is thrown away; the default path inside it is right",
}

# Inputs that are secrets even though their env var is a path (the PEM itself is the secret).
SECRET_INPUTS_BESIDES_NO_LOG = {"client_certificate"}

# Env var -> the input field it carries.
ENV_FOR_FIELD = {
    "O365_TENANT_ID": "tenant_id",
    "O365_CLIENT_ID": "client_id",
    "O365_CLIENT_SECRET": "client_secret",
    "O365_CLIENT_CERTIFICATE_PATH": "client_certificate",
    "O365_CLIENT_CERTIFICATE_PASSWORD": "client_certificate_password",
    "O365_REFRESH_TOKEN": "refresh_token",
    "O365_USERNAME": "username",
    "O365_CLOUD": "cloud",
    "O365_AUTHORITY_HOST": "authority_host",
    "O365_CA_PATH": "ca_bundle",
}

TENANT = "contoso.onmicrosoft.com"
CLIENT = "6731de76-14a6-49ae-97bc-6eba6914391e"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIE...\n-----END PRIVATE KEY-----\n-----BEGIN CERTIFICATE-----\nMIIC...\n-----END CERTIFICATE-----\n"


def env_fallbacks() -> dict:
    """Option name -> env var, read from the shared argument spec."""
    out = {}
    for name, spec in AUTH_ARGUMENT_SPEC.items():
        fallback = spec.get("fallback")
        if fallback:
            _strategy, args = fallback
            out[name] = args[0]
    return out


@pytest.fixture(scope="module")
def ctype() -> dict:
    with open(CREDENTIAL_TYPE, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def fields(ctype) -> dict:
    return {f["id"]: f for f in ctype["inputs"]["fields"]}


# --- AWX's rules for custom credential types --------------------------------------------------------

def test_top_level_keys(ctype):
    assert set(ctype) <= {"name", "description", "kind", "inputs", "injectors"}
    assert ctype["name"] and ctype["description"]
    assert ctype["kind"] in ("cloud", "net"), "custom credential types must be of kind cloud or net"


def test_inputs_match_awx_schema_and_rules(ctype):
    inputs = ctype["inputs"]
    jsonschema.validate(inputs, INPUTS_SCHEMA)
    assert "dependencies" not in inputs, "'dependencies' is not supported for custom credentials"
    ids = [f["id"] for f in inputs["fields"]]
    assert len(ids) == len(set(ids)), "field ids must be unique"
    assert "tower" not in ids, '"tower" is a reserved field name'
    labels = [f["label"] for f in inputs["fields"]]
    assert len(labels) == len(set(labels)), "labels should be unique (the UI shows them)"
    for field in inputs["fields"]:
        kind = field.get("type", "string")
        assert field["id"].isidentifier()
        assert field.get("help_text"), "%s: every field explains itself" % field["id"]
        if "default" in field:
            assert isinstance(field["default"], {"string": str, "boolean": bool}[kind])
        for key in ("choices", "multiline", "format", "secret"):
            if key in field:
                assert kind == "string", "%s not allowed for %s (%s)" % (key, kind, field["id"])
        if "choices" in field and "default" in field:
            assert field["default"] in field["choices"]
    assert set(inputs.get("required", [])) <= set(ids)
    assert set(inputs["required"]) == {"tenant_id", "client_id"}


def test_secret_fields_are_marked(ctype):
    by_id = fields(ctype)
    fallbacks = env_fallbacks()
    no_log_envs = {fallbacks[name] for name, spec in AUTH_ARGUMENT_SPEC.items()
                   if spec.get("no_log") and name in fallbacks}
    expected = {ENV_FOR_FIELD[env] for env in no_log_envs if env in ENV_FOR_FIELD} | SECRET_INPUTS_BESIDES_NO_LOG
    marked = {fid for fid, f in by_id.items() if f.get("secret")}
    assert expected <= marked, "not marked secret: %s" % sorted(expected - marked)
    assert by_id["client_certificate"].get("multiline") is True
    assert not by_id["refresh_token"].get("multiline"), "a textarea would add a newline (rejected as CR/LF)"


def test_cloud_choices_are_the_cloud_table(ctype):
    cloud = fields(ctype)["cloud"]
    assert sorted(cloud["choices"]) == sorted(CLOUDS)
    assert cloud["default"] == "public"


def test_injectors_match_awx_schema_and_rules(ctype):
    injectors = ctype["injectors"]
    jsonschema.validate(injectors, INJECTORS_SCHEMA)
    names = list(injectors.get("file", {}))
    assert not ("template" in names and len(names) > 1), "must use multi-file syntax for several files"
    for env_var, template in injectors["env"].items():
        assert re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", env_var)
        assert not env_var.startswith("ANSIBLE_"), "%s may affect Ansible configuration" % env_var
        assert env_var not in ENV_BLOCKLIST
        assert template.isascii()


def test_injectors_reference_only_defined_fields(ctype):
    """AWX renders each injector with StrictUndefined and every field set to EXAMPLE at save time."""
    ids = set(fields(ctype))
    file_names = [name.split(".", 1)[1] for name in ctype["injectors"].get("file", {}) if "." in name]
    jinja = ImmutableSandboxedEnvironment(undefined=StrictUndefined)

    class Exploding:
        def __str__(self):
            raise UndefinedError("Must define unnamed file injector in order to reference `tower.filename`.")

    namespace = {fid: "EXAMPLE" for fid in ids}
    namespace["tower"] = types.SimpleNamespace(filename=types.SimpleNamespace(**{n: "EXAMPLE_FILENAME" for n in file_names}))
    for kind, templates in ctype["injectors"].items():
        for key, template in templates.items():
            undeclared = meta.find_undeclared_variables(jinja.parse(template))
            assert undeclared <= ids | {"tower"}, "%s.%s uses %s" % (kind, key, undeclared - ids)
            jinja.from_string(template).render(namespace)  # raises on an undefined tower.filename.<x>
            for name in re.findall(r"tower\.filename\.(\w+)", template):
                assert name in file_names, "%s references tower.filename.%s without template.%s" % (key, name, name)
    # and a reference to an unknown file template would fail there
    namespace["tower"] = types.SimpleNamespace(filename=Exploding())
    with pytest.raises(UndefinedError):
        jinja.from_string("{{ tower.filename }}").render(namespace)


def test_injected_names_are_what_the_modules_read(ctype):
    fallbacks = set(env_fallbacks().values())
    injected = set(ctype["injectors"]["env"])
    assert injected <= fallbacks, "injected but read by no option: %s" % sorted(injected - fallbacks)
    assert fallbacks - injected == set(NOT_INJECTED), "read by an option but not injected: %s" % sorted(
        fallbacks - injected - set(NOT_INJECTED))
    assert set(ENV_FOR_FIELD) == injected
    ids = set(fields(ctype))
    for env_var, template in ctype["injectors"]["env"].items():
        field = ENV_FOR_FIELD[env_var]
        assert field in ids
        assert re.search(r"\b%s\b" % field, template), "%s does not carry %s" % (env_var, field)


# --- injection, the way AWX does it at job start --------------------------------------------------

def inject(ctype: dict, inputs: dict, private_dir: Path, undefined=Undefined) -> dict:
    """AWX's inject_credential for env and file injectors."""
    namespace = {}
    for name, value in inputs.items():
        if isinstance(value, bool) or value:
            namespace[name] = value
    for field in ctype["inputs"]["fields"]:
        if field.get("type") == "boolean" and field["id"] not in inputs:
            namespace[field["id"]] = False
    jinja = ImmutableSandboxedEnvironment(undefined=undefined)
    files = {}
    env_dir = private_dir / "env"
    env_dir.mkdir(exist_ok=True)
    for label, template in ctype["injectors"].get("file", {}).items():
        data = jinja.from_string(template).render(**namespace)
        path = env_dir / ("tmp_" + label.replace(".", "_"))
        path.write_text(data)
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
        files[label.split(".", 1)[1]] = str(path)
    namespace["tower"] = types.SimpleNamespace(filename=types.SimpleNamespace(**files))
    env = {}
    for env_var, template in ctype["injectors"]["env"].items():
        if env_var in ENV_BLOCKLIST:
            continue
        env[env_var] = jinja.from_string(template).render(**namespace)
    return env


def module_settings(env: dict, monkeypatch) -> AuthSettings:
    """What a module sees: the shared argument spec with env fallbacks, then AuthSettings."""
    for name in env_fallbacks().values():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = ArgumentSpecValidator(AUTH_ARGUMENT_SPEC).validate({})
    if result.error_messages:
        raise AssertionError("argument validation: %s" % "; ".join(result.error_messages))
    try:
        return AuthSettings.from_params(result.validated_parameters)
    except O365Error as exc:
        raise AssertionError("AuthSettings: %s" % exc.message) from None


@pytest.fixture
def private_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


FULL_CERT = {
    "tenant_id": TENANT, "client_id": CLIENT, "client_certificate": PEM,
    "client_certificate_password": "key pass", "cloud": "usgov",
    "authority_host": "https://login.lab.example", "ca_bundle": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
}
SECRET_ONLY = {"tenant_id": TENANT, "client_id": CLIENT, "client_secret": "s3cr3t~value"}
REFRESH = {"tenant_id": TENANT, "client_id": CLIENT, "refresh_token": "0.AAAA-refresh", "username": "alerts@contoso.com"}


@pytest.mark.parametrize("undefined", [Undefined, StrictUndefined], ids=["awx-runtime", "strict"])
@pytest.mark.parametrize("inputs", [FULL_CERT, SECRET_ONLY, REFRESH], ids=["certificate", "secret", "refresh"])
def test_render_is_strict_safe(ctype, private_dir, inputs, undefined):
    """Templates guard every optional field, so they render even with StrictUndefined."""
    env = inject(ctype, inputs, private_dir, undefined)
    assert set(env) == set(ENV_FOR_FIELD)
    assert env["O365_TENANT_ID"] == TENANT and env["O365_CLIENT_ID"] == CLIENT


def test_certificate_and_ca_become_private_files(ctype, private_dir, monkeypatch):
    env = inject(ctype, FULL_CERT, private_dir)
    cert = Path(env["O365_CLIENT_CERTIFICATE_PATH"])
    ca = Path(env["O365_CA_PATH"])
    assert cert.read_text() == PEM and ca.read_text() == FULL_CERT["ca_bundle"]
    assert stat.S_IMODE(os.stat(cert).st_mode) == 0o600
    assert env["O365_CLIENT_SECRET"] == "" and env["O365_REFRESH_TOKEN"] == ""
    settings = module_settings(env, monkeypatch)
    assert settings.client_certificate_path == str(cert)
    assert settings.client_certificate_password == "key pass"
    assert settings.ca_path == str(ca)
    assert settings.cloud == "usgov"
    assert settings.authority_host == "https://login.lab.example"
    assert settings.tenant_id == TENANT and settings.client_id == CLIENT
    assert not settings.client_secret and not settings.refresh_token


def test_empty_certificate_sets_no_path(ctype, private_dir):
    env = inject(ctype, SECRET_ONLY, private_dir)
    assert env["O365_CLIENT_CERTIFICATE_PATH"] == ""
    assert env["O365_CA_PATH"] == ""
    assert env["O365_CLOUD"] == "public", "an empty cloud falls back to public, never an empty string"
    assert env["O365_CLIENT_SECRET"] == "s3cr3t~value"


@pytest.mark.parametrize("inputs", [SECRET_ONLY, REFRESH], ids=["secret", "refresh"])
def test_fields_left_empty_do_not_override_defaults(ctype, private_dir, monkeypatch, inputs):
    """AWX injects "" for every optional field left empty; the modules must read "" as unset."""
    env = inject(ctype, inputs, private_dir)
    assert env["O365_AUTHORITY_HOST"] == "" and env["O365_CA_PATH"] == ""
    settings = module_settings(env, monkeypatch)
    assert settings.cloud == "public"
    assert settings.authority_host in (None, "")
    assert settings.ca_path in (None, "")
    assert not settings.client_certificate_path
    if inputs is REFRESH:
        assert settings.refresh_token == "0.AAAA-refresh" and settings.username == "alerts@contoso.com"
    else:
        assert settings.client_secret == "s3cr3t~value" and not settings.refresh_token
