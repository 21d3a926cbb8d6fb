.PHONY: run test test-slow setup screenshots
run:   ## install and start serving + dashboard on the committed weights
	scripts/run.sh
test:  ## install test tools (incl. Debian chromium) and run lint, types and the full test suite
	scripts/test.sh
test-slow:  ## the slow suite only (tests/slow/: 10-minute soak, multi-node Ray cluster; about 25 min)
	scripts/test.sh -m slow
setup:
	scripts/setup.sh test
screenshots:  ## refresh the README's docs/screenshots/ from the browser test (tests only write test-artifacts/)
	scripts/screenshots.sh
