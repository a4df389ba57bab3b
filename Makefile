# README's two commands: `make run` (the whole flow) and `make test` (the test suite).
# Both create the virtual environment and install everything they need first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test bench venv system-deps board-pythons clean

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

# The board script runs on the board's Python (PYNQ images: 3.8-3.10): a venv with numpy for each
# of Python 3.8, 3.9, 3.10 and 3.12 this machine has (found on PATH or under pyenv), for its tests.
BOARD_VERSIONS := 3.8 3.9 3.10 3.12
board-pythons:
	@for v in $(BOARD_VERSIONS); do \
	  py=$$(ls $$HOME/.pyenv/versions/$$v.*/bin/python$$v 2>/dev/null | tail -n 1); \
	  [ -n "$$py" ] || py=$$(command -v python$$v || true); \
	  [ -n "$$py" ] && "$$py" -c pass 2>/dev/null || { echo "note: no Python $$v here: the board script's tests skip it"; continue; }; \
	  dir=.venv-board/$$v; \
	  [ "$$dir/.installed" -nt requirements-board.txt ] && continue; \
	  "$$py" -m venv --clear "$$dir" && "$$dir/bin/python" -m pip install --quiet --disable-pip-version-check \
	    -r requirements-board.txt && touch "$$dir/.installed" || echo "note: numpy for Python $$v did not install"; \
	done

run: venv
	$(PY) BuildModel.py --rtl
	cd package && ../$(PY) on_target.py --emulate
	$(PY) utilities/validate_model.py package --html validation.html

# Two pytest-xdist workers: the tests of one costly fixture stay on one worker (tests/conftest.py).
TEST_WORKERS ?= 2
test: venv system-deps board-pythons
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

bench: venv
	$(PY) utilities/benchmark.py

clean:
	rm -rf hls4ml_prj_pynq package validation.html .pytest_cache .venv-board
