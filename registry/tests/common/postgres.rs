//! A real PostgreSQL server for tests: Debian's `postgresql` binaries (installed by
//! `scripts/setup-system.sh`), a cluster `initdb`ed into a temporary directory, served on a free
//! loopback port with one database, `toolmesh`; stopped and removed on drop. PostgreSQL refuses
//! to run as root, so as root the server runs as `nobody` (the directory is handed to it).
//! [`Postgres::start_tls`] serves TLS too, with a certificate the test issued.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    running: bool,
    /// Server options for TLS (`-c ssl=on ...`), empty without.
    tls_options: String,
}

/// What a TLS-serving test server presents and asks for.
pub struct ServerTls<'a> {
    pub cert_pem: &'a str,
    pub key_pem: &'a str,
    /// The CA of client certificates: when given, TCP clients must present one whose common
    /// name is their user (pg_hba `hostssl ... cert`); the harness itself uses the Unix socket.
    pub client_ca_pem: Option<&'a str>,
}

/// The uid and gid the server runs as when the tests run as root.
const NOBODY: u32 = 65534;

impl Postgres {
    /// initdb, start, create the `toolmesh` database; panics naming the fix when the binaries are missing.
    pub fn start() -> Postgres {
        Postgres::start_with(None)
    }

    /// [`Postgres::start`] serving TLS (`ssl=on`) with `tls`'s certificate, plaintext still allowed
    /// unless `tls` asks for client certificates.
    pub fn start_tls(tls: &ServerTls) -> Postgres {
        Postgres::start_with(Some(tls))
    }

    fn start_with(tls: Option<&ServerTls>) -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        if is_root() {
            std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).expect("hand the cluster directory to nobody");
        }
        let port = free_port();
        let mut postgres = Postgres { dir, bin, port, running: false, tls_options: String::new() };
        let data = postgres.data();
        postgres.run("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]);
        if let Some(tls) = tls {
            postgres.serve_tls(tls);
        }
        postgres.resume();
        postgres.run("createdb", &["-h", &postgres.socket_dir(), "-p", &port.to_string(), "-U", "postgres", "toolmesh"]);
        postgres
    }

    /// Writes the server's key material (0600, the server's own: PostgreSQL refuses a key
    /// others can read) and the options that serve it.
    fn serve_tls(&mut self, tls: &ServerTls) {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.path().to_owned();
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write TLS material");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            if is_root() {
                std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).expect("hand the file to nobody");
            }
            path.display().to_string()
        };
        let (cert, key) = (write("server.crt", tls.cert_pem), write("server.key", tls.key_pem));
        let mut options = format!(" -c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}");
        if let Some(ca) = tls.client_ca_pem {
            options += &format!(" -c ssl_ca_file={}", write("client-ca.crt", ca));
            let hba = dir.join("data").join("pg_hba.conf");
            std::fs::write(&hba, "local all all trust\nhostssl all all 127.0.0.1/32 cert\n").expect("write pg_hba.conf");
        }
        self.tls_options = options;
    }

    /// Makes TCP clients log in over TLS with SCRAM-SHA-256 as `postgres` with `password`
    /// (pg_hba `hostssl ... scram-sha-256`); the harness keeps the Unix socket.
    pub fn require_scram_password(&self, password: &str) {
        self.psql(&format!("SET password_encryption = 'scram-sha-256'; ALTER USER postgres PASSWORD '{password}'"));
        let hba = self.path().join("data").join("pg_hba.conf");
        std::fs::write(&hba, "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n").expect("write pg_hba.conf");
        self.psql("SELECT pg_reload_conf()");
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/toolmesh`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/toolmesh", self.port)
    }

    /// Runs `sql` in the `toolmesh` database with `psql`; answers its output, bare (`-tA`).
    pub fn psql(&self, sql: &str) -> String {
        let port = self.port.to_string();
        self.run(
            "psql",
            &["-h", &self.socket_dir(), "-p", &port, "-U", "postgres", "-d", "toolmesh", "-v", "ON_ERROR_STOP=1", "-tA", "-c", sql],
        )
        .trim()
        .to_owned()
    }

    /// Stops the server (fast shutdown: clients are disconnected); [`Postgres::resume`] starts it again.
    pub fn stop(&mut self) {
        if self.running {
            self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "-t", "30", "stop"]);
            self.running = false;
        }
    }

    /// Starts the stopped server again, on the same port with the same data; returns once it accepts connections.
    pub fn resume(&mut self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -F{}", self.port, self.socket_dir(), self.tls_options);
        let log = self.path().join("server.log");
        self.run("pg_ctl", &["-D", &self.data(), "-l", log.to_str().expect("utf-8"), "-o", &options, "-w", "-t", "30", "start"]);
        self.running = true;
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where the server's Unix socket is, which the harness's own commands use.
    fn socket_dir(&self) -> String {
        self.path().to_str().expect("utf-8").to_owned()
    }

    fn data(&self) -> String {
        self.path().join("data").to_str().expect("utf-8").to_owned()
    }

    /// One PostgreSQL program, run as `nobody` when the tests run as root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = if is_root() {
            let mut command = Command::new("setpriv");
            command.args(["--reuid", &NOBODY.to_string(), "--regid", &NOBODY.to_string(), "--clear-groups", "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        command.env("LC_ALL", "C").env("HOME", self.path()).current_dir(self.path());
        command
    }

    /// Runs one PostgreSQL program, panicking with its output and the server's log when it
    /// fails; answers its standard output.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let output =
            self.command(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program} in {}: {e}", self.bin.display()));
        let log = std::fs::read_to_string(self.path().join("server.log")).unwrap_or_default();
        assert!(
            output.status.success(),
            "{program} {args:?} failed ({}):\n{}{}\nserver log:\n{log}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self.command("pg_ctl").args(["-D", &self.data(), "-m", "immediate", "-w", "stop"]).output();
        }
    }
}

/// Where `initdb`, `pg_ctl` and `createdb` are: `TOOLMESH_PG_BIN`, else Debian's newest
/// `/usr/lib/postgresql/<version>/bin`, else the PATH.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TOOLMESH_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return bin;
    }
    let on_path = std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).find(|dir| dir.join("initdb").exists()));
    on_path.unwrap_or_else(|| {
        panic!(
            "PostgreSQL's initdb is not installed (looked in TOOLMESH_PG_BIN, /usr/lib/postgresql/*/bin and PATH); \
             run `bash scripts/setup-system.sh` (installs Debian's postgresql) or set TOOLMESH_PG_BIN to its bin directory"
        )
    })
}

fn is_root() -> bool {
    // The tests never run setuid: the real uid is the one that matters, read without unsafe code.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| status.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}
