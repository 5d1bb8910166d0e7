# dit-web: the commands a newcomer runs. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
PORT ?= 8080
WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/ { getline; gsub(/[^0-9.]/, "", $$0); print; exit }' Cargo.lock)
CHROMIUM ?= /usr/bin/chromium
BROWSER_DIR := tests/browser
WASM := pkg/dit_web_bg.wasm

.PHONY: bench-cpu-backends
.PHONY: help test lint unit cuda browser demo pkg setup setup-wasm setup-browser bench bench-browser fuzz fuzz-seeds sizes

help:
	@echo "make demo        build the wasm module (pkg/) and serve www/ on http://127.0.0.1:$(PORT)/"
	@echo "make test        format, clippy (native + wasm), all Rust tests, the CUDA trainer build, browser tests in headless Chromium (what CI runs)"
	@echo "make pkg         wasm-pack build --target web, then wasm-opt: pkg/ is the npm package the page loads"
	@echo "make sizes       raw and gzip sizes of everything the page fetches"
	@echo "make bench       cargo bench: forward pass and sampler step on the CPU backend"
	@echo "make bench-browser  www/bench.html in headless Chromium: ms per step per backend and batch"
	@echo "make bench-cpu-backends  the browser's CPU fallback on burn-flex, -ndarray and -candle"
	@echo "make fuzz        fuzz the weight-file reader with cargo-fuzz (FUZZ_SECONDS=600)"

test: lint unit cuda browser

lint: setup-wasm
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --lib --target wasm32-unknown-unknown -- -D warnings

unit:
	$(CARGO) test --workspace

# The CUDA trainer must build and link on a machine without a CUDA toolkit (it loads the driver at
# run time); this machine has no GPU to run it on.
# The GPU backends compile (and link) without a GPU or CUDA toolkit; CI builds them here.
cuda:
	$(CARGO) build -p trainer --features cuda,wgpu,candle

browser: pkg setup-browser
	cd $(BROWSER_DIR) && CHROMIUM=$(CHROMIUM) npm test

demo: pkg
	node tools/serve.mjs www $(PORT)

# wasm-pack writes pkg/ (www/pkg links to it). It would download binaryen and wasm-bindgen when
# missing, which an offline machine cannot: setup-wasm installs them from crates.io and npm instead.
pkg: setup-wasm
	wasm-pack build --target web --profile wasm-release --no-opt --mode no-install
	tools/node_modules/.bin/wasm-opt -Os --strip-debug --strip-producers \
		--enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
		--enable-mutable-globals --enable-reference-types --enable-multivalue \
		$(WASM) -o $(WASM).opt && mv $(WASM).opt $(WASM)
	@ls -l $(WASM)
	node tools/catalogue.mjs

setup-wasm:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@command -v wasm-pack >/dev/null || $(CARGO) install wasm-pack --locked
	@wasm-bindgen --version 2>/dev/null | grep -qF "$(WASM_BINDGEN_VERSION)" || \
		$(CARGO) install wasm-bindgen-cli --version "$(WASM_BINDGEN_VERSION)"
	@test -x tools/node_modules/.bin/wasm-opt || (cd tools && npm ci --no-audit --no-fund)

setup-browser:
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && apt-get install -y chromium >/dev/null; } || \
		{ echo "Chromium is missing: install Debian's 'chromium' package (or set CHROMIUM=/path/to/chrome)"; exit 1; }
	@test -d $(BROWSER_DIR)/node_modules/playwright-core || (cd $(BROWSER_DIR) && npm ci --no-audit --no-fund)

sizes: pkg
	@node tools/sizes.mjs

bench:
	$(CARGO) bench --bench model

ORT_VERSION ?= 1.30.0
# The ONNX side needs torch + onnx (pip) to export the same network; without them it is skipped.
bench-browser: pkg setup-browser
	@test -d $(BROWSER_DIR)/node_modules/onnxruntime-web || \
		(cd $(BROWSER_DIR) && npm install --no-save --no-audit --no-fund onnxruntime-web@$(ORT_VERSION))
	@mkdir -p www/bench && (test -f www/bench/mnist.onnx || python3 bench/export_onnx.py www/weights/mnist.safetensors www/bench/mnist.onnx) || \
		echo "no ONNX model (bench/export_onnx.py needs torch and onnx): onnxruntime-web will be skipped"
	cd $(BROWSER_DIR) && CHROMIUM=$(CHROMIUM) node bench.mjs

# The browser's CPU fallback built on each of burn's CPU backends (burn-flex ships in pkg/; ndarray
# and candle are built into www/bench/pkg-*), measured in one headless run with the same weights.
CPU_BACKEND_VARIANTS ?= ndarray candle
bench-cpu-backends: pkg setup-browser
	@for v in $(CPU_BACKEND_VARIANTS); do \
		wasm-pack build --target web --profile wasm-release --no-opt --mode no-install \
			--out-dir www/bench/pkg-$$v -- --features web-cpu-$$v && \
		tools/node_modules/.bin/wasm-opt -Os --strip-debug --strip-producers \
			--enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
			--enable-mutable-globals --enable-reference-types --enable-multivalue \
			www/bench/pkg-$$v/dit_web_bg.wasm -o www/bench/pkg-$$v/dit_web_bg.wasm || exit 1; \
	done
	cd $(BROWSER_DIR) && CHROMIUM=$(CHROMIUM) BACKENDS=cpu ONNX=0 \
		PKGS="pkg$$(for v in $(CPU_BACKEND_VARIANTS); do printf ',bench/pkg-%s' $$v; done)" node bench.mjs

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
