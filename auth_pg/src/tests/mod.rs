//! `#[pg_test]` tests: each runs inside a transaction of a throwaway cluster, as superuser.
//! Privilege checks run as non-superusers in the SQL regression tests and the end-to-end tests.

mod tokens;
