#!/bin/sh
# Installs the Debian packages the build and the tests need, when missing.
# debhelper, dpkg-dev, fakeroot: tests/suites/72-deb.sh builds the Debian packages; lintian checks
# them there (without it that check was skipped on every fresh machine, so never ran in CI).
# libsystemd-dev: the CLI's sd_notify (Type=notify). prometheus: its promtool checks GET /metrics
# (tests/suites/76-metrics.sh; installed without recommends, the server is not started by it).
# gdb: its gcore dumps a process holding software keys (tests/suites/78-swkeys.sh).
# libnss3-tools (certutil, modutil), openjdk-17-jre-headless (keytool) and -jdk-headless
# (jarsigner): the NSS and Java clients of tests/suites/63-javanss.sh and 63-replclients.sh.
set -e
pkgs="build-essential pkg-config libp11-kit-dev p11-kit p11-kit-modules libyaml-dev libssl-dev check
libsubunit-dev python3 softhsm2 opensc gnutls-bin libengine-pkcs11-openssl libnss3-tools openssl mandoc valgrind
libmicrohttpd-dev libjansson-dev libsystemd-dev curl jq prometheus libsqlite3-dev sqlite3 libpq-dev postgresql
gdb debhelper dpkg-dev fakeroot lintian
openjdk-17-jre-headless openjdk-17-jdk-headless"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=sudo
	else
		echo "install-deps: missing packages:$missing (run as root or install them)" >&2
		exit 1
	fi
fi
${SUDO:-} apt-get update -qq
DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq --no-install-recommends $missing
