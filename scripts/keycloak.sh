#!/usr/bin/env bash
# Keycloak runner for development and tests: one pinned Keycloak distribution,
# any number of named instances, each with its own home, H2 database and ports.
#
#   scripts/keycloak.sh fetch
#   scripts/keycloak.sh build                   (the extension jar, see below)
#   scripts/keycloak.sh start  --name NAME --http-port PORT [--mgmt-port PORT] [--reimport-if-changed]
#   scripts/keycloak.sh stop   --name NAME
#   scripts/keycloak.sh status --name NAME
#   scripts/keycloak.sh reset  --name NAME      (stop and delete its data: the realm is imported again)
#
# An instance NAME lives in .data/NAME/: keycloak/ is its home (a copy of the
# distribution, because start-dev rewrites lib/quarkus and keeps H2 under
# data/), keycloak.pid and keycloak.log sit beside it. The realm is imported
# on the instance's first start only; start warns when realm-config changed
# since, and --reimport-if-changed resets the instance instead (for tests).
#
# Every instance runs Keybridge's extension (keycloak-extension/, Maven): start
# builds the jar when its sources changed (mvn -o first, cached under
# .cache/extension/ by source hash), puts it into the instance's providers/
# (start-dev re-augments on its own), and restarts a running instance whose
# jar or nudge settings (KEYBRIDGE_NUDGE_URL, KEYBRIDGE_NUDGE_SECRET) or KEYBRIDGE_PORTAL_URL differ.
#
# start needs KEYBRIDGE_KEYCLOAK_CLIENT_SECRET, KEYBRIDGE_KEYCLOAK_DELEGATION_CLIENT_SECRET,
# KC_SMTP_HOST and KC_SMTP_PORT: realm-config/*-realm.json refers to them as
# ${VAR} placeholders, which Keycloak resolves while importing the realm.
set -euo pipefail

KC_VERSION=26.7.3
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIST_DIR="$REPO_DIR/.cache/keycloak-$KC_VERSION"
REALM_NAME=customers
START_TIMEOUT="${KC_START_TIMEOUT:-240}"

die() { echo "keycloak.sh: $*" >&2; exit 1; }
say() { echo "keycloak.sh: $*"; }

