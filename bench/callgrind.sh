#!/usr/bin/env bash
# Cost per call in instructions, under callgrind (part of `make bench`, after
# bench/run.sh; `make bench-callgrind` runs it alone; see bench/README.md).
#   bench/callgrind.sh BUILD_DIR
# Every row runs bench_calls in its own callgrind process on a fresh SoftHSM2
# token: directly on SoftHSM2, through BUILD/libproxy.so and, when p11-kit can
# be shown that token alone, through p11-kit-proxy.so. Only bench_calls'
# measured loop is counted (setup, login, key creation and cleanup are not).
# Instruction counts do not move with the machine's load: the same build gives
# the same "own" figures run after run (to 0.1 instruction per iteration, 0.5
# with virtual keys on; SoftHSM2's ECDSA, with its random nonces, moves by less
# than 1). They are
# information only, never a verdict on the build: the exit status is 0 unless
# a run crashed or a call failed.
# Environment knobs:
#   BENCH_PARTS         when set, the script runs only if it lists "callgrind"
#   BENCH_CG_ROWS       rows, comma-separated (see row() below)      [all but session_open_close_vkey]
#   BENCH_CG_ITERS      iterations per run                           [per row]
#   BENCH_CG_P11KIT     0: no p11-kit column                         [1]
#   BENCH_CG_EXCLUDE    awk pattern: calls into these functions are not counted
#                       [^p11p_index_refresh$, time-based: see below]
#   BENCH_KEEP          directory to copy the callgrind.out files and RESULT lines into
set -u
BUILD=${1:-build}
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in /*) ;; *) BUILD=$SRCDIR/$BUILD ;; esac
export BUILD SRCDIR
# shellcheck source=tests/lib.sh
. "$SRCDIR/tests/lib.sh"

if [ -n "${BENCH_PARTS:-}" ]; then
	case ",$BENCH_PARTS," in
	*,callgrind,*) ;;
	*) exit 0 ;;
	esac
fi
BENCH_CALLS=$BUILD/bench/bench_calls
PROXY=$PROXY_MODULE
ROWS=${BENCH_CG_ROWS:-get_attribute,aes256_gcm_enc_64,session_open_close,ecdsa_p256_sign,get_attribute_vkey,aes256_gcm_enc_64_vkey,ecdsa_p256_sign_vkey}
# Calls into functions matching this (awk) pattern are left out of the counts: the
# virtual-key index's refresh runs once per 50 ms of wall time, which callgrind
# stretches 50-fold, so per call it would weigh 50 times what it does natively, and
# vary with the machine's speed.
EXCLUDE=${BENCH_CG_EXCLUDE:-^p11p_index_refresh\$}
TOKEN=bench

die() {
	echo "bench callgrind: $*" >&2
	exit 1
}

# row NAME: sets WORKLOAD (bench_calls'), VKEYS (1: the proxy's state_dir exists, so
# virtual keys are on), TARGET (the proxy's own instructions per iteration, issue 9:
# 300 per forwarded call, so 600 for the two calls of an encryption or a signature;
# 600 per session open + close; 450 per C_GetAttributeValue of a virtual key; "-"
# none), ITERS (each run under 5 s on the 2-core development machine).
row() {
	WORKLOAD=$1 VKEYS=0 TARGET=- ITERS=
	case $1 in
	get_attribute) TARGET=300 ITERS=2000 ;;
	aes256_gcm_enc_64) TARGET=600 ITERS=2000 ;;
	session_open_close) TARGET=600 ITERS=10000 ;;
	ecdsa_p256_sign) TARGET=600 ITERS=500 ;;
	get_attribute_vkey) WORKLOAD=get_attribute VKEYS=1 TARGET=450 ITERS=2000 ;;
	aes256_gcm_enc_64_vkey) WORKLOAD=aes256_gcm_enc_64 VKEYS=1 ITERS=2000 ;;
	session_open_close_vkey) WORKLOAD=session_open_close VKEYS=1 ITERS=10000 ;;
	ecdsa_p256_sign_vkey) WORKLOAD=ecdsa_p256_sign VKEYS=1 ITERS=500 ;;
	*) return 1 ;;
	esac
	ITERS=${BENCH_CG_ITERS:-$ITERS}
}
for r in ${ROWS//,/ }; do
	row "$r" || die "unknown row '$r' (rows: get_attribute aes256_gcm_enc_64 session_open_close ecdsa_p256_sign get_attribute_vkey aes256_gcm_enc_64_vkey session_open_close_vkey ecdsa_p256_sign_vkey)"
done

echo
echo "== callgrind: instructions per call, SoftHSM2 directly / through the proxy / through p11-kit"
if ! command -v valgrind >/dev/null 2>&1; then
	echo "  skipped: valgrind is not installed (make deps installs it)"
	exit 0
fi
[ -x "$BENCH_CALLS" ] || die "$BENCH_CALLS not built (make bench builds it)"
[ -e "$PROXY" ] || die "$PROXY not found"
[ -e "$SOFTHSM_MODULE" ] || die "$SOFTHSM_MODULE not found (apt-get install softhsm2)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/p11proxy-callgrind.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# p11-kit-proxy.so reads only system module configs when running as root (no
# variable points it elsewhere): show it a module directory naming SoftHSM2 alone,
# bind-mounted in a private mount namespace, as tests/suites/70-install.sh does.
# p11kit_ns COMMAND...: runs COMMAND seeing $TMP/p11kit-modules as p11-kit's module
# directory (and an empty /etc/pkcs11/modules, if there is one).
p11kit_ns() {
	# shellcheck disable=SC2016 # expanded by the inner sh
	unshare -m --propagation private sh -c '
		mount --bind "$0" /usr/share/p11-kit/modules || exit 125
		if [ -d /etc/pkcs11/modules ]; then
			mount --bind "$1" /etc/pkcs11/modules || exit 125
		fi
		shift
		exec "$@"' "$TMP/p11kit-modules" "$TMP/p11kit-empty" "$@"
}
P11KIT_PROXY=
P11KIT_NOTE="p11-kit: skipped (BENCH_CG_P11KIT=0)"
if [ "${BENCH_CG_P11KIT:-1}" != 0 ]; then
	for f in /usr/lib/*/p11-kit-proxy.so /usr/lib/p11-kit-proxy.so; do
		[ -e "$f" ] && P11KIT_PROXY=$f && break
	done
	mkdir -p "$TMP/p11kit-modules" "$TMP/p11kit-empty"
	printf 'module: %s\n' "$SOFTHSM_MODULE" >"$TMP/p11kit-modules/softhsm2.module"
	if [ -z "$P11KIT_PROXY" ]; then
		P11KIT_NOTE="p11-kit: skipped (no p11-kit-proxy.so; package p11-kit-modules)"
	elif [ ! -d /usr/share/p11-kit/modules ]; then
		P11KIT_NOTE="p11-kit: skipped (no /usr/share/p11-kit/modules to hide)"
		P11KIT_PROXY=
	elif ! p11kit_ns true 2>/dev/null; then
		P11KIT_NOTE="p11-kit: skipped (needs a private mount namespace, unshare -m, to show it SoftHSM2 alone)"
		P11KIT_PROXY=
	fi
