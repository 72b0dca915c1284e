# The README's two commands. Both build or reuse .venv/ (tools/bootstrap_env.sh) first.
PY := .venv/bin/python

.PHONY: env demo test

env:
	bash tools/bootstrap_env.sh

## demo: the main job on the bundled defaults
demo: env
	$(PY) tools/get_flops.py --verify

## test: the whole test suite (pytest prints its 'N passed' summary)
test: env
	$(PY) -m pytest $(PYTEST_ARGS)
