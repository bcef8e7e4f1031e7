#!/usr/bin/env sh
# The tests that hand the service non-public addresses (webhook destinations), run where no
# packet can leave the machine: a network namespace of their own with only loopback
# (`unshare --net`, root). Without root they run in the machine's namespace, said loudly;
# they refuse such addresses before connecting and guard every connection anyway.
# Usage: scripts/run-isolated-tests.sh PYTHON [pytest arguments]
# Such tests live in ISOLATED_TEST_DIRS (tests/conftest.py refuses them anywhere else).
set -eu
python="$1"
shift
set -- tests/unit tests/e2e tests/jobs "$@"
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 \
  && unshare --net true 2>/dev/null; then
  echo "isolated-network tests: in a network namespace with only loopback"
  exec unshare --net sh -c 'ip link set lo up && exec "$@"' sh \
    "$python" -m pytest -m isolated_network "$@"
fi
if [ "${CI:-}" = "true" ]; then
  echo "error: CI=true needs root and unshare for the isolated-network tests" >&2
  exit 1
fi
echo "!!! NOT ISOLATED: no root or no unshare; the isolated-network tests run in this" \
  "machine's network namespace (their connection guard refuses anything but loopback)"
exec "$python" -m pytest -m isolated_network "$@"
