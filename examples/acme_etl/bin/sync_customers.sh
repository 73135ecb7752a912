#!/bin/sh
# Copy the CRM's customer exports into the warehouse drop zone (--full: every file, else new ones).
# Shadow-aware: under cutover's shadow (CUTOVER_MODE=shadow) it writes below CUTOVER_OUTPUT_PREFIX.
set -eu
: "${ACME_HOME:?ACME_HOME is not set}"
src="$ACME_HOME/data/inbox"
dest="$ACME_HOME/data/warehouse/customers"
if [ "${CUTOVER_MODE:-live}" = "shadow" ]; then
    : "${CUTOVER_OUTPUT_PREFIX:?shadow without CUTOVER_OUTPUT_PREFIX: refusing to write production}"
    dest="$CUTOVER_OUTPUT_PREFIX$dest"
fi
mkdir -p "$dest"
n=0
for f in "$src"/customers*.csv; do
    [ -e "$f" ] || continue
    if [ "${1:-}" = "--full" ] || [ ! -e "$dest/$(basename "$f")" ]; then
        cp "$f" "$dest/"
        n=$((n + 1))
    fi
done
echo "sync_customers: $n file(s) copied to $dest"
