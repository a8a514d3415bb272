#!/usr/bin/env bash
# Prepare this machine (Debian 12, root) for the demo and the tests. Idempotent:
# a rerun reuses the venv, the Docker images and the artifact mirror.
#   - Debian packages: docker.io, debootstrap, openssh-client (installed when missing)
#   - dockerd: started when none answers
#   - .venv with requirements.txt (reinstalled when the file changes)
#   - artifact mirror + controller tools (tools/build_mirror.py)
#   - test-host images (scripts/build-images.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
export MONSTACK_CACHE="${MONSTACK_CACHE:-/var/cache/monstack}"
step() { printf '\n== %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs Debian packages and starts dockerd)" >&2
  exit 1
fi

step "Debian packages"
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v dpkg-deb >/dev/null 2>&1 || missing+=(dpkg)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)   # the operator scenario connects over SSH
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  echo "installed: ${missing[*]}"
else
  echo "present: docker.io debootstrap"
fi

step "Docker engine"
# Every systemd test container takes inotify instances; with the kernel's
# default of 128 per user a scenario's later containers can exit at start
# (255). Raised, never lowered; left alone where /proc/sys is read-only.
inotify=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 0)
if [ "$inotify" -lt 512 ] && echo 512 >/proc/sys/fs/inotify/max_user_instances 2>/dev/null; then
  echo "fs.inotify.max_user_instances: $inotify -> 512"
fi
if ! docker info >/dev/null 2>&1; then
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 /var/log/dockerd.log; exit 1; }
  echo "dockerd started (log: /var/log/dockerd.log)"
else
  echo "dockerd already running"
fi

step "Python virtual environment (.venv)"
stamp=".venv/.requirements.sha256"
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
  echo "$want" >"$stamp"
  echo "installed requirements.txt"
else
  echo "up to date"
fi

step "Artifact mirror ($MONSTACK_CACHE/mirror)"
.venv/bin/python tools/build_mirror.py

# The test binaries are Debian's builds; its Alertmanager reads its default
# notification templates from /usr/share/prometheus/alertmanager/ (as the
# Debian package installs them). Put them there for the controller-side tests.
if [ ! -e /usr/share/prometheus/alertmanager/default.tmpl ]; then
  mkdir -p /usr/share/prometheus
  cp -r "$MONSTACK_CACHE/extras/usr/share/prometheus/alertmanager" /usr/share/prometheus/
  echo "installed /usr/share/prometheus/alertmanager (templates of Debian's Alertmanager build)"
fi

step "Test-host images"
scripts/build-images.sh

# The FastAPI test service of the molecule scenario (tests/fastapi_app): the
# test hosts have no PyPI access, so its wheels, for Debian 12's Python 3.11,
# are fetched here once and copied to a host by tests/fastapi_app/deploy.yml.
step "Wheels of the FastAPI test service ($MONSTACK_CACHE/wheels/fastapi-app-py3.11)"
wheels="$MONSTACK_CACHE/wheels/fastapi-app-py3.11"
want="$(sha256sum tests/fastapi_app/requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$wheels/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  rm -rf "$wheels" && mkdir -p "$wheels"
  .venv/bin/pip download -q --disable-pip-version-check --only-binary=:all: --python-version 3.11 \
    -d "$wheels" -r tests/fastapi_app/requirements.txt
  echo "$want" >"$wheels/.requirements.sha256"
  echo "downloaded $(ls "$wheels"/*.whl | wc -l) wheels"
else
  echo "up to date"
fi
