#!/usr/bin/env bash
# Benchmarks SoftHSM2 directly against SoftHSM2 through libproxy.so, in one run.
#   bench/run.sh BUILD_DIR          (what `make bench` runs)
# Figures are information only: the exit status is 0 unless a run crashed or
# reported an error. Environment knobs:
#   BENCH_SECONDS  seconds per (operation, thread count) run   [1]
#   BENCH_THREADS  thread counts, comma-separated              [1,2]
#   BENCH_ROUNDS   direct/proxy alternations; best of each kept [3]
#   BENCH_ONLY     operations to run, comma-separated          [all]
#   BENCH_PROXY_MODULE  module for the "proxy" side [BUILD/libproxy.so]; set it
#                  to the SoftHSM2 library to calibrate (both sides direct)
#   BENCH_KEEP     directory to copy the raw RESULT lines into
set -u
BUILD=${1:-build}
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in /*) ;; *) BUILD=$SRCDIR/$BUILD ;; esac
export BUILD SRCDIR
# shellcheck source=tests/lib.sh
. "$SRCDIR/tests/lib.sh"

SECS=${BENCH_SECONDS:-1}
THREADS=${BENCH_THREADS:-1,2}
ROUNDS=${BENCH_ROUNDS:-3}
BENCH=$BUILD/bench/bench
PROXY=${BENCH_PROXY_MODULE:-$PROXY_MODULE}
TOKEN=bench

die() {
	echo "bench: $*" >&2
	exit 1
}
[ -x "$BENCH" ] || die "$BENCH not built (make bench builds it)"
[ -e "$PROXY" ] || die "$PROXY not found"
[ -e "$SOFTHSM_MODULE" ] || die "$SOFTHSM_MODULE not found (apt-get install softhsm2)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/p11proxy-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
softhsm_setup "$TMP/softhsm" "$TOKEN" || die "SoftHSM2 token setup failed"
proxy_conf "$TMP/proxy.yaml" "$TOKEN"
if [ "$(readlink -f "$PROXY")" = "$(readlink -f "$SOFTHSM_MODULE")" ]; then
	PROXY_LABEL=$TOKEN
	STANDIN=" (stand-in: SoftHSM2 on both sides)"
else
	PROXY_LABEL=v-$TOKEN
	STANDIN=""
fi

echo "p11proxy bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  direct: $SOFTHSM_MODULE (token '$TOKEN')"
echo "  proxy:  $PROXY (token '$PROXY_LABEL')$STANDIN"
echo "  ${SECS}s per operation and thread count; threads $THREADS; best of $ROUNDS alternating runs"

errors=0
# run SIDE ROUND MODULE LABEL: one bench process, RESULT lines into $TMP/SIDE.ROUND.
run() {
	local side=$1 round=$2 module=$3 label=$4 rc start
	start=$(date +%s)
	printf '  %-6s run %d/%d ... ' "$side" "$round" "$ROUNDS"
	"$BENCH" "$module" "$label" "$TEST_USER_PIN" --threads "$THREADS" --seconds "$SECS" \
		${BENCH_ONLY:+--only "$BENCH_ONLY"} >"$TMP/$side.$round" 2>"$TMP/$side.$round.err"
	rc=$?
	if [ $rc -ge 128 ]; then
		echo "CRASHED (signal $((rc - 128)))"
		errors=$((errors + 1))
	elif [ $rc -ne 0 ]; then
		echo "ERROR (exit $rc)"
		errors=$((errors + 1))
	else
		echo "$(($(date +%s) - start))s"
	fi
	sed 's/^/    /' "$TMP/$side.$round.err" >&2
}

for round in $(seq 1 "$ROUNDS"); do
	run direct "$round" "$SOFTHSM_MODULE" "$TOKEN"
	run proxy "$round" "$PROXY" "$PROXY_LABEL"
done
if [ -n "${BENCH_KEEP:-}" ]; then
	mkdir -p "$BENCH_KEEP" && cp "$TMP"/direct.* "$TMP"/proxy.* "$BENCH_KEEP"/
fi

# The table: per (op, threads) the best run (highest ops/s) of each side.
# "added" = proxy mean latency - direct mean latency, per call.
# Targets: ratio >= 0.97 on sign and encrypt; added < 1 us on C_GetAttributeValue.
echo
for side in direct proxy; do
	for f in "$TMP/$side".[0-9]*; do
		case $f in *.err) continue ;; esac
		sed -n "s/^RESULT /$side /p" "$f"
	done
done | awk '
function field(name,   i, kv) {
	for (i = 2; i <= NF; i++) {
		split($i, kv, "=")
		if (kv[1] == name)
			return kv[2]
	}
	return ""
}
{
	op = field("op"); thr = field("threads"); key = op SUBSEP thr; s = $1
	ops = field("ops_s") + 0
	if (!((s, key) in best) || ops > best[s, key]) {
		best[s, key] = ops
		p50[s, key] = field("p50_us"); p99[s, key] = field("p99_us")
		mean[s, key] = field("mean_us") + 0
	}
	if (!(key in seen)) {
		seen[key] = 1; order[n++] = key
	}
}
END {
	printf "%-22s %3s %11s %11s %6s %19s %19s %17s %8s  %s\n", "op", "thr", "direct/s",
	    "proxy/s", "ratio", "direct p50/p99 us", "proxy p50/p99 us", "mean d/p us",
	    "added us", "target"
	missed = 0
	for (i = 0; i < n; i++) {
		key = order[i]; split(key, k, SUBSEP); op = k[1]
		if (!(("direct", key) in best) || !(("proxy", key) in best)) {
			printf "%-22s %3s  (missing: a run failed)\n", op, k[2]
			continue
		}
		d = best["direct", key]; p = best["proxy", key]
		ratio = d > 0 ? p / d : 0
		added = mean["proxy", key] - mean["direct", key]
		target = ""
		if (op ~ /_sign$/ || op ~ /_enc_/)
			target = sprintf("ratio>=0.97 %s", ratio >= 0.97 ? "ok" : "MISSED")
		else if (op ~ /^get_attribute/)
			target = sprintf("added<1us %s", added < 1.0 ? "ok" : "MISSED")
		if (target ~ /MISSED/)
			missed++
		printf "%-22s %3s %11.1f %11.1f %6.3f %19s %19s %17s %+8.2f  %s\n", op, k[2], d, p,
		    ratio, p50["direct", key] "/" p99["direct", key],
		    p50["proxy", key] "/" p99["proxy", key],
		    sprintf("%.2f/%.2f", mean["direct", key], mean["proxy", key]), added, target
	}
	printf "\ntargets missed: %d (information only)\n", missed
}'

if [ $errors -ne 0 ]; then
	echo "bench: $errors run(s) failed" >&2
	exit 1
fi
exit 0
