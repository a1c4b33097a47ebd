#!/usr/bin/env bash
# Installs through apt what the Python packages cannot bring: `npm` (node + npm, for the frontend) and
# `chromium` (Debian's, which Playwright drives in the browser tests). Only what is missing.
set -euo pipefail
missing=""
for want in "$@"; do
    case $want in
        npm) command -v npm >/dev/null || missing="$missing nodejs npm" ;;
        chromium) command -v chromium >/dev/null || missing="$missing chromium" ;;
        *) echo "unknown: $want (npm, chromium)" >&2; exit 2 ;;
    esac
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; else
    echo "missing:$missing; apt-get needs root: install them by hand" >&2; exit 1
fi
$SUDO apt-get update -qq
# shellcheck disable=SC2086  # one word per package
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
