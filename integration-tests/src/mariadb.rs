//! Private MariaDB instances: own datadir, socket and tmpdir under the
//! cluster's directory, no TCP port (so nothing can collide with another
//! test or with the machine's own MariaDB on 3306), and durable settings.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, MySqlPool, Row};

use crate::process::Process;

/// The database every instance serves to its participant.
pub const DATABASE: &str = "app";

/// `mariadbd` options that turn the binary log on, durably and row-based
/// (what tandem needs of a server with the binlog on).
pub fn binlog_options() -> Vec<String> {
    [
        "--log-bin=binlog",
        "--server-id=1",
        "--sync-binlog=1",
        "--binlog-format=ROW",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// tandem's XA formatID, to filter `XA RECOVER`.
pub const TANDEM_FORMAT_ID: i64 = 0x7464_6d31;

pub struct MariaDb {
    name: String,
    dir: PathBuf,
    process: Option<Process>,
    /// Extra server options (e.g. binlog settings).
    extra: Vec<String>,
}

impl MariaDb {
    /// Creates a datadir with `mariadb-install-db` and starts the server.
    ///
    /// The server dies with the calling thread (see [`crate::process`]);
    /// [`MariaDb::install`] alone may run on any thread.
    pub fn start(name: &str, dir: &Path, extra: &[String]) -> Result<Self> {
        Self::install(name, dir)?;
        Self::launch_installed(name, dir, extra)
    }

    /// Starts the server on a datadir made by [`MariaDb::install`].
    pub fn launch_installed(name: &str, dir: &Path, extra: &[String]) -> Result<Self> {
        let mut db = Self {
            name: name.to_owned(),
            dir: dir.to_owned(),
            process: None,
            extra: extra.to_vec(),
        };
        db.launch()?;
        Ok(db)
    }

    /// Creates the datadir with `mariadb-install-db`.
    pub fn install(name: &str, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        let install = Command::new(tool("mariadb-install-db")?)
            .args([
                "--no-defaults",
                &format!("--datadir={}", dir.join("data").display()),
                // Bootstrap servers clean up stray temp tables in their
                // tmpdir: a shared one breaks parallel installs.
                &format!("--tmpdir={}", dir.join("tmp").display()),
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
                "--innodb-log-file-size=16M",
            ])
            .output()
            .context("cannot run mariadb-install-db")?;
        if !install.status.success() {
            bail!(
                "mariadb-install-db failed for {name}: {}{}",
                String::from_utf8_lossy(&install.stdout),
                String::from_utf8_lossy(&install.stderr)
            );
        }
        Ok(())
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("mysql.sock")
    }

    /// Server options that also serve MySQL over TCP on 127.0.0.1 (`port`),
    /// beside the Unix socket; [`MariaDb::url`] then names TCP.
    pub fn tcp_options(port: u16) -> Vec<String> {
        vec![
            "--skip-networking=0".to_owned(),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--port={port}"),
        ]
    }

    /// The TCP port, when the server was started with [`MariaDb::tcp_options`].
    pub fn tcp_port(&self) -> Option<u16> {
        if !self.extra.iter().any(|o| o == "--skip-networking=0") {
            return None;
        }
        self.extra
            .iter()
            .rev()
            .find_map(|o| o.strip_prefix("--port=")?.parse().ok())
    }

    /// The URL a participant uses: over TCP when the server listens on it,
    /// otherwise over the Unix socket.
    pub fn url(&self) -> String {
        match self.tcp_port() {
            Some(port) => format!("mysql://root@127.0.0.1:{port}/{DATABASE}"),
            None => format!("mysql://root@localhost/{DATABASE}?socket={}", self.socket().display()),
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("mariadb.log")
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(Process::pid)
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(|p| p.exited().is_none())
    }

    /// `kill -9` the server (its prepared XA branches survive in the redo log).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Starts the server again on the same datadir.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.launch()
    }

    fn launch(&mut self) -> Result<()> {
        let mut command = Command::new(tool("mariadbd")?);
        command.args([
            "--no-defaults".to_owned(),
            "--user=root".to_owned(),
            format!("--datadir={}", self.dir.join("data").display()),
            format!("--socket={}", self.socket().display()),
            format!("--pid-file={}", self.dir.join("mariadb.pid").display()),
            format!("--tmpdir={}", self.dir.join("tmp").display()),
            "--skip-networking".to_owned(),
            "--skip-name-resolve".to_owned(),
            "--performance-schema=OFF".to_owned(),
            // Durable: every commit and prepare is on disk when it returns.
            "--innodb-flush-log-at-trx-commit=1".to_owned(),
            "--innodb-log-file-size=16M".to_owned(),
            "--innodb-buffer-pool-size=32M".to_owned(),
            "--max-connections=500".to_owned(),
        ]);
        command.args(&self.extra);
        let process = Process::spawn(&format!("mariadbd {}", self.name), command, &self.log_path())?;
        self.process = Some(process);
        self.wait_ready(Duration::from_secs(60))
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let until = Instant::now() + limit;
        loop {
            if let Some(process) = self.process.as_mut()
                && let Some(status) = process.exited()
            {
                bail!("mariadbd {} exited ({status}):\n{}", self.name, process.log_tail(3000));
            }
            let ready = std::os::unix::net::UnixStream::connect(self.socket()).is_ok();
            if ready {
                return Ok(());
            }
            if Instant::now() > until {
                bail!("mariadbd {} not ready after {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// A small pool for the harness's own checks and set-up (not the
    /// participant's).
    pub async fn pool(&self, database: Option<&str>) -> Result<MySqlPool> {
        let mut options = MySqlConnectOptions::new().socket(self.socket()).username("root");
        if let Some(database) = database {
            options = options.database(database);
        }
        let pool = MySqlPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to mariadbd {}", self.name))?;
        Ok(pool)
    }

    /// Creates the database and runs `schema` (one statement per entry).
    pub async fn setup(&self, schema: &[&str]) -> Result<()> {
        let pool = self.pool(None).await?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE IF NOT EXISTS {DATABASE}")))
            .execute(&pool)
            .await?;
        if self.tcp_port().is_some() {
            // mariadb-install-db makes root@localhost only; TCP clients
            // arrive as 127.0.0.1 (--skip-name-resolve).
            sqlx::raw_sql(
                "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; \
                 GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION",
            )
            .execute(&pool)
            .await?;
        }
        let mut conn = pool.acquire().await?;
        sqlx::raw_sql(AssertSqlSafe(format!("USE {DATABASE}")))
            .execute(&mut *conn)
            .await?;
        for statement in schema {
            sqlx::raw_sql(AssertSqlSafe(statement.to_string()))
                .execute(&mut *conn)
                .await
                .with_context(|| format!("schema statement failed: {statement}"))?;
        }
        drop(conn);
        pool.close().await;
        Ok(())
    }
}

/// gtrids of tandem's branches in `XA RECOVER` on `pool`.
pub async fn xa_recover(pool: &MySqlPool) -> Result<Vec<String>> {
    let rows = sqlx::raw_sql("XA RECOVER").fetch_all(pool).await?;
    let mut out = Vec::new();
    for row in rows {
        let format_id: i64 = row.try_get_unchecked(0)?;
        let gtrid_len: i64 = row.try_get_unchecked(1)?;
        let data: Vec<u8> = row.try_get_unchecked(3)?;
        if format_id == TANDEM_FORMAT_ID {
            let len = usize::try_from(gtrid_len).unwrap_or(0).min(data.len());
            out.push(String::from_utf8_lossy(&data[..len]).into_owned());
        }
    }
    Ok(out)
}

fn tool(name: &str) -> Result<PathBuf> {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/local/mysql/bin",
    ] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return Ok(path);
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let path = dir.join(name);
            if path.exists() {
                return Ok(path);
            }
        }
    }
    bail!("{name} not found: install MariaDB server (apt-get install -y mariadb-server)")
}
