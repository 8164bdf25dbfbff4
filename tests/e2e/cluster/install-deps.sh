#!/usr/bin/env bash
# Installs the Debian packages the local e2e cluster needs. Idempotent and
# quick when everything is present (no apt-get update then).
set -euo pipefail

packages=(
  containerd runc containernetworking-plugins iptables conntrack
  busybox-static openssl iproute2 mount util-linux
  redis-server git  # the GitOps e2e: Argo CD's cache, and the Git remote it syncs from (git daemon)
)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "[install-deps] all present: ${packages[*]}"
  exit 0
fi

echo "[install-deps] installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# busybox-static replaces the dynamic busybox package; the image needs the static one.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "[install-deps] done"
