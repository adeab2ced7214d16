//! Tests of what only PostgreSQL has (roles, row-level security). They do not apply to SQLite,
//! so they are not run there: the default nextest profile leaves this module out, the
//! `postgres` profile (`NEXTEST_PROFILE=postgres`, set with `TEST_DATABASE_URL`) runs it, and a
//! test here run on SQLite fails rather than passing with nothing checked.

mod migrate_data;
mod tenant_rls;

/// Fails a test of this module that is run on SQLite.
pub fn require_postgres(db: &crate::helpers::TestDb) {
    assert!(
        db.is_postgres(),
        "this test is for PostgreSQL only: run it with TEST_DATABASE_URL and NEXTEST_PROFILE=postgres"
    );
}
