#!/usr/bin/env bash
# Benchmarks, in one run (what `make bench` runs; see bench/README.md):
#   proxy  SoftHSM2 directly against SoftHSM2 through libproxy.so (bench)
#   ha     an HA slot of two members: steady state against SoftHSM2 directly
#          (bench), failover gaps and throughput while members fail (bench_ha,
#          over the fault-injecting shim tests/shim)
#   index  the virtual-key index (bench_index), SQLite and PostgreSQL (a private server)
#   storesign  ECDSA P-256 signing through the proxy with BENCH_STORE_KEYS keys in its store
#          against SoftHSM2 directly (bench --only ecdsa_p256_sign), alternating, median
#          and range of BENCH_STORE_ROUNDS rounds
#   sync   `p11proxy sync` of BENCH_SYNC_KEYS SoftHSM2 keys against SoftHSM2's own
#          listing of them (bench_sync), both timed as whole processes
#   vendor the vendor mechanisms (bench_vendor): C_GenerateRandom per entropy
#          source against SoftHSM2's own, fragment derivation per mode, AES-256-GCM
#          with a fragment-derived key against `openssl speed` in the same run
#   swkey  the software-key engine (crypto/swkey.h) in-process against
#          `openssl speed` on the same algorithms and sizes (bench_swkey), then
#          OpenSSL alone: the ways of handling a keyed context (part swkey_evp)
# (`make bench` then runs bench/callgrind.sh: instructions per call, part
# "callgrind" of BENCH_PARTS, which this script ignores.)
#   bench/run.sh BUILD_DIR
# Figures are information only: the exit status is 0 unless a run crashed or
# reported an error. Environment knobs:
#   swkeys software keys through the proxy (a slot with software_keys:) against
#          SoftHSM2's own keys: AES-256-GCM 1 KiB / 16 KiB, HMAC-SHA256, ECDSA
#          P-256, Ed25519, RSA-2048 sign, per thread count (bench_swkeys), best
#          of BENCH_ROUNDS; 2-thread scaling per side (wall, per CPU second),
#          voluntary context switches per 1000 operations (threads queueing on a
#          lock), and the proxy against `openssl speed` run right after each of
#          its runs (bench_swkey speed): median (range) of the rounds
#   BENCH_PARTS    parts to run, comma-separated  [proxy,ha,index,storesign,sync,vendor,swkey,swkeys]
#   BENCH_SECONDS  seconds per (operation, thread count) run   [1]
#   BENCH_THREADS  thread counts, comma-separated              [1,2]
#   BENCH_ROUNDS   direct/proxy alternations; best of each kept [3]
#   BENCH_ONLY     operations to run, comma-separated          [all] (part proxy)
#   BENCH_PROXY_MODULE  module for the "proxy" side [BUILD/libproxy.so]; set it
#                  to the SoftHSM2 library to calibrate (both sides direct;
#                  the ha part is then skipped)
#   BENCH_HA_THREADS    bench_ha thread counts                 [1,4]
#   BENCH_HA_FAILOVERS  failovers measured per thread count    [20]
#   BENCH_HA_WINDOW     seconds per steady / failing window    [1]
#   BENCH_HA_ROUNDS     steady + failing window pairs          [6]
#   BENCH_SYNC_KEYS     keys on the token of the sync part     [10000]
#   BENCH_PG_KEYS       keys of the index part on PostgreSQL   [10000]
#   BENCH_STORE_KEYS    keys in the store of part storesign    [100000]
#   BENCH_STORE_ROUNDS  direct/proxy alternations of storesign [5]
#   BENCH_KEEP     directory to copy the raw RESULT lines into
set -u
BUILD_ARG=${1:-build}
BUILD=$BUILD_ARG
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in /*) ;; *) BUILD=$SRCDIR/$BUILD ;; esac
export BUILD SRCDIR
# shellcheck source=tests/lib.sh
. "$SRCDIR/tests/lib.sh"

PARTS=${BENCH_PARTS:-proxy,ha,index,storesign,sync,vendor,swkey,swkeys}
SECS=${BENCH_SECONDS:-1}
THREADS=${BENCH_THREADS:-1,2}
ROUNDS=${BENCH_ROUNDS:-3}
BENCH=$BUILD/bench/bench
BENCH_HA=$BUILD/bench/bench_ha
BENCH_INDEX=$BUILD/bench/bench_index
BENCH_SYNC=$BUILD/bench/bench_sync
BENCH_VENDOR=$BUILD/bench/bench_vendor
BENCH_SWKEY=$BUILD/bench/bench_swkey
BENCH_SWKEYS=$BUILD/bench/bench_swkeys
SHIM=$BUILD/tests/libshim.so
PROXY=${BENCH_PROXY_MODULE:-$PROXY_MODULE}
TOKEN=bench

die() {
	echo "bench: $*" >&2
	exit 1
}
# part NAME: true when NAME is in BENCH_PARTS.
part() {
	case ",$PARTS," in *",$1,"*) return 0 ;; esac
	return 1
}
[ -x "$BENCH" ] || die "$BENCH not built (make bench builds it)"
[ -e "$PROXY" ] || die "$PROXY not found"
[ -e "$SOFTHSM_MODULE" ] || die "$SOFTHSM_MODULE not found (apt-get install softhsm2)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/p11proxy-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
if [ "$(readlink -f "$PROXY")" = "$(readlink -f "$SOFTHSM_MODULE")" ]; then
	PROXY_LABEL=$TOKEN
	STANDIN=" (stand-in: SoftHSM2 on both sides)"
else
	PROXY_LABEL=v-$TOKEN
	STANDIN=""
fi

echo "p11proxy bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), parts $PARTS"
echo "  direct: $SOFTHSM_MODULE"
echo "  proxy:  $PROXY$STANDIN"
echo "  ${SECS}s per operation and thread count; threads $THREADS; best of $ROUNDS alternating runs"

errors=0
# run SIDE ROUND OF COMMAND...: one benchmark process, its RESULT lines into $TMP/SIDE.ROUND.
run() {
	local side=$1 round=$2 of=$3 rc start
	shift 3
	start=$(date +%s)
	printf '  %-9s run %d/%d ... ' "$side" "$round" "$of"
	"$@" >"$TMP/$side.$round" 2>"$TMP/$side.$round.err"
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

# table BASE SIDE [RESULT_PREFIX]: per (op, threads) the best run (highest ops/s) of
# each side, BASE being the "direct" columns. "added" = SIDE mean latency - BASE mean
# latency, per call. Targets: ratio >= 0.97 on sign and encrypt, >= 0.9 on session
# open + close; added < 1 us on C_GetAttributeValue. With RESULT_PREFIX, one RESULT line
# per row follows the table.
table() {
	local base=$1 side=$2 prefix=${3:-} s f
	for s in "$base" "$side"; do
		for f in "$TMP/$s".[0-9]*; do
			case $f in *.err) continue ;; esac
			sed -n "s/^RESULT /$s /p" "$f"
		done
	done | awk -v base="$base" -v side="$side" -v prefix="$prefix" '
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
	    side "/s", "ratio", "direct p50/p99 us", side " p50/p99 us", "mean d/p us",
	    "added us", "target"
	missed = 0
	for (i = 0; i < n; i++) {
		key = order[i]; split(key, k, SUBSEP); op = k[1]
		if (!((base, key) in best) || !((side, key) in best)) {
			printf "%-22s %3s  (missing: a run failed)\n", op, k[2]
			continue
		}
		d = best[base, key]; p = best[side, key]
		ratio = d > 0 ? p / d : 0
		added = mean[side, key] - mean[base, key]
		target = ""
		if (op ~ /_sign$/ || op ~ /_enc_/)
			target = sprintf("ratio>=0.97 %s", ratio >= 0.97 ? "ok" : "MISSED")
		else if (op ~ /^session_/)
			target = sprintf("ratio>=0.90 %s", ratio >= 0.90 ? "ok" : "MISSED")
		else if (op ~ /^get_attribute/)
			target = sprintf("added<1us %s", added < 1.0 ? "ok" : "MISSED")
		if (target ~ /MISSED/)
			missed++
		printf "%-22s %3s %11.1f %11.1f %6.3f %19s %19s %17s %+8.2f  %s\n", op, k[2], d, p,
		    ratio, p50[base, key] "/" p99[base, key],
		    p50[side, key] "/" p99[side, key],
		    sprintf("%.2f/%.2f", mean[base, key], mean[side, key]), added, target
		if (prefix != "")
			res[nres++] = sprintf("RESULT op=%s%s threads=%s direct_ops_s=%.1f %s_ops_s=%.1f ratio=%.3f added_us=%.2f", prefix, op, k[2], d, side, p, ratio, added)
	}
	printf "\ntargets missed: %d (information only)\n", missed
	for (i = 0; i < nres; i++)
		print res[i]
}'
}

# ---- part proxy: every operation, SoftHSM2 directly and through the proxy ----
if part proxy; then
	echo
	echo "== proxy: token '$TOKEN' directly and as '$PROXY_LABEL' through the proxy"
	softhsm_setup "$TMP/softhsm" "$TOKEN" || die "SoftHSM2 token setup failed"
	proxy_conf "$TMP/proxy.yaml" "$TOKEN"
	for round in $(seq 1 "$ROUNDS"); do
		for side in direct proxy; do
			if [ $side = direct ]; then
				set -- "$SOFTHSM_MODULE" "$TOKEN"
			else
				set -- "$PROXY" "$PROXY_LABEL"
			fi
			run $side "$round" "$ROUNDS" "$BENCH" "$@" "$TEST_USER_PIN" \
				--threads "$THREADS" --seconds "$SECS" ${BENCH_ONLY:+--only "$BENCH_ONLY"}
		done
	done
	echo
	table direct proxy
fi

# ---- part ha: an HA slot over two tokens m1, m2 ----
# ha_conf FILE MODULE: slot "ha" (failover, probe_interval 100ms, members m1 then m2) and
# one-member slots v-m1, v-m2, all through MODULE.
ha_conf() {
	local m
	{
		printf 'backends:\n  - name: be\n    module: %s\nslots:\n' "$2"
		printf '  - label: ha\n    ha: { mode: failover, probe_interval: 100ms }\n'
		printf '    members:\n'
		for m in m1 m2; do
			printf '      - backend: be\n        token_label: %s\n' "$m"
		done
		# The same members with call_timeout: calls run on workers and can be abandoned.
		printf '  - label: ha-timed\n    ha: { mode: failover, probe_interval: 100ms, call_timeout: 5s }\n'
		printf '    members:\n'
		for m in m1 m2; do
			printf '      - backend: be\n        token_label: %s\n' "$m"
		done
		for m in m1 m2; do
			printf '  - label: v-%s\n    members:\n' "$m"
			printf '      - backend: be\n        token_label: %s\n' "$m"
		done
	} >"$1"
}

if part ha && [ -n "$STANDIN" ]; then
	echo
	echo "== ha: skipped (the proxy side is SoftHSM2: calibration run)"
elif part ha && [ ! -x "$BENCH_HA" ]; then
	echo "bench: $BENCH_HA not built (make bench builds it): no HA figures" >&2
	errors=$((errors + 1))
elif part ha; then
	echo
	echo "== ha: slot 'ha' = members m1, m2 (failover, probe_interval 100ms), no failures,"
	echo "   against token m1 directly: ECDSA P-256 sign, the same key (bench_ha sign)"
	softhsm_setup "$TMP/ha-softhsm" m1 m2 || die "SoftHSM2 token setup (m1, m2) failed"
	ha_conf "$TMP/ha-direct.yaml" "$SOFTHSM_MODULE"
	KEY=bench-ha-$$
	export P11PROXY_CONF=$TMP/ha-direct.yaml
	"$BENCH_HA" keys "$PROXY" "$TEST_USER_PIN" "$KEY" || die "bench_ha keys failed"
	for round in $(seq 1 "$ROUNDS"); do
		for side in direct-m1 ha ha-timed; do
			case $side in
			ha | ha-timed) set -- "$PROXY" $side ;;
			*) set -- "$SOFTHSM_MODULE" m1 ;;
			esac
			run $side "$round" "$ROUNDS" "$BENCH_HA" sign "$@" "$TEST_USER_PIN" "$KEY" \
				--threads "$THREADS" --seconds "$SECS"
		done
	done
	echo
	table direct-m1 ha ha_steady_
	echo
	echo "== ha-timed: the same members with call_timeout 5s (calls run on worker threads"
	echo "   so that a hung one can be abandoned), against token m1 directly"
	table direct-m1 ha-timed ha_timed_

	# The failover figures need the shim; `make bench` may not have built it.
	if [ ! -e "$SHIM" ]; then
		echo "  building $SHIM"
		env -u MAKEFLAGS -u MFLAGS make -s -C "$SRCDIR" O="$BUILD_ARG" "$BUILD_ARG/tests/libshim.so" >&2 ||
			echo "bench: building $SHIM failed" >&2
	fi
	if [ ! -e "$SHIM" ]; then
		echo "bench: $SHIM missing: no failover figures" >&2
		errors=$((errors + 1))
	else
		HA_THREADS=${BENCH_HA_THREADS:-1,4}
		echo
		echo "== ha: the same slot and key through the fault-injecting shim; threads $HA_THREADS"
		echo "   sign while the member serving them fails (CKR_DEVICE_ERROR on every call)"
		ha_conf "$TMP/ha-shim.yaml" "$SHIM"
		P11PROXY_CONF=$TMP/ha-shim.yaml P11SHIM_MODULE=$SOFTHSM_MODULE \
			P11SHIM_CONTROL=$TMP/shim.control P11SHIM_LOG=$TMP/shim.log \
			P11PROXY_DEBUG_FILE=$TMP/ha-proxy.log \
			run failover 1 1 "$BENCH_HA" failover "$PROXY" "$TMP/shim.control" \
			"$TMP/shim.log" "$TEST_USER_PIN" "$KEY" --threads "$HA_THREADS" \
			--failovers "${BENCH_HA_FAILOVERS:-20}" --window "${BENCH_HA_WINDOW:-1}" \
			--rounds "${BENCH_HA_ROUNDS:-6}"
		echo
		awk '
function field(name,   i, kv) {
	for (i = 2; i <= NF; i++) {
		split($i, kv, "=")
		if (kv[1] == name)
			return kv[2]
	}
	return ""
}
/^RESULT op=ha_failover_gap / {
	gap[ng++] = sprintf("%3s %9s %8s %11.2f %11.2f %11.2f %12.1f %20s %10s", field("threads"),
	    field("failovers"), field("samples"), field("gap_p50_us") / 1000,
	    field("gap_p90_us") / 1000, field("gap_max_us") / 1000, field("sign_p50_us"),
	    field("recovery_p50_ms") "/" field("recovery_max_ms"), field("app_errors"))
}
/^RESULT op=ha_throughput / {
	tp[nt++] = sprintf("%3s %14s %14s %6s %10s %14s %10s", field("threads"),
	    field("steady_ops_s"), field("failing_ops_s"), field("ratio"), field("failovers"),
	    field("steady_s") "/" field("failing_s"), field("app_errors"))
}
END {
	print "failover gap: first call that met the failure -> next good result, per thread"
	printf "%3s %9s %8s %11s %11s %11s %12s %20s %10s\n", "thr", "failovers", "samples",
	    "gap p50 ms", "gap p90 ms", "gap max ms", "sign p50 us", "recovery p50/max ms",
	    "app errors"
	for (i = 0; i < ng; i++)
		print gap[i]
	print ""
	print "throughput: good signatures/s, steady windows vs windows with random failures"
	printf "%3s %14s %14s %6s %10s %14s %10s\n", "thr", "steady ops/s", "failing ops/s",
	    "ratio", "failovers", "seconds s/f", "app errors"
	for (i = 0; i < nt; i++)
		print tp[i]
}' "$TMP/failover.1"
		grep '^RESULT ' "$TMP/failover.1"
	fi
	"$BENCH_HA" clean "$PROXY" "$TEST_USER_PIN" "$KEY" >/dev/null 2>&1
fi

# ---- part index: the virtual-key index (bench_index prints its own RESULT lines) ----
# index_summary ENGINE FILE: the figures against the issue's targets.
index_summary() {
	awk -v engine="$1" '
function field(name,   i, kv) {
	for (i = 2; i <= NF; i++) {
		split($i, kv, "=")
		if (kv[1] == name)
			return kv[2]
	}
	return ""
}
function mark(ok) { return ok ? "ok" : "MISSED" }
/^RESULT op=batch_put_all / { n = field("n") }
/^RESULT op=load_first_find_best / { load = field("ms") }
/^RESULT op=find_label / { fl50 = field("p50_us"); fl99 = field("p99_us") }
/^RESULT op=find_ck_id / { fi50 = field("p50_us"); fi99 = field("p99_us") }
/^RESULT op=put_change / { put50 = field("p50_ms"); put99 = field("p99_ms") }
/^RESULT op=propagation_other_process / { pr50 = field("p50_ms"); pr99 = field("p99_ms") }
END {
	printf "\nindex (%s, %s keys): load + first find %s ms (<300 %s); find by label p50/p99 %s/%s us, by CKA_ID %s/%s us (<20 %s); put p50/p99 %s/%s ms (<10 %s); propagation to another process p50/p99 %s/%s ms (information only)\n",
	    engine, n, load, mark(load != "" && load < 300), fl50, fl99, fi50, fi99,
	    mark(fl99 != "" && fl99 < 20 && fi99 < 20), put50, put99, mark(put99 != "" && put99 < 10),
	    pr50, pr99
}' "$2"
}
# index_run ENGINE OUT ARGS...: bench_index with ARGS, its figures and their summary.
index_run() {
	local engine=$1 out=$2
	shift 2
	if [ ! -x "$BENCH_INDEX" ]; then
		echo "bench: $BENCH_INDEX not built: no index figures" >&2
		errors=$((errors + 1))
	elif ! "$BENCH_INDEX" "$@" >"$out" 2>"$out.err"; then
		echo "  bench_index ERROR"
		sed 's/^/    /' "$out.err" >&2
		errors=$((errors + 1))
	else
		sed 's/^/    /' "$out.err" >&2
		cat "$out"
		index_summary "$engine" "$out"
	fi
}
if part index; then
	echo
	echo "== index: bench_index (SQLite)"
	index_run sqlite "$TMP/index.1"
	# The same against PostgreSQL: a private server in $TMP (tests/pg.sh), over its Unix
	# socket; BENCH_PG_KEYS keys (the store writes a batch row by row: round trips add up).
	echo
	echo "== index: bench_index (PostgreSQL, private server)"
	# shellcheck source=tests/pg.sh
	. "$SRCDIR/tests/pg.sh"
	if pg_start "$TMP/pg"; then
		index_run postgresql "$TMP/index.pg" --keys "${BENCH_PG_KEYS:-10000}" \
			--target "$(pg_uri)"
		pg_stop
	else
		echo "bench: no PostgreSQL server: $PG_WHY" >&2
		errors=$((errors + 1))
	fi
fi

# ---- part storesign: signing through the proxy with a big store, against SoftHSM2 directly ----
# The proxy's state directory holds a store of BENCH_STORE_KEYS keys (bench_index --fill-only:
# slots v-bench-0 to v-bench-3, so the module loads them all at C_Initialize and every lookup
# runs in maps of that size; the signing key is the bench's own, in slot v-bench). Sides
# alternate, BENCH_STORE_ROUNDS rounds; per thread count the median ops/s of each side with
# its range, the ratio of the medians and the range of the per-round ratios.
# storesign_table: that table from $TMP/ss-direct.N and $TMP/ss-proxy.N.
storesign_table() {
	local keys=$1 f
	for f in "$TMP"/ss-direct.[0-9]* "$TMP"/ss-proxy.[0-9]*; do
		case $f in *.err) continue ;; esac
		sed -n "s/^RESULT /${f##*/} /p" "$f"
	done | awk -v keys="$keys" '
