#!/bin/sh
# Delete scratch files older than N days (default 7). Destructive housekeeping: observe-only
# during a migration (running it twice, or redirected, means nothing).
set -eu
: "${ACME_HOME:?ACME_HOME is not set}"
days="${1:-7}"
mkdir -p "$ACME_HOME/tmp"
n=$(find "$ACME_HOME/tmp" -type f -mtime +"$days" -print | wc -l)
find "$ACME_HOME/tmp" -type f -mtime +"$days" -delete
echo "purge_tmp: removed $n file(s) older than $days day(s)"
