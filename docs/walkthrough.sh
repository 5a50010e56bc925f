#!/usr/bin/env bash
# Regenerates the terminal sessions of docs/cli.md: runs every command of the walk-through
# in a fresh folder and prints each command and its real output as Markdown.
#   bash docs/walkthrough.sh > /tmp/session.md
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
cp -r "$root/examples" "$work/examples"
cd "$work"
export NO_COLOR=1 COLUMNS=120
unset PUBSUB_DB PUBSUB_STORE

step() {
  printf '```console\n$ %s\n' "$*"
  bash -c "$*" 2>&1
  printf '[exit %s]\n```\n\n' "$?"
}

step 'pubsub --version'
step 'pubsub plugins list'
step 'pubsub publish --app examples/orders.py --file examples/orders.jsonl'
step "pubsub publish --app examples/orders.py OrderPlaced --data '{\"order_id\": \"A-4\", \"sku\": \"BOOK\", \"total\": \"7.50\"}' --json"
step 'pubsub events list'
step 'pubsub events list --type OrderShipped --json'
step 'pubsub events show 3'
step 'pubsub run examples/orders.py --once'
step 'pubsub dlq list'
step 'pubsub dlq show 1'
step 'pubsub dlq retry 1 --app examples/orders.py --strict'
step 'ORDERS_WAREHOUSE_OPEN=1 pubsub dlq retry --all --app examples/orders.py'
step 'pubsub dlq list --status all --json'
step 'pubsub replay examples/orders.py --since 10m --dry-run'
step 'pubsub replay examples/orders.py --from-seq 2 --handler orders.audit'
step 'pubsub replay examples/orders.py --since 10m --json'
step 'pubsub snapshot create examples/projection.py'
step "pubsub publish --app examples/orders.py OrderPlaced --data '{\"order_id\": \"A-5\", \"sku\": \"PEN\", \"total\": \"2.20\"}'"
step 'pubsub snapshot list'
step 'pubsub snapshot restore examples/projection.py --show-state'
step 'pubsub run "examples/middleware.py:bus" --once --group audit-trail'
step 'pubsub stats'
step 'pubsub check'
step 'pubsub dlq purge --resolved --yes'
step 'pubsub bench --events 20000'
step 'pubsub bench --events 20000 --store sqlite --publishers 64'
step 'pubsub events list --since yesterday'
step "pubsub publish --app examples/orders.py OrderPlaced --data '{\"order_id\": 7}'"
step 'printf "%s\n" "{\"type\": \"OrderShipped\", \"data\": {\"order_id\": \"A-2\"}}" "{oops" > bad.jsonl; pubsub publish --app examples/orders.py --file bad.jsonl'
step 'printf "def broken(:\n" > broken.py; pubsub run broken.py'
step 'pubsub run examples/missing.py'
step 'echo "x = 1" > empty.py; pubsub run empty.py'
step 'pubsub events list --db other.db'
step 'echo "not a database" > notes.txt; pubsub events list --db notes.txt; cat notes.txt'
step 'pubsub dlq show 99'
rm -rf "$work"