function field(name,   i, kv) {
	for (i = 2; i <= NF; i++) {
		split($i, kv, "=")
		if (kv[1] == name)
			return kv[2]
	}
	return ""
}
# median of a[1..n] (sorted in place)
function median(a, n,   i, j, t) {
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
			t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
		}
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
	split($1, sr, "."); side = sr[1]; round = sr[2]
	thr = field("threads")
	v[side, thr, round] = field("ops_s") + 0
	if (!(thr in seen)) { seen[thr] = 1; order[nt++] = thr }
	if (round > maxr) maxr = round
}
END {
	printf "%3s %26s %26s %7s %15s  %s\n", "thr", "direct ops/s med [range]",
	    "proxy ops/s med [range]", "ratio", "round ratios", "target"
	for (t = 0; t < nt; t++) {
		thr = order[t]; nd = np = nr = 0; rmin = 1e9; rmax = 0
		for (r = 1; r <= maxr; r++) {
			if ((("ss-direct", thr, r) in v) && (("ss-proxy", thr, r) in v)) {
				d[++nd] = v["ss-direct", thr, r]; p[++np] = v["ss-proxy", thr, r]
				q = d[nd] > 0 ? p[np] / d[nd] : 0
				if (q < rmin) rmin = q
				if (q > rmax) rmax = q
			}
		}
		if (nd == 0) {
			printf "%3s  (missing: a run failed)\n", thr
			continue
		}
		dm = median(d, nd); pm = median(p, np)
		ratio = dm > 0 ? pm / dm : 0
		printf "%3s %10.1f [%6.0f-%6.0f] %10.1f [%6.0f-%6.0f] %7.3f %7.3f-%-7.3f  ratio>=0.97 %s\n",
		    thr, dm, d[1], d[nd], pm, p[1], p[np], ratio, rmin, rmax,
		    (ratio >= 0.97 ? "ok" : "MISSED")
		res[t] = sprintf("RESULT op=store_ecdsa_p256_sign threads=%s keys=%s rounds=%d direct_ops_s=%.1f direct_min=%.1f direct_max=%.1f proxy_ops_s=%.1f proxy_min=%.1f proxy_max=%.1f ratio=%.3f ratio_min=%.3f ratio_max=%.3f",
		    thr, keys, nd, dm, d[1], d[nd], pm, p[1], p[np], ratio, rmin, rmax)
	}
	for (t = 0; t < nt; t++)
		if (t in res)
			print res[t]
}'
}
if part storesign; then
	echo
	nkeys=${BENCH_STORE_KEYS:-100000}
	srounds=${BENCH_STORE_ROUNDS:-5}
	echo "== storesign: ECDSA P-256 sign, token '$TOKEN' directly and as '$PROXY_LABEL' through the proxy with $nkeys keys in its store$STANDIN"
	SSDIR=$TMP/storesign
	mkdir -p "$SSDIR"
	chmod 700 "$SSDIR"
	if [ ! -x "$BENCH_INDEX" ]; then
		echo "bench: $BENCH_INDEX not built: no storesign figures" >&2
		errors=$((errors + 1))
	elif ! softhsm_setup "$SSDIR/softhsm" "$TOKEN" || ! proxy_conf "$SSDIR/proxy.yaml" "$TOKEN"; then
		echo "bench: storesign: SoftHSM2 or proxy.yaml setup failed" >&2
		errors=$((errors + 1))
	elif ! "$BENCH_INDEX" --fill-only --keys "$nkeys" --target "$PROXY_INDEX" \
		>"$SSDIR/fill.out" 2>&1; then
		echo "bench: storesign: filling the store failed:" >&2
		sed 's/^/    /' "$SSDIR/fill.out" >&2
		errors=$((errors + 1))
	else
		sed -n 's/^RESULT op=batch_put_all /  store filled: /p' "$SSDIR/fill.out"
		for round in $(seq 1 "$srounds"); do
			for side in direct proxy; do
				if [ $side = direct ]; then
					set -- "$SOFTHSM_MODULE" "$TOKEN"
				else
					set -- "$PROXY" "$PROXY_LABEL"
				fi
				run "ss-$side" "$round" "$srounds" "$BENCH" "$@" "$TEST_USER_PIN" \
					--threads "$THREADS" --seconds "$SECS" --only ecdsa_p256_sign
			done
		done
		echo
		storesign_table "$nkeys"
	fi
