//! Throwaway PostgreSQL clusters with auth_pg installed.
//!
//! Each cluster has its own directory (data, Unix socket, log) and its own port, so tests never
//! collide with each other or with a demo cluster. Run as root, clusters belong to the
//! unprivileged `postgres` user (initdb refuses root); otherwise to the current user.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_postgres::NoTls;

/// Roles every cluster has, for tests that connect as a non-superuser.
pub mod roles {
    /// Member of `auth_pg_admin` (and so of `auth_pg_validator`).
    pub const ADMIN: &str = "app_admin";
    /// Member of `auth_pg_validator` only.
    pub const VALIDATOR: &str = "app_validator";
    /// No auth_pg role at all.
    pub const NOBODY: &str = "app_nobody";
    /// The bootstrap superuser.
    pub const SUPERUSER: &str = "postgres";
}

/// The database every test database is copied from: it has the extension installed.
pub const TEMPLATE_DB: &str = "auth_pg_template";

/// How to set up a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Write a hash key file and set `auth_pg.hash_key_file`.
    pub hash_key: bool,
    /// Preload the library (`shared_preload_libraries`).
    pub preload: bool,
    /// More `postgresql.conf` lines.
    pub settings: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            hash_key: true,
            preload: true,
            settings: Vec::new(),
        }
    }
}

/// A running throwaway cluster. Dropping it stops the server and removes its directory.
#[derive(Debug)]
pub struct Cluster {
    root: PathBuf,
    port: u16,
    bindir: PathBuf,
}

static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

fn run_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn check(what: &str, output: std::io::Result<Output>) -> Output {
    try_check(what, output).unwrap_or_else(|failure| panic!("{failure}"))
}

