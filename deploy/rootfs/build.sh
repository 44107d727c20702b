#!/usr/bin/env bash
# Builds the read-only root file systems that Nimbus's Lambda sandboxes run in, from
# Debian's packages only (debootstrap --variant=minbase, then apt inside the root) and,
# for the Python roots, a hash-pinned boto3 from PyPI. See README.md beside this file.
#
#   deploy/rootfs/build.sh [--force] [--prune] [NAME...]     (default: all recipes)
#
# NAME is a recipe in recipes/NAME.conf (provided, bookworm, trixie). Each root lands in
# $NIMBUS_ROOTFS_DIR (default /var/tmp/nimbus-rootfs) as NAME-HASH, HASH covering this
# script and the recipe files the root uses, with a symlink NAME -> NAME-HASH. A root
# whose recipe is unchanged is not rebuilt (--force rebuilds it anyway, e.g. to pick up
# security updates). Builds go to a temporary directory renamed into place at the end:
# a failed or interrupted build leaves no half root. --prune deletes the other NAME-*
# builds of the named roots (only when no worker runs environments from them any more).
# Needs root (debootstrap, chroot, mount namespaces).
#
# Environment: NIMBUS_ROOTFS_DIR, DEBIAN_MIRROR (default http://deb.debian.org/debian),
# DEBIAN_SECURITY_MIRROR (default http://deb.debian.org/debian-security), HOST_PYTHON
# (default /usr/bin/python3, whose pip installs the pinned wheels).
set -euo pipefail
umask 022

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
RECIPES="$HERE/recipes"
# Nimbus's Java runtime interface client (sources and its build script).
REPO="$(cd "$HERE/../.." && pwd)"
JAVA_RIC="$REPO/crates/nimbus-worker/runtimes/java"
DIR="${NIMBUS_ROOTFS_DIR:-/var/tmp/nimbus-rootfs}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
HOST_PYTHON="${HOST_PYTHON:-/usr/bin/python3}"
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,19p' "$SELF" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

force=0 prune=0 names=()
for a in "$@"; do
  case "$a" in
    --force) force=1 ;;
    --prune) prune=1 ;;
    -h|--help) usage 0 ;;
    -*) echo "unknown option $a" >&2; usage 2 ;;
    *) names+=("$a") ;;
  esac
