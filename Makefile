# The two commands a newcomer needs: `make demo` and `make test`. Each does all set-up itself.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-realtime lint bench clean

setup:
	@scripts/setup_env.sh

demo: setup
	@scripts/demo.sh

test: setup
	@scripts/run_tests.sh

# Real-time delivery claims (30 Hz frames, latency): depend on the machine, so not in `make test`.
test-realtime: setup
	@PYTEST_MARKERS=realtime scripts/run_tests.sh

lint: setup
	$(VENV)/bin/ruff check face_perception test benchmarks launch

# OpenCV 5 dropped the Haar cascade; the detection benchmark runs it from a small side venv.
HAAR_VENV := build/haar-venv
$(HAAR_VENV)/bin/python:
	python3 -m venv $(HAAR_VENV) && $(HAAR_VENV)/bin/pip install -q "numpy<3" opencv-python-headless==4.14.0.94

bench: setup $(HAAR_VENV)/bin/python
	$(PY) benchmarks/detection.py --haar-python $(HAAR_VENV)/bin/python $(BENCH_ARGS)
	$(PY) -m benchmarks.detectors $(BENCH_ARGS)
	$(PY) benchmarks/recognition.py $(BENCH_ARGS)
	$(PY) benchmarks/recognizer.py $(BENCH_ARGS)
	$(PY) benchmarks/detection_training.py $(BENCH_ARGS)
	$(PY) benchmarks/transport.py $(BENCH_ARGS)
	$(PY) benchmarks/size_policy.py
	$(PY) benchmarks/gallery_search.py --sizes 100000,1000000
	$(PY) benchmarks/inference.py $(BENCH_ARGS)
	$(PY) benchmarks/pipeline.py $(BENCH_ARGS)
	$(PY) benchmarks/gallery_writes.py
	$(PY) -m benchmarks.tracking
	$(PY) -m benchmarks.naming
	$(PY) -m benchmarks.training
	$(PY) -m benchmarks.enrolment_views

clean:
	rm -rf build demo_output
