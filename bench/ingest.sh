#!/usr/bin/env bash
# Webhook-ingest benchmark: `missions serve` against Probot and @octokit/webhooks in
# one run, with the load script in ../shared/bench (wrk, a signed 17 KB issues.labeled
# payload, a fresh X-GitHub-Delivery per request, 1/8/64 connections; server pinned
# to CPU 0, wrk to CPU 1). Afterwards it checks that every delivery answered 2xx is
# in the inbox: the figures include durability (SQLite, synchronous=FULL).
#
#   bash bench/ingest.sh                 # all targets
#   bash bench/ingest.sh --no-octokit    # any option of run-probot-anchor.sh passes through
# Environment: MISSIONS_BENCH_DIR (default ../shared/bench), PORT (8080), and the
# anchor script's own (CONNS, DURATION, WARMUP, ...). Results: target/bench-ingest/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
anchor=${MISSIONS_BENCH_DIR:-$root/../shared/bench}
port=${PORT:-8080}
[ -x "$anchor/run-probot-anchor.sh" ] || { echo "no load script at $anchor (set MISSIONS_BENCH_DIR)" >&2; exit 1; }

for tool in wrk curl openssl node; do
  if ! command -v "$tool" >/dev/null; then
    echo "installing $tool from Debian's packages" >&2
    apt-get update -qq && apt-get install -y -qq wrk curl openssl nodejs >/dev/null
    break
  fi
done

# The shared wrk script numbers delivery ids from 1 in every wrk run, so each level
# after the first would resend ids already stored, which we answer 200 without
# storing. Run a copy whose ids carry a random per-run salt: every request at
# every level is a new delivery that must be stored (harder for us; the same for
# the anchors, which do not deduplicate).
kit="$root/target/bench-anchor"
mkdir -p "$kit"
tar -C "$anchor" --exclude=node_modules --exclude=results -cf - . | tar -C "$kit" -xf -
sed -i 's/^function init(args)$/function init(args)\n  math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1e6) + (tid or 0))\n  salt = math.random(0, 0x7fffffff)/' "$kit/wrk/webhook.lua"
sed -i 's/(tid or 0), math.floor(counter/salt, math.floor(counter/' "$kit/wrk/webhook.lua"
grep -q 'salt, math.floor(counter' "$kit/wrk/webhook.lua" || { echo "could not salt delivery ids in $kit/wrk/webhook.lua" >&2; exit 1; }
[ -d "$kit/probot-anchor/node_modules/probot" ] || (cd "$kit/probot-anchor" && npm ci --no-audit --no-fund --silent)
anchor="$kit"

(cd "$root" && cargo build --release --locked --quiet)
bin="$root/target/release/missions"
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
db="sqlite://$data/bench.db"
export OUT_DIR="${OUT_DIR:-$root/target/bench-ingest/$(date +%Y%m%d-%H%M%S)}"

# RUST_LOG=warn matches the anchor's Probot LOG_LEVEL=warn: no line per delivery.
"$anchor/run-probot-anchor.sh" "$@" --start missions "http://127.0.0.1:$port/webhook" \
  "MISSIONS_LISTEN=\$HOST:\$PORT MISSIONS_WEBHOOK_SECRET=\$WEBHOOK_SECRET MISSIONS_DATABASE_URL=$db RUST_LOG=warn exec $bin serve"

# Durability: every 2xx wrk counted must be a stored row (in-flight requests cut off
# at the end of a run may be stored without wrk counting them, so stored >= answered).
answered=$(cat "$OUT_DIR"/wrk-missions-*.txt 2>/dev/null | awk '/^RESULT /{
  for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  total += v["requests"] - v["non2xx"] } END { print total + 0 }')
stats=$(MISSIONS_DATABASE_URL=$db "$bin" inbox stats)
stored=$(echo "$stats" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["pending"]+d["processed"]+d["failed"])')
echo
echo "durability: wrk counted $answered answers 2xx (plus 1 signature check); the inbox holds $stored deliveries: $stats"
if [ "$stored" -lt $((answered + 1)) ]; then
  echo "LOST DELIVERIES: $((answered + 1 - stored)) answered 2xx but not stored" >&2
  exit 1
fi
echo "every delivery answered 2xx is stored"
