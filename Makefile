.PHONY: run test setup
run:   ## install and start serving + dashboard on the committed weights
	scripts/run.sh
test:  ## install test tools (incl. Debian chromium) and run lint, types and the full test suite
	scripts/test.sh
setup:
	scripts/setup.sh test
