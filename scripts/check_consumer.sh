#!/usr/bin/env bash
# Builds Examples/TinyACON, a separate package that depends on this one by URL and version, as
# any user's package would, and runs it (it trains a tiny ACON network and fails unless the loss
# falls). The dependency is a clone of this checkout (its working tree as it is, committed in the
# clone) tagged with the version at the top of CHANGELOG.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/acon-consumer.XXXXXX")"
trap 'rm -rf "$work"' EXIT

version="$(sed -n 's/^## \[\{0,1\}\([0-9][0-9.]*\)\]\{0,1\}.*/\1/p' "$root/CHANGELOG.md" | head -n 1)"
[ -n "$version" ] || { echo "check_consumer: no version heading in CHANGELOG.md" >&2; exit 1; }

# The package as a user would fetch it: a git repository with a version tag.
git clone -q "$root" "$work/acon"
(cd "$root" && git ls-files -z --cached --others --exclude-standard) \
  | (cd "$root" && tar -c --null -T - 2>/dev/null) | tar -x -C "$work/acon"
git -C "$work/acon" add -A
git -C "$work/acon" -c user.name=check -c user.email=check@localhost commit -q -m "working tree" --allow-empty
git -C "$work/acon" tag "$version"

cp -R "$root/Examples/TinyACON" "$work/consumer"
rm -rf "$work/consumer/.build"
cd "$work/consumer"
echo "check_consumer: building Examples/TinyACON against acon $version (a tagged clone)"
ACON_PACKAGE_URL="file://$work/acon" swift build -c debug --scratch-path "$work/build" 2>&1 \
  | grep -E "error|warning: unsafe|Compiling TinyACON|Build complete" || true
ACON_PACKAGE_URL="file://$work/acon" swift build -c debug --scratch-path "$work/build" >/dev/null
"$work/build/debug/TinyACON" | tail -n 3
