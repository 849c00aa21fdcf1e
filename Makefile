# Two entry points: `make up` (a local dev machine, ends with a Jupyter URL) and `make test`.
# Both set up what they need: a venv with the pinned tools, a Docker engine, a base image.
PYTHON ?= python3
# The venv: what running needs (requirements.txt); `make test` adds the test tools (requirements-test.txt).
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
# Debian's client where present: a newer client first on PATH may refuse classic builds.
DOCKER := $(firstword $(wildcard /usr/bin/docker) docker)
export DOCKER_BUILDKIT := 0
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: venv test-venv up check down destroy shell logs restart test lint unit molecule engine browser image bench clean \
	status ssh-config

# Settings that stay: inventory/group_vars/all/*.yml (every machine), inventory/host_vars/<name>.yml (one).
# One run's variables, as YAML or JSON, a mapping: make up VARS='python_env_packages: [numpy]'
# (make hands VARS to tools/local_machine.py in the environment, quotes intact; it checks them and
# passes them on as JSON). The user, the home and the services' ports they name are what make up
# mounts and publishes. DEVBOX_NAME names the container and the inventory's host (default devbox-local).
up: $(BIN)/.installed engine
	$(BIN)/python tools/local_machine.py up

# A dry run: what `make up` would change on the running local machine, files shown as diffs.
check: $(BIN)/.installed
	$(BIN)/python tools/local_machine.py check

# Stops the machine as a Fly stop does (SIGTERM to PID 1, fly.toml's kill_timeout), removes the container.
down: $(BIN)/.installed
	$(BIN)/python tools/local_machine.py down

# The same, and the volume: asks for its name, unless FORCE=1.
destroy: $(BIN)/.installed
	$(BIN)/python tools/local_machine.py destroy

# bash as the dev user in ~/project, the venv active; CMD='python -V' runs that command instead.
shell: $(BIN)/.installed
	$(BIN)/python tools/local_machine.py shell

# The end of PID 1's log and of each service's.
logs: $(BIN)/.installed
	$(BIN)/python tools/local_machine.py logs

# Restarts the services (devbox-service NAME restart on the machine), not the container.
restart: $(BIN)/.installed
	$(BIN)/python tools/local_machine.py restart

# Read-only state of the local machine (Jupyter, venv, GPU, swap, volume, last run);
# SHOW_TOKEN=1 prints the Jupyter URL with its token (0 or unset hides it); VARS as for `make up`.
status: $(BIN)/.installed
	$(BIN)/python tools/local_status.py

# An OpenSSH config with one Host per machine of an inventory (default: the Fly app's Machines,
# INVENTORY=inventory/ssh_hosts.yml for yours); prints the Include line for ~/.ssh/config.
ssh-config: $(BIN)/.installed
	$(BIN)/ansible-playbook $(if $(INVENTORY),-i $(INVENTORY)) playbooks/ssh_config.yml

test: lint image unit molecule

venv: $(BIN)/.installed

test-venv: $(BIN)/.installed-test

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(BIN)/.installed-test: $(BIN)/.installed requirements-test.txt
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

lint: $(BIN)/.installed-test
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --profile production

unit: $(BIN)/.installed-test engine browser
	$(BIN)/pytest -q tests

molecule: $(BIN)/.installed-test image
	$(BIN)/molecule test --all

# Every figure of issues 5 and 20 in one run (bench/results/latest.md); BENCH_ARGS adds options,
# e.g. BENCH_ARGS='--only first-up --runs 1' for the opt-in first `make up` with nothing cached.
bench: $(BIN)/.installed engine
	$(BIN)/python bench/run.py --runs 3 --connection ssh --rtt-ms 0,50 $(BENCH_ARGS)

clean:
	rm -rf $(VENV)
