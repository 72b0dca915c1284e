# The README's two commands. Both build or reuse .venv/ (tools/bootstrap_env.sh) first.
PY := .venv/bin/python

.PHONY: env demo test

env:
	bash tools/bootstrap_env.sh

## demo: the main job on the bundled defaults (tiny COCO -> mim train -> mim test -> mAP)
demo: env
	bash tools/run_demo.sh

## test: the whole test suite (pytest prints its 'N passed' summary)
test: env
	$(PY) -m pytest $(PYTEST_ARGS)
