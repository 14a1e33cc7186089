#!/bin/sh
# Installs the `honua` and `honua-agent` binaries of a Honua GitOps release: downloads the archive for this
# machine, verifies it against the release's SHA256SUMS, and puts both binaries on the PATH.
#
#   curl -fsSL https://github.com/honua-io/honua-gitops/releases/latest/download/install.sh | sh
#   curl -fsSL …/install.sh | HONUA_VERSION=v0.2.0 sh                   # a given release
#   curl -fsSL …/install.sh | HONUA_INSTALL_DIR=/usr/local/bin sh        # where to (default: ~/.local/bin,
#                                                                       #  /usr/local/bin as root)
#   HONUA_INSTALL_BASE=file:///srv/mirror sh install.sh                 # a mirror or a local directory
#
# Needs only curl (or wget), tar and sha256sum (or shasum). Nothing is installed unless the checksum
# matches.
set -eu

REPO="honua-io/honua-gitops"
VERSION="${HONUA_VERSION:-latest}"
BASE="${HONUA_INSTALL_BASE:-https://github.com/$REPO/releases}"

say() { printf 'honua install: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

case "$(uname -s)" in
  Linux) os=unknown-linux-musl ;;
  *) fail "no release binary for $(uname -s); build from source: cargo install --locked --git https://github.com/$REPO honua-gitops" ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=x86_64 ;;
  aarch64 | arm64) arch=aarch64 ;;
  *) fail "no release binary for $(uname -m); build from source: cargo install --locked --git https://github.com/$REPO honua-gitops" ;;
esac
target="$arch-$os"
archive="honua-$target.tar.gz"

if [ "$VERSION" = latest ]; then
  url="$BASE/latest/download"
else
  url="$BASE/download/$VERSION"
fi

fetch() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --proto '=https,file' --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    fail "needs curl or wget"
  fi
}

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d' ' -f1
  else
    fail "needs sha256sum or shasum to verify the download"
  fi
}

if [ -n "${HONUA_INSTALL_DIR:-}" ]; then
  dir="$HONUA_INSTALL_DIR"
elif [ "$(id -u)" = 0 ]; then
  dir=/usr/local/bin
else
  dir="$HOME/.local/bin"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT INT TERM

say "downloading $archive ($VERSION) from $url"
fetch "$url/$archive" "$tmp/$archive" || fail "cannot download $url/$archive"
fetch "$url/SHA256SUMS" "$tmp/SHA256SUMS" || fail "cannot download $url/SHA256SUMS"
expected="$(awk -v f="$archive" '$2 == f || $2 == "*" f { print $1 }' "$tmp/SHA256SUMS")"
[ -n "$expected" ] || fail "SHA256SUMS lists no $archive"
actual="$(sha256 "$tmp/$archive")"
[ "$expected" = "$actual" ] || fail "checksum mismatch for $archive: expected $expected, got $actual; nothing installed"

tar -xzf "$tmp/$archive" -C "$tmp"
mkdir -p "$dir"
for bin in honua honua-agent; do
  [ -f "$tmp/$bin" ] || fail "$archive holds no $bin"
  install -m 0755 "$tmp/$bin" "$dir/$bin"
done
say "installed $("$dir/honua" --version) to $dir"
case ":$PATH:" in
  *":$dir:"*) ;;
  *) say "$dir is not on your PATH: add it, e.g. export PATH=\"$dir:\$PATH\"" ;;
esac
