# README's two commands: `make run` (the whole flow) and `make test` (the test suite).
# Both create the virtual environment and install everything they need first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test bench venv system-deps clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# The SSH tests need a real OpenSSH server (and sudo, for the non-root login test), the --html
# page's test a headless Chromium; install what is missing where we may (root, apt).
system-deps:
	@missing=""; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	command -v sudo >/dev/null || missing="$$missing sudo"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "note:$$missing missing and not installable here (needs root + apt): the SSH tests and the page-rendering tests will skip"; fi

run: venv
	$(PY) BuildModel.py --rtl
	cd package && ../$(PY) on_target.py --emulate
	$(PY) utilities/validate_model.py package --html validation.html

test: venv system-deps
	$(PY) -m pytest

bench: venv
	$(PY) utilities/benchmark.py

clean:
	rm -rf hls4ml_prj_pynq package validation.html .pytest_cache
