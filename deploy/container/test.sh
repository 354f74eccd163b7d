#!/bin/sh
# CTest's deploy.container: builds vial's .deb (cpack) and the root filesystem of
# build-rootfs.sh from it, then runs that root as deploy/kubernetes's pod would: read-only, as
# uid 10001, in namespaces of its own (mount, pid, network: only its loopback), /tmp and
# /run/vial writable tmpfs, the Secrets' files root's and mode 0440 with group 10001 (what the
# kubelet makes of defaultMode 0400 + fsGroup). Inside it: the token's init container
# (install -m 0600), `vial run` of README's [8, 13] example, `vial serve` on tls: with the pod's
# arguments, the readiness and liveness probes' commands, and a drain (SIGTERM during a call:
# readiness fails with 5, liveness holds, the call finishes, the server exits 0).
#
# It takes minutes (mmdebstrap downloads ~50 MB of Debian packages and unpacks a 160 MB root;
# cpack ~45 s): 293 s here with a cold Essential set, 194 s with BUILD/deploy/rootfs-cache warm.
# It runs in the suite (CI runs it); VIAL_SKIP_CONTAINER=1 skips it (exit 77) for a quicker
# local loop.
# Usage: test.sh BUILD_DIR
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
if [ "${VIAL_SKIP_CONTAINER:-}" = 1 ]; then
  echo "deploy.container: skipped (VIAL_SKIP_CONTAINER=1)"
  exit 77
fi
[ "$(id -u)" = 0 ] || { echo "deploy.container: needs root (mmdebstrap --mode=root, unshare)"; exit 1; }
for tool in mmdebstrap cpack openssl unshare ip; do
  command -v "$tool" >/dev/null || { echo "deploy.container: $tool is not on PATH"; exit 1; }
done

work=$(mktemp -d /tmp/vial-container-XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
started=$(date +%s)

cpack -G DEB -B "$work/debs" --config "$build/CPackConfig.cmake" >"$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log"; exit 1; }
deb=$(ls "$work"/debs/vial_*.deb)
VIAL_ROOTFS_CACHE=$build/deploy/rootfs-cache "$here/build-rootfs.sh" "$deb" "$work/rootfs.tar" \
  >"$work/mmdebstrap.log" 2>&1 || { tail -30 "$work/mmdebstrap.log"; exit 1; }
echo "deploy.container: root filesystem $(du -m "$work/rootfs.tar" | cut -f1) MB" \
     "after $(($(date +%s) - started)) s"

# The Secrets, as the kubelet mounts them: a token, a CA and a certificate naming localhost and
# the Service's names (deploy/kubernetes/README.md).
secrets=$work/secrets
mkdir -p "$secrets"
head -c 32 /dev/urandom | base64 >"$secrets/token"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=vial CA" -keyout "$work/ca.key" -out "$secrets/ca.crt" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=vial" \
  -keyout "$secrets/tls.key" -out "$work/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,DNS:vial,DNS:vial.vial,DNS:vial.vial.svc,DNS:vial.vial.svc.cluster.local\n' \
  >"$work/san.ext"
openssl x509 -req -in "$work/tls.csr" -CA "$secrets/ca.crt" -CAkey "$work/ca.key" \
  -set_serial 1 -days 2 -extfile "$work/san.ext" -out "$secrets/tls.crt" 2>/dev/null

# What runs inside, as uid 10001 (the pod's commands; PROBE_* are the probes of
# deploy/kubernetes/base/deployment.yaml).
cat >"$work/pod.sh" <<'POD'
set -u
ping_args="--connect tls:localhost:7411 --token-file /run/vial/token --tls-ca /etc/vial/tls/ca.crt"
liveness() { vial ping $ping_args >/dev/null 2>&1; case $? in 0|5) return 0;; *) return 1;; esac; }
echo "== id $(id -u):$(id -g)"
# The options of the mount at / (as uid 10001 nothing there is writable anyway: ask the kernel).
echo "== rootfs $(awk '$5 == "/" { print $6 }' /proc/self/mountinfo | tail -1)"
# Why the init container: vial serve refuses the Secret's own file (root's, group-readable).
timeout 10 vial serve --listen tls:0.0.0.0:7411 --allow-remote --token-file /etc/vial/secret/token \
  --tls-cert /etc/vial/tls/tls.crt --tls-key /etc/vial/tls/tls.key >/dev/null 2>&1
echo "== secret-direct $?"
install -m 0600 /etc/vial/secret/token /run/vial/token
echo "== token $(stat -c '%a %u' /run/vial/token)"
printf 'val = testvar + 5\n_return(val)\n_return(val + 5)\n' >/tmp/example.py
echo "== run $(vial run --var testvar=3 /tmp/example.py 2>&1)"
vial serve --listen tls:0.0.0.0:7411 --allow-remote --token-file /run/vial/token \
  --tls-cert /etc/vial/tls/tls.crt --tls-key /etc/vial/tls/tls.key --workers 2 --grace 30 \
  --timeout 30 --metrics tcp:0.0.0.0:9464 --log-format json 2>/tmp/serve.log &
