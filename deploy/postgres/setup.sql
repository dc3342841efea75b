-- casebridge: the database and the application role on a PostgreSQL 15+ server.
--
-- Run once as a superuser, giving the role's password as a psql variable:
--
--     psql -h DB_HOST -U postgres -v ON_ERROR_STOP=1 -v app_password='…' -f deploy/postgres/setup.sql
--
-- Then, as the service user with the production environment, create the schema:
--
--     casebridge db upgrade
--
-- casebridge connects as this role for both migrations and normal work:
--     CASEBRIDGE_DATABASE_URL=postgresql+asyncpg://casebridge:PASSWORD@DB_HOST:5432/casebridge

-- The application role. It must not be a superuser and must not have BYPASSRLS: either would silently switch off
-- the row-level security policies that keep one tenant's rows away from another tenant's requests. The other
-- attributes are spelled out because casebridge needs none of them. Leave INHERIT (the default) in place: the role
-- gets its rights on the public schema through the implicit pg_database_owner membership, which NOINHERIT would cut.
CREATE ROLE casebridge
    LOGIN
    PASSWORD :'app_password'
    NOSUPERUSER
    NOBYPASSRLS
    NOCREATEDB
    NOCREATEROLE
    NOREPLICATION;

-- Owned by the application role, so its migrations can create tables in the public schema (in PostgreSQL 15 the
-- public schema belongs to the database owner, and nobody else may create objects in it). The tables are therefore
-- owned by the same role; casebridge's migrations FORCE row-level security so that the policies bind the owner too.
--
-- UTF-8 with the C locale, as in the test suite: casebridge case-folds search keys itself (Cyrillic included), so it
-- does not depend on the server's collation or ctype.
CREATE DATABASE casebridge
    OWNER casebridge
    ENCODING 'UTF8'
    LOCALE 'C'
    TEMPLATE template0;

-- Only the application role (and superusers) may connect.
REVOKE ALL ON DATABASE casebridge FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE casebridge TO casebridge;

\connect casebridge

-- PostgreSQL 15 already withholds CREATE on the public schema from PUBLIC; say so explicitly for clusters that were
-- upgraded from older versions with the old default still in place.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- Remember that the owner of a table may also switch its row-level security off. The policies protect tenants from
-- a mistake in a query, not from someone who holds this role's password: keep that password as secret as the
-- master key, and do not give it to people.
