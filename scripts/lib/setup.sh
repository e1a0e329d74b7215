# shellcheck shell=bash
# Host setup shared by scripts/test and scripts/run: install the Debian packages kpulse needs, start
# dockerd and influxd when they are not already answering, and create the project's virtualenv.
#
# Source it from a script that runs under `set -euo pipefail`; it only defines functions and variables.
# Everything is idempotent: a package already installed, a daemon already answering or a virtualenv
# already up to date is left alone. Daemons started here run in their own session (Ctrl-C on the calling
# script does not stop them) and log under the state directory.
#
# Environment:
#   KPULSE_STATE_DIR   logs and pid files (default: <repo>/.kpulse)
#   KPULSE_PYTHON      interpreter for the virtualenv (default: python3, must be >= 3.11)
#   KPULSE_AGGREGATOR_INFLUX_URL   where InfluxDB is expected (default: http://127.0.0.1:8086); a local
#                      influxd is started only when this points at this host.
#   KPULSE_INFLUXD_CONFIG          config for a local influxd (default: Debian's /etc/influxdb/influxdb.conf)

KPULSE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KPULSE_STATE_DIR=${KPULSE_STATE_DIR:-$KPULSE_ROOT/.kpulse}
KPULSE_VENV=$KPULSE_ROOT/.venv
KPULSE_INFLUX_URL=${KPULSE_AGGREGATOR_INFLUX_URL:-http://127.0.0.1:8086}
KPULSE_INFLUX_URL=${KPULSE_INFLUX_URL%/}
KPULSE_READY_TIMEOUT_SECONDS=${KPULSE_READY_TIMEOUT_SECONDS:-90}

# docker.io brings dockerd, containerd and runc; influxdb-client brings the `influx` CLI; busybox-static
# is what the tests' container image is made of; mmdebstrap builds Debian root filesystems.
KPULSE_DEBIAN_PACKAGES=(
    docker.io iptables
    influxdb influxdb-client
    busybox-static mmdebstrap
    ca-certificates curl
)

kpulse_say() { printf '==> %s\n' "$*" >&2; }

kpulse_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# kpulse_wait_for SECONDS PID COMMAND...
# Polls COMMAND (output discarded) until it succeeds. Returns 1 at the deadline, 2 as soon as PID (when
# not empty) has exited: a daemon that died will not become ready, so there is no point in waiting.
kpulse_wait_for() {
    local seconds=$1 pid=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 2
        fi
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.2
    done
}

# kpulse_fail_with_log WHAT LOGFILE STATUS: explains why WHAT did not come up, with the end of its log.
kpulse_fail_with_log() {
    local what=$1 log=$2 status=$3
    if [[ $status -eq 2 ]]; then
        printf 'error: %s exited during start-up; last lines of %s:\n' "$what" "$log" >&2
    else
        printf 'error: %s not ready after %ss; last lines of %s:\n' \
            "$what" "$KPULSE_READY_TIMEOUT_SECONDS" "$log" >&2
    fi
    tail -n 40 "$log" >&2 || true
    exit 1
}

kpulse_package_installed() {
    local status
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)
    [[ $status == "install ok installed" ]]
}

kpulse_apt_install() {
    [[ $EUID -eq 0 ]] || kpulse_die "need root to install Debian packages: $*"
    command -v apt-get >/dev/null || kpulse_die "apt-get not found: install these by hand: $*"
    kpulse_say "installing Debian packages: $*"
    apt-get -q -o DPkg::Lock::Timeout=300 update
    # No recommends: docker.io recommends needrestart, which would try to restart services mid-install.
    DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=l apt-get -q -y -o DPkg::Lock::Timeout=300 \
        install --no-install-recommends "$@"
}

kpulse_install_packages() {
    local missing=() pkg
    for pkg in "${KPULSE_DEBIAN_PACKAGES[@]}"; do
        kpulse_package_installed "$pkg" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        kpulse_say "Debian packages: all present"
        return 0
    fi
    kpulse_apt_install "${missing[@]}"
}

# A machine without an init system may not have mounted the cgroup hierarchies dockerd needs.
kpulse_ensure_cgroups() {
    if [[ -e /sys/fs/cgroup/cgroup.controllers || -d /sys/fs/cgroup/cpu || -d /sys/fs/cgroup/memory ]]; then
        return 0
    fi
    kpulse_say "cgroups are not mounted: mounting them with cgroupfs-mount"
    kpulse_package_installed cgroupfs-mount || kpulse_apt_install cgroupfs-mount
    cgroupfs-mount
}

kpulse_docker_ready() { docker info >/dev/null 2>&1; }

kpulse_start_dockerd() {
    if kpulse_docker_ready; then
        kpulse_say "dockerd: already answering"
        return 0
    fi
    if [[ -n ${DOCKER_HOST:-} ]]; then
        kpulse_die "DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local dockerd in its place"
    fi
    [[ $EUID -eq 0 ]] || kpulse_die "the Docker engine does not answer and only root can start dockerd"
    kpulse_ensure_cgroups
    mkdir -p "$KPULSE_STATE_DIR"
    local log=$KPULSE_STATE_DIR/dockerd.log pid status=0
    kpulse_say "dockerd: starting (log: $log)"
    setsid dockerd >>"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$KPULSE_STATE_DIR/dockerd.pid"
    kpulse_wait_for "$KPULSE_READY_TIMEOUT_SECONDS" "$pid" kpulse_docker_ready || status=$?
    [[ $status -eq 0 ]] || kpulse_fail_with_log dockerd "$log" "$status"
    kpulse_say "dockerd: ready (pid $pid)"
}

