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
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    let statement = client.prepare(query).await?;
    let arguments: Vec<String> = match argument {
        Some(argument) => match argument.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .expect("a readable file of arguments")
                .lines()
                .map(str::to_owned)
                .collect(),
            None => vec![argument.clone()],
        },
        None => vec![],
    };
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
