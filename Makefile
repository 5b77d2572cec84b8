# The two commands of the README:
#   make up     run the whole system (installs nats-server if missing)
#   make test   run the test suite (installs nats-server/redis-server if missing)

SHELL := /bin/bash
CARGO ?= cargo

.PHONY: up test deps build reliability check-all bench

deps:
	@scripts/install-deps.sh > .deps.env

build: deps
	$(CARGO) build --release -p agentry-ctl

up: build
	@source .deps.env && ./target/release/agentry up $(ARGS)

test: deps
	@source .deps.env && $(CARGO) test --workspace

# Long drills, run by .ci/run after the main suite: the overload burst
# (100,000 requests against bounded queues) and, when the nightly toolchain
# with cargo-fuzz is present, a bounded fuzz run of every target.
reliability: deps
	@source .deps.env && $(CARGO) test -p agentry-tests --test faults -- --ignored
	@if cargo +nightly fuzz --version >/dev/null 2>&1; then scripts/fuzz.sh 30; \
	 else echo "reliability: cargo-fuzz not installed (cargo install cargo-fuzz), fuzzing skipped"; fi

bench: build
	@source .deps.env && ./target/release/agentry bench --embedded --compare raw $(ARGS)

# Static checks of schemas, observability and deployment artefacts.
check-all:
	python3 scripts/validate_schemas.py
	scripts/check-observability.sh
	deploy/validate.sh
