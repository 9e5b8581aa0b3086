#!/usr/bin/env bash
# Installs the test bed's local peers and tools (see testbed/README.md):
#   Debian packages: openssh-server, cloud-init, openssl, iproute2, procps, util-linux, curl, hostname
#   Python:          moto_server (pip 'moto[server]'), the AWS CLI (pip 'awscli': machines fetch
#                    their bootstrap payload from Secrets Manager with it, as CAPA's images do)
#   Go, built here:  etcd, etcdctl, kube-apiserver, kube-controller-manager, kube-scheduler, kubeadm,
#                    kubectl (wrapper module testbed/go.mod); kube-apiserver, kube-controller-manager,
#                    kube-scheduler, kubeadm of the previous release (testbed/previous/go.mod); kwok,
#                    helm, argo, workflow-controller
# Each Go tool lands in ${CAPFLOW_TESTBED_CACHE:-$HOME/.cache/capflow-testbed}/<tool>/<version>/bin/<tool>
# (skipped when present) and is symlinked into ${CAPFLOW_TESTBED_BIN:-$HOME/.cache/capflow-testbed/bin};
# the previous release's machine image gets its own bin dir, $CAPFLOW_TESTBED_BIN/<previous version>.
# Idempotent: a second run only checks. GOCACHE/GOMODCACHE are left at Go's defaults.
#
# Usage: bash testbed/install.sh           install what is missing
#        bash testbed/install.sh --check   only report what is missing (exit 1 if anything is)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE="${CAPFLOW_TESTBED_CACHE:-$HOME/.cache/capflow-testbed}"
BIN="${CAPFLOW_TESTBED_BIN:-$HOME/.cache/capflow-testbed/bin}"
CHECK=0
case "${1:-}" in
  --check) CHECK=1 ;;
  "") ;;
  -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
  *) echo "unknown option: $1 (use --check)" >&2; exit 2 ;;
esac

T0=$SECONDS
MISSING=()
log() { printf '[testbed %4ss] %s\n' "$((SECONDS - T0))" "$*"; }
timed() { # timed LABEL CMD...: runs CMD, prints how long it took
  local label=$1 start=$SECONDS; shift
  "$@"
  log "$label: done in $((SECONDS - start))s"
}

# ---------------------------------------------------------------- Debian packages
DEB_PACKAGES=(openssh-server cloud-init openssl iproute2 procps util-linux curl hostname python3-pip)
deb_missing() {
  local p out=()
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || out+=("$p")
  done
  printf '%s\n' "${out[@]}"
}

install_debs() {
  local missing
  mapfile -t missing < <(deb_missing | sed '/^$/d')
  if [ "${#missing[@]}" -eq 0 ]; then log "debian packages: present (${DEB_PACKAGES[*]})"; return; fi
  if [ "$CHECK" = 1 ]; then MISSING+=("debian:${missing[*]}"); log "MISSING debian packages: ${missing[*]}"; return; fi
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  log "debian packages: installing ${missing[*]}"
  # Keep package scripts from starting services (no sshd on :22): policy-rc.d makes invoke-rc.d
  # refuse. The unit links the postinst scripts still create are removed by quiet_services below.
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null; $sudo chmod 755 "$policy"; created_policy=1
  fi
  # apt lists: update once if they look empty/stale for what we want.
  if ! apt-cache show "${missing[0]}" >/dev/null 2>&1; then timed "apt-get update" $sudo apt-get update -qq; fi
  timed "apt-get install" quiet_run "$(mktemp "${TMPDIR:-/tmp}/capflow-apt.XXXXXX")" \
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || { [ "$created_policy" = 1 ] && $sudo rm -f "$policy"; return 1; }
  [ "$created_policy" = 1 ] && $sudo rm -f "$policy"
  quiet_services "${missing[@]}"
}

# The packages are here for their commands only (`cloud-init schema`, an sshd the tests start on a
# loopback port). Neither may act as a system service on this machine.
quiet_services() {
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  local p units=()
  for p in "$@"; do
    case "$p" in
      cloud-init)
        # cloud-init.disabled stops its systemd generator at boot; also drop the unit links the
        # package's postinst made (it "enables" them even without a running systemd).
        $sudo mkdir -p /etc/cloud
        [ -e /etc/cloud/cloud-init.disabled ] || $sudo touch /etc/cloud/cloud-init.disabled
        units+=(cloud-init-local.service cloud-init.service cloud-config.service cloud-final.service cloud-init-hotplugd.socket) ;;
      openssh-server)
        units+=(ssh.service ssh.socket) ;;
    esac
  done
  [ "${#units[@]}" -gt 0 ] || return 0
  if command -v systemctl >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
      $sudo systemctl disable --now "${units[@]}" >/dev/null 2>&1 || true
    else
      $sudo systemctl --root=/ disable "${units[@]}" >/dev/null 2>&1 || true
    fi
  fi
  # sshd: the test bed starts its own per test; kill a system daemon if the package started one.
  if [ -f /run/sshd.pid ]; then $sudo kill "$(cat /run/sshd.pid)" 2>/dev/null || true; fi
  log "services left disabled: ${units[*]}"
}

