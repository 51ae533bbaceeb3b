#!/usr/bin/env bash
# Builds the sandbox test image from files on this machine, because no image
# registry can be reached. The image is a root filesystem folder with
# busybox-static (a shell and core tools in one binary) and the Claude Code
# CLI's native binary with the shared libraries it links. The bubblewrap
# backend mounts the folder as its read-only root, and `docker import` turns
# the same folder into a Docker image for the Docker backend.
#
# Usage: scripts/build-test-image.sh [--no-docker]
#   EMDX_TEST_IMAGE      Docker image name (default emdx-sandbox-test:latest)
#   EMDX_TEST_ROOTFS     root filesystem folder (default build/test-image/rootfs)
#   EMDX_REQUIRE_SANDBOX when 1, a missing Docker daemon is an error
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
image=${EMDX_TEST_IMAGE:-emdx-sandbox-test:latest}
rootfs=${EMDX_TEST_ROOTFS:-$repo/build/test-image/rootfs}
sandbox_uid=1000
with_docker=1
[ "${1:-}" = "--no-docker" ] && with_docker=0

fail() { echo "build-test-image: $*" >&2; exit 1; }

busybox=$(command -v busybox || true)
[ -n "$busybox" ] || fail "busybox not found; install Debian's busybox-static (apt-get install busybox-static)"
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' || ldd "$busybox" 2>&1 | grep -q 'not a dynamic executable' \
  || fail "$busybox is not statically linked; install Debian's busybox-static"
# The native binary comes in the platform package; the main package's
# install script links it to bin/claude.exe.
claude="$repo/node_modules/@anthropic-ai/claude-code-linux-x64/claude"
[ -x "$claude" ] || claude="$repo/node_modules/@anthropic-ai/claude-code/bin/claude.exe"
[ -x "$claude" ] || fail "the Claude Code CLI binary is not in node_modules; run npm install (@anthropic-ai/claude-code is a devDependency)"

# The stamp names every input, so an unchanged image is not rebuilt.
claude_version=$("$claude" --version | head -n 1)
stamp="busybox=$("$busybox" 2>&1 | head -n 1); claude=$claude_version; uid=$sandbox_uid; script=$(sha256sum "$0" | cut -c1-16)"

build_rootfs() {
  if [ -f "$rootfs/.emdx-stamp" ] && [ "$(cat "$rootfs/.emdx-stamp")" = "$stamp" ]; then
    echo "root filesystem $rootfs is up to date"
    return
  fi
  echo "building root filesystem $rootfs"
  rm -rf "$rootfs"
  mkdir -p "$rootfs"/{bin,usr/local/bin,etc,tmp,workspace,home/sandbox,proc,sys,dev,lib64,lib/x86_64-linux-gnu}
  chmod 1777 "$rootfs/tmp"

  cp "$busybox" "$rootfs/bin/busybox"
  for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
  done
  # busybox has no nohup; a stage that calls it should still run.
  printf '#!/bin/sh\ntrap "" HUP\nexec "$@"\n' >"$rootfs/bin/nohup"
  chmod 755 "$rootfs/bin/nohup"

  # A hard link when the folder is on the same file system: the binary is
  # about 400 MB.
  ln "$claude" "$rootfs/usr/local/bin/claude" 2>/dev/null || cp "$claude" "$rootfs/usr/local/bin/claude"
  ldd "$claude" | awk '/=> \//{print $3} /^[ \t]*\/lib/{print $1}' | while read -r library; do
    mkdir -p "$rootfs$(dirname "$library")"
    cp -L "$library" "$rootfs$library"
  done

  printf 'root:x:0:0:root:/root:/bin/sh\nsandbox:x:%s:%s:sandbox:/home/sandbox:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    "$sandbox_uid" "$sandbox_uid" >"$rootfs/etc/passwd"
  printf 'root:x:0:\nsandbox:x:%s:\nnogroup:x:65534:\n' "$sandbox_uid" >"$rootfs/etc/group"
  printf '127.0.0.1 localhost\n::1 localhost\n' >"$rootfs/etc/hosts"
  : >"$rootfs/etc/resolv.conf"
  chown "$sandbox_uid:$sandbox_uid" "$rootfs/home/sandbox" "$rootfs/workspace"
  echo "$stamp" >"$rootfs/.emdx-stamp"
}

build_docker_image() {
  if ! docker info >/dev/null 2>&1; then
    if [ "${EMDX_REQUIRE_SANDBOX:-}" = 1 ]; then
      fail "no Docker daemon answers (DOCKER_HOST=${DOCKER_HOST:-unset}); start dockerd or unset EMDX_REQUIRE_SANDBOX"
    fi
    echo "no Docker daemon answers; skipping the Docker image (the bubblewrap root filesystem is built)"
    return
  fi
  if [ "$(docker image inspect --format '{{index .Config.Labels "emdx.stamp"}}' "$image" 2>/dev/null || true)" = "$stamp" ]; then
    echo "Docker image $image is up to date"
    return
  fi
  echo "importing $rootfs as Docker image $image"
  tar --numeric-owner --exclude=./.emdx-stamp -C "$rootfs" -c . | docker import \
    --change "USER $sandbox_uid:$sandbox_uid" \
    --change 'WORKDIR /workspace' \
    --change 'ENV PATH=/usr/local/bin:/bin HOME=/home/sandbox' \
    --change "LABEL emdx.stamp=\"$stamp\"" \
    --change 'CMD ["/bin/sh"]' \
    - "$image" >/dev/null
}

build_rootfs
[ "$with_docker" = 1 ] && build_docker_image
echo "test image ready: rootfs $rootfs${with_docker:+, Docker image $image}"
