#!/usr/bin/env bash
# System libraries the test extras build against, installed by the project (never by hand):
# mysqlclient (apache-airflow-providers-mysql's default MySQL/MariaDB driver) compiles against the
# MariaDB client library. Debian's libmariadb-dev provides it; nothing is done when it is present.
set -euo pipefail
if pkg-config --exists libmariadb 2>/dev/null || pkg-config --exists mysqlclient 2>/dev/null; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "Installing libmariadb-dev (for mysqlclient, the MariaDB tests' driver)"
    apt-get install -y -q --no-install-recommends libmariadb-dev pkg-config >/dev/null \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends libmariadb-dev pkg-config >/dev/null; }
    exit 0
fi
echo "mysqlclient needs the MariaDB/MySQL client library: install libmariadb-dev (Debian/Ubuntu) or" \
     "mariadb-connector-c (Fedora) and pkg-config, then run make again." >&2
exit 1
