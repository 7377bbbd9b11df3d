# Each target does all set-up first (virtual environment, llama.cpp build, test model); see tools/dev.py.
PYTHON ?= python3

.PHONY: run test bench screenshots package setup

run:
	$(PYTHON) tools/dev.py run

test:
	$(PYTHON) tools/dev.py test

bench:
	$(PYTHON) tools/dev.py bench

screenshots:
	$(PYTHON) tools/dev.py screenshots

package:
	$(PYTHON) tools/dev.py package

setup:
	$(PYTHON) tools/dev.py setup
