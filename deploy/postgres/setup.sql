-- casebridge: the database, its owner role and the application role on a PostgreSQL 15+ server.
--
-- Run once as a superuser, before the first `casebridge db upgrade`, giving the two passwords as psql variables:
--
--     psql -h DB_HOST -U postgres -v ON_ERROR_STOP=1 -v owner_password='…' -v app_password='…' \
--          -f deploy/postgres/setup.sql
--
-- Then create or upgrade the schema as the owner, and run every gateway process as the application role:
--
--     CASEBRIDGE_DATABASE_URL=postgresql+asyncpg://casebridge:OWNER_PASSWORD@DB_HOST:5432/casebridge casebridge db upgrade
--     CASEBRIDGE_DATABASE_URL=postgresql+asyncpg://casebridge_app:APP_PASSWORD@DB_HOST:5432/casebridge   (the services)
--
-- deploy/local-cluster runs this file the same way.

-- Neither role may be a superuser or have BYPASSRLS: either would silently switch off the row-level security
-- policies that keep one tenant's rows away from another tenant's requests. The other attributes are spelled out
-- because casebridge needs none of them. Leave INHERIT (the default) in place: the owner gets its rights on the
-- public schema through the implicit pg_database_owner membership, which NOINHERIT would cut.

-- The owner: owns the database and every table, and is the role `casebridge db upgrade` runs as. Nothing else.
CREATE ROLE casebridge
    LOGIN
    PASSWORD :'owner_password'
    NOSUPERUSER
    NOBYPASSRLS
    NOCREATEDB
    NOCREATEROLE
    NOREPLICATION;

-- The application role every `casebridge serve` and `casebridge worker` connects as. It owns nothing, so it can
-- neither switch row-level security off nor change a table, and the migrations leave it only INSERT and SELECT on
-- the audit tables (append_only_grants_sql in audit/models.py). It must exist before the first migration
-- runs: the migrations look for it by this name.
CREATE ROLE casebridge_app
    LOGIN
    PASSWORD :'app_password'
    NOSUPERUSER
    NOBYPASSRLS
    NOCREATEDB
    NOCREATEROLE
    NOREPLICATION;

-- UTF-8 with the C locale, as in the test suite: casebridge case-folds search keys itself (Cyrillic included), so it
-- does not depend on the server's collation or ctype.
CREATE DATABASE casebridge
    OWNER casebridge
    ENCODING 'UTF8'
    LOCALE 'C'
    TEMPLATE template0;

-- Only the two roles (and superusers) may connect.
REVOKE ALL ON DATABASE casebridge FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE casebridge TO casebridge, casebridge_app;

\connect casebridge

-- PostgreSQL 15 already withholds CREATE on the public schema from PUBLIC; say so explicitly for clusters that were
-- upgraded from older versions with the old default still in place.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO casebridge_app;

-- Every table and sequence the owner's migrations create: reading and writing rows, no DDL, no TRUNCATE. The audit
-- migrations then take UPDATE and DELETE back on their tables.
ALTER DEFAULT PRIVILEGES FOR ROLE casebridge IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO casebridge_app;
ALTER DEFAULT PRIVILEGES FOR ROLE casebridge IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO casebridge_app;

-- The owner of a table may switch its row-level security off and change audit rows. Keep the owner's password for
-- migrations only, as secret as the master key; the hash chain and the checkpoints held by outside witnesses make
-- any change to the trail visible.
