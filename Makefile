# Two entry points: `make up` (a local dev machine, ends with a Jupyter URL) and `make test`.
# Both set up what they need: a venv with the pinned tools, a Docker engine, a base image.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
# Debian's client where present: a newer client first on PATH may refuse classic builds.
DOCKER := $(firstword $(wildcard /usr/bin/docker) docker)
export DOCKER_BUILDKIT := 0
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: venv up check down destroy test lint unit molecule engine browser image bench clean status ssh-config

# Variables for the playbook, as YAML/JSON, a mapping: make up VARS='{"python_env_packages": ["numpy"]}'
# (make hands VARS to tools/local_machine.py in the environment, quotes intact; it checks them and
# passes them on as JSON). The user, the home and the services' ports they name are what make up
# mounts and publishes.
up: $(BIN)/.installed engine
	$(BIN)/python tools/local_machine.py up

# A dry run: what `make up` would change on the running local machine, files shown as diffs.
check: $(BIN)/.installed
	$(BIN)/python tools/local_machine.py check

down: $(BIN)/.installed
	$(BIN)/python tools/local_machine.py down

destroy: $(BIN)/.installed
	$(BIN)/python tools/local_machine.py destroy

# Read-only state of the local machine (Jupyter, venv, GPU, swap, volume, last run);
# SHOW_TOKEN=1 prints the Jupyter URL with its token; VARS as for `make up`.
status: $(BIN)/.installed
	$(BIN)/python tools/local_status.py $(if $(SHOW_TOKEN),--show-token)

# An OpenSSH config with one Host per machine of an inventory (default: the Fly app's Machines,
# INVENTORY=inventory/ssh_hosts.yml for yours); prints the Include line for ~/.ssh/config.
ssh-config: $(BIN)/.installed
	$(BIN)/ansible-playbook $(if $(INVENTORY),-i $(INVENTORY)) playbooks/ssh_config.yml

test: lint image unit molecule

venv: $(BIN)/.installed

$(BIN)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@

engine: $(BIN)/.installed
	$(BIN)/python tools/ensure_docker.py

# Debian's chromium and chromium-driver, for the browser test (tests/browser).
browser: $(BIN)/.installed
	$(BIN)/python tools/ensure_browser.py

# The test image, built as `make up` builds its own (the dev user of the facts as NONROOT_USER; kept
# when its inputs did not change).
image: engine
	DEVBOX_IMAGE=$(or $(DEVBOX_TEST_IMAGE),devbox:test) VARS= $(BIN)/python tools/local_machine.py image

lint: $(BIN)/.installed
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --profile production

unit: $(BIN)/.installed engine browser
	$(BIN)/pytest -q tests

molecule: image
	$(BIN)/molecule test --all

# Every figure of issue 12 in one run (bench/results/latest.md); BENCH_ARGS adds options,
# e.g. BENCH_ARGS='--only first-up --runs 1' for the opt-in first `make up` with nothing cached.
bench: $(BIN)/.installed engine
	$(BIN)/python bench/run.py --runs 3 --connection ssh --rtt-ms 0,50 $(BENCH_ARGS)

clean:
	rm -rf $(VENV)