fi

# ---- part sync: p11proxy sync against SoftHSM2's own listing (whole processes, same clock) ----
if part sync; then
	echo
	nkeys=${BENCH_SYNC_KEYS:-10000}
	echo "== sync: $nkeys SoftHSM2 keys, p11proxy sync against SoftHSM2's own listing"
	# ms COMMAND...: runs it, output to $TMP/ms.out, prints its wall time in ms.
	ms() {
		local t0 t1
		t0=$(date +%s%N)
		"$@" >"$TMP/ms.out" 2>"$TMP/ms.err" || return 1
		t1=$(date +%s%N)
		echo $(((t1 - t0) / 1000000))
	}
	SDIR=$TMP/sync
	mkdir -p "$SDIR"
	if [ ! -x "$BENCH_SYNC" ]; then
		echo "bench: $BENCH_SYNC not built: no sync figures" >&2
		errors=$((errors + 1))
	elif ! (softhsm_setup "$SDIR" synctok >/dev/null &&
		"$BENCH_SYNC" create "$SOFTHSM_MODULE" synctok "$TEST_USER_PIN" "$nkeys"); then
		echo "  sync: creating $nkeys keys ERROR" >&2
		errors=$((errors + 1))
	else
		export SOFTHSM2_CONF=$SDIR/softhsm2.conf P11P_BENCH_PIN=$TEST_USER_PIN
		printf 'state_dir: %s
