//! End-to-end tests: auth_client against throwaway clusters with auth_pg installed, connecting
//! as non-superuser roles. One binary, so that the shared cluster starts once.

mod e2e {
    mod api_keys;
    mod cache;
    mod hash_key;
    mod hostile;
    mod jwt;
    mod permissions;
    mod regress;
    mod restart;
    mod sessions;
    mod standby;
    mod tokens;
}