server=$!
i=0
until vial ping $ping_args >/dev/null 2>&1 || [ $i -ge 100 ]; do i=$((i + 1)); sleep 0.1; done
vial ping $ping_args >/dev/null 2>&1; echo "== ready $?"
liveness; echo "== alive $?"
echo "== metrics $(vial run -c 'import urllib.request as u; _return(sum(l.startswith(b"vial_") for l in u.urlopen("http://127.0.0.1:9464/metrics", timeout=5)))' 2>&1)"
# A call that is running when SIGTERM comes must finish; meanwhile the pod is not ready but alive.
vial run --connect tls:localhost:7411 --token-file /run/vial/token --tls-ca /etc/vial/tls/ca.crt \
  -c 'import time; time.sleep(2); _return("finished")' >/tmp/call.out 2>&1 &
call=$!
i=0
until vial stats --connect tls:localhost:7411 --token-file /run/vial/token \
        --tls-ca /etc/vial/tls/ca.crt --json 2>/dev/null | grep -q '"running": [1-9]' || [ $i -ge 50 ]; do
  i=$((i + 1)); sleep 0.1
done
kill -TERM $server
vial ping $ping_args >/dev/null 2>&1; echo "== draining-ready $?"
liveness; echo "== draining-alive $?"
wait $call; echo "== call $? $(cat /tmp/call.out)"
wait $server; echo "== server-exit $?"
POD

# Fresh mount, pid and network namespaces (no route out: only lo, brought up here); the root
# unpacked into a tmpfs, then bound read-only; the kubelet's mounts over it.
unshare --mount --pid --net --fork --propagation private sh -ec '
work=$1
ip link set lo up
r=$work/root
mkdir "$r" && mount -t tmpfs -o size=1g vial-root "$r"
tar -xf "$work/rootfs.tar" -C "$r"
# The runtime writes /etc/hosts (the kubelet its own): localhost is what the probes connect to.
printf "127.0.0.1 localhost\n::1 localhost ip6-localhost\n" >"$r/etc/hosts"
# The mount points of the volumes, made by the runtime as it sets up the pod.
mkdir -p "$r/run/vial" "$r/etc/vial/tls" "$r/etc/vial/secret"
mount --bind "$r" "$r" && mount -o remount,bind,ro "$r"
mount -t proc proc "$r/proc"
mount -t tmpfs -o mode=0755,size=1m vial-dev "$r/dev"
for d in null zero urandom random; do touch "$r/dev/$d" && mount --bind /dev/$d "$r/dev/$d"; done
mount -t tmpfs -o mode=1777,size=256m vial-tmp "$r/tmp"
cp "$0" "$r/tmp/pod.sh"
mount -t tmpfs -o mode=0700,uid=10001,gid=10001,size=1m vial-run "$r/run/vial"
mount -t tmpfs -o mode=0755,size=1m vial-secret "$r/etc/vial/tls"
cp "$work/secrets/ca.crt" "$work/secrets/tls.crt" "$work/secrets/tls.key" "$r/etc/vial/tls/"
chown 0:10001 "$r"/etc/vial/tls/* && chmod 0440 "$r"/etc/vial/tls/*
mount -t tmpfs -o mode=0755,size=1m vial-token "$r/etc/vial/secret"
cp "$work/secrets/token" "$r/etc/vial/secret/token"
chown 0:10001 "$r/etc/vial/secret/token" && chmod 0440 "$r/etc/vial/secret/token"
exec chroot "$r" setpriv --reuid 10001 --regid 10001 --clear-groups --no-new-privs \
  --inh-caps=-all --bounding-set=-all env -i PATH=/usr/bin:/bin HOME=/nonexistent sh /tmp/pod.sh
' "$work/pod.sh" "$work" >"$work/pod.out" 2>&1 || true
cat "$work/pod.out"

expect() {
  got=$(sed -n "s/^== $1 //p" "$work/pod.out")
  case "$got" in
    $2) echo "ok   $1: $got" ;;
    *) echo "FAIL $1: expected $2, got '${got}'"; failed=1 ;;
  esac
}
failed=0
expect id "10001:10001"
expect rootfs "ro,*"
expect secret-direct 2
expect token "600 10001"
expect run "*[[]8, 13[]]"
expect ready 0
expect alive 0
expect metrics "[[][1-9]*[]]"
expect draining-ready 5
expect draining-alive 0
expect call "0 *finished*"
expect server-exit 0
echo "deploy.container: done after $(($(date +%s) - started)) s"
exit $failed