backends:
  - name: softhsm
    module: %s
slots:
  - label: vsync
    members:
      - backend: softhsm
        token_label: synctok
        pin: env:P11P_BENCH_PIN
' \
			"$SDIR/state" "$SOFTHSM_MODULE" >"$SDIR/proxy.yaml"
		best_list=0 best_first=0 best_again=0 best_dry=0
		ok=1
		for round in 1 2 3; do
			rm -rf "$SDIR/state"
			l=$(ms "$BENCH_SYNC" list "$SOFTHSM_MODULE" synctok "$TEST_USER_PIN") || ok=0
			[ $round = 1 ] && cp "$TMP/ms.out" "$TMP/sync.list"
			d=$(ms "$CLI" --config "$SDIR/proxy.yaml" sync vsync --dry-run) || ok=0
			f=$(ms "$CLI" --config "$SDIR/proxy.yaml" sync vsync) || ok=0
			[ $round = 1 ] && cp "$TMP/ms.out" "$TMP/sync.first"
			a=$(ms "$CLI" --config "$SDIR/proxy.yaml" sync vsync) || ok=0
			[ $round = 1 ] && cp "$TMP/ms.out" "$TMP/sync.again"
			[ $ok = 1 ] || break
			if [ $best_list = 0 ] || [ "$l" -lt $best_list ]; then best_list=$l; fi
			if [ $best_dry = 0 ] || [ "$d" -lt $best_dry ]; then best_dry=$d; fi
			if [ $best_first = 0 ] || [ "$f" -lt $best_first ]; then best_first=$f; fi
			if [ $best_again = 0 ] || [ "$a" -lt $best_again ]; then best_again=$a; fi
		done
		if [ $ok != 1 ]; then
			echo "  sync ERROR"
			sed 's/^/    /' "$TMP/ms.out" "$TMP/ms.err" >&2
			errors=$((errors + 1))
		else
			sed 's/^/  /' "$TMP/sync.list" "$TMP/sync.first" "$TMP/sync.again"
			echo "RESULT op=sync keys=$nkeys softhsm_list_ms=$best_list sync_dry_run_ms=$best_dry sync_first_ms=$best_first sync_again_ms=$best_again" |
				tee "$TMP/sync.1"
			awk -v l=$best_list -v d=$best_dry -v f=$best_first -v a=$best_again -v n="$nkeys" 'BEGIN {
				printf "\nsync of %d keys (best of 3, whole processes): SoftHSM2 listing %d ms; p11proxy sync --dry-run %d ms (%.2fx), first sync (adds all) %d ms (%.2fx), sync again (all unchanged) %d ms (%.2fx) (information only)\n",
				    n, l, d, d / l, f, f / l, a, a / l
			}'
		fi
	fi
