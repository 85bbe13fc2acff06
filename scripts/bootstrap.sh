#!/usr/bin/env bash
# Installs what RayDog's tests and demos need on a fresh Debian/Ubuntu machine:
# redis-server (the autoscaler's tag store), OpenSSH (tunnel tests), Prometheus (the observability node)
# and nox + uv (test environments).
set -euo pipefail
need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh >/dev/null || need_apt+=(openssh-client)
command -v prometheus >/dev/null || need_apt+=(prometheus)  # the default observability node
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "raydog: please install these Debian packages first: ${need_apt[*]}" >&2
    echo "        sudo apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
fi
python3 -m pip --version >/dev/null 2>&1 || { echo "raydog: python3 with pip is required" >&2; exit 1; }
command -v nox >/dev/null && command -v uv >/dev/null || python3 -m pip install -q "nox>=2024.10.9" "uv>=0.5"
