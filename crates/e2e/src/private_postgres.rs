//! A Postgres server of a test's own, made with `initdb` in a temporary directory: for tests
//! that stop the database (the ingest spool) or change how it accepts connections (TLS), which
//! the shared server at 127.0.0.1:5432 cannot do under the other tests running beside them.

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority made for one test (rcgen), and server certificates it signs.
#[derive(Debug)]
pub struct TestCa {
    /// The CA's certificate, PEM: what a client trusts.
    pub cert_pem: String,
    params: CertificateParams,
    key: KeyPair,
}

/// A server certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert_pem = params.self_signed(&key).expect("CA certificate").pem();
        TestCa {
            cert_pem,
            params,
            key,
        }
    }

    /// A server certificate for the DNS names `names`, signed by this CA.
    pub fn server_cert(&self, names: &[&str]) -> ServerCert {
        let key = KeyPair::generate().expect("server key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "test postgres");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A running Postgres of the test's own, listening on `localhost:{port}` with trust auth.
/// Stopped (immediately) and deleted when dropped.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl PrivatePostgres {
    /// Makes and starts a server. With `tls`, it accepts only TLS connections over TCP
    /// (`hostssl` trust, `hostnossl` reject) with that certificate.
    pub fn start(tls: Option<&ServerCert>) -> PrivatePostgres {
        let dir = std::env::temp_dir().join(format!("cti-private-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let port = free_port();
        let server = PrivatePostgres {
            bin: postgres_bin(),
            dir,
            port,
        };
        server.give_to_postgres(&server.dir);
        server.run(&[
            "initdb",
            "--no-sync",
            "--auth=trust",
            "--username=postgres",
            "-D",
            &server.data().to_string_lossy(),
        ]);
        // fsync off: an immediate stop is a crash of the server, not of the machine, so the
        // WAL in the OS' cache survives it; synchronous commit stays on, or the last commits
        // before a `stop` would be lost.
        let mut conf = format!(
            "\nport = {port}\nlisten_addresses = 'localhost'\nunix_socket_directories = '{}'\n\
             fsync = off\nmax_connections = 60\n",
            server.dir.display()
        );
        let mut hba = String::from("local all all trust\n");
        if let Some(cert) = tls {
            let (crt, key) = (
                server.data().join("server.crt"),
                server.data().join("server.key"),
            );
            std::fs::write(&crt, &cert.cert_pem).expect("write certificate");
            std::fs::write(&key, &cert.key_pem).expect("write key");
            set_mode(&key, 0o600);
            server.give_to_postgres(&crt);
            server.give_to_postgres(&key);
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
            hba.push_str(
                "hostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n\
                 hostnossl all all 0.0.0.0/0 reject\nhostnossl all all ::/0 reject\n",
            );
        } else {
            hba.push_str("host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n");
        }
        append(&server.data().join("postgresql.conf"), &conf);
        std::fs::write(server.data().join("pg_hba.conf"), hba).expect("write pg_hba.conf");
        server.start_again();
        server
    }

    /// The port it listens on (on `localhost`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@localhost:{port}/postgres`, then `?{query}` if not empty.
    pub fn url(&self, query: &str) -> String {
        let url = format!("postgres://postgres@localhost:{}/postgres", self.port);
        if query.is_empty() {
            url
        } else {
            format!("{url}?{query}")
        }
    }

    /// Stops the server now (`immediate`: as a crash or a failover would); the data stays.
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "immediate"]);
    }

    /// Starts the stopped server again on the same port and data.
    pub fn start_again(&self) {
        let log = self.dir.join("postgres.log");
        self.pg_ctl(&["start", "-w", "-t", "30", "-l", &log.to_string_lossy()]);
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data().to_string_lossy().into_owned();
        let mut all = vec!["pg_ctl", "-D", &data];
        all.extend_from_slice(args);
        self.run(&all);
    }

    /// Runs a Postgres program as the `postgres` user (Postgres refuses to run as root).
    fn run(&self, program_and_args: &[&str]) {
        let program = self.bin.join(program_and_args[0]);
        let output = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(&program_and_args[1..])
                .output()
        } else {
            Command::new(&program).args(&program_and_args[1..]).output()
        }
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
        assert!(
            output.status.success(),
            "{} failed: {}{}",
            program_and_args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn give_to_postgres(&self, path: &Path) {
        if is_root() {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(path)
                .status()
                .expect("chown");
            assert!(status.success(), "chown {}", path.display());
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data().to_string_lossy().into_owned();
        let pg_ctl = self.bin.join("pg_ctl");
        let mut stop = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&pg_ctl);
            command
        } else {
            Command::new(&pg_ctl)
        };
        // Already stopped is fine: the directory goes either way.
        drop(stop.args(["-D", &data, "stop", "-m", "immediate"]).output());
        drop(std::fs::remove_dir_all(&self.dir));
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// The newest installed server's programs (Debian: `/usr/lib/postgresql/<major>/bin`), else
/// those on `PATH`'s `pg_config --bindir`.
fn postgres_bin() -> PathBuf {
    let debian = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(debian).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .max()
    });
    if let Some(major) = newest {
        return debian.join(major.to_string()).join("bin");
    }
    let output = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("pg_config (Postgres' server programs are needed)");
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for append");
    file.write_all(text.as_bytes()).expect("append");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
