# Shortcuts for the scripts that people and CI use; the scripts are the source of truth.
# make test PYTEST_ARGS="-k e2e -x" passes arguments to pytest.
.PHONY: test run check

test:
	./scripts/test $(PYTEST_ARGS)

run:
	./scripts/run

check:
	./scripts/check
