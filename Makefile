# Two commands do everything on a fresh machine: `make demo` and `make test` (both install
# cutover[all]: every extra, see README "Install").
# `make demo SCENARIO=cron` tells another legacy orchestrator's story (`cutover demo --help`);
# `make demo SCENARIO=team` migrates a team's own jobs (examples/acme_etl).
PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
SCENARIO ?= autoloader
# Test processes: most of the suite waits on servers (Prefect, Redis, Spark, PostgreSQL), so three
# workers on two cores finish it in about half the time; each worker starts its own servers, and
# worksteal hands single tests (not whole files) to whichever worker is free.
PYTEST_WORKERS ?= 3

.PHONY: demo test install clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@if [ "$(SCENARIO)" = "rq" ] || [ "$(SCENARIO)" = "team" ]; then sh scripts/ensure-redis; fi
	$(BIN)/cutover demo --scenario $(SCENARIO)

# pytest exits 5 when it collected no test: that is a failure here, not a pass.
# The RQ tests start their own redis-server: scripts/ensure-redis installs Debian's when missing.
# lint-imports checks the layering contracts in pyproject.toml (README "Architecture").
test: $(STAMP)
	sh scripts/ensure-redis
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -ra -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest ran no test: failing"; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) .cutover build *.egg-info
