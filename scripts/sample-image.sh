#!/usr/bin/env bash
# Starts a local registry on 127.0.0.1:5000 (unless one answers there already) and pushes the
# sample image 127.0.0.1:5000/skiff/busybox:latest, built offline from busybox-static with umoci
# and skopeo: busybox with the applets the examples use (sh, date, httpd, wget, ...) and a page
# in /www for `httpd -h /www`. Idempotent: an image of an older version of this script is
# replaced. SKIFF_REGISTRY (host:port) and SKIFF_REGISTRY_STATE (its directory) choose another
# registry, as the examples test does. Run as root.
set -euo pipefail

registry=${SKIFF_REGISTRY:-127.0.0.1:5000}
image="$registry/skiff/busybox:latest"
# Raise when the image's content changes, so machines holding an older one get the new one.
version=2
state=${SKIFF_REGISTRY_STATE:-/var/lib/skiff/registry}
mkdir -p "$state" /var/log/skiff

if ! curl -fsS "http://$registry/v2/" >/dev/null 2>&1; then
  echo "== starting docker-registry on $registry (log: /var/log/skiff/registry.log)"
  cat >"$state/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $state/storage
http:
  addr: $registry
YAML
  nohup docker-registry serve "$state/config.yml" >>/var/log/skiff/registry.log 2>&1 &
  for _ in $(seq 1 100); do
    curl -fsS "http://$registry/v2/" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "http://$registry/v2/" >/dev/null || {
    echo "docker-registry did not start; see /var/log/skiff/registry.log" >&2
    exit 1
  }
fi

if skopeo inspect --tls-verify=false "docker://$image" 2>/dev/null |
  grep -q "\"skiff.sample.version\": \"$version\""; then
  echo "== $image is already in the registry"
  exit 0
fi

echo "== building $image from busybox-static"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umoci init --layout "$work/oci"
umoci new --image "$work/oci:latest"
umoci unpack --image "$work/oci:latest" "$work/bundle" >/dev/null
mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/tmp" "$work/bundle/rootfs/www"
chmod 1777 "$work/bundle/rootfs/tmp"
cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
for applet in sh echo cat ls sleep true false env id pwd date test [ printf seq expr \
  head tail grep sed awk cut tr wc sort uniq mkdir rm touch cp mv ln hostname uname ps kill \
  httpd wget nc nslookup ip; do
  ln -sf busybox "$work/bundle/rootfs/bin/$applet"
done
echo "hello from skiff" >"$work/bundle/rootfs/www/index.html"
umoci repack --image "$work/oci:latest" "$work/bundle"
umoci config --image "$work/oci:latest" --config.cmd /bin/sh \
  --config.env PATH=/bin --config.workingdir / --config.label "skiff.sample.version=$version"
skopeo copy --quiet --dest-tls-verify=false "oci:$work/oci:latest" "docker://$image"
echo "== pushed $image"