usage() {
    sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

pick_java_home() {
    # Keycloak 26 needs Java 17 or newer; prefer the newest JDK on the machine.
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        return
    fi
    local jdk
    for jdk in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/temurin-21-jdk-amd64 /usr/lib/jvm/java-21-openjdk-amd64; do
        if [[ -x "$jdk/bin/java" ]]; then
            export JAVA_HOME="$jdk"
            return
        fi
    done
    command -v java >/dev/null || die "no Java found: install a JDK 17+ (apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
}

fetch() {
    if [[ -x "$DIST_DIR/bin/kc.sh" ]]; then
        return
    fi
    command -v unzip >/dev/null || die "unzip is missing: apt-get install unzip"
    local zip="$HOME/.m2/repository/org/keycloak/keycloak-quarkus-dist/$KC_VERSION/keycloak-quarkus-dist-$KC_VERSION.zip"
    if [[ ! -f "$zip" ]]; then
        command -v mvn >/dev/null || die "mvn is missing: apt-get install maven (it downloads Keycloak from Maven Central)"
        say "downloading Keycloak $KC_VERSION from Maven Central (about 170 MB)"
        pick_java_home
        # -Dtransitive=false: the dist's parent POMs name a repository that is not reachable.
        mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.6.1:get \
            -Dartifact="org.keycloak:keycloak-quarkus-dist:$KC_VERSION:zip" -Dtransitive=false \
            || die "could not download org.keycloak:keycloak-quarkus-dist:$KC_VERSION:zip with mvn"
    fi
    local tmp
    tmp="$(mktemp -d "$REPO_DIR/.cache/unzip.XXXXXX" 2>/dev/null || { mkdir -p "$REPO_DIR/.cache" && mktemp -d "$REPO_DIR/.cache/unzip.XXXXXX"; })"
    unzip -q "$zip" -d "$tmp"
    mv "$tmp/keycloak-$KC_VERSION" "$DIST_DIR"
    rmdir "$tmp"
    say "Keycloak $KC_VERSION unpacked in ${DIST_DIR#"$REPO_DIR"/}"
}

# --- the extension --------------------------------------------------------------

EXT_DIR="$REPO_DIR/keycloak-extension"
EXT_CACHE="$REPO_DIR/.cache/extension"

extension_hash() {
    # Hash of everything that goes into the jar (pom and sources), in a stable order.
    (cd "$EXT_DIR" && find pom.xml src -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}

build_extension() {
    # Prints the path of the extension jar for the current sources, building it if needed.
    [[ -f "$EXT_DIR/pom.xml" ]] || die "keycloak-extension/pom.xml is missing"
    local hash jar
    hash="$(extension_hash)"
    jar="$EXT_CACHE/keybridge-keycloak-extension-$hash.jar"
    if [[ ! -f "$jar" ]]; then
        command -v mvn >/dev/null || die "mvn is missing: apt-get install maven (it builds keycloak-extension/)"
        pick_java_home
        say "building keycloak-extension (mvn package)" >&2
        # Offline first (the local repository usually has everything); online when something is missing.
        if ! (cd "$EXT_DIR" && mvn -q -B -o package -DskipTests >/dev/null 2>&1); then
            (cd "$EXT_DIR" && mvn -q -B package -DskipTests >&2) \
                || die "could not build keycloak-extension with mvn (see above); run (cd keycloak-extension && mvn package) to see why"
        fi
        mkdir -p "$EXT_CACHE"
        cp "$EXT_DIR/target/keybridge-keycloak-extension.jar" "$jar.partial"
        mv "$jar.partial" "$jar"
        # keep the newest few builds only
        ls -t "$EXT_CACHE"/keybridge-keycloak-extension-*.jar 2>/dev/null | tail -n +6 | xargs -r rm -f
    fi
    echo "$jar"
}

launch_fingerprint() {
    # What a running instance must have been started with: the extension build and nudge settings.
    printf '%s\n%s\n%s\n%s\n' "$(extension_hash)" "${KEYBRIDGE_NUDGE_URL:-}" "$(printf '%s' "${KEYBRIDGE_NUDGE_SECRET:-}" | sha256sum | cut -d' ' -f1)" \
        "${KEYBRIDGE_PORTAL_URL:-}" \
        | sha256sum | cut -d' ' -f1
}

# --- instance helpers --------------------------------------------------------

NAME="" HTTP_PORT="" MGMT_PORT="" REIMPORT_IF_CHANGED=0

parse_instance_args() {
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --name) NAME="${2:?--name needs a value}"; shift 2 ;;
            --http-port) HTTP_PORT="${2:?--http-port needs a value}"; shift 2 ;;
            --mgmt-port) MGMT_PORT="${2:?--mgmt-port needs a value}"; shift 2 ;;
            --reimport-if-changed) REIMPORT_IF_CHANGED=1; shift ;;
            *) die "unknown argument: $1 (see scripts/keycloak.sh --help)" ;;
        esac
    done
    [[ -n "$NAME" ]] || die "--name NAME is required"
    [[ "$NAME" =~ ^[A-Za-z0-9_-]+$ ]] || die "--name may only hold letters, digits, - and _"
    INSTANCE_DIR="$REPO_DIR/.data/$NAME"
    KC_HOME="$INSTANCE_DIR/keycloak"
    PID_FILE="$INSTANCE_DIR/keycloak.pid"
    LOG_FILE="$INSTANCE_DIR/keycloak.log"
    PORT_FILE="$INSTANCE_DIR/keycloak.port"
    HASH_FILE="$INSTANCE_DIR/keycloak.realm-config.sha256"
    LAUNCH_FILE="$INSTANCE_DIR/keycloak.launch.sha256"
}

