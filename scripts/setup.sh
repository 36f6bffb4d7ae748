#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian/Ubuntu machine (what `make setup` runs):
#   1. Java 17+ (Spark 4 needs it)          apt: openjdk-17-jre-headless
#   2. the PostgreSQL JDBC driver           apt: libpostgresql-jdbc-java -> /usr/share/java/postgresql.jar
#      and Chromium for the dashboard's browser tests   apt: chromium -> /usr/bin/chromium
#   3. a Python venv with sparkmart         .venv, pip install -e '.[dev]'
#   4. a reachable PostgreSQL               $DATABASE_URL / PG* when set, else the local cluster
#   5. the project database and schemas     public, analytics, quarantine, streaming, audit
# Installs with apt only when run as root; otherwise says what to run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
JDBC_JAR=/usr/share/java/postgresql.jar
APT_UPDATED=0

say()  { printf '[setup] %s\n' "$*"; }
fail() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    fail "missing: $* — install it with: sudo apt-get install -y $*"
  fi
  if [ "$APT_UPDATED" = 0 ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# 1. Java ---------------------------------------------------------------------------------
java_major() { java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]; exit}'; }
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
  apt_install openjdk-17-jre-headless
fi
say "java $(java_major) ok"

# 2. JDBC driver --------------------------------------------------------------------------
if [ ! -f "$JDBC_JAR" ]; then
  apt_install libpostgresql-jdbc-java
fi
say "JDBC driver ok ($JDBC_JAR)"
# Playwright drives Debian's Chromium (tests/test_dashboard.py); never `playwright install`.
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
fi
say "chromium ok ($(/usr/bin/chromium --version 2>/dev/null | head -n 1))"

# 3. Python venv --------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv --help >/dev/null 2>&1; then apt_install python3-venv; fi
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.sparkmart-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing sparkmart and its dependencies into $VENV (first time: a few minutes, pyspark is large)"
  log="$VENV/pip-install.log"
  if ! { "$VENV/bin/python" -m pip install --upgrade pip &&
         "$VENV/bin/python" -m pip install -e '.[dev]'; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    fail "pip install failed (full log: $log)"
  fi
  touch "$stamp"
fi
say "python venv ok ($("$VENV/bin/python" --version))"

# 4. PostgreSQL ---------------------------------------------------------------------------
pg_target() {
  "$VENV/bin/python" -c 'from sparkmart.io.postgres import PgSettings as P; s = P.from_env(); print(s.host, s.port)'
}
read -r PG_HOST PG_PORT < <(pg_target)
pg_up() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; }

if ! command -v pg_isready >/dev/null 2>&1; then
  if [ -n "${DATABASE_URL:-}${PGHOST:-}" ]; then
    apt_install postgresql-client
  else
    apt_install postgresql
  fi
fi
if ! pg_up; then
  if [ -n "${DATABASE_URL:-}${PGHOST:-}" ]; then
    fail "PostgreSQL at $PG_HOST:$PG_PORT (from DATABASE_URL/PGHOST) is not reachable"
  fi
  if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    apt_install postgresql
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  say "starting the local PostgreSQL $version cluster"
  if [ "$(id -u)" = 0 ]; then
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  else
    fail "PostgreSQL is not running; start it with: sudo pg_ctlcluster $version main start"
  fi
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || fail "PostgreSQL did not come up on $PG_HOST:$PG_PORT (see /var/log/postgresql/)"
fi

# A fresh Debian cluster knows only the `postgres` role: give the current user one (local
# development only; credentials for other servers come from DATABASE_URL / PG*).
if [ -z "${DATABASE_URL:-}${PGUSER:-}" ] && [ "$(id -u)" = 0 ] && command -v runuser >/dev/null; then
  me=$(id -un)
  if [ "$me" != postgres ] && ! runuser -u postgres -- psql -Atqc "SELECT 1 FROM pg_roles WHERE rolname = '$me'" 2>/dev/null | grep -q 1; then
    say "creating PostgreSQL role '$me'"
    runuser -u postgres -- createuser --superuser "$me" || true
  fi
  # Debian's default asks for a password on TCP; JDBC cannot use the Unix socket. Trust this
  # one local user on the loopback address only, and only when the login fails without it.
  if ! psql -h "$PG_HOST" -p "$PG_PORT" -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; then
    hba=$(runuser -u postgres -- psql -Atqc 'SHOW hba_file')
    if ! grep -q "sparkmart: trust $me" "$hba"; then
      say "allowing '$me' on 127.0.0.1 without a password in $hba (local development only)"
      sed -i "1i host all $me 127.0.0.1/32 trust  # sparkmart: trust $me" "$hba"
      runuser -u postgres -- psql -Atqc 'SELECT pg_reload_conf()' >/dev/null
    fi
  fi
fi
say "PostgreSQL ok ($PG_HOST:$PG_PORT)"

# 5. database and schemas ------------------------------------------------------------------
"$VENV/bin/python" - <<'PY'
from sparkmart.io.postgres import PgSettings, PostgresError, ensure_database, ensure_schemas

pg = PgSettings.from_env()
try:
    created = ensure_database(pg)
    ensure_schemas(pg)
except PostgresError as exc:
    raise SystemExit(
        f"[setup] error: {exc}\n"
        "  Set DATABASE_URL=postgresql://USER:PASSWORD@HOST:PORT/DB (or PGHOST/PGUSER/...) "
        "for a server that accepts this user."
    )
print(f"[setup] database {pg.display} {'created' if created else 'ok'}")
PY
say "ready"
