# Every target installs what it needs into .venv first, so each works on a fresh machine.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: demo test lint fmt clean

$(STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m engine.say "Hello! This is Chatterbox, streaming speech as it is generated." \
		-o out/demo.wav --stream --max-new-tokens 125

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf .venv out .pytest_cache
