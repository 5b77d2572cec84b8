# The two commands of the README:
#   make up     run the whole system (installs nats-server if missing)
#   make test   run the test suite (installs nats-server/redis-server if missing)

SHELL := /bin/bash
CARGO ?= cargo
# Where cargo puts binaries (honours CARGO_TARGET_DIR, as cargo does).
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

.PHONY: up test deps build build-bench reliability check-all bench

deps:
	@scripts/install-deps.sh > .deps.env

# The agentry-ctl package ships all four binaries (agentry, agentry-engine,
# agentry-monitor, agentry-agent).
build: deps
	$(CARGO) build --release -p agentry-ctl

up: build
	@source .deps.env && $(TARGET_DIR)/release/agentry up $(ARGS)

test: deps
	@source .deps.env && $(CARGO) test --workspace

# Long drills, run by .ci/run after the main suite: the overload burst
# (100,000 requests against bounded queues) and, when the nightly toolchain
# with cargo-fuzz is present, a bounded fuzz run of every target.
reliability: deps
	@source .deps.env && $(CARGO) test -p agentry-ctl --test e2e -- --ignored
	@if cargo +nightly fuzz --version >/dev/null 2>&1; then scripts/fuzz.sh 30; \
	 else echo "reliability: cargo-fuzz not installed (cargo install cargo-fuzz), fuzzing skipped"; fi

# `make bench` runs every figure of the README's "Measured" table in one go
# (`--suite`: task, direct, workflow, task latency, backlog drains, each
# against raw) and prints one markdown table with the targets; each step is
# measured in three rounds and the median round shown, since this shared
# machine's speed drifts between runs.
# `bench --embedded` starts agentry-engine, agentry-monitor and agentry-agent
# as child processes from beside the agentry binary: `build` makes them too.
build-bench: build

bench: build-bench
	@source .deps.env && $(TARGET_DIR)/release/agentry bench --embedded --suite --suite-rounds 3 $(ARGS)

# Static checks of schemas, observability and deployment artefacts.
check-all:
	python3 scripts/validate_schemas.py
	scripts/check-observability.sh
	deploy/validate.sh
