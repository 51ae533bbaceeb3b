#!/usr/bin/env bash
# Runs before `npm start`: builds the sandbox image when this machine can,
# so that a new node can share CPU at once. It never stops the start: a
# machine without busybox-static or a sandbox backend still starts a node
# that submits work, and the node itself says why it shares nothing.
cd "$(dirname "$0")/.." || exit 0
if ! bash scripts/build-test-image.sh; then
  echo "prepare-sandbox: the sandbox image was not built (see above); the node starts without sharing CPU." >&2
  echo "prepare-sandbox: to share, install Debian's busybox-static and bubblewrap or Docker, then run scripts/build-test-image.sh" >&2
fi
exit 0
