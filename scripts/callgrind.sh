#!/usr/bin/env bash
# Instruction counts of one backend per execution of a check, for comparing two builds:
#
#   scripts/callgrind.sh [label]
#
# Builds and installs auth_pg in release mode, starts a throwaway cluster under callgrind
# (valgrind --trace-children) holding 50 000 tokens and 50 000 sessions, and runs each
# statement 600 and 2 600 times through the extended protocol with a prepared statement
# (benches/src/bin/callgrind_driver.rs, as auth_client calls it). The difference of the two
# backends' totals, divided by 2 000, is the cost of one execution. Prints one line per
# statement, then the client's own instructions for a call through auth_client (the driver run
# under callgrind). Stops a running demo cluster first (installing replaces its library).
source "$(dirname "$0")/lib.sh"

LABEL="${1:-$(git -C "$AUTH_PG_ROOT" rev-parse --short HEAD)}"
DEBIAN_PACKAGES+=(valgrind)
ensure_all
demo_stop "the release build replaces the installed library, which a running server would crash on"
install_extension release
(cd "$AUTH_PG_ROOT" && cargo build --quiet --release -p auth_pg_benches --bin callgrind_driver)
DRIVER="$CARGO_TARGET_DIR/release/callgrind_driver"

DIR="$(mktemp -d /tmp/auth_pg-callgrind.XXXXXX)"
PORT="$(free_port)"
stop() {
    data_dir_stop "$DIR/data" fast
    as_root pkill -f "[v]algrind.*$DIR" >/dev/null 2>&1 || true
    # valgrind writes the postmaster's profile as it exits, after pg_ctl has returned: wait for
    # it, so that removing the directory does not race its last writes.
    for _ in $(seq 1 50); do
        pgrep -f "[v]algrind.*$DIR" >/dev/null || break
        sleep 0.2
    done
    as_root pkill -KILL -f "[v]algrind.*$DIR" >/dev/null 2>&1 || true
    as_root rm -rf "$DIR"
}
trap stop EXIT
cluster_create_and_start "$DIR" "$PORT"
PSQL=(psql -X -q -A -t -h "$DIR" -p "$PORT" -U postgres)
"${PSQL[@]}" -d postgres -c "CREATE DATABASE bench"
"${PSQL[@]}" -d bench -c "CREATE EXTENSION auth_pg"
"${PSQL[@]}" -d bench -c "SELECT auth_pg.issue_token('u' || i, '1 day') FROM generate_series(1, 50000) i" \
    > "$DIR/all_tokens"
tail -n 2600 "$DIR/all_tokens" > "$DIR/tokens"
# The plain-SQL check the token benches compare with (benches/src/lib.rs, PLAIN_SQL_CHECK): the
# same tokens' SHA-256 digests from pgcrypto under a B-tree primary key.
"${PSQL[@]}" -d bench <<SQL
CREATE EXTENSION pgcrypto;
CREATE SCHEMA bench_plain;
CREATE TABLE bench_plain.tokens (
    token_hash bytea PRIMARY KEY, user_id text NOT NULL, scopes text[] NOT NULL,
    expires_at timestamptz NOT NULL, revoked_at timestamptz);
CREATE TEMP TABLE raw (token text);
\\copy raw FROM '$DIR/all_tokens'
INSERT INTO bench_plain.tokens (token_hash, user_id, scopes, expires_at)
    SELECT digest(token, 'sha256'), 'user-' || (row_number() OVER () % 100000), '{read,write}',
           now() + interval '1 day'
    FROM raw;
VACUUM ANALYZE bench_plain.tokens;
SQL
# Sessions carry what a login records (as the session benches' do): a check answers with it.
"${PSQL[@]}" -d bench -c "SELECT auth_pg.create_session('u' || i, '1 hour', '1 day', \
    jsonb_build_object('ip', '203.0.113.7', 'user_agent', 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0', 'device', 'laptop')) \
    FROM generate_series(1, 50000) i" \
    | tail -n 2600 > "$DIR/sessions"
chmod 0644 "$DIR/tokens" "$DIR/sessions"
# The stored hashes of the same tokens, in hex, for the plain-SQL floor below.
"${PSQL[@]}" -d bench -c "SELECT encode(token_hash, 'hex') FROM auth_pg.tokens ORDER BY token_id DESC LIMIT 2600" \
    > "$DIR/hashes"