# ---------------------------------------------------------------- moto_server
install_moto() {
  if command -v moto_server >/dev/null 2>&1; then log "moto_server: present ($(command -v moto_server))"; return; fi
  if [ "$CHECK" = 1 ]; then MISSING+=("moto_server"); log "MISSING moto_server (pip install 'moto[server]')"; return; fi
  log "moto_server: pip install 'moto[server]'"
  timed "moto[server]" python3 -m pip install --quiet --break-system-packages 'moto[server]' \
    || timed "moto[server]" python3 -m pip install --quiet 'moto[server]'
}

# ---------------------------------------------------------------- the AWS CLI (for the booting machines)
install_awscli() {
  if command -v aws >/dev/null 2>&1; then log "aws: present ($(command -v aws))"; return; fi
  if [ "$CHECK" = 1 ]; then MISSING+=("aws"); log "MISSING aws (pip install awscli)"; return; fi
  log "aws: pip install awscli"
  timed "awscli" python3 -m pip install --quiet --break-system-packages awscli \
    || timed "awscli" python3 -m pip install --quiet awscli
}

# ---------------------------------------------------------------- Go tools
# quiet_run LOGFILE CMD...: runs CMD with its output in LOGFILE, shown only if CMD fails.
quiet_run() {
  local logf=$1; shift
  "$@" >"$logf" 2>&1 || { local rc=$?; cat "$logf" >&2; return "$rc"; }
}

tool_path() { echo "$CACHE/$1/$2/bin/$1"; }

link_tool() { # link_tool NAME VERSION [DIR]: DIR defaults to $BIN
  local dir=${3:-$BIN}
  mkdir -p "$dir"
  ln -sfn "$(tool_path "$1" "$2")" "$dir/$1"
}

have_tool() { [ -x "$(tool_path "$1" "$2")" ]; }

go_env_ok() {
  command -v go >/dev/null 2>&1 || { echo "go is not on PATH: install Go >= 1.26" >&2; return 1; }
}

