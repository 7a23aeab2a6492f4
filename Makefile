# mailops.o365 - everything a fresh Debian/Ubuntu machine needs, in two commands:
#   make demo    set up, start the lab, run playbooks/verify_mail.yml against it
#   make test    set up, start the lab, run the whole suite, stop the lab
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
COLLECTION_LINK := $(VENV)/collections/ansible_collections/mailops/o365
APT_PACKAGES := dovecot-imapd dovecot-pop3d dovecot-lmtpd postfix curl chromium
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help demo test unit integration sanity lint lab-up lab-down lab-status system-deps venv bench docs ee-context clean

help:
	@echo "make demo | test | unit | integration | sanity | lint | lab-up | lab-down | bench | docs | clean"

# --- set-up -----------------------------------------------------------------------------------
system-deps:
	@missing=""; \
	command -v dovecot >/dev/null || missing="$$missing dovecot"; \
	command -v postfix >/dev/null || missing="$$missing postfix"; \
	[ -x /usr/lib/dovecot/lmtp ] || missing="$$missing lmtp"; \
	[ -x /usr/lib/dovecot/pop3 ] || missing="$$missing pop3"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing system packages (missing:$$missing)"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    $(APT_PACKAGES) python3-venv >/dev/null; \
	fi

venv: $(VENV)/.installed $(COLLECTION_LINK)

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing Python packages into $(VENV)"
	@# (this machine's pip config names local indexes that may not exist: hide those warnings only)
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt 2>&1 \
	  | { grep -v "^WARNING: Location .* is ignored" || true; }; test $${PIPESTATUS[0]} -eq 0
	@touch $@

$(COLLECTION_LINK):
	@mkdir -p $(dir $@)
	@ln -sfn $(CURDIR) $@

# --- the lab ------------------------------------------------------------------------------------
lab-up: system-deps venv
	$(PY) tests/lab/labctl.py up

lab-down:
	@if [ -x $(PY) ] && [ -f tests/lab/labctl.py ]; then $(PY) tests/lab/labctl.py down; fi

lab-status: venv
	$(PY) tests/lab/labctl.py status

# --- the two commands ---------------------------------------------------------------------------
# The lab inventory has deliberately broken mailboxes: report them, do not fail the demo.
demo: lab-up
	@set -a; . .lab/env; set +a; \
	ansible-playbook playbooks/verify_mail.yml -e mailbox_reachability_fail_on=never && \
	echo "HTML report: file://$(CURDIR)/reports/index.html"

# The whole suite. The lab is stopped whatever happens; the exit status is the worst of the parts.
test: system-deps venv
	@status=0; \
	$(MAKE) --no-print-directory lint || status=1; \
	$(MAKE) --no-print-directory lab-up || status=1; \
	$(PY) -m pytest tests || status=1; \
	$(MAKE) --no-print-directory lab-down || status=1; \
	$(MAKE) --no-print-directory sanity || status=1; \
	if [ $$status != 0 ]; then echo "make test: FAILED (see above)"; fi; \
	exit $$status

unit: venv
	$(PY) -m pytest tests/unit

integration: lab-up
	$(PY) -m pytest tests/integration

sanity: venv
	tests/sanity/run.sh

lint: venv
	ruff check plugins tests tools bench
	pycodestyle --max-line-length 160 --ignore=E402,W503,W504,E741,E203 plugins tests tools bench  # as ansible-test's pep8
	$(PY) tools/gen_troubleshooting.py --check
	ansible-lint --profile production --offline

bench: lab-up
	$(PY) bench/run.py

docs: venv
	$(PY) tools/gen_troubleshooting.py

ee-context: venv
	ansible-galaxy collection build --force --output-path dist .
	ansible-builder create -f execution-environment.yml -c context

clean: lab-down
	rm -rf $(VENV) .lab tests/output .pytest_cache reports
