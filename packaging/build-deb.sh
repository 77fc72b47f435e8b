#!/usr/bin/env bash
# Builds dist/ndmpd_<version>_amd64.deb from dist/ndmpd (npm run package builds it first),
# offline, with dpkg-deb: the binary, the unit, the configuration (a conffile: 'ndmpd config
# example'), the man page ('ndmpd man') and the maintainer scripts of this directory.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=dist/ndmpd
[ -x "$BIN" ] || { echo "build-deb: no $BIN (npm run build)" >&2; exit 1; }
VERSION=$(node -p 'require("./package.json").version')
ARCH=amd64
OUT="dist/ndmpd_${VERSION}_${ARCH}.deb"
ROOT=$(mktemp -d dist/deb-root.XXXXXX)
chmod 0755 "$ROOT"
trap 'rm -rf "$ROOT"' EXIT

install -D -m 0755 "$BIN" "$ROOT/usr/sbin/ndmpd"
install -D -m 0644 packaging/ndmpd.service "$ROOT/lib/systemd/system/ndmpd.service"
install -d -m 0755 "$ROOT/etc/ndmpd"
"$BIN" config example > "$ROOT/etc/ndmpd/ndmpd.toml"
chmod 0644 "$ROOT/etc/ndmpd/ndmpd.toml" # no secret in it: the password is in ndmp.secret
install -d -m 0755 "$ROOT/usr/share/man/man8" "$ROOT/usr/share/doc/ndmpd"
"$BIN" man | gzip -9n > "$ROOT/usr/share/man/man8/ndmpd.8.gz"
chmod 0644 "$ROOT/usr/share/man/man8/ndmpd.8.gz"
cat > "$ROOT/usr/share/doc/ndmpd/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ndmpd

Files: *
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
COPY
chmod 0644 "$ROOT/usr/share/doc/ndmpd/copyright"

install -d -m 0755 "$ROOT/DEBIAN"
for s in postinst prerm postrm; do install -m 0755 "packaging/$s" "$ROOT/DEBIAN/$s"; done
echo /etc/ndmpd/ndmpd.toml > "$ROOT/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
cat > "$ROOT/DEBIAN/control" <<CONTROL
Package: ndmpd
Version: ${VERSION}
Architecture: ${ARCH}
Maintainer: ndmpd developers <ndmpd@localhost>
Installed-Size: ${SIZE}
Depends: libc6 (>= 2.27)
Section: admin
Priority: optional
Homepage: https://github.com/ndmpd/ndmpd
Description: NDMP v4/v3 server for Linux file servers
 ndmpd serves NDMP on TCP port 10000 so that backup software that speaks
 NDMP (Bareos, NetBackup, Commvault, Amanda, ndmjob) can back up and restore
 this file server in tar or dump format, to virtual tape libraries or real
 tape drives. It also runs backups and restores itself from the command line.
CONTROL
# Owned by root whoever builds it; gzip: fast, and every dpkg reads it.
dpkg-deb --root-owner-group -Zgzip -z6 --build "$ROOT" "$OUT" >/dev/null
echo "$OUT"