# kube_ldflags VERSION: Kubernetes' version stamps (k8s.io/component-base/version), as its release build sets them.
kube_ldflags() {
  local v=${1#v} major minor pv="k8s.io/component-base/version" ldflags
  major=${v%%.*}; minor=${v#*.}; minor=${minor%%.*}
  ldflags="-s -w -X $pv.gitVersion=$1 -X $pv.gitMajor=$major -X $pv.gitMinor=$minor"
  ldflags+=" -X $pv.gitTreeState=clean -X $pv.buildDate=1970-01-01T00:00:00Z"
  ldflags+=" -X $pv/verflag.programName=kubernetes"
  echo "$ldflags"
}

# wrapper_agrees GOMOD KUBERNETES_VERSION STAGING_VERSION: the wrapper's go.mod pins what versions.env says.
wrapper_agrees() {
  local gomod=$1 name=testbed/${1#"$HERE/"}
  grep -qE "^\s*(require\s+)?k8s.io/kubernetes $2\$" "$gomod" \
    || { echo "$name does not require k8s.io/kubernetes $2 (versions.env)" >&2; return 1; }
  grep -qE "k8s.io/api => k8s.io/api $3\$" "$gomod" \
    || { echo "$name does not replace the staging modules with $3 (versions.env)" >&2; return 1; }
}

# etcd, etcdctl and the Kubernetes binaries: one `go build` of the wrapper module.
KUBE_TOOLS=(kube-apiserver kube-controller-manager kube-scheduler kubeadm kubectl)
ETCD_TOOLS=(etcd etcdctl)
kube_tools() {
  local t
  for t in "${KUBE_TOOLS[@]}"; do echo "$t:$KUBERNETES_VERSION"; done
  for t in "${ETCD_TOOLS[@]}"; do echo "$t:$ETCD_VERSION"; done
}
build_kube() {
  local need=0 t
  for t in $(kube_tools); do
    if have_tool "${t%%:*}" "${t#*:}"; then link_tool "${t%%:*}" "${t#*:}"; log "${t%%:*} ${t#*:}: present"
    else need=1; fi
  done
  [ "$need" = 1 ] || return 0
  if [ "$CHECK" = 1 ]; then
    for t in $(kube_tools); do
      have_tool "${t%%:*}" "${t#*:}" || { MISSING+=("${t%%:*}@${t#*:}"); log "MISSING ${t%%:*} ${t#*:}"; }
    done
    return 0
  fi
  go_env_ok
  # The wrapper's go.mod must pin what versions.env says.
  wrapper_agrees "$HERE/go.mod" "$KUBERNETES_VERSION" "$KUBERNETES_STAGING_VERSION"
  local m
  for m in go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3; do
    grep -qE "^\s*$m $ETCD_VERSION\$" "$HERE/go.mod" \
      || { echo "testbed/go.mod does not require $m $ETCD_VERSION (versions.env)" >&2; return 1; }
  done

  local ldflags; ldflags="$(kube_ldflags "$KUBERNETES_VERSION")"
  local out; out="$(mktemp -d "${TMPDIR:-/tmp}/capflow-kube-build.XXXXXX")"
  log "${ETCD_TOOLS[*]} $ETCD_VERSION + ${KUBE_TOOLS[*]} $KUBERNETES_VERSION: go build (wrapper module; cold takes a long while)"
  local pkgs=() name
  for name in "${KUBE_TOOLS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$name"); done
  (cd "$HERE" && timed "go build ${ETCD_TOOLS[*]} ${KUBE_TOOLS[*]}" \
    go build -trimpath -ldflags "$ldflags" -o "$out/" ./cmd/etcd ./cmd/etcdctl "${pkgs[@]}")
  for t in $(kube_tools); do
    local name=${t%%:*} ver=${t#*:}
    mkdir -p "$CACHE/$name/$ver/bin"
    mv -f "$out/$name" "$(tool_path "$name" "$ver")"
    link_tool "$name" "$ver"
  done
  rm -rf "$out"
}

# The previous Kubernetes release (KUBERNETES_PREVIOUS_VERSION), for upgrade tests: the control plane
# binaries and kubeadm from the second wrapper module (testbed/previous/go.mod), in one `go build`.
# Its third-party requirements are the main wrapper's, so the two builds share every compiled package
# but k8s.io/*. Machines of that release's image get the bin dir $BIN/<previous version>: these four,
# and the one etcd, etcdctl and kubectl of the main wrapper.
PREVIOUS_TOOLS=(kube-apiserver kube-controller-manager kube-scheduler kubeadm)
build_kube_previous() {
  local ver=${KUBERNETES_PREVIOUS_VERSION:-} name
  [ -n "$ver" ] || { log "no KUBERNETES_PREVIOUS_VERSION in versions.env: no previous release built"; return 0; }
  local dir="$BIN/$ver" missing=()
  for name in "${PREVIOUS_TOOLS[@]}"; do
    if have_tool "$name" "$ver"; then log "$name $ver: present"; else missing+=("$name"); fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$CHECK" = 1 ]; then
      for name in "${missing[@]}"; do MISSING+=("$name@$ver"); log "MISSING $name $ver"; done
      return 0
    fi
    go_env_ok
    wrapper_agrees "$HERE/previous/go.mod" "$ver" "${KUBERNETES_PREVIOUS_STAGING_VERSION:-}"
    local ldflags; ldflags="$(kube_ldflags "$ver")"
    local out; out="$(mktemp -d "${TMPDIR:-/tmp}/capflow-kube-previous-build.XXXXXX")"
    log "${PREVIOUS_TOOLS[*]} $ver: go build (wrapper module testbed/previous)"
    local pkgs=()
    for name in "${PREVIOUS_TOOLS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$name"); done
    (cd "$HERE/previous" && timed "go build ${PREVIOUS_TOOLS[*]} $ver" \
      go build -trimpath -ldflags "$ldflags" -o "$out/" "${pkgs[@]}")
    for name in "${PREVIOUS_TOOLS[@]}"; do
      mkdir -p "$CACHE/$name/$ver/bin"
      mv -f "$out/$name" "$(tool_path "$name" "$ver")"
    done
    rm -rf "$out"
  fi
  for name in "${PREVIOUS_TOOLS[@]}"; do link_tool "$name" "$ver" "$dir"; done
  for name in kubectl etcd etcdctl; do
    local shared=$KUBERNETES_VERSION; [ "$name" = kubectl ] || shared=$ETCD_VERSION
    if have_tool "$name" "$shared"; then link_tool "$name" "$shared" "$dir"; fi
  done
}

# go_install NAME VERSION PACKAGE@VERSION [extra go build flags...]
go_install() {
  local name=$1 ver=$2 pkg=$3; shift 3
  if have_tool "$name" "$ver"; then link_tool "$name" "$ver"; log "$name $ver: present"; return; fi
  if [ "$CHECK" = 1 ]; then MISSING+=("$name@$ver"); log "MISSING $name $ver"; return; fi
  go_env_ok
  mkdir -p "$CACHE/$name/$ver/bin"
  log "$name $ver: go install $pkg"
  timed "go install $name" env GOBIN="$CACHE/$name/$ver/bin" go install -trimpath "$@" "$pkg"
  link_tool "$name" "$ver"
}

# go_build_via_module NAME VERSION PACKAGE@VERSION [extra go build flags...]
# Like go_install, but from a throwaway module that requires the tool's module. Needed when the
# module proxy serves the version but not the module's version list: `go install pkg@v` then fails
# "loading deprecation ... @v/list: 403" (argo-workflows/v3 here). The tool's module has no replace
# directives, so the build list is the one `go install` would have used.
go_build_via_module() {
  local name=$1 ver=$2 pkgver=$3; shift 3
  local pkg=${pkgver%@*}
  if have_tool "$name" "$ver"; then link_tool "$name" "$ver"; log "$name $ver: present"; return; fi
  if [ "$CHECK" = 1 ]; then MISSING+=("$name@$ver"); log "MISSING $name $ver"; return; fi
  go_env_ok
  local mod; mod="$(mktemp -d "${TMPDIR:-/tmp}/capflow-$name-build.XXXXXX")"
  mkdir -p "$CACHE/$name/$ver/bin"
  log "$name $ver: go build $pkgver (via a throwaway module)"
  (
    cd "$mod"
    go mod init "capflow-testbed-build/$name" >/dev/null 2>&1
    timed "go get $name" quiet_run "$mod/go-get.log" go get "$pkgver"
    timed "go build $name" go build -trimpath "$@" -o "$CACHE/$name/$ver/bin/$name" "$pkg"
  )
  rm -rf "$mod"
  link_tool "$name" "$ver"
}

install_debs
install_moto
install_awscli
build_kube
build_kube_previous
# kwok's version string (pkg/consts.Version) is already set in its source.
go_install kwok "$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" -ldflags "-s -w"
go_install helm "$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
# A real OCI registry (go-containerregistry's, in memory) for charts pushed with `helm push`; built as
# oci-registry (its own name, `registry`, says too little).
go_build_via_module oci-registry "$GGCR_VERSION" "github.com/google/go-containerregistry/cmd/registry@$GGCR_VERSION" -ldflags "-s -w"
go_build_via_module argo "$ARGO_VERSION" "github.com/argoproj/argo-workflows/v3/cmd/argo@$ARGO_VERSION" \
  -ldflags "-s -w -X github.com/argoproj/argo-workflows/v3.version=$ARGO_VERSION"
# Argo's workflow controller, the same release as the CLI: the tests run Workflows under it, with a
# pod stand-in playing the kubelet (test/support/argo.ts).
go_build_via_module workflow-controller "$ARGO_VERSION" "github.com/argoproj/argo-workflows/v3/cmd/workflow-controller@$ARGO_VERSION" \
  -ldflags "-s -w -X github.com/argoproj/argo-workflows/v3.version=$ARGO_VERSION"

# The release's own CRDs, which the controller needs installed: copied from the module next to the
# binary, $CACHE/workflow-controller/<version>/crds/minimal (the ones Argo's install manifests use:
# this release's full ones are refused by current API servers).
argo_crds() {
  local dest="$CACHE/workflow-controller/$ARGO_VERSION/crds"
  if [ -s "$dest/minimal/argoproj.io_workflowtaskresults.yaml" ]; then
    log "argo CRDs $ARGO_VERSION: present"; return
  fi
  if [ "$CHECK" = 1 ]; then MISSING+=("argo-crds@$ARGO_VERSION"); log "MISSING argo CRDs $ARGO_VERSION"; return; fi
  go_env_ok
  local dir
  dir="$(cd "${TMPDIR:-/tmp}" && GOFLAGS=-mod=mod go mod download -json "github.com/argoproj/argo-workflows/v3@$ARGO_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -d "$dir/manifests/base/crds/minimal" ] || { echo "argo module $ARGO_VERSION has no manifests/base/crds (at '$dir')" >&2; return 1; }
  rm -rf "$dest"
  mkdir -p "$dest/minimal"
  cp "$dir/manifests/base/crds/minimal"/argoproj.io_*.yaml "$dest/minimal/"
  log "argo CRDs $ARGO_VERSION: copied to $dest"
}
argo_crds

if [ "$CHECK" = 1 ]; then
  if [ "${#MISSING[@]}" -gt 0 ]; then
    log "missing: ${MISSING[*]} -- run: bash testbed/install.sh"
    exit 1
  fi
  log "all present (bin dir: $BIN)"
  exit 0
fi
log "done in $((SECONDS - T0))s; tools linked in $BIN"