fi

# ---- part vendor: entropy sources, fragment derivation, AES-GCM with a derived key ----
if part vendor && [ -n "$STANDIN" ]; then
	echo
	echo "== vendor: skipped (the proxy side is SoftHSM2: calibration run)"
elif part vendor && [ ! -x "$BENCH_VENDOR" ]; then
	echo "bench: $BENCH_VENDOR not built (make bench builds it): no vendor figures" >&2
	errors=$((errors + 1))
elif part vendor; then
	echo
	echo "== vendor: token 'vb' directly and through slots with entropy os / hsm / mix, fragments"
	softhsm_setup "$TMP/vendor-softhsm" vb || die "SoftHSM2 token setup (vb) failed"
	"$BENCH_VENDOR" setup "$SOFTHSM_MODULE" vb "$TEST_USER_PIN" || die "bench_vendor setup failed"
	frag=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
	printf '{"customer_fragments": [
  {"name": "wr", "type": "hsm_wrapped", "hsm_key_label": "cf-key", "value": "%s"},
  {"name": "sec", "type": "hsm_secured", "hsm_key_label": "cf-key", "value": "%s"}]}\n' \
		"$frag" "$frag" >"$TMP/fragments.json"
	chmod 600 "$TMP/fragments.json"
	{
		printf 'backends:\n  - name: be\n    module: %s\nslots:\n' "$SOFTHSM_MODULE"
		for src in os hsm mix; do
			printf '  - label: ent-%s\n    entropy: { source: %s }\n' "$src" "$src"
			printf '    fragments: %s\n' "$TMP/fragments.json"
			printf '    members:\n      - backend: be\n        token_label: vb\n'
		done
	} >"$TMP/vendor.yaml"
	export P11PROXY_CONF=$TMP/vendor.yaml
	vrun() {
		local name=$1
		shift
		if ! "$BENCH_VENDOR" run "$@" "$SECS" >>"$TMP/vendor.res" 2>"$TMP/vendor.err"; then
			echo "  bench_vendor $name ERROR"
			sed 's/^/    /' "$TMP/vendor.err" >&2
			errors=$((errors + 1))
		fi
		sed -n "s/^RESULT op=\([^ ]*\)/RESULT op=${name}_\1/p" "$TMP/vendor.res" | tail -1
	}
	: >"$TMP/vendor.res"
	for op in random32 random4k; do
		vrun softhsm "$SOFTHSM_MODULE" vb "$TEST_USER_PIN" $op
		for src in os hsm mix; do
			vrun "$src" "$PROXY" "ent-$src" "$TEST_USER_PIN" $op
		done
	done
	for op in derive frag_wrapped frag_secured gcm1k gcm16k; do
		vrun proxy "$PROXY" ent-mix "$TEST_USER_PIN" $op
	done | tee "$TMP/vendor.proxy"
	for len in 1024 16384; do
		openssl speed -evp aes-256-gcm -bytes $len -seconds "$SECS" 2>/dev/null |
			awk -v len=$len 'tolower($1) == "aes-256-gcm" { v = $NF; sub(/k$/, "", v);
				printf "RESULT op=openssl_gcm%s mb_s=%.1f\n", len == 1024 ? "1k" : "16k", v * 1000 / 1e6 }'
	done | tee "$TMP/vendor.ossl"
	awk '
