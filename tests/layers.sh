#!/usr/bin/env bash
# The rooms of lib/ and the order they depend in: a file may include headers of
# its own room and of rooms below it, never above (DESIGN notes: docs/DESIGN.md).
# Prints every include that goes up or sideways; exit 1 when there is one.
#   tests/layers.sh [SRCDIR]
set -u
cd "${1:-$(dirname "$0")/..}" || exit 2
rank() {
	case $1 in
	base) echo 0 ;;
	config | index) echo 1 ;;
	backend | crypto | keymodel) echo 2 ;;
	virt) echo 3 ;;
	vkeys) echo 4 ;;
	ha) echo 5 ;;
	soft) echo 6 ;;
	entry) echo 7 ;;
	*) echo 99 ;;
	esac
}
bad=0
for f in lib/*/*.[ch]; do
	room=${f#lib/}
	room=${room%%/*}
	r=$(rank "$room")
	[ "$r" = 99 ] && { echo "$f: room '$room' has no place in tests/layers.sh"; bad=1; continue; }
	while IFS= read -r inc; do
		other=${inc%%/*}
		# The core's structs (virt/core.h) are lib/virt's alone: the rooms above use accessors.
		if [ "$inc" = virt/core.h ] && [ "$room" != virt ]; then
			echo "$f: includes virt/core.h (the core's structs are for lib/virt alone)"
			bad=1
			continue
		fi
		[ "$other" = "$room" ] && continue
		o=$(rank "$other")
		if [ "$o" -ge "$r" ]; then
			echo "$f: includes $inc ($other is not below $room)"
			bad=1
		fi
	done < <(sed -n 's/^#include "\([a-z]*\/[^"]*\)".*/\1/p' "$f")
done
# The core's structs are defined in virt/core.h alone: the rooms above see
# them as incomplete types (heads and accessors of virt/virt.h).
for f in $(grep -lE '^struct p11p_(session|object|vslot|state) \{' lib/*/*.[ch] tools/*.[ch] 2>/dev/null); do
	[ "$f" = lib/virt/core.h ] && continue
	echo "$f: defines a struct of the core (struct p11p_session, _object, _vslot, _state: virt/core.h alone)"
	bad=1
done
# The CLI uses rooms through their public headers, never the core's internals.
if grep -ln '#include "virt/virt.h"\|#include "virt/core.h"\|#include "ha/ha.h"\|#include "vkeys/vkeys.h"\|#include "soft/soft.h"\|#include "soft/local.h"' tools/*.[ch] 2>/dev/null; then
	echo "tools/: includes a module-internal header (above)"
	bad=1
fi
exit $bad
