"""Fuzz targets (targets.py), the atheris harness that runs them (harness.py, `make fuzz`) and
their seed corpora (corpus/<target>/seed-*). tests/test_fuzz_*.py run the same checks in CI."""