function field(name,   i, kv) {
	for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == name) return kv[2] }
	return ""
}
$2 == "op=proxy_gcm1k" { p1 = field("mb_s") }
$2 == "op=proxy_gcm16k" { p16 = field("mb_s") }
$2 == "op=openssl_gcm1k" { o1 = field("mb_s") }
$2 == "op=openssl_gcm16k" { o16 = field("mb_s") }
END {
	if (o1 > 0 && o16 > 0) {
		r1 = p1 / o1
		r16 = p16 / o16
		verdict = "MISSED"
		if (r16 >= 0.8)
			verdict = "ok"
		printf "AES-256-GCM through the proxy vs openssl speed: 1 KiB %.1f/%.1f MB/s (ratio %.2f), 16 KiB %.1f/%.1f MB/s (ratio %.2f, target >= 0.8 %s)\n", p1, o1, r1, p16, o16, r16, verdict
	}
}' "$TMP/vendor.proxy" "$TMP/vendor.ossl"
fi

# ---- part swkeys: software keys through the proxy against HSM keys of SoftHSM2 ----
if part swkeys && [ -n "$STANDIN" ]; then
	echo
	echo "== swkeys: skipped (the proxy side is SoftHSM2: calibration run)"
elif part swkeys && [ ! -x "$BENCH_SWKEYS" ]; then
	echo "bench: $BENCH_SWKEYS not built (make bench builds it): no swkeys figures" >&2
	errors=$((errors + 1))