/// The output of a command that ran and succeeded, or what it reported.
fn try_check(what: &str, output: std::io::Result<Output>) -> Result<Output, String> {
    let output = output.unwrap_or_else(|err| panic!("{what}: could not run: {err}"));
    if !output.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(output)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

impl Cluster {
    /// Creates and starts a cluster, with the test roles and the template database.
    pub fn start(options: &ClusterOptions) -> Self {
        let bindir = PathBuf::from(
            String::from_utf8(
                check(
                    "pg_config --bindir",
                    Command::new(pg_config()).arg("--bindir").output(),
                )
                .stdout,
            )
            .expect("utf-8")
            .trim(),
        );
        let base =
            std::env::var_os("AUTH_PG_TEST_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let n = CLUSTERS.fetch_add(1, Ordering::SeqCst);
        let root = base.join(format!("auth_pg-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create the cluster directory");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let cluster = Self {
            root,
            port: free_port(),
            bindir,
        };
        cluster.chown(&cluster.root);
        cluster.initdb(options);
        cluster.start_server();
        cluster.bootstrap();
        cluster
    }

    /// Creates and starts a hot standby streaming from `primary` (a base backup taken with
    /// `pg_basebackup -R`, so it carries the primary's settings and hash key file).
    pub fn standby_of(primary: &Cluster) -> Self {
        let base =
            std::env::var_os("AUTH_PG_TEST_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let n = CLUSTERS.fetch_add(1, Ordering::SeqCst);
        let root = base.join(format!("auth_pg-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create the standby's directory");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let standby = Self {
            root,
            port: free_port(),
            bindir: primary.bindir.clone(),
        };
        standby.chown(&standby.root);
        let data = standby.data_dir();
        let host = primary.socket_dir().to_owned();
        let port = primary.port().to_string();
        check(
            "pg_basebackup",
            standby
                .as_cluster_user(
                    &standby.bindir.join("pg_basebackup"),
                    &[
                        OsStr::new("-D"),
                        data.as_os_str(),
                        OsStr::new("-R"),
                        OsStr::new("-X"),
                        OsStr::new("stream"),
                        // Checkpoint at once rather than wait for a spread one.
                        OsStr::new("-c"),
                        OsStr::new("fast"),
                        OsStr::new("-h"),
                        host.as_os_str(),
                        OsStr::new("-p"),
                        OsStr::new(&port),
                        OsStr::new("-U"),
                        OsStr::new("postgres"),
                    ],
                )
                .output(),
        );
        // The copied configuration names the primary's port and socket: later lines win.
        let conf = data.join("postgresql.conf");
        let mut contents = std::fs::read_to_string(&conf).expect("read postgresql.conf");
        contents.push_str(&format!(
            "\n# auth_pg test standby\nport = {}\nunix_socket_directories = '{}'\nhot_standby = on\n",
            standby.port,
            standby.root.display()
        ));
        std::fs::write(&conf, contents).expect("write postgresql.conf");
        standby.start_server();
        standby
    }

    /// Waits until this standby has replayed everything `primary` has written so far.
    pub fn catch_up_with(&self, primary: &Cluster) {
        // Test clusters commit asynchronously and without fsync, so neither the write nor the
        // flush position is sure to cover commits already made: take the insert position, and
        // switch to a new WAL segment so that everything before it is written and sent.
        let target = primary.psql("postgres", "SELECT pg_current_wal_insert_lsn()");
        primary.psql("postgres", "SELECT pg_switch_wal()");
        for _ in 0..300 {
            let caught_up = self.psql(
                "postgres",
                &format!("SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"),
            );
            if caught_up == "t" {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the standby did not replay up to {target} within 30 s");
    }

    /// The directory holding the socket (the `host` to connect to).
    pub fn socket_dir(&self) -> &Path {
        &self.root
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The port (names the socket file).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq connection string for `user` on database `db`.
    pub fn url(&self, user: &str, db: &str) -> String {
        format!(
            "host={} port={} user={user} dbname={db}",
            self.root.display(),
            self.port
        )
    }

    /// A plain tokio-postgres connection to `db` as `user`, its connection task spawned.
    pub async fn connect(&self, user: &str, db: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(user, db), NoTls)
            .await
            .unwrap_or_else(|err| panic!("connect to {db} as {user}: {err}"));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    fn as_cluster_user<S: AsRef<OsStr>>(&self, program: &Path, args: &[S]) -> Command {
        if run_as_root() {
            let mut command = Command::new("runuser");
            command
                .args(["-u", "postgres", "--"])
                .arg(program)
                .args(args);
            command
        } else {
            let mut command = Command::new(program);
            command.args(args);
            command
        }
    }

    fn chown(&self, path: &Path) {
        if run_as_root() {
            check(
                "chown",
                Command::new("chown").arg("postgres").arg(path).output(),
            );
        }
    }

    fn initdb(&self, options: &ClusterOptions) {
        let data = self.data_dir();
        check(
            "initdb",
            self.as_cluster_user(
                &self.bindir.join("initdb"),
                &[
                    OsStr::new("-D"),
                    data.as_os_str(),
                    OsStr::new("-U"),
                    OsStr::new("postgres"),
                    OsStr::new("--auth=trust"),
                    OsStr::new("--encoding=UTF8"),
                    OsStr::new("--locale=C.UTF-8"),
                ],
            )
            .output(),
        );
        let mut conf = format!(
            "\n# auth_pg test cluster\nport = {}\nlisten_addresses = ''\nunix_socket_directories = '{}'\n\
             max_connections = 200\nshared_buffers = 128MB\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nlog_min_messages = warning\nlog_statement = 'none'\n",
            self.port,
            self.root.display()
        );
        if options.preload {
            conf.push_str("shared_preload_libraries = 'auth_pg'\n");
        }
        if options.hash_key {
            self.write_hash_key("auth_pg_hash.key");
            conf.push_str("auth_pg.hash_key_file = 'auth_pg_hash.key'\n");
        }
        for line in &options.settings {
            conf.push_str(line);
            conf.push('\n');
        }
        let path = data.join("postgresql.conf");
        let mut contents = std::fs::read_to_string(&path).expect("read postgresql.conf");
        contents.push_str(&conf);
        std::fs::write(&path, contents).expect("write postgresql.conf");
    }

    /// Writes a new random hash key to `file_name` in the data directory, readable only by the
    /// server's user, and returns it.
    pub fn write_hash_key(&self, file_name: &str) -> auth_core::HashKey {
        let mut key = [0u8; 32];
        getrandom(&mut key);
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        self.write_data_file(file_name, &format!("{hex}\n"), 0o600);
        auth_core::HashKey::from_bytes(key)
    }

    /// Writes `contents` to `file_name` in the data directory with `mode`, owned by the
    /// server's user.
    pub fn write_data_file(&self, file_name: &str, contents: &str, mode: u32) {
        let path = self.data_dir().join(file_name);
        std::fs::write(&path, contents).expect("write a data file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        self.chown(&path);
    }

    /// The hash key in `auth_pg_hash.key`, if this cluster was given one.
    pub fn hash_key(&self) -> Option<auth_core::HashKey> {
        let contents = std::fs::read_to_string(self.data_dir().join("auth_pg_hash.key")).ok()?;
        auth_core::HashKey::from_hex(&contents).ok()
    }

    /// Starts the server (after [`Cluster::stop`]).
    pub fn start_server(&self) {
        let data = self.data_dir();
        let log = self.root.join("server.log");
        let output = self
            .as_cluster_user(
                &self.bindir.join("pg_ctl"),
                &[
                    OsStr::new("-D"),
                    data.as_os_str(),
                    OsStr::new("-l"),
                    log.as_os_str(),
                    OsStr::new("-w"),
                    OsStr::new("-t"),
                    OsStr::new("60"),
                    OsStr::new("start"),
                ],
            )
            // The same server whatever the shell that runs the tests: with Rust backtraces on,
            // an error PostgreSQL raises inside auth_pg's Rust code carries a backtrace in its
            // DETAIL, which the hostile sweep sees, so the tests find such paths everywhere.
            .env("RUST_BACKTRACE", "1")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdout(Stdio::null())
            .output();
        if !output.as_ref().is_ok_and(|o| o.status.success()) {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("the test cluster did not start:\n{log}");
        }
    }

    /// Stops the server: `fast` waits for clients to be disconnected, `immediate` does not.
    pub fn stop(&self, mode: &str) {
        let data = self.data_dir();
        let _ = self
            .as_cluster_user(
                &self.bindir.join("pg_ctl"),
                &[
                    OsStr::new("-D"),
                    data.as_os_str(),
                    OsStr::new("-m"),
                    OsStr::new(mode),
                    OsStr::new("-w"),
                    OsStr::new("stop"),
                ],
            )
            .output();
    }

    /// Runs SQL with psql as the superuser and returns its unaligned, tuples-only output.
    /// Panics if psql reports an error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// [`Cluster::psql`], answering what psql reported when it fails (the server is
    /// restarting, say) instead of panicking.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let output = try_check(
            "psql",
            Command::new(self.bindir.join("psql"))
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
                .arg(self.url(roles::SUPERUSER, db))
                .args(["-c", sql])
                .output(),
        )?;
        Ok(String::from_utf8(output.stdout)
            .expect("utf-8")
            .trim_end()
            .to_owned())
    }

    fn bootstrap(&self) {
        self.psql("postgres", &format!("CREATE DATABASE {TEMPLATE_DB}"));
        self.psql(TEMPLATE_DB, "CREATE EXTENSION auth_pg");
        self.psql(
            "postgres",
            &format!(
                "CREATE ROLE {admin} LOGIN IN ROLE auth_pg_admin; \
                 CREATE ROLE {validator} LOGIN IN ROLE auth_pg_validator; \
                 CREATE ROLE {nobody} LOGIN;",
                admin = roles::ADMIN,
                validator = roles::VALIDATOR,
                nobody = roles::NOBODY
            ),
        );
    }

    /// Creates a fresh database with the extension installed, named `name`.
    pub fn create_database(&self, name: &str) {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}"),
        );
    }

    /// The directory of PostgreSQL's programs.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The server log so far.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop("immediate");
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `pg_config` of the PostgreSQL the extension is installed into.
pub fn pg_config() -> PathBuf {
    std::env::var_os("PG_CONFIG").map_or_else(
        || PathBuf::from("/usr/lib/postgresql/15/bin/pg_config"),
        PathBuf::from,
    )
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("read /dev/urandom");
}
