#!/usr/bin/env bash
# `npm run package:deb`: builds dist/deb/unhitch_<version>_<arch>.deb from this checkout
# and prints its path as the last line. What goes in (packaging/README.md):
#   /usr/lib/unhitch/node/bin/node   the pinned Node.js 24 of .ci/provision-node (not on PATH)
#   /usr/lib/unhitch/app             the compiled code and the production dependencies only
#   /usr/sbin/unhitch                the launcher (packaging/unhitch-launcher.sh)
#   /lib/systemd/system/unhitch.service, /etc/unhitch/unhitch.conf (conffile),
#   unhitch(8) and unhitch.conf(5) from docs/man (generated: npm run docs:reference)
set -euo pipefail
cd "$(dirname "$0")/.."
root_dir=$(pwd)

fail() {
  echo "package:deb: $*" >&2
  exit 1
}

for page in docs/man/unhitch.8 docs/man/unhitch.conf.5; do
  [ -s "$page" ] || fail "$page is missing: the man pages are generated from the option table by \`npm run docs:reference\` (the docs branch); merge it or run that first"
done
command -v dpkg-deb >/dev/null || fail "dpkg-deb not found (Debian package dpkg)"

node_bin=$(.ci/provision-node 24)
export PATH="$node_bin:$PATH"
node_version=$("$node_bin/node" --version)
node_package_dir=$(dirname "$node_bin")
pack_version=$(node -p 'require("./package.json").version')
# UNHITCH_DEB_VERSION: package this checkout under another version (the package's and what
# `unhitch --version` reports), e.g. a newer one to test an upgrade over an installed
# package. Debian's version syntax, without epoch or revision.
version=${UNHITCH_DEB_VERSION:-$pack_version}
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~]*$ ]] ||
  fail "UNHITCH_DEB_VERSION=$version: want a version like 0.1.1 or 0.1.0+local1 (digits first; letters, digits, . + ~)"
arch=$(dpkg --print-architecture)
out_dir="$root_dir/dist/deb"
deb="$out_dir/unhitch_${version}_${arch}.deb"