fi

P11KIT_VER=$(dpkg-query -W -f='${Version}' p11-kit-modules 2>/dev/null || echo "?")
echo "  $(date -u +%Y-%m-%dT%H:%M:%SZ), $(valgrind --version), SoftHSM2 $(softhsm2-util --version 2>/dev/null)"
echo "  direct: $SOFTHSM_MODULE"
echo "  proxy:  $PROXY (slot v-$TOKEN; state_dir absent: virtual keys off, but in *_vkey rows)"
if [ -n "$P11KIT_PROXY" ]; then
	echo "  p11kit: $P11KIT_PROXY (p11-kit $P11KIT_VER, SoftHSM2 its only module)"
else
	echo "  $P11KIT_NOTE"
fi

# One awk pass over a callgrind.out written with --compress-strings=no --compress-pos=no:
# prints "entry backend self calls excluded": the inclusive instructions of bench_calls'
# calls into MOD, of every call into BE from outside it (and how many such calls),
# MOD's self cost, and the inclusive instructions of calls into functions matching
# EXCL from functions that do not (self cost of those functions is then not in
# "self" either). A cost line right after calls= is that call's inclusive cost.
# shellcheck disable=SC2016 # an awk program
CG_AWK='
/^ob=/ { ob = substr($0, 4); next }
/^fn=/ { fn = substr($0, 4); next }
/^cob=/ { cob = substr($0, 5); next }
/^cfn=/ { cfn = substr($0, 5); next }
/^calls=/ { incall = 1; ncalls = substr($1, 7) + 0; next }
/^[0-9]/ {
	if (incall) {
		to = cob != "" ? cob : ob
		if (ob == exe && to == mod)
			entry += $2
		if (to == be && ob != be) {
			backend += $2
			nbe += ncalls
		}
		if (excl != "" && cfn ~ excl && fn !~ excl)
			excluded += $2
		incall = 0
		cob = ""
	} else if (ob == mod && (excl == "" || fn !~ excl)) {
		self += $2
	}
}
END { printf "%.0f %.0f %.0f %.0f %.0f\n", entry, backend, self, nbe, excluded }'

