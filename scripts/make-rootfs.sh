#!/usr/bin/env bash
# make-rootfs.sh DIR: a small read-only root for vassals (pivot-root = DIR
# DIR/.old_root), made from Debian's busybox-static: /bin with busybox's
# applets, empty /proc, /tmp, /dev (the runtime mounts its own), /run/moat
# (the vassal's own directory is bound there) and /.old_root, and an
# /etc/passwd naming the example customers' users. Nothing in it is
# writable by a vassal: the runtime mounts it read-only, nosuid, nodev.
set -euo pipefail
dir=${1:?usage: make-rootfs.sh DIR}
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "make-rootfs: $busybox is missing: apt-get install busybox-static" >&2; exit 1; }
[ ! -e "$dir" ] || { echo "make-rootfs: $dir exists already" >&2; exit 1; }
mkdir -p "$dir"/{bin,proc,tmp,dev,etc,run/moat,.old_root}
chmod 755 "$dir"
install -m 755 "$busybox" "$dir/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$dir/bin/$applet"
done
cat > "$dir/etc/passwd" <<'PASSWD'
root:x:0:0:root:/:/bin/sh
customer1:x:10001:10001:customer1:/run/moat:/bin/sh
customer2:x:10002:10002:customer2:/run/moat:/bin/sh
PASSWD
cat > "$dir/etc/group" <<'GROUP'
root:x:0:
customer1:x:10001:
customer2:x:10002:
GROUP
echo "make-rootfs: $dir"