chmod 0644 "$DIR/hashes"
# Rows as a server holds them after a while: hint bits set, so that no statement measured here
# pays for being the first to read a row since it was written.
"${PSQL[@]}" -d bench -c "VACUUM auth_pg.tokens, auth_pg.sessions, bench_plain.tokens"
# A touch that does not write: the sessions were created just now.
echo "auth_pg.session_touch_interval = '1h'" | as_cluster_user tee -a "$DIR/data/postgresql.conf" >/dev/null
cluster_stop "$DIR"
as_cluster_user env -u RUST_BACKTRACE valgrind --tool=callgrind --trace-children=yes \
    --callgrind-out-file="$DIR/callgrind.%p" "$PG_BIN/postgres" -D "$DIR/data" >"$DIR/valgrind.log" 2>&1 &
for _ in $(seq 1 120); do
    pg_isready -q -h "$DIR" -p "$PORT" && break
    sleep 1
done

URL="host=$DIR port=$PORT dbname=bench user=postgres"
# The total instructions of a callgrind profile.
profile_total() { awk '/^totals:|^summary:/ {print $2; exit}' "$1"; }
# The total of a backend's profile, written when its connection ends.
total() {
    local file="$DIR/callgrind.$1"
    for _ in $(seq 1 30); do
        [ -s "$file" ] && grep -q '^totals:\|^summary:' "$file" && break
        sleep 1
    done
    profile_total "$file"
}
# One line of the report: what `$1` costs an execution, from the totals of 600 ($2) and 2 600
# ($3) executions.
report() { printf '%s | %s | %d\n' "$LABEL" "$1" $((($3 - $2) / 2000)); }
PLAIN_SQL_CHECK="SELECT user_id, scopes, expires_at, (revoked_at IS NULL AND expires_at > now()) AS valid FROM bench_plain.tokens WHERE token_hash = digest(\$1, 'sha256')"
# The floor of the token benches (benches/src/lib.rs, ROW_BY_HASH), the hash sent as hex (the
# driver sends text) and decoded by the statement, a little more work than a bytea parameter.
ROW_BY_HASH="SELECT user_id, scopes, expires_at, revoked_at, metadata FROM auth_pg.tokens WHERE token_hash = decode(\$1, 'hex')"
for spec in "SELECT 1|" "$PLAIN_SQL_CHECK|@$DIR/tokens" "$ROW_BY_HASH|@$DIR/hashes" "SELECT auth_pg.validate_token(\$1)|@$DIR/tokens" \
            "SELECT auth_pg.validate_token_packed(\$1)|@$DIR/tokens" \
            "SELECT auth_pg.validate_session_packed(\$1)|@$DIR/sessions" \
            "SELECT auth_pg.touch_session(\$1)|@$DIR/sessions" \
            "SELECT auth_pg.touch_session_packed(\$1)|@$DIR/sessions"; do
    query="${spec%%|*}"
    argument="${spec#*|}"
    declare -A counts=()
    for n in 600 2600; do
        pid="$("$DRIVER" "$URL" "$query" ${argument:+"$argument"} "$n")"
        counts[$n]="$(total "$pid")"
        [ -n "${counts[$n]}" ] || die "no callgrind total for backend $pid ($query)"
    done
    report "$query" "${counts[600]}" "${counts[2600]}"
done
# The client's side of a call: auth_client's instructions, this time with the driver under
# callgrind (user space only, as for the server).
for spec in "ping|" "validate_token|@$DIR/tokens" "validate_session|@$DIR/sessions"; do
    call="${spec%%|*}"
    argument="${spec#*|}"
    declare -A counts=()
    for n in 600 2600; do
        out="$DIR/client.$call.$n"
        valgrind --tool=callgrind --callgrind-out-file="$out" \
            "$DRIVER" "$URL" "auth_client:$call" ${argument:+"$argument"} "$n" \
            >/dev/null 2>"$DIR/client.log" || die "auth_client $call failed: $(tail -n 3 "$DIR/client.log")"
        counts[$n]="$(profile_total "$out")"
    done
    report "client: AuthClient::$call" "${counts[600]}" "${counts[2600]}"
done
