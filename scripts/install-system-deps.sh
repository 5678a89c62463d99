#!/usr/bin/env bash
# Installs the Debian packages the service and its tests need, only those missing:
# redis-server (state store) and prometheus (metrics and rules, in `lifecycle dev` and the
# tests); without --runtime-only also a JDK and Maven (Apache Kafka for tests and
# benchmarks) and Chromium (the console's browser test drives /usr/bin/chromium).
# Needs root or sudo for apt-get.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v prometheus >/dev/null || need+=(prometheus)
if [ "${1:-}" != "--runtime-only" ]; then
  command -v java >/dev/null || need+=(default-jdk-headless)
  command -v mvn >/dev/null || need+=(maven)
  [ -x /usr/bin/chromium ] || need+=(chromium chromium-driver)
fi
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing: ${need[*]}" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts packaged daemons on install; the project runs its own on free ports.
for svc in redis-server prometheus; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
