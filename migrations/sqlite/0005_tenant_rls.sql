-- PostgreSQL only: row-level security on tenant tables (see the postgres migration). SQLite
-- has no row-level security; one process owns the file. Kept so versions match across backends.
SELECT 1;
