# Every target installs what it needs into .venv first, so each works on a fresh machine.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: demo serve test bench bench-throughput lint fmt clean
STACK := . deploy/stack-env.sh &&
SUPERVISORD := .venv/bin/supervisord -c supervisord.conf
SUPERVISORCTL := .venv/bin/supervisorctl -c supervisord.conf

NPM_STAMP := frontend/node_modules/.installed
BUNDLE := frontend/dist/index.html

$(STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

$(NPM_STAMP): frontend/package.json frontend/package-lock.json
	deploy/install-system-deps.sh npm
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The frontend's API types, generated from the gateway's OpenAPI schema (written without a server or a broker;
# left untouched when unchanged, so the types are regenerated only when the schema changes).
SCHEMA_JSON := frontend/openapi.json
SCHEMA_TS := frontend/src/lib/schema.d.ts
$(SCHEMA_JSON): $(STAMP) $(wildcard gateway/*.py) broker/protocol.py engine/params.py engine/errors.py
	$(PY) -m gateway.openapi $@
$(SCHEMA_TS): $(SCHEMA_JSON) $(NPM_STAMP)
	cd frontend && npm run schema --silent

# The browser player, served by the gateway at / (not committed: built here).
$(BUNDLE): $(NPM_STAMP) $(SCHEMA_TS) $(shell find frontend/src -type f) frontend/index.html frontend/vite.config.ts
	cd frontend && npm run build --silent

# Start the stack under supervisord, stream one sentence over SSE from the gateway, stop the stack.
demo: $(STAMP) $(BUNDLE)
	$(STACK) $(PY) -m engine.checkpoint
	$(STACK) $(SUPERVISORD)
	$(STACK) $(PY) -m gateway.client --wait 600 --max-new-tokens 125 -o out/demo.wav \
		"Hello! This is Chatterbox, streaming speech as it is generated."; \
		rc=$$?; $(SUPERVISORCTL) shutdown >/dev/null; exit $$rc

# The stack in the foreground; Ctrl-C stops it. Logs under logs/.
serve: $(STAMP) $(BUNDLE)
	$(STACK) $(PY) -m engine.checkpoint
	@echo "gateway: http://127.0.0.1:$${CHATTERBOX_GATEWAY_PORT:-6095}  (logs in logs/; Ctrl-C stops the stack)"
	$(STACK) $(SUPERVISORD) -n

# The harness: starts its own stack; results and plots land in bench/results/. ARGS="--url ..." etc.
bench: $(STAMP)
	$(PY) -m bench $(ARGS)

# One slot at capacity 1 vs batched (default 1,8) at concurrency 1,4,8,16, in one run.
bench-throughput: $(STAMP)
	$(PY) -m bench.throughput $(ARGS)

test: $(STAMP) $(SCHEMA_TS) $(BUNDLE)
	deploy/install-system-deps.sh chromium
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	.venv/bin/lint-imports
	cd frontend && npm test --silent
	$(PY) -m pytest -q --durations=25

lint: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf .venv out logs .pytest_cache frontend/node_modules frontend/dist
