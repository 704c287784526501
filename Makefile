# The two commands a newcomer needs: `make demo` and `make test`. Each does all set-up itself.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint bench clean

setup:
	@scripts/setup_env.sh

demo: setup
	@scripts/demo.sh

test: setup
	@scripts/run_tests.sh

lint: setup
	$(VENV)/bin/ruff check face_perception test benchmarks launch

bench: setup
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build demo_output
