//! A tour of auth_pg through auth_client: issue a token, check it, revoke it, check it again,
//! and hear the revocation on `auth_pg_invalidate`; then API keys, sessions, roles and
//! permissions, and JWTs.
//!
//! Run by `scripts/setup.sh` against its throwaway cluster:
//!
//! ```text
//! cargo run -p auth_client --example demo -- "<admin connection string>" "<app connection string>"
//! ```
//!
//! The admin connection needs `auth_pg_admin` (issue, create, revoke, list); the app connection
//! needs only `auth_pg_validator` (check, touch a session), as an API server would.

use std::time::{Duration, Instant, SystemTime};

use auth_client::reexports::tokio_postgres::{self, AsyncMessage, NoTls};
use auth_client::{
    AuthClient, Config, Credential, CredentialKind, JwtKeyRules, SessionValidation, TokenValidation,
};
use futures_util::future::poll_fn;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(admin_url), Some(app_url)) = (args.next(), args.next()) else {
        eprintln!("usage: demo <admin connection string> <app connection string>");
        std::process::exit(2);
    };
    let admin = AuthClient::new(&Config::from_url(&admin_url)?)?;
    let app = AuthClient::new(&Config::from_url(&app_url)?)?;

    // Any role may LISTEN: payloads carry ids only.
    let (listener, mut connection) = tokio_postgres::connect(&app_url, NoTls).await?;
    let (notices, mut notified) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(n) = message {
                let _ = notices.send(n.payload().to_owned());
            }
        }
    });
    listener.batch_execute("LISTEN auth_pg_invalidate").await?;

    // Open the connections first, so that the timings below are of the checks alone.
    admin.ping().await?;
    app.ping().await?;

    println!("auth_pg demo\n");
    let metadata = serde_json::json!({ "device": "demo laptop" });
    let token = admin
        .issue_token(
            "user-42",
            Duration::from_secs(3600),
            &["orders:read", "orders:write"],
            Some(&metadata),
        )
        .await?;
    println!("1. issue_token('user-42', '1 hour', '{{orders:read,orders:write}}')");
    println!(
        "   -> {token} ({} characters, shown once, stored only as a BLAKE3 hash)\n",
        token.expose_secret().len()
    );

    let (answer, took) = timed(app.validate_token(token.expose_secret())).await?;
    println!(
        "2. validate_token(token)                      {:>8} in {}",
        answer.status,
        micros(took)
    );
    describe(&answer);

    let latencies = measure(&app, token.expose_secret(), 2000).await?;
    println!(
        "   2000 more checks, one at a time:            median {}, p99 {}\n",
        micros(latencies[latencies.len() / 2]),
        micros(latencies[latencies.len() * 99 / 100])
    );

    let typo = typo_of(token.expose_secret());
    let (answer, took) = timed(app.validate_token(&typo)).await?;
    println!(
        "3. validate_token(token with one typo)        {:>8} in {} (the checksum, checked before any table)",
        answer.status,
        micros(took)
    );
    let (answer, took) = timed(app.validate_token("Bearer hunter2")).await?;
    println!(
        "   validate_token('Bearer hunter2')           {:>8} in {} (not token-shaped: no round trip)\n",
        answer.status,
        micros(took)
    );

    let other = admin
        .issue_token("user-7", Duration::from_secs(60), &[], None)
        .await?;
    let (answers, took) =
        timed(app.validate_tokens(&[token.expose_secret(), "garbage", other.expose_secret()]))
            .await?;
    let statuses: Vec<_> = answers.iter().map(|a| a.status.as_str()).collect();
    println!(
        "4. validate_tokens([token, 'garbage', other]) {statuses:?} in {}\n",
        micros(took)
    );

    let (revoked, took) = timed(admin.revoke_token(token.expose_secret())).await?;
    println!(
        "5. revoke_token(token)                        {revoked:>8} in {}",
        micros(took)
    );
    match next_event(&mut notified, "token_revoked").await {
        Some(payload) => println!("   NOTIFY auth_pg_invalidate                  {payload}"),
        None => println!("   (no notification within 5 s)"),
    }

    let (answer, took) = timed(app.validate_token(token.expose_secret())).await?;
    println!(
        "6. validate_token(token)                      {:>8} in {}\n",
        answer.status,
        micros(took)
    );

    let revoked = admin.revoke_user_tokens("user-7").await?;
    println!("7. revoke_user_tokens('user-7')               {revoked:>8} token(s) revoked\n");

    println!("API keys, kept in each organization's api_keys document\n");
    admin.create_organization("acme", "Acme Inc").await?;
    let key = admin
        .create_api_key(
            "acme",
            "CI deploys",
            &["deploy"],
            None,
            Some(&serde_json::json!({ "team": "platform" })),
        )
        .await?;
    println!(
        "8. create_api_key('acme', 'CI deploys')       -> {} (id {})",
        key.key, key.key_id
    );
    let (answer, took) = timed(app.validate_api_key(key.key.expose_secret())).await?;
    println!(
        "9. validate_api_key(key)                     {:>8} in {} (org {:?}, scopes {:?})",
        answer.status,
        micros(took),
        answer.org_id.as_deref().unwrap_or(""),
        answer.scopes
    );
    let rotated = admin
        .rotate_api_key("acme", &key.key_id, Duration::from_secs(3600))
        .await?;
    println!(
        "10. rotate_api_key(key, grace '1 hour')      -> {} (id {})",
        rotated.key, rotated.key_id
    );
    if let Some(payload) = next_event(&mut notified, "api_key_rotated").await {
        println!("    NOTIFY auth_pg_invalidate                {payload}");
    }
    for (label, credential) in [("old key", &key.key), ("new key", &rotated.key)] {
        let answer = app.validate_api_key(credential.expose_secret()).await?;
        println!(
            "    validate_api_key({label})                {:>8}",
            answer.status
        );
    }
    admin.revoke_api_key("acme", &rotated.key_id).await?;
    let answer = app.validate_api_key(rotated.key.expose_secret()).await?;
    println!(
        "11. revoke_api_key(new key); validate        {:>8}",
        answer.status
    );
    admin.flush_api_key_usage().await?;
    for listed in admin.list_api_keys("acme").await? {
        println!(
            "    list_api_keys: {} {:<10} {:<8} last used {}",
            listed.prefix,
            listed.name,
            listed.status,
            if listed.last_used_at.is_some() {
                "yes"
            } else {
                "no"
            }
        );
    }

    println!("\nSessions: an idle deadline each touch slides, an absolute one that never moves\n");
    let metadata = serde_json::json!({ "ip": "192.0.2.10", "user_agent": "demo/1.0" });
    let session = admin
        .create_session(
            "user-42",
            Duration::from_secs(30 * 60),
            Duration::from_secs(12 * 3600),
            Some(&metadata),
        )
        .await?;
    println!("12. create_session('user-42', idle '30 min', absolute '12 hours')");
    println!("    -> {session} (shown once, stored only as a BLAKE3 hash)");
    let (answer, took) = timed(app.validate_session(session.expose_secret())).await?;
    println!(
        "13. validate_session(session)               {:>8} in {}",
        answer.status,
        micros(took)
    );
    describe_session(&answer);
    let (answer, took) = timed(app.touch_session(session.expose_secret())).await?;
    println!(
        "14. touch_session(session)                  {:>8} in {} (records activity at most once a minute)",
        answer.status,
        micros(took)
    );
    describe_session(&answer);
    for listed in admin.list_user_sessions("user-42").await? {
        println!(
            "15. list_user_sessions('user-42'): {} {:<8} ip {}",
            listed.session_id,
            listed.status,
            listed
                .metadata
                .as_ref()
                .and_then(|m| m.get("ip"))
                .map(ToString::to_string)
                .unwrap_or_default()
        );
    }
    let session_id = answer.session_id.unwrap_or_default();
    let revoked = admin.revoke_session_by_id(&session_id).await?;
    println!("16. revoke_session_by_id(session id)        {revoked:>8}");
    match next_event(&mut notified, "session_revoked").await {
        Some(payload) => println!("    NOTIFY auth_pg_invalidate               {payload}"),
        None => println!("    (no notification within 5 s)"),
    }
    let (answer, took) = timed(app.validate_session(session.expose_secret())).await?;
    println!(
        "17. validate_session(session)               {:>8} in {}",
        answer.status,
        micros(took)
    );

    // Permissions: ada is an admin in acme and a member in globex. (Roles left by an earlier
    // run of the demo go first.)
    println!();
    admin.delete_role("admin", Some("acme")).await?;
    admin.delete_role("member", None).await?;
    admin
        .create_role("member", None, Some("Reads documents"))
        .await?;
    admin
        .create_role("admin", Some("acme"), Some("Runs Acme"))
        .await?;
    admin
        .add_role_parent("admin", "member", Some("acme"))
        .await?;
    admin
        .grant_permission("member", "documents:read", None)
        .await?;
    admin
        .grant_permission("admin", "billing:*", Some("acme"))
        .await?;
    admin.assign_role("ada", "admin", Some("acme")).await?;
    admin.assign_role("ada", "member", Some("globex")).await?;
    println!("18. roles: member (global, documents:read) <- admin of acme (billing:*)");
    println!("    ada is admin in acme and member in globex");
    for org in ["acme", "globex"] {
        let (refund, took) = timed(app.has_permission("ada", "billing:refund", Some(org))).await?;
        let read = app
            .has_permission("ada", "documents:read", Some(org))
            .await?;
        println!(
            "19. has_permission(ada, billing:refund, {org:<6}) {refund:>5} in {}; documents:read {read}; \
             roles {:?}",
            micros(took),
            app.user_roles("ada", Some(org)).await?
        );
    }
    admin
        .grant_permission("member", "comments:write", None)
        .await?;
    // The roles set up above announced themselves too: wait for this grant's event.
    let this_grant = |event: &serde_json::Value| event["role"] == "member";
    if let Some(payload) = next_event_where(&mut notified, "role_changed", this_grant).await {
        println!("20. grant_permission(member, comments:write)");
        println!("    NOTIFY auth_pg_invalidate               {payload}");
    }
    println!(
        "21. user_permissions(ada, acme)             {:?}",
        app.user_permissions("ada", Some("acme")).await?
    );
    jwt(&admin, &app, &mut notified).await?;
    cache(&admin, &app_url).await?;
    Ok(())
}

