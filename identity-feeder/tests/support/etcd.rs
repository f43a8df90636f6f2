//! A real etcd server (Debian's etcd-server) on loopback ports, with its own
//! data directory, started for one test and killed after it.

use std::fs;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use etcd_client::{Client, GetOptions};

pub struct Etcd {
    child: Option<Child>,
    pub endpoint: String,
    ports: (u16, u16),
    dir: PathBuf,
}

impl Etcd {
    pub fn start() -> Etcd {
        let ports = (super::free_port(), super::free_port());
        let dir = std::env::temp_dir().join(format!(
            "prism-test-etcd-{}-{}",
            std::process::id(),
            ports.0
        ));
        let mut etcd = Etcd {
            child: None,
            endpoint: format!("http://127.0.0.1:{}", ports.0),
            ports,
            dir,
        };
        etcd.run();
        etcd
    }

    /// SIGKILL the server (its data stays).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid: a paused one dies too.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGCONT) };
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP the server: connections stay open and nothing is answered
    /// or refused (a hung etcd, the slowest failure a client meets).
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.as_ref().expect("etcd runs").id();
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
    }

    /// Start it again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    fn run(&mut self) {
        let peer_url = format!("http://127.0.0.1:{}", self.ports.1);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))
            .expect("etcd log");
        let child = Command::new("etcd")
            .args(["--name", "prism-test", "--data-dir"])
            .arg(&self.dir)
            .args(["--listen-client-urls", &self.endpoint])
            .args(["--advertise-client-urls", &self.endpoint])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("prism-test={peer_url}")])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian package etcd-server) is installed by ci/setup");
        self.child = Some(child);
        let port = self.ports.0;
        super::wait_for("etcd to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        let rt = rt();
        super::wait_for("etcd to answer", Duration::from_secs(20), || {
            rt.block_on(async {
                let mut c = Client::connect([&self.endpoint], None).await.ok()?;
                c.get("probe", None).await.ok()
            })
        });
    }

    /// Every key under `prefix` with its value, as strings.
    pub fn keys(&self, prefix: &str) -> Vec<(String, String)> {
        rt().block_on(async {
            let mut c = Client::connect([&self.endpoint], None)
                .await
                .expect("connect");
            let r = c
                .get(prefix, Some(GetOptions::new().with_prefix()))
                .await
                .expect("get");
            r.kvs()
                .iter()
                .map(|kv| {
                    (
                        kv.key_str().unwrap().to_string(),
                        kv.value_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- etcd log ----\n{}",
                fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(self.dir.with_extension("log"));
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}
