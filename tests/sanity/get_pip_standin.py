"""Stand-in for ansible-test's pip bootstrap script (its download host is unreachable here).

ansible-test runs this with pip's configuration hidden (PIP_CONFIG_FILE=/dev/null and a stripped
environment), so the system CA bundle must be named explicitly for the one install it does.
"""
import os
import subprocess
import sys

CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
args = [sys.executable, "-m", "pip", "install", "--upgrade"]
ca = os.environ.get("SSL_CERT_FILE") or next((p for p in CA_BUNDLES if os.path.exists(p)), None)
if ca:
    args += ["--cert", ca]
# --no-setuptools / --no-wheel are get-pip.py's own options, not pip's.
passed = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call(args + passed)