/// The client cache: valid answers from memory, forgotten when the server announces a
/// revocation made by anyone.
async fn cache(admin: &AuthClient, app_url: &str) -> Result<(), Box<dyn std::error::Error>> {
    println!("\nThe client cache: answers from memory, told of every revocation\n");
    let mut config = Config::from_url(app_url)?;
    config.cache(10_000);
    let cached = AuthClient::new(&config)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cached.cache_stats().is_some_and(|stats| stats.listening) {
        if Instant::now() > deadline {
            println!("    (the cache's listener did not connect within 5 s)");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cached.ping().await?; // open the pool's connection first, as above
    let token = admin
        .issue_token("user-9", Duration::from_secs(3600), &[], None)
        .await?;
    let (first, server) = timed(cached.validate_token(token.expose_secret())).await?;
    let (_, memory) = timed(cached.validate_token(token.expose_secret())).await?;
    println!(
        "25. validate_token with Config::cache(10_000) {} in {server:.1?} (server), then in \
         {memory:.1?} (memory)",
        first.status
    );
    admin.revoke_token(token.expose_secret()).await?;
    let heard = Instant::now() + Duration::from_secs(5);
    while cached
        .cache_stats()
        .is_some_and(|stats| stats.invalidations == 0)
        && Instant::now() < heard
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!(
        "26. revoke_token by another client; the cache hears the NOTIFY; validate_token: {}",
        cached.validate_token(token.expose_secret()).await?.status
    );
    if let Some(stats) = cached.cache_stats() {
        println!(
            "    cache: {} hit(s), {} invalidation(s) heard, {} entries",
            stats.hits, stats.invalidations, stats.entries
        );
    }
    Ok(())
}

/// JWTs: sign with a key kept by kid, verify (the second time from the backend's cache), rotate
/// the key and see the old tokens refused at once.
async fn jwt(
    admin: &AuthClient,
    app: &AuthClient,
    notified: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    // 256 random bits make a good HS256 secret; a token generator is at hand.
    let secret = Credential::generate(CredentialKind::Token).map_err(|err| err.to_string())?;
    admin
        .add_jwt_key(
            "demo-1",
            "HS256",
            secret.expose_secret(),
            &JwtKeyRules::default(),
        )
        .await?;
    let exp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    let claims = serde_json::json!({ "sub": "user-42", "exp": exp, "role": "editor" });
    let token = admin.jwt_sign(&claims, "demo-1").await?;
    println!("22. add_jwt_key('demo-1', 'HS256', <secret>); jwt_sign({claims}, 'demo-1')");
    println!("    -> a JWT of {} characters", token.expose_secret().len());
    for attempt in ["first", "again"] {
        let (answer, took) = timed(app.jwt_verify(token.expose_secret())).await?;
        println!(
            "23. jwt_verify ({attempt:<5})                     {} in {} (sub {:?}, kid {:?})",
            answer.status,
            micros(took),
            answer.subject().unwrap_or(""),
            answer.kid.as_deref().unwrap_or("")
        );
    }
    let second = Credential::generate(CredentialKind::Token).map_err(|err| err.to_string())?;
    admin
        .add_jwt_key(
            "demo-2",
            "HS256",
            second.expose_secret(),
            &JwtKeyRules::default(),
        )
        .await?;
    let rotated = admin.jwt_sign(&claims, "demo-2").await?;
    admin.retire_jwt_key("demo-1").await?;
    println!("24. rotation: add_jwt_key('demo-2', ...), retire_jwt_key('demo-1')");
    for (name, token) in [("old", &token), ("new", &rotated)] {
        println!(
            "    jwt_verify({name} token)                 {}",
            app.jwt_verify(token.expose_secret()).await?.status
        );
    }
    if let Some(payload) = next_event(notified, "jwt_key_changed").await {
        println!("    NOTIFY auth_pg_invalidate               {payload}");
    }
    Ok(())
}

/// The next payload on `auth_pg_invalidate` whose event is `event`, skipping others (the demo
/// does not wait for every event it causes), or None after 5 s.
async fn next_event(
    notified: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    event: &str,
) -> Option<String> {
    next_event_where(notified, event, |_| true).await
}

/// As [`next_event`], for an event that `wanted` also accepts.
async fn next_event_where(
    notified: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    event: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> Option<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let payload = tokio::time::timeout_at(deadline, notified.recv())
            .await
            .ok()??;
        let parsed: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
        if parsed.get("event").and_then(serde_json::Value::as_str) == Some(event) && wanted(&parsed)
        {
            return Some(payload);
        }
    }
}

async fn timed<T, E>(call: impl Future<Output = Result<T, E>>) -> Result<(T, Duration), E> {
    let start = Instant::now();
    let value = call.await?;
    Ok((value, start.elapsed()))
}

async fn measure(
    app: &AuthClient,
    token: &str,
    n: usize,
) -> Result<Vec<Duration>, auth_client::Error> {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        app.validate_token(token).await?;
        latencies.push(start.elapsed());
    }
    latencies.sort_unstable();
    Ok(latencies)
}

fn describe(answer: &TokenValidation) {
    println!(
        "   user_id {:?}, scopes {:?}, token_id {:?}, metadata {}",
        answer.user_id.as_deref().unwrap_or(""),
        answer.scopes,
        answer.token_id.unwrap_or_default(),
        answer
            .metadata
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    );
}

fn describe_session(answer: &SessionValidation) {
    println!(
        "    user_id {:?}, session_id {:?}, idle deadline in {}, absolute in {}",
        answer.user_id.as_deref().unwrap_or(""),
        answer.session_id.as_deref().unwrap_or(""),
        from_now(answer.idle_expires_at),
        from_now(answer.absolute_expires_at)
    );
}

/// How long until `deadline`, in minutes.
fn from_now(deadline: Option<SystemTime>) -> String {
    deadline
        .and_then(|t| t.duration_since(SystemTime::now()).ok())
        .map(|left| format!("{:.1} min", left.as_secs_f64() / 60.0))
        .unwrap_or_else(|| "-".into())
}

/// The token with one character of its random part changed: the checksum catches it.
fn typo_of(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
    chars.into_iter().collect()
}

fn micros(d: Duration) -> String {
    format!("{:>7.1} µs", d.as_secs_f64() * 1e6)
}