kpulse_influx_ready() { curl -fs -o /dev/null --max-time 2 "$KPULSE_INFLUX_URL/ping"; }

kpulse_start_influxd() {
    if kpulse_influx_ready; then
        kpulse_say "influxd: already answering at $KPULSE_INFLUX_URL"
        return 0
    fi
    case $KPULSE_INFLUX_URL in
        http://127.0.0.1:8086 | http://localhost:8086) ;;
        *) kpulse_die "InfluxDB at $KPULSE_INFLUX_URL does not answer; only a local one on :8086 is started here" ;;
    esac
    [[ $EUID -eq 0 ]] || kpulse_die "InfluxDB does not answer and only root can start influxd"
    local config=${KPULSE_INFLUXD_CONFIG:-/etc/influxdb/influxdb.conf}
    [[ -f $config ]] || kpulse_die "$config not found: is Debian's influxdb package installed?"
    mkdir -p "$KPULSE_STATE_DIR"
    local log=$KPULSE_STATE_DIR/influxd.log pid status=0
    kpulse_say "influxd: starting (log: $log)"
    setsid influxd -config "$config" >>"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$KPULSE_STATE_DIR/influxd.pid"
    kpulse_wait_for "$KPULSE_READY_TIMEOUT_SECONDS" "$pid" kpulse_influx_ready || status=$?
    [[ $status -eq 0 ]] || kpulse_fail_with_log influxd "$log" "$status"
    kpulse_say "influxd: ready at $KPULSE_INFLUX_URL (pid $pid)"
}

# Everything the services need on this host: packages, then both daemons.
kpulse_setup_host() {
    kpulse_install_packages
    kpulse_start_dockerd
    kpulse_start_influxd
}

# Creates .venv when missing or unusable and installs the project with its dev extras into it. The
# install is redone only when pyproject.toml or the interpreter changed (a stamp file remembers).
kpulse_ensure_venv() {
    local python=${KPULSE_PYTHON:-python3}
    command -v "$python" >/dev/null || kpulse_die "$python not found (set KPULSE_PYTHON to a Python >= 3.11)"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        kpulse_die "$python is $("$python" --version 2>&1); kpulse needs Python >= 3.11"
    if ! "$KPULSE_VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
            # Debian's own python3 ships venv support in a separate package.
            kpulse_apt_install python3-venv
        fi
        kpulse_say "virtualenv: creating $KPULSE_VENV with $python"
        "$python" -m venv --clear "$KPULSE_VENV"
    fi
    local stamp=$KPULSE_VENV/.kpulse-install-stamp want
    want="$(sha256sum "$KPULSE_ROOT/pyproject.toml" | cut -d' ' -f1) $("$KPULSE_VENV/bin/python" -V 2>&1)"
    if [[ -f $stamp && $(<"$stamp") == "$want" ]]; then
        kpulse_say "virtualenv: up to date"
        return 0
    fi
    kpulse_say "virtualenv: installing kpulse[dev] (editable)"
    local cert=/etc/ssl/certs/ca-certificates.crt
    if [[ -z ${PIP_CERT:-} && -f $cert ]]; then
        export PIP_CERT=$cert
    fi
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$KPULSE_VENV/bin/python" -m pip install -q -e "${KPULSE_ROOT}[dev]"
    printf '%s' "$want" >"$stamp"
}

# --- Deployment tooling (tests/deploy; owned by the deployment work) --------------------------------------
# kpulse_setup_deploy_tools: what tests/deploy needs beyond the packages above.
#   - a compose implementation: `docker compose` (v2 plugin) when present, else Debian's docker-compose (v1);
#   - checkov, in its own virtualenv under the state directory: it pins versions (packaging, dateutil, ...)
#     that conflict with the project's, so it cannot live in .venv. KPULSE_CHECKOV is exported for the tests.
# kubectl is not installed here: the tests need kustomize v4+ (kubectl >= 1.21), newer than Debian
# bookworm's kubernetes-client (1.20), and skip with that reason when only an older or no kubectl exists.
# mmdebstrap (for the local Debian base image) is in KPULSE_DEBIAN_PACKAGES above.
KPULSE_CHECKOV_VERSION=${KPULSE_CHECKOV_VERSION:-3.3.30}
KPULSE_CHECKOV_VENV=$KPULSE_STATE_DIR/tools/checkov

kpulse_setup_deploy_tools() {
    if docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null; then
        kpulse_say "compose: present"
    else
        kpulse_apt_install docker-compose
    fi
    local checkov=$KPULSE_CHECKOV_VENV/bin/checkov
    local installed=""
    if [[ -x $checkov ]]; then
        installed=$("$KPULSE_CHECKOV_VENV/bin/python" -c \
            'import importlib.metadata as m; print(m.version("checkov"))' 2>/dev/null || true)
    fi
    if [[ $installed == "$KPULSE_CHECKOV_VERSION" ]]; then
        kpulse_say "checkov: $KPULSE_CHECKOV_VERSION present"
    else
        local python=${KPULSE_PYTHON:-python3} cert=/etc/ssl/certs/ca-certificates.crt
        kpulse_say "checkov: installing $KPULSE_CHECKOV_VERSION into $KPULSE_CHECKOV_VENV"
        "$python" -m venv --clear "$KPULSE_CHECKOV_VENV"
        if [[ -z ${PIP_CERT:-} && -f $cert ]]; then
            export PIP_CERT=$cert
        fi
        PIP_DISABLE_PIP_VERSION_CHECK=1 "$KPULSE_CHECKOV_VENV/bin/python" -m pip install -q \
            "checkov==$KPULSE_CHECKOV_VERSION"
    fi
    export KPULSE_CHECKOV=$checkov
}