done
if [ ${#names[@]} -eq 0 ]; then
  for f in "$RECIPES"/*.conf; do names+=("$(basename "$f" .conf)"); done
fi
for n in "${names[@]}"; do
  [[ "$n" =~ ^[a-z0-9][a-z0-9.]*$ ]] || die "bad root name '$n'"
  [ -f "$RECIPES/$n.conf" ] || die "no recipe $RECIPES/$n.conf"
done
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, mount namespaces)"

# --- recipes -----------------------------------------------------------------------
load_recipe() { # NAME -> SUITE PACKAGES RUNTIMES PIP_REQUIREMENTS
  SUITE='' PACKAGES='' RUNTIMES='' PIP_REQUIREMENTS=''
  # shellcheck disable=SC1090
  . "$RECIPES/$1.conf"
  [ -n "$SUITE" ] && [ -n "$RUNTIMES" ] || die "recipes/$1.conf: SUITE and RUNTIMES are required"
  [ -z "$PIP_REQUIREMENTS" ] || [ -f "$RECIPES/$PIP_REQUIREMENTS" ] ||
    die "recipes/$1.conf: no recipes/$PIP_REQUIREMENTS"
}

recipe_hash() { # NAME (after load_recipe): this script + the recipe files the root uses
  local files=("$SELF" "$RECIPES/$1.conf")
  [ -z "$PIP_REQUIREMENTS" ] || files+=("$RECIPES/$PIP_REQUIREMENTS")
  # Java roots carry Nimbus's Java runtime client, compiled from these sources.
  if [[ " $RUNTIMES " == *" java"* ]]; then
    mapfile -t -O "${#files[@]}" files < <(find "$JAVA_RIC" -type f | LC_ALL=C sort)
  fi
  local f
  # Paths relative to the repository, so every clone of one commit has the same hash.
  for f in "${files[@]}"; do printf '%s\n' "${f#"$REPO"/}"; sha256sum <"$f"; done |
    sha256sum | cut -c1-12
}

# --- host tools ----------------------------------------------------------------------
host_ready=0
ensure_host_tools() { # installs what a fresh Debian/Ubuntu machine lacks, once per run
  [ "$host_ready" = 1 ] && return
  local need=()
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v gpgv >/dev/null || need+=(gpgv)
  command -v curl >/dev/null || need+=(curl ca-certificates)
  command -v unshare >/dev/null && command -v flock >/dev/null || need+=(util-linux)
  [ -s "$KEYRING" ] || need+=(debian-archive-keyring)
  [ -x "$HOST_PYTHON" ] || need+=(python3)
  "$HOST_PYTHON" -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
  if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]} (host tools)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  host_ready=1
}

checked_suites=" "
check_archive_key() { # SUITE: its InRelease must verify against the host's Debian keyring
  case "$checked_suites" in *" $1 "*) return ;; esac
  local rel
  rel="$(mktemp)"
  curl -fsSL --retry 3 -o "$rel" "$MIRROR/dists/$1/InRelease" || { rm -f "$rel"; die "cannot fetch $MIRROR/dists/$1/InRelease"; }
  if ! gpgv --keyring "$KEYRING" "$rel" >/dev/null 2>&1; then
    # An older host keyring may predate the suite's keys: Debian's stable updates ship
    # newer debian-archive-keyring packages (bookworm's 2023.3+deb12u1+ has trixie's).
    log "$1's InRelease does not verify with $KEYRING; upgrading debian-archive-keyring"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debian-archive-keyring >/dev/null
    gpgv --keyring "$KEYRING" "$rel" >/dev/null 2>&1 || {
      rm -f "$rel"
      die "$1's InRelease is not signed by any key in $KEYRING (install a debian-archive-keyring that has $1's keys)"
    }
  fi
  log "$1: InRelease signed by $(gpgv --keyring "$KEYRING" "$rel" 2>&1 | sed -n 's/.*Good signature from "\(.*\)".*/\1/p' | paste -sd';' -)"
  rm -f "$rel"
  checked_suites="$checked_suites$1 "
}

# --- running things inside a root ----------------------------------------------------
# Each call gets its own mount namespace: /proc, the /dev nodes, /dev/shm and the apt
# cache are mounted there and vanish with it, so no mount outlives a build (or a crash).
in_root() { # ROOT CMD...  ($IN_ROOT_APT_CACHE, if set, is bound at apt's archives)
  local root="$1"; shift
  unshare --mount --propagation private -- /bin/bash -euc '
    root=$1 apt_cache=$2; shift 2
    mount -t proc proc "$root/proc"
    for d in null zero full random urandom; do
      [ -e "$root/dev/$d" ] || : >"$root/dev/$d"
      mount --bind "/dev/$d" "$root/dev/$d"
    done
    mkdir -p "$root/dev/shm" && mount -t tmpfs -o size=64m tmpfs "$root/dev/shm"
    if [ -n "$apt_cache" ]; then mount --bind "$apt_cache" "$root/var/cache/apt/archives"; fi
    exec chroot "$root" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 \
      LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
  ' in_root "$root" "${IN_ROOT_APT_CACHE:-}" "$@"
}
export CHROOT_PATH

apt_in_root() { # ROOT APT-GET-ARGS...
  local root="$1"; shift
  local rc=0
  IN_ROOT_APT_CACHE="$DIR/.cache/apt-$SUITE"
  in_root "$root" apt-get -q -y \
    -o APT::Sandbox::User=root -o APT::Install-Recommends=false \
    -o APT::Install-Suggests=false -o Acquire::Languages=none -o Dpkg::Use-Pty=false "$@" || rc=$?
  IN_ROOT_APT_CACHE=
  return $rc
}

# --- one build ------------------------------------------------------------------------
CLEANUP=()
cleanup() {
  local d
  for d in "${CLEANUP[@]}"; do
    [ -n "$d" ] && [ -e "$d" ] && rm -rf --one-file-system "$d"
  done
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_root() { # NAME HASH
  local name="$1" hash="$2" t0=$SECONDS
  local final="$DIR/$name-$hash" logf="$DIR/.logs/$name-$hash.log"
  local r
  r="$(mktemp -d "$DIR/.build-$name-$hash.XXXXXX")"
  CLEANUP+=("$r")
  chmod 755 "$r"
  mkdir -p "$DIR/.logs" "$DIR/.cache/debootstrap-$SUITE" "$DIR/.cache/apt-$SUITE/partial" "$DIR/.cache/pip"
  : >"$logf"
  log "$name: building $SUITE root in $r (log: $logf)"

  run() { "$@" >>"$logf" 2>&1 || { tail -n 40 "$logf" >&2; die "$name: failed: $*"; }; }

  # 1. Base system. debootstrap checks the Release signature against $KEYRING itself.
  run unshare --mount --propagation private -- debootstrap --variant=minbase --merged-usr \
    --components=main --keyring="$KEYRING" --cache-dir="$DIR/.cache/debootstrap-$SUITE" \
    "$SUITE" "$r" "$MIRROR"
  rm -f "$r"/var/cache/apt/archives/*.deb # debootstrap's copies; its cache dir keeps them

  # 2. apt inside the root: the suite plus its updates and security updates; no docs,
  #    man pages or translations unpacked; no services started.
  cat >"$r/etc/apt/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE-updates main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $SECURITY_MIRROR $SUITE-security main
EOF
  cat >"$r/etc/dpkg/dpkg.cfg.d/90nimbus-slim" <<'EOF'
# Nimbus rootfs: keep licences, drop the rest of the docs, man pages and translations.
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
path-exclude=/usr/share/linda/*
# JDK modules for jlink only (javac and the runtime do not read them): ~75 MB a JDK.
path-exclude=/usr/lib/jvm/*/jmods/*
EOF
  printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
  chmod 755 "$r/usr/sbin/policy-rc.d"
  mkdir -p "$r/usr/share/man/man1" # openjdk's alternatives link their man pages there
  cp -L /etc/resolv.conf "$r/etc/resolv.conf"
  run apt_in_root "$r" update
  run apt_in_root "$r" dist-upgrade
  # shellcheck disable=SC2086
  [ -z "$PACKAGES" ] || run apt_in_root "$r" install $PACKAGES

  # 3. Pinned wheels from PyPI, installed by the host's pip for the root's Python, and
  #    byte-compiled by the root's own python3 (hash-based .pyc: deterministic, and
  #    never rewritten, which a read-only root could not do anyway).
  if [ -n "$PIP_REQUIREMENTS" ]; then
    local site=/usr/lib/python3/dist-packages pyver before after new
    pyver="$(in_root "$r" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    before="$(ls -A "$r$site" | sort)"
    # PyPI only, whatever the host's pip is told (its cert setting, for proxies, stays).
    run env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL -u PIP_NO_INDEX \
      "$HOST_PYTHON" -m pip install --disable-pip-version-check --no-input \
      --index-url https://pypi.org/simple --cache-dir "$DIR/.cache/pip" --no-deps --require-hashes --only-binary=:all: \
      --python-version "$pyver" --implementation py --no-compile --no-warn-script-location \
      --target "$r$site" -r "$RECIPES/$PIP_REQUIREMENTS"
    rm -rf "${r:?}$site/bin" # console scripts with the host's #! line
    after="$(ls -A "$r$site" | sort)"
    new="$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | grep -v '\.dist-info$' | sed "s|^|$site/|")"
    [ -n "$new" ] || die "$name: pip installed nothing new into $site"
    # shellcheck disable=SC2086
    run in_root "$r" python3 -m compileall -q --invalidation-mode unchecked-hash $new
  fi

  # 4. Trim and make it a root to run functions in, not to administer.
  # The archives directory is the shared .deb cache here: drop only what the archive no
  # longer has (the root's own archives directory is empty underneath).
  run apt_in_root "$r" autoclean
  rm -f "$r/usr/sbin/policy-rc.d"
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/debconf/*-old \
    "$r"/var/lib/dpkg/*-old "$r"/var/cache/ldconfig/aux-cache "$r"/etc/*- \
    "$r"/usr/share/man "$r"/usr/share/info "$r"/usr/share/lintian "$r"/usr/share/linda
  find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
  find "$r/usr/share/doc" -mindepth 1 ! -type d ! -name copyright ! -type l -delete
  find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
  find "$r/var/log" -type f -delete
  find "$r/tmp" "$r/var/tmp" "$r/root" "$r/run" -mindepth 1 -delete 2>/dev/null || true
  chmod 1777 "$r/tmp" "$r/var/tmp"
  # The sandbox binds its own resolv.conf over this (network mode); no host config leaks.
  rm -f "$r/etc/resolv.conf" && : >"$r/etc/resolv.conf" && chmod 644 "$r/etc/resolv.conf"
  echo localhost >"$r/etc/hostname"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
  [ ! -e "$r/etc/machine-id" ] || : >"$r/etc/machine-id"
  # No account may have a usable password (debootstrap leaves root locked: '*').
  local pw
  pw="$(awk -F: '$2 !~ /^[*!]/ {print $1}' "$r/etc/shadow")"
  [ -z "$pw" ] || die "$name: accounts with a password in /etc/shadow: $pw"
  mkdir -p "$r/var/task" "$r/var/runtime" "$r/opt" "$r/proc" "$r/sys"
  # /dev: the sandbox mounts its own; these few nodes serve plain `chroot ROOT ...`.
  find "$r/dev" -mindepth 1 -delete
  mkdir -p "$r/dev/pts" "$r/dev/shm"
  local dev
  for dev in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
    IFS=: read -r n ma mi <<<"$dev"
    mknod -m 666 "$r/dev/$n" c "$ma" "$mi" 2>/dev/null || true
  done
  ln -s /proc/self/fd "$r/dev/fd"
  ln -s /proc/self/fd/0 "$r/dev/stdin"; ln -s /proc/self/fd/1 "$r/dev/stdout"; ln -s /proc/self/fd/2 "$r/dev/stderr"

  # Nimbus's Java runtime, compiled by the root's own JDK into /usr/lib/nimbus/java
  # (where the worker's launcher looks: nimbus_worker::runtimes::JAVA_RUNTIME_IN_ROOT).
  if [[ " $RUNTIMES " == *" java"* ]]; then
    mkdir -p "$r/tmp/nimbus-java-ric" "$r/usr/lib/nimbus/java"
    cp -r "$JAVA_RIC/." "$r/tmp/nimbus-java-ric/"
    in_root "$r" sh /tmp/nimbus-java-ric/build.sh /usr/lib/nimbus/java >&2 ||
      die "$name: compiling the Java runtime client failed"
    rm -rf "$r/tmp/nimbus-java-ric"
  fi

  # 5. Manifest: what it serves and the versions measured inside it.
  write_manifest "$name" "$hash" "$r"

  # 6. Into place, atomically; then the stable name. A build replaced by --force is
  # kept (running sandboxes may have it bind-mounted) until --prune.
  if [ -e "$final" ]; then
    mv -T "$final" "$final.replaced-$(date -u +%Y%m%d%H%M%S)"
  fi
  mv -T "$r" "$final"
  log "$name: built $final in $((SECONDS - t0))s ($(du -sh "$final" | cut -f1))"
}

first_line() { head -n1 | tr -d '\r'; }

write_manifest() { # NAME HASH ROOT
  local name="$1" hash="$2" r="$3"
  local py="" py_out="" node="" node_out="" java="" java_out="" java_home="" javac=""
  local ruby="" ruby_out="" curl_out="" pypkgs="{}" jars=""
  if [ -e "$r/usr/bin/python3" ]; then
    py_out="$(in_root "$r" python3 --version 2>&1 | first_line)"
    py="$(in_root "$r" python3 -c 'import platform; print(platform.python_version())')"
  fi
  if [ -e "$r/usr/bin/node" ]; then
    node_out="$(in_root "$r" node --version | first_line)"
    node="${node_out#v}"
  fi
  if [ -e "$r/usr/bin/java" ]; then
    java_out="$(in_root "$r" java -version 2>&1 | first_line)"
    java="$(sed -n 's/.*version "\([^"]*\)".*/\1/p' <<<"$java_out")"
    java_home="$(in_root "$r" readlink -f /usr/bin/java)"
    java_home="${java_home%/bin/java}"
    [ ! -e "$r/usr/bin/javac" ] || javac="$(in_root "$r" javac -version 2>&1 | first_line)"
    jars="$(cd "$r" && find usr/share/java -maxdepth 1 \( -name 'gson.jar' -o -name 'jackson-*.jar' \) 2>/dev/null | sed 's|^|/|' | sort | paste -sd: -)"
  fi
  if [ -e "$r/usr/bin/ruby" ]; then
    ruby_out="$(in_root "$r" ruby --version | first_line)"
    ruby="$(in_root "$r" ruby -e 'print RUBY_VERSION')"
  fi
  [ ! -e "$r/usr/bin/curl" ] || curl_out="$(in_root "$r" curl --version | first_line)"
  if [ -n "$PIP_REQUIREMENTS" ]; then
    local pins
    pins="$(sed -n 's/^\([A-Za-z0-9_.-]*\)==\([^ ]*\).*/\1=\2/p' "$RECIPES/$PIP_REQUIREMENTS" | paste -sd' ' -)"
    # The versions the root's python3 imports must be exactly the pins (pip --target
    # skips, with a mere warning, a package that a Debian package already installed).
    # shellcheck disable=SC2086
    pypkgs="$(in_root "$r" python3 -c '
import importlib.metadata as m, json, sys
got = {}
for pin in sys.argv[1:]:
    n, v = pin.split("=")
    got[n] = m.version(n)
    if got[n] != v:
        sys.exit("%s is %s, pinned %s" % (n, got[n], v))
import boto3, botocore
print(json.dumps(got))' $pins)" || die "$name: pinned Python packages are not what python3 imports"
  fi
  in_root "$r" dpkg-query -W -f '${Package}=${Version}\n' | LC_ALL=C sort >"$r/etc/nimbus-packages.txt"

  # Each runtime identifier must match what was measured (catches a suite whose
  # default interpreter moved on).
  local id want
  for id in $RUNTIMES; do
    case "$id" in
      python3.*) want="${id#python}"; [ "$(cut -d. -f1,2 <<<"$py")" = "$want" ] ;;
      nodejs*.x) want="${id#nodejs}"; want="${want%.x}"; [ "${node%%.*}" = "$want" ] ;;
      java*) want="${id#java}"; [ "${java%%.*}" = "$want" ] ;;
      ruby*) want="${id#ruby}"; [ "$(cut -d. -f1,2 <<<"$ruby")" = "$want" ] ;;
      provided*) [ -x "$r/bin/sh" ] && [ -n "$curl_out" ] ;;
      *) die "$name: unknown runtime identifier $id" ;;
    esac || die "$name: $id does not match the root (python $py, node $node, java $java, ruby $ruby)"
  done

  NAME="$name" HASH="$hash" SUITE="$SUITE" RUNTIMES="$RUNTIMES" \
  DEBIAN_VERSION="$(cat "$r/etc/debian_version")" \
  PY="$py" PY_OUT="$py_out" NODE="$node" NODE_OUT="$node_out" JAVA="$java" \
  JAVA_OUT="$java_out" JAVA_HOME_="$java_home" JAVAC="$javac" JARS="$jars" RUBY="$ruby" \
  RUBY_OUT="$ruby_out" CURL_OUT="$curl_out" PYPKGS="$pypkgs" \
  NPKG="$(wc -l <"$r/etc/nimbus-packages.txt")" \
  "$HOST_PYTHON" - >"$r/etc/nimbus-runtime.json" <<'EOF'