elif part swkeys; then
	echo
	echo "== swkeys: software keys through the proxy (slot with software_keys) vs SoftHSM2's keys"
	softhsm_setup "$TMP/sw-softhsm" swb || die "SoftHSM2 token setup (swb) failed"
	pkcs11-tool --module "$SOFTHSM_MODULE" --token-label swb --login --pin "$TEST_USER_PIN" \
		--keygen --key-type AES:32 --label sw-wrap >/dev/null 2>&1 ||
		die "the wrapping key on token swb"
	mkdir -m 700 "$TMP/sw-state"
	{
		printf 'backends:\n  - name: be\n    module: %s\nslots:\n' "$SOFTHSM_MODULE"
		printf '  - label: v-swb\n    software_keys: { wrapping_key: sw-wrap }\n'
		printf '    members:\n      - backend: be\n        token_label: swb\n'
		printf 'state_dir: %s\n' "$TMP/sw-state"
	} >"$TMP/swkeys.yaml"
	SWOPS="gcm1k gcm16k hmac ecdsa ed25519 rsa2048"
	: >"$TMP/swkeys.res"
	# Every thread count, both sides, ROUNDS times alternating; best of each kept.
	for r in $(seq "$ROUNDS"); do
		for t in ${THREADS//,/ }; do
			for side in softhsm proxy; do
				# The proxy's runs: openssl speed right after each (its ratio's reference).
				if [ $side = softhsm ]; then
					set -- "$SOFTHSM_MODULE" swb "$TEST_USER_PIN" 0
					speed=
				else
					set -- "$PROXY" v-swb "$TEST_USER_PIN" 1
					speed="$BENCH_SWKEY speed $SECS"
					[ -x "$BENCH_SWKEY" ] || speed= # (then "-": no reference)
				fi
				# shellcheck disable=SC2086
				if ! BENCH_SWKEYS_SPEED=$speed P11PROXY_CONF=$TMP/swkeys.yaml \
					"$BENCH_SWKEYS" "$@" "$SECS" "$t" $SWOPS \
					>"$TMP/swkeys.out" 2>"$TMP/swkeys.err"; then
					echo "  bench_swkeys $side $t ERROR"
					sed 's/^/    /' "$TMP/swkeys.err" >&2
					errors=$((errors + 1))
				fi
				sed -e "/^RESULT side=speed /{s//RESULT side=speed round=$r /;b}" \
					-e "s/^RESULT /RESULT side=$side round=$r /" "$TMP/swkeys.out" \
					>>"$TMP/swkeys.res"
			done
		done
	done
	cp "$TMP/swkeys.res" "$TMP/swkeys.1"
	# ratio: software / SoftHSM2, wall clock. Scaling (rows of more than one
	# thread): that thread count's figure over the 1-thread one, per side, wall
	# clock and per CPU second (cpu_ops_s; see bench_swkeys.c); vcsw: voluntary
	# context switches per 1000 operations (a lock the threads queue on).
	# vs speed: the proxy's cpu_ops_s over N times openssl speed's figure
	# measured right after it (N threads), per round; the median (min-max) of
	# the rounds (the machine's speed drifts between runs minutes apart).
	# vs speed -aead (AES-GCM): the same against `openssl speed -aead`, whose
	# loop does a whole message (IV, AAD, tag) per operation as C_Encrypt does.
	awk '
function field(name,   i, kv) {
	for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == name) return kv[2] }
	return ""
}
BEGIN { split("", sa) } # an array even when no line carries aead_ops_s
/^RESULT side=speed/ { r = field("round") " " field("op") " " field("threads")
	sp[r] = field("ops_s"); if (field("aead_ops_s") != "") sa[r] = field("aead_ops_s"); next }
