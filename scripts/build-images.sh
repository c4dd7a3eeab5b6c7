#!/usr/bin/env bash
# Builds the images krust's pods and tests use, with no registry and no docker, as OCI
# image-layout tarballs that `krust images import` (or <data-dir>/images/) takes:
#
#   pause.tar    localhost/krust/pause:3.10       the pod sandbox image (containerd's sandbox_image)
#   busybox.tar  localhost/krust/busybox:VERSION  Debian's busybox-static with its applet links
#                localhost/krust/busybox:latest   (sh, sleep, httpd, nc, wget, ...)
#
# usage: scripts/build-images.sh [OUT_DIR]   (default $KRUST_IMAGES_DIR or /var/cache/krust-images)
#
# The pause process is crates/kubelet/pause, a static Rust program: it exits on SIGTERM/SIGINT
# and reaps zombies as PID 1, which busybox cannot do (`sleep` as PID 1 ignores SIGTERM because
# PID 1 only gets the signals it handles; see that program's header). It is linked statically
# against glibc (`-C target-feature=+crt-static`) because no musl target is installed here and it
# calls nothing that needs glibc's dynamic parts (NSS, dlopen).
#
# The tarballs are reproducible: fixed timestamps, sorted entries, numeric root ownership.
set -euo pipefail

out=${1:-${KRUST_IMAGES_DIR:-/var/cache/krust-images}}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
busybox=/bin/busybox

die() { echo "build-images: $*" >&2; exit 1; }
[ -x "$busybox" ] || die "$busybox is missing: install busybox-static (scripts/install-deps.sh)"
command -v cargo >/dev/null || die "cargo is missing: install Rust first"

case "$(dpkg --print-architecture 2>/dev/null || uname -m)" in
  amd64|x86_64) arch=amd64 ;;
  arm64|aarch64) arch=arm64 ;;
  ppc64el|ppc64le) arch=ppc64le ;;
  s390x) arch=s390x ;;
  riscv64) arch=riscv64 ;;
  *) die "unsupported architecture $(dpkg --print-architecture)" ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# image NAME OUT_FILE ROOTFS_DIR CONFIG_JSON_FRAGMENT TAG...
# Writes an OCI image layout with one gzip layer made of ROOTFS_DIR to OUT_FILE, one index entry
# per tag. CONFIG_JSON_FRAGMENT is the image config's "config" object.
image() {
  local name=$1 file=$2 rootfs=$3 config=$4
  shift 4
  local key; key=$(basename "$file" .tar)
  local layout="$work/layout-$key"
  rm -rf "$layout"
  mkdir -p "$layout/blobs/sha256"

  local layer="$work/$key-layer.tar"
  (cd "$rootfs" && tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
     --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
     -cf "$layer" -- *)
  local diff_id; diff_id=$(sha "$layer")
  gzip -n -9 <"$layer" >"$layer.gz"
  local layer_digest; layer_digest=$(sha "$layer.gz")
  local layer_size; layer_size=$(size "$layer.gz")
  mv "$layer.gz" "$layout/blobs/sha256/$layer_digest"

  local cfg="$work/$key-config.json"
  printf '{"created":"1970-01-01T00:00:00Z","architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"krust scripts/build-images.sh"}]}' \
    "$arch" "$config" "$diff_id" >"$cfg"
  local cfg_digest; cfg_digest=$(sha "$cfg")
  local cfg_size; cfg_size=$(size "$cfg")
  mv "$cfg" "$layout/blobs/sha256/$cfg_digest"

  local manifest="$work/$key-manifest.json"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$cfg_digest" "$cfg_size" "$layer_digest" "$layer_size" >"$manifest"
  local m_digest; m_digest=$(sha "$manifest")
  local m_size; m_size=$(size "$manifest")
  mv "$manifest" "$layout/blobs/sha256/$m_digest"

  local entries="" tag
  for tag in "$@"; do
    [ -n "$entries" ] && entries+=","
    entries+=$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s:%s","org.opencontainers.image.ref.name":"%s"},"platform":{"architecture":"%s","os":"linux"}}' \
      "$m_digest" "$m_size" "$name" "$tag" "$tag" "$arch")
  done
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' "$entries" >"$layout/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

  (cd "$layout" && tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
     -cf "$file.tmp.$$" oci-layout index.json blobs)
  # Renamed into place: a test that reads it meanwhile never sees half a tarball.
  mv "$file.tmp.$$" "$file"
  echo "built $file: $name ($*) sha256:$m_digest"
}

# --- pause -------------------------------------------------------------------------------------
host=$(rustc -vV | sed -n 's/^host: //p')
pause_target="${CARGO_TARGET_DIR:-$repo/target}/pause"
RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$pause_target" \
  cargo build --quiet --release --locked --offline \
  --manifest-path "$repo/crates/kubelet/pause/Cargo.toml" --target "$host"
pause_bin="$pause_target/$host/release/pause"
if ldd "$pause_bin" >/dev/null 2>&1 && ! ldd "$pause_bin" 2>&1 | grep -q "statically linked"; then
  die "$pause_bin is not statically linked"
fi
rootfs="$work/pause-rootfs"
mkdir -p "$rootfs"
install -m 0755 "$pause_bin" "$rootfs/pause"
image localhost/krust/pause "$out/pause.tar" "$rootfs" \
  '{"Entrypoint":["/pause"],"WorkingDir":"/"}' 3.10

# --- busybox -----------------------------------------------------------------------------------
version=$("$busybox" 2>&1 | sed -n 's/^BusyBox v\([0-9][0-9.]*\).*/\1/p' | head -1)
[ -n "$version" ] || die "cannot tell the version of $busybox"
rootfs="$work/busybox-rootfs"
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,root,home,var/www,proc,sys,dev}
install -d -m 1777 "$rootfs/tmp"
install -m 0755 "$busybox" "$rootfs/bin/busybox"
while read -r applet; do
  [ "$applet" = bin/busybox ] && continue
  mkdir -p "$rootfs/$(dirname "$applet")"
  ln -sf /bin/busybox "$rootfs/$applet"
done < <("$busybox" --list-full)
for applet in sh sleep httpd nc wget cat echo; do
  [ -e "$rootfs/bin/$applet" ] || [ -e "$rootfs/usr/bin/$applet" ] || [ -e "$rootfs/sbin/$applet" ] \
    || [ -e "$rootfs/usr/sbin/$applet" ] || die "$busybox has no $applet applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$rootfs/etc/group"
image localhost/krust/busybox "$out/busybox.tar" "$rootfs" \
  '{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],"WorkingDir":"/"}' \
  "$version" latest