import json, os, datetime
e = os.environ
def interp(path, version, output, **extra):
    if not version:
        return None
    d = {"path": path, "version": version, "version_output": output}
    d.update({k: v for k, v in extra.items() if v})
    return d
interpreters = {
    "python3": interp("/usr/bin/python3", e["PY"], e["PY_OUT"],
                      packages=json.loads(e["PYPKGS"]) or None),
    "node": interp("/usr/bin/node", e["NODE"], e["NODE_OUT"]),
    "java": interp("/usr/bin/java", e["JAVA"], e["JAVA_OUT"], java_home=e["JAVA_HOME_"],
                   javac=e["JAVAC"], classpath=[j for j in e["JARS"].split(":") if j]),
    "ruby": interp("/usr/bin/ruby", e["RUBY"], e["RUBY_OUT"]),
}
print(json.dumps({
    "name": e["NAME"],
    "recipe": e["HASH"],
    "debian": {"suite": e["SUITE"], "version": e["DEBIAN_VERSION"],
               "packages": int(e["NPKG"]), "package_list": "/etc/nimbus-packages.txt"},
    "built": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "runtimes": e["RUNTIMES"].split(),
    "interpreters": {k: v for k, v in interpreters.items() if v},
    "curl": e["CURL_OUT"] or None,
}, indent=2))
EOF
}

