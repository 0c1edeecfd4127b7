//! Drives one backend for instruction counting: runs a prepared statement N times through the
//! extended protocol, as auth_client does, and prints the backend's pid so that its callgrind
//! profile can be found.
//!
//! ```text
//! callgrind_driver "<connection string>" "<query with at most one text parameter $1>" [argument] N
//! ```
//!
//! An argument `@path` takes the arguments from the lines of a file, one per execution in turn,
//! so that each execution can check a different credential.
//!
//! A query `auth_client:<call>` (`ping`, `validate_token`, `validate_session`) makes the calls
//! through an `AuthClient` instead, for counting the client's own instructions with this
//! program under callgrind.
//!
//! Used with a server started under `valgrind --tool=callgrind --trace-children=yes`; the
//! difference between two runs of different N is the cost of one execution (see BENCHMARKS.md).

use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), tokio_postgres::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, query, argument, n) = match args.as_slice() {
        [url, query, n] => (url, query, None, n),
        [url, query, argument, n] => (url, query, Some(argument), n),
        _ => {
            eprintln!("usage: callgrind_driver <url> <query> [argument] <n>");
            std::process::exit(2);
        }
    };
    let n: usize = n.parse().expect("a count");
    if let Some(call) = query.strip_prefix("auth_client:") {
        return drive_auth_client(url, call, argument, n).await;
    }
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    let statement = client.prepare(query).await?;
    let arguments = arguments(argument);
    for i in 0..n {
        let params: Vec<&(dyn ToSql + Sync)> = match arguments.get(i % arguments.len().max(1)) {
            Some(argument) => vec![argument],
            None => vec![],
        };
        client.query(&statement, &params).await?;
    }
    println!("{pid}");
    Ok(())
}

/// The arguments: the lines of a file for `@path`, else the argument itself, else none.
fn arguments(argument: Option<&String>) -> Vec<String> {
    match argument {
        Some(argument) => match argument.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .expect("a readable file of arguments")
                .lines()
                .map(str::to_owned)
                .collect(),
            None => vec![argument.clone()],
        },
        None => vec![],
    }
}

/// Runs `call` (`ping`, `validate_token` or `validate_session`) `n` times through an
/// AuthClient with one connection: for counting the client's own instructions a call, with
/// this program run under callgrind. Prints nothing.
async fn drive_auth_client(
    url: &str,
    call: &str,
    argument: Option<&String>,
    n: usize,
) -> Result<(), tokio_postgres::Error> {
    let mut config = auth_client::Config::from_url(url).expect("a connection string");
    config.pool_size(1);
    let client = auth_client::AuthClient::new(&config).expect("a client");
    let arguments = arguments(argument);
    for i in 0..n {
        let argument = arguments
            .get(i % arguments.len().max(1))
            .map_or("", String::as_str);
        let answered = match call {
            "ping" => client.ping().await.is_ok(),
            "validate_token" => client.validate_token(argument).await.is_ok(),
            "validate_session" => client.validate_session(argument).await.is_ok(),
            other => panic!("no call {other}"),
        };
        assert!(answered, "{call} failed");
    }
    Ok(())
}