work=$(mktemp -d "${TMPDIR:-/tmp}/unhitch-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
pkg="$work/root"

# 1. The compiled code as npm would publish it (package.json "files"), then its
#    production dependencies from the lockfile, no install scripts.
# UNHITCH_DEB_BUILT=1: dist/ was just built by the caller (the test suite), skip tsc.
[ "${UNHITCH_DEB_BUILT:-}" = 1 ] || npm run --silent build >&2
npm pack --silent --ignore-scripts --pack-destination "$work" >/dev/null
mkdir -p "$pkg/usr/lib/unhitch"
tar -xzf "$work/unhitch-$pack_version.tgz" -C "$work"
mv "$work/package" "$pkg/usr/lib/unhitch/app"
app="$pkg/usr/lib/unhitch/app"
[ "$version" = "$pack_version" ] || (cd "$app" && npm pkg set "version=$version")
cp package-lock.json .npmrc "$app/"
(cd "$app" && npm ci --silent --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline >&2)
# Installed elsewhere by this package, or unused here: npm's launcher (packaging/npm; the
# package has /usr/sbin/unhitch), the demo's config, npm's own files. The app keeps
# dist/src, node_modules and package.json (the version, "type": "module").
rm -rf "$app/bin" "$app/docs" "$app/systemd" "$app/packaging" "$app/hitch-compat.conf" \
  "$app/README.md" "$app/package-lock.json" "$app/.npmrc" \
  "$app/node_modules/.bin" "$app/node_modules/.package-lock.json"
# Source maps and TypeScript (ours and the dependencies'): the launcher runs node without
# --enable-source-maps, so nothing reads a map, and most name sources not shipped; .ts,
# .d.ts and the like are for compilers and editors, never loaded from node_modules.
find "$app" -type f \( -name '*.map' -o -name '*.ts' -o -name '*.mts' -o -name '*.cts' \) -delete
# What the dependencies' authors publish beyond their code: their linters' and editors'
# dotfiles, tests, examples, documentation and web pages (lintian: package-contains-*,
# privacy-breach-generic). Licences stay, beside the code they cover.
find "$app/node_modules" -name '.*' -prune -exec rm -rf {} +
find "$app/node_modules" -mindepth 2 -maxdepth 3 -type d \
  \( -name test -o -name tests -o -name example -o -name examples -o -name docs -o -name benchmarks \) \
  -not -path '*/node_modules/*/node_modules/*' -prune -exec rm -rf {} +
find "$app/node_modules" -type f \( -name '*.md' -o -name '*.markdown' -o -name '*.html' \) \
  -not -iname 'license*' -delete

# 2. The runtime: the node binary only (no npm, no headers), stripped of debug symbols.
install -D -m 0755 "$node_bin/node" "$pkg/usr/lib/unhitch/node/bin/node"
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
  "$pkg/usr/lib/unhitch/node/bin/node"

# 3. Launcher, unit, configuration, man pages, documentation.
install -D -m 0755 packaging/unhitch-launcher.sh "$pkg/usr/sbin/unhitch"
install -D -m 0644 systemd/unhitch.service "$pkg/lib/systemd/system/unhitch.service"
install -D -m 0644 packaging/unhitch.conf "$pkg/etc/unhitch/unhitch.conf"
install -D -m 0644 docs/man/unhitch.8 "$pkg/usr/share/man/man8/unhitch.8"
install -D -m 0644 docs/man/unhitch.conf.5 "$pkg/usr/share/man/man5/unhitch.conf.5"
gzip -9n "$pkg/usr/share/man/man8/unhitch.8" "$pkg/usr/share/man/man5/unhitch.conf.5"
doc="$pkg/usr/share/doc/unhitch"
mkdir -p "$doc"
sed -e "s|@NODE_VERSION@|$node_version|" -e "s|@NODE_PACKAGE@|$(basename "$node_package_dir")|" \
  packaging/copyright.in >"$doc/copyright"
install -m 0644 "$node_package_dir/LICENSE" "$doc/LICENSE.node"
commit_date=$(git log -1 --format=%cd --date=rfc2822 2>/dev/null || date -R)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
sed -e "s|@VERSION@|$version|" -e "s|@COMMIT@|$commit|" -e "s|@DATE@|$commit_date|" \
  packaging/changelog.in | gzip -9n >"$doc/changelog.gz"
install -D -m 0644 packaging/lintian-overrides "$pkg/usr/share/lintian/overrides/unhitch"

# Plain files 0644 and directories 0755, whatever the checkout or the tarballs said; the
# only programs are node and the launcher (the bundled node runs the code's .js files).
find "$pkg" -type d -exec chmod 0755 {} +
find "$pkg" -type f -exec chmod 0644 {} +
chmod 0755 "$pkg/usr/sbin/unhitch" "$pkg/usr/lib/unhitch/node/bin/node"

# 4. Control files: dependencies of the node binary from dpkg-shlibdeps.
mkdir -p "$pkg/DEBIAN" "$work/shlibs/debian"
printf 'Source: unhitch\n\nPackage: unhitch\nArchitecture: any\n' >"$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O -e "$pkg/usr/lib/unhitch/node/bin/node" 2>/dev/null |
  sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || fail "dpkg-shlibdeps found no library dependencies for node"
installed_size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@INSTALLED_SIZE@|$installed_size|" \
  -e "s|@SHLIBS@|$shlibs|" packaging/debian/control.in >"$pkg/DEBIAN/control"
install -m 0644 packaging/debian/conffiles "$pkg/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$script" "$pkg/DEBIAN/$script"
done
(cd "$pkg" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' |
  LC_ALL=C sort -z | xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$pkg/DEBIAN/md5sums"

mkdir -p "$out_dir"
dpkg-deb --root-owner-group -Zgzip -z6 --build "$pkg" "$deb" >&2
echo "$deb"