# --- main ----------------------------------------------------------------------------
mkdir -p -m 755 "$DIR"
# The roots become every function's /usr: the directory must be root's alone (another
# user who owned it could swap a build under us, or the links workers follow).
[ ! -L "$DIR" ] || die "$DIR is a symbolic link"
[ "$(stat -c %u "$DIR")" = 0 ] || die "$DIR is not owned by root"
[ -z "$(find "$DIR" -maxdepth 0 -perm /022)" ] || die "$DIR is writable by group or others"
exec 9>"$DIR/.lock"
flock -n 9 || { log "another build holds $DIR/.lock; waiting"; flock 9; }
# Left by a build that was killed outright (with the lock held, nothing else owns them).
find "$DIR" -mindepth 1 -maxdepth 1 \( -name '.build-*' -o -name '.old-*' \) \
  -exec rm -rf --one-file-system {} +

for name in "${names[@]}"; do
  load_recipe "$name"
  hash="$(recipe_hash "$name")"
  final="$DIR/$name-$hash"
  if [ "$force" = 1 ] || [ ! -f "$final/etc/nimbus-runtime.json" ]; then
    ensure_host_tools
    check_archive_key "$SUITE"
    build_root "$name" "$hash"
  else
    log "$name: up to date ($final)"
  fi
  if [ "$(readlink "$DIR/$name" 2>/dev/null)" != "$name-$hash" ]; then
    ln -sfn "$name-$hash" "$DIR/.$name.link.$$"
    mv -T "$DIR/.$name.link.$$" "$DIR/$name"
  fi
  if [ "$prune" = 1 ]; then
    for old in "$DIR/$name"-???????????? "$DIR/$name"-????????????.replaced-*; do
      [ -d "$old" ] && [ "$old" != "$final" ] || continue
      log "$name: pruning $old"
      rm -rf --one-file-system "$old"
    done
  fi
done
