#!/bin/sh
# Runs once, when the PostgreSQL volume is first created: a database each for MLflow and
# Prefect beside the monitoring store's (POSTGRES_DB), and a read-only role for Grafana.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v grafana_password="$GRAFANA_DB_PASSWORD" -v owner="$POSTGRES_USER" <<'SQL'
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
CREATE ROLE grafana LOGIN PASSWORD :'grafana_password';
GRANT CONNECT ON DATABASE toxiguard TO grafana;
GRANT USAGE ON SCHEMA public TO grafana;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO grafana;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO grafana;
SQL
