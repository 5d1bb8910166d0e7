# dit-web: the commands a newcomer runs. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help test lint unit bench fuzz fuzz-seeds

help:
	@echo "make test        format check, clippy (-D warnings), all Rust tests (what CI runs)"
	@echo "make bench       cargo bench: forward pass and sampler step on the CPU backend"
	@echo "make fuzz        fuzz the weight-file reader with cargo-fuzz (FUZZ_SECONDS=600)"

test: lint unit

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

bench:
	$(CARGO) bench --bench model

FUZZ_SECONDS ?= 600
# cargo-fuzz needs nightly-only flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	mkdir -p fuzz/corpus/weights && cp fuzz/seeds/*.safetensors fuzz/corpus/weights/
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -s none weights corpus/weights -- \
		-max_total_time=$(FUZZ_SECONDS) -max_len=65536

fuzz-seeds:
	$(CARGO) run -q --example tiny_weights -- fuzz/seeds/tiny-int8.safetensors int8
	$(CARGO) run -q --example tiny_weights -- fuzz/seeds/tiny-f16.safetensors f16