errors=0
RES=$TMP/results
: >"$RES"
# run ROW SIDE: one callgrind process; appends "ROW SIDE ITERS entry backend self calls
# excluded" to $RES.
# Every run uses the same paths: SoftHSM2 builds its file names on every access to a
# token object, so a longer token directory costs it more instructions.
run() {
	local name=$1 side=$2 dir=$TMP/run module label start rc counts
	local -a pre=()
	rm -rf "$dir"
	mkdir -p "$dir" "$TMP/out"
	softhsm_setup "$dir/softhsm" "$TOKEN" || die "SoftHSM2 token setup failed"
	case $side in
	direct) module=$SOFTHSM_MODULE label=$TOKEN ;;
	p11kit) module=$P11KIT_PROXY label=$TOKEN pre=(p11kit_ns) ;;
	proxy)
		module=$PROXY label=v-$TOKEN
		[ "$VKEYS" = 1 ] && mkdir -p "$dir/state"
		printf 'backends:\n  - name: softhsm\n    module: %s\nslots:\n  - label: v-%s\n    members:\n      - backend: softhsm\n        token_label: %s\nstate_dir: %s\n' \
			"$SOFTHSM_MODULE" "$TOKEN" "$TOKEN" "$dir/state" >"$dir/proxy.yaml"
		;;
	esac
	start=$(date +%s)
	printf '  %-24s %-6s %6d iterations ... ' "$name" "$side" "$ITERS"
	P11PROXY_CONF=$dir/proxy.yaml "${pre[@]}" valgrind -q --tool=callgrind \
		--instr-atstart=no --collect-atstart=no --compress-strings=no --compress-pos=no \
		--callgrind-out-file="$dir/callgrind.out" \
		"$BENCH_CALLS" "$module" "$label" "$TEST_USER_PIN" "$WORKLOAD" "$ITERS" \
		>"$dir/out" 2>"$dir/err"
	rc=$?
	if [ $rc -ge 128 ]; then
		echo "CRASHED (signal $((rc - 128)))"
	elif [ $rc -ne 0 ]; then
		echo "ERROR (exit $rc)"
	elif ! grep -q '^RESULT ' "$dir/out"; then
		echo "ERROR (no RESULT line)"
		rc=1
	else
		echo "$(($(date +%s) - start))s"
	fi
	sed 's/^/    /' "$dir/err" >&2
	if [ $rc -ne 0 ]; then
		errors=$((errors + 1))
		return 1
	fi
	mv "$dir/callgrind.out" "$TMP/out/$name.$side.out"
	counts=$(awk -v exe="$(readlink -f "$BENCH_CALLS")" -v mod="$(readlink -f "$module")" \
		-v be="$(readlink -f "$SOFTHSM_MODULE")" -v excl="$EXCLUDE" "$CG_AWK" \
		"$TMP/out/$name.$side.out")
	case $counts in
	"" | "0 "*)
		echo "    nothing counted (bench_calls built without <valgrind/callgrind.h>?)" >&2
		errors=$((errors + 1))
		return 1
		;;
	esac
	echo "$name $side $ITERS $counts" >>"$RES"
	if [ -n "${BENCH_KEEP:-}" ]; then
		mkdir -p "$BENCH_KEEP" && cp "$TMP/out/$name.$side.out" "$BENCH_KEEP/callgrind.$name.$side.out"
	fi
	return 0
}