realm_config_hash() {
    cat "$REPO_DIR"/realm-config/*-realm.json 2>/dev/null | sha256sum | cut -d' ' -f1
}

realm_config_changed() {
    # True when this instance holds a realm imported from other realm files.
    [[ -d "$KC_HOME/data/h2" ]] || return 1
    [[ "$(cat "$HASH_FILE" 2>/dev/null)" != "$(realm_config_hash)" ]]
}

running_pid() {
    # Prints the pid of this instance's Keycloak if it is alive; a stale pid
    # file, or a pid reused by another program, counts as not running.
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$KC_HOME" || return 1
    echo "$pid"
}

realm_url() { echo "http://127.0.0.1:$1/realms/$REALM_NAME/.well-known/openid-configuration"; }

realm_answers() {
    curl -fsS -o /dev/null --max-time 3 "$(realm_url "$1")" 2>/dev/null
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

require_env() {
    local var missing=()
    for var in "$@"; do
        [[ -n "${!var:-}" ]] || missing+=("$var")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        die "set ${missing[*]} before starting Keycloak: realm-config uses them as \${VAR} placeholders (scripts/dev and tests/support/stack.py set them for you)"
    fi
}

log_tail() {
    echo "---- last 40 lines of ${LOG_FILE#"$REPO_DIR"/} ----" >&2
    tail -n 40 "$LOG_FILE" >&2 || true
    echo "----" >&2
}

prepare_home() {
    if [[ ! -x "$KC_HOME/bin/kc.sh" ]]; then
        mkdir -p "$INSTANCE_DIR"
        rm -rf "$KC_HOME.partial"
        cp -a "$DIST_DIR" "$KC_HOME.partial"
        mv "$KC_HOME.partial" "$KC_HOME"
    fi
    # The theme is linked, not copied, so edits show up on the next page load
    # (start-dev does not cache themes).
    ln -sfn "$REPO_DIR/keycloak-theme/keybridge" "$KC_HOME/themes/keybridge"
    # Import files are refreshed on every start; Keycloak only imports a realm
    # that does not exist yet, so a changed realm file needs `reset`.
    if [[ ! -d "$KC_HOME/data/h2" ]]; then
        realm_config_hash >"$HASH_FILE"
    fi
    # The extension: one jar in providers/, replaced when its sources changed.
    local jar
    jar="$(build_extension)"
    mkdir -p "$KC_HOME/providers"
    if ! cmp -s "$jar" "$KC_HOME/providers/keybridge-keycloak-extension.jar"; then
        cp "$jar" "$KC_HOME/providers/keybridge-keycloak-extension.jar"
    fi
    mkdir -p "$KC_HOME/data/import"
    rm -f "$KC_HOME/data/import/"*.json
    local realm_file found=0
    for realm_file in "$REPO_DIR"/realm-config/*-realm.json; do
        [[ -f "$realm_file" ]] || continue
        cp "$realm_file" "$KC_HOME/data/import/"
        found=1
    done
    [[ $found == 1 ]] || die "no realm-config/*-realm.json to import"
}

# --- commands ----------------------------------------------------------------

start() {
    parse_instance_args "$@"
    [[ -n "$HTTP_PORT" ]] || die "--http-port PORT is required for start"
    MGMT_PORT="${MGMT_PORT:-$((HTTP_PORT + 1000))}"
    local pid
    if realm_config_changed; then
        if [[ $REIMPORT_IF_CHANGED == 1 ]]; then
            say "realm-config changed since instance '$NAME' imported it: resetting it"
            reset --name "$NAME"
        else
            say "warning: realm-config changed since instance '$NAME' imported it; run scripts/keycloak.sh reset --name $NAME to import it again"
        fi
    fi
    if pid="$(running_pid)" && [[ "$(cat "$LAUNCH_FILE" 2>/dev/null)" != "$(launch_fingerprint)" ]]; then
        say "instance '$NAME' runs another build of keycloak-extension or other nudge settings: restarting it"
        stop --name "$NAME"
    fi
    if pid="$(running_pid)"; then
        if realm_answers "$HTTP_PORT"; then
            say "instance '$NAME' already running (pid $pid) at http://localhost:$HTTP_PORT"
            return 0
        fi
        if [[ -f "$PORT_FILE" && "$(cat "$PORT_FILE")" != "$HTTP_PORT" ]]; then
            die "instance '$NAME' is running on port $(cat "$PORT_FILE"), not $HTTP_PORT: run scripts/keycloak.sh stop --name $NAME first"
        fi
        say "instance '$NAME' is running (pid $pid) but not ready yet; waiting"
        wait_ready "$pid"
        return
    fi
    require_env KEYBRIDGE_KEYCLOAK_CLIENT_SECRET KEYBRIDGE_KEYCLOAK_DELEGATION_CLIENT_SECRET KC_SMTP_HOST KC_SMTP_PORT
    local port
    for port in "$HTTP_PORT" "$MGMT_PORT"; do
        if port_in_use "$port"; then
            die "port $port is already taken by another program (ss -ltnp 'sport = :$port' shows which); pick other ports for instance '$NAME'"
        fi
    done
    fetch
    pick_java_home
    prepare_home
    : >"$LOG_FILE"
    echo "$HTTP_PORT" >"$PORT_FILE"
    launch_fingerprint >"$LAUNCH_FILE"

    export KC_BOOTSTRAP_ADMIN_USERNAME="${KC_BOOTSTRAP_ADMIN_USERNAME:-admin}"
    export KC_BOOTSTRAP_ADMIN_PASSWORD="${KC_BOOTSTRAP_ADMIN_PASSWORD:-admin}"
    # Keycloak's default heap is 70% of the machine; several instances share
    # this one, so cap each.
    export JAVA_OPTS_KC_HEAP="${JAVA_OPTS_KC_HEAP:--Xms128m -Xmx1g}"

    say "starting instance '$NAME' on http://localhost:$HTTP_PORT (management port $MGMT_PORT, log ${LOG_FILE#"$REPO_DIR"/})"
    # setsid: the server outlives this script and the terminal that ran it.
    setsid "$KC_HOME/bin/kc.sh" start-dev \
        --http-host=127.0.0.1 \
        --http-port="$HTTP_PORT" \
        --http-management-port="$MGMT_PORT" \
        --health-enabled=true \
        --import-realm \
        </dev/null >>"$LOG_FILE" 2>&1 &
    pid=$!
    echo "$pid" >"$PID_FILE"
    wait_ready "$pid"
}

wait_ready() {
    local pid="$1" waited=0
    until realm_answers "$HTTP_PORT"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log_tail
            die "Keycloak instance '$NAME' exited during start-up (see the log above)"
        fi
        if (( waited >= START_TIMEOUT )); then
            log_tail
            die "Keycloak instance '$NAME' did not answer $(realm_url "$HTTP_PORT") within ${START_TIMEOUT}s (set KC_START_TIMEOUT to wait longer)"
        fi
        sleep 2
        waited=$((waited + 2))
    done
    say "instance '$NAME' ready at http://localhost:$HTTP_PORT (admin console http://localhost:$HTTP_PORT/admin, realm $REALM_NAME) after ${waited}s"
}

stop() {
    parse_instance_args "$@"
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        say "instance '$NAME' is not running"
        return 0
    fi
    kill -TERM "$pid"
    local waited=0
    while kill -0 "$pid" 2>/dev/null; do
        if (( waited >= 60 )); then
            say "instance '$NAME' (pid $pid) ignored SIGTERM for 30s; killing it"
            pkill -KILL -P "$pid" 2>/dev/null || true
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
    rm -f "$PID_FILE"
    say "instance '$NAME' stopped"
}

status() {
    parse_instance_args "$@"
    local pid port
    port="$(cat "$PORT_FILE" 2>/dev/null || echo "?")"
    if pid="$(running_pid)"; then
        if [[ "$port" != "?" ]] && realm_answers "$port"; then
            say "instance '$NAME' running (pid $pid), realm $REALM_NAME answers at http://localhost:$port"
        else
            say "instance '$NAME' running (pid $pid) but realm $REALM_NAME does not answer on port $port yet"
        fi
        return 0
    fi
    say "instance '$NAME' is not running"
    return 3
}

reset() {
    parse_instance_args "$@"
    stop --name "$NAME"
    rm -rf "$KC_HOME" "$KC_HOME.partial" "$LOG_FILE" "$PORT_FILE" "$HASH_FILE" "$LAUNCH_FILE"
    say "instance '$NAME' data deleted: the next start imports realm-config again"
}

command="${1:-}"
[[ $# -gt 0 ]] && shift
case "$command" in
    fetch) fetch; say "Keycloak $KC_VERSION is in ${DIST_DIR#"$REPO_DIR"/}" ;;
    build) jar="$(build_extension)"; say "extension jar: ${jar#"$REPO_DIR"/}" ;;
    start) start "$@" ;;
    stop) stop "$@" ;;
    status) status "$@" ;;
    reset) reset "$@" ;;
    -h|--help|help|"") usage ;;
    *) die "unknown command '$command' (fetch, build, start, stop, status, reset)" ;;
esac