/^RESULT/ { k = field("op") " " field("threads"); s = field("side")
	if (s == "proxy") pc[field("round") " " k] = field("cpu_ops_s") + 0
	rounds[field("round")] = 1
	w = field("ops_s") + 0; c = field("cpu_ops_s") + 0
	if (w > wall[s " " k]) wall[s " " k] = w
	if (c > cpu[s " " k]) cpu[s " " k] = c
	vc[s " " k] = field("vcsw_per_kop")
	if (!(k in seen)) { seen[k] = 1; order[n++] = k } }
function sc(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "-" }
# median (min-max) of the rounds ratio of the proxy to openssl speed for key k ("op thr"),
# the reference figures in ref_of (sp: -evp as listed; sa: -aead, AES-GCM only)
function vs_speed(k, ref_of,   p, r, n, i, j, t, v, ref) {
	split(k, p, " "); n = 0
	for (r in rounds) {
		ref = ref_of[r " " p[1] " " p[2]] * p[2]
		if (ref > 0 && (r " " k) in pc) v[++n] = pc[r " " k] / ref
	}
	if (n == 0) return "-"
	for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j] < v[j - 1]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
	return sprintf("%.2f (%.2f-%.2f)", (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2), v[1], v[n])
}
END {
	printf "  %-8s %3s %11s %11s %7s | %-17s %-17s %-11s | %-18s %s\n", "op", "thr", "softhsm/s",
	       "software/s", "ratio", "scaling wall s/w", "scaling cpu s/w", "vcsw s/w",
	       "vs openssl speed", "vs speed -aead"
	for (i = 0; i < n; i++) {
		split(order[i], p, " "); one = p[1] " 1"
		s = wall["softhsm " order[i]]; w = wall["proxy " order[i]]
		ss = sw = cs = cw = "-"
		if (p[2] != 1) {
			ss = sc(s, wall["softhsm " one]); sw = sc(w, wall["proxy " one])
			cs = sc(cpu["softhsm " order[i]], cpu["softhsm " one])
			cw = sc(cpu["proxy " order[i]], cpu["proxy " one])
		}
		printf "  %-8s %3s %11.0f %11.0f %7.1f | %-17s %-17s %-11s | %-18s %s\n", p[1], p[2], s, w,
		       (s > 0 ? w / s : 0), ss "/" sw, cs "/" cw,
		       vc["softhsm " order[i]] "/" vc["proxy " order[i]], vs_speed(order[i], sp),
		       vs_speed(order[i], sa)
	}
}' "$TMP/swkeys.res"
fi

# ---- part swkey: the software-key engine beside openssl speed (bench_swkey prints it all) ----
if part swkey && [ ! -x "$BENCH_SWKEY" ]; then
	echo "bench: $BENCH_SWKEY not built (make bench builds it): no swkey figures" >&2
	errors=$((errors + 1))
elif part swkey; then
	echo
	echo "== swkey: the software-key engine against openssl speed (best of $ROUNDS, ${SECS}s each)"
	if ! "$BENCH_SWKEY" "$SECS" "$THREADS" "$ROUNDS" >"$TMP/swkey.1" 2>"$TMP/swkey.err"; then
		sed 's/^/    /' "$TMP/swkey.err" >&2
		errors=$((errors + 1))
	fi
	grep -v '^RESULT' "$TMP/swkey.1"
fi

if [ -n "${BENCH_KEEP:-}" ]; then
	mkdir -p "$BENCH_KEEP" &&
		find "$TMP" -maxdepth 1 -type f -name '*.[0-9]*' ! -name '*.err' \
			-exec cp {} "$BENCH_KEEP"/ \;
fi
if [ $errors -ne 0 ]; then
	echo "bench: $errors run(s) failed" >&2
	exit 1
fi
exit 0