declare -A DIRECT=()
for r in ${ROWS//,/ }; do
	row "$r"
	# A *_vkey row's direct side is its plain row's: one direct run per workload.
	if [ -n "${DIRECT[$WORKLOAD]:-}" ]; then
		echo "$r direct ${DIRECT[$WORKLOAD]}" >>"$RES"
	elif run "$r" direct; then
		DIRECT[$WORKLOAD]=$(tail -1 "$RES" | cut -d' ' -f3-)
	fi
	run "$r" proxy
	if [ -n "$P11KIT_PROXY" ] && [ "$VKEYS" = 0 ]; then
		run "$r" p11kit
	fi
done

echo
# The table, per iteration (one iteration = the row's calls, see bench/bench_calls.c):
#   direct   SoftHSM2's instructions in the calls, called directly
#   proxy    the same calls through the proxy, everything included
#   added    proxy - direct. SoftHSM2's own share moves by a few hundred instructions
#            with the state of the process's heap (malloc), so on token keys this
#            difference wanders with the proxy's allocations; session_open_close is exact
#   own      proxy minus what ran inside SoftHSM2: libproxy.so's code and the libc,
#            libpthread and ld.so work it calls (malloc, mutexes, memcpy, clock).
#            Deterministic; the targets (issue 9) apply to it
#   in .so   libproxy.so's code alone (the measure of issue 9's "today" figures)
#   calls    calls into SoftHSM2 per iteration, through the proxy / directly
#   p11-kit  p11-kit-proxy.so's own, measured like "own"
for r in ${ROWS//,/ }; do
	row "$r"
	echo "target $r $TARGET"
done >>"$RES"
awk '
$1 == "target" { target[$2] = $3; order[n++] = $2; next }
{
	key = $1 SUBSEP $2; it = $3
	entry[key] = ($4 - $8) / it; backend[key] = $5 / it; self[key] = $6 / it
	calls[key] = $7 / it; excl[key] = $8 / it
	have[key] = 1
}
function fmt(v) { return sprintf("%.0f", v) }
END {
	printf "%-24s %8s %8s %7s %7s %7s %6s %6s  %-13s %s\n", "instructions/iteration",
	    "direct", "proxy", "added", "own", "in .so", "calls", "target", "own<=target",
	    "p11-kit"
	over = 0
	for (i = 0; i < n; i++) {
		r = order[i]; d = r SUBSEP "direct"; p = r SUBSEP "proxy"; k = r SUBSEP "p11kit"
		if (!(d in have) || !(p in have)) {
			printf "%-24s  (missing: a run failed)\n", r
			continue
		}
		own = entry[p] - backend[p]
		verdict = "-"
		if (target[r] != "-") {
			verdict = fmt(own) + 0 <= target[r] + 0 ? "OK" : \
			    sprintf("over by %.0f", own - target[r])
			if (fmt(own) + 0 > target[r] + 0)
				over++
		}
		pk = (k in have) ? fmt(entry[k] - backend[k]) : "-"
		printf "%-24s %8s %8s %7s %7s %7s %6s %6s  %-13s %s\n", r, fmt(entry[d]),
		    fmt(entry[p]), fmt(entry[p] - entry[d]), fmt(own), fmt(self[p]),
		    calls[p] "/" calls[d], target[r], verdict, pk
		res[nres++] = sprintf("RESULT op=cg_%s direct_ir=%.1f proxy_ir=%.1f added_ir=%.1f own_ir=%.1f so_ir=%.1f excluded_ir=%.1f backend_calls=%s/%s target=%s p11kit_own_ir=%s",
		    r, entry[d], entry[p], entry[p] - entry[d], own, self[p], excl[p], calls[p],
		    calls[d], target[r], (k in have) ? sprintf("%.1f", entry[k] - backend[k]) : "-")
	}
	printf "\nrows over target: %d (information only; own <= target, target from issue 9)\n", over
	for (i = 0; i < nres; i++)
		print res[i]
}' "$RES" | tee "$TMP/table"
if [ -n "${BENCH_KEEP:-}" ]; then
	grep '^RESULT ' "$TMP/table" >"$BENCH_KEEP/callgrind.results"
fi
if [ $errors -ne 0 ]; then
	echo "bench callgrind: $errors run(s) failed" >&2
	exit 1
fi
exit 0
