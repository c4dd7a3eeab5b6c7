#!/usr/bin/env bash
# Installs the system packages krust runs with and its tests drive, when they are missing.
# Real parts, not mocks: containerd, runc, the CNI plugins, etcd (the store's reference and HA
# backend), openssl (certificate checks) and kubectl. busybox-static is what
# scripts/build-images.sh makes the busybox image of; util-linux's unshare runs the pause test.
set -euo pipefail

packages=(etcd-server etcd-client containerd runc containernetworking-plugins busybox-static
          openssl curl nftables iptables iproute2 ca-certificates util-linux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The machines carry kubectl 1.27-1.33 outside Debian; Debian's own client is a last resort.
command -v kubectl >/dev/null || missing+=(kubernetes-client)

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "krust setup: installing packages needs root; run make as root (sudo make ...)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's containerd package may start its own daemon; krust runs its own containerd under its
# data dir and needs nothing from that one.
command -v cargo >/dev/null || { echo "krust setup: cargo is missing: install Rust (rustup) first" >&2; exit 1; }
