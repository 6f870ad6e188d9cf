#!/usr/bin/env bash
# System packages the tests need, installed by the project (never by hand); nothing is done when they
# are present:
# - the MariaDB client library: mysqlclient (apache-airflow-providers-mysql's default MySQL/MariaDB
#   driver) compiles against it. Debian's libmariadb-dev provides it.
# - Chromium (/usr/bin/chromium, Debian's `chromium`): the browser test of the deployment suite
#   (tests/deployment/test_ui.py) drives it with Playwright. `playwright install` would download a
#   browser of its own, which does not work here. Optional: without it that test skips, saying why.
set -euo pipefail

can_apt() { command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; }

apt_install() {  # quiet; retried once after an `apt-get update` (a fresh machine has no package lists)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && \
             DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
}

status=0
if ! pkg-config --exists libmariadb 2>/dev/null && ! pkg-config --exists mysqlclient 2>/dev/null; then
    if can_apt; then
        echo "Installing libmariadb-dev (for mysqlclient, the MariaDB tests' driver)"
        apt_install libmariadb-dev pkg-config
    else
        echo "mysqlclient needs the MariaDB/MySQL client library: install libmariadb-dev (Debian/Ubuntu) or" \
             "mariadb-connector-c (Fedora) and pkg-config, then run make again." >&2
        status=1
    fi
fi

if [ ! -x /usr/bin/chromium ]; then
    if can_apt; then
        echo "Installing chromium (for the browser test, tests/deployment/test_ui.py)"
        apt_install chromium || echo "Could not install chromium: the browser test will skip." >&2
    else
        echo "No /usr/bin/chromium (install Debian's chromium package): the browser test will skip." >&2
    fi
fi
exit "$status"
