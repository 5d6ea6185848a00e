#!/bin/bash
# Runs once, when the postgres container creates its data directory, as the image's
# superuser (POSTGRES_USER): a login role and a database for the adapter and for
# Keycloak. Neither role is a superuser or may create databases or roles; each owns
# its own database (and so its public schema) and cannot connect to the other's.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v adapter_password="$ADAPTER_DB_PASSWORD" -v keycloak_password="$KEYCLOAK_DB_PASSWORD" <<'SQL'
CREATE ROLE keybridge LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'adapter_password';
CREATE DATABASE keybridge OWNER keybridge;
REVOKE ALL ON DATABASE keybridge FROM PUBLIC;
CREATE ROLE keycloak LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'keycloak_password';
CREATE DATABASE keycloak OWNER keycloak;
REVOKE ALL ON DATABASE keycloak FROM PUBLIC;
SQL
