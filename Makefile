# Berth's entry points. `make run` serves Berth; `make test` runs every test.
.PHONY: run test build tools bench fmt

run:
	scripts/run.sh

test:
	scripts/test.sh

build:
	scripts/build.sh

tools:
	scripts/tools.sh

bench:
	scripts/bench.sh

fmt:
	cargo fmt --all
