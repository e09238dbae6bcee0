//! A desktop's notification service (`org.freedesktop.Notifications`) on a private D-Bus
//! session bus of its own, recording what it is asked to show.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// (summary, body) of each notification received.
type Received = Arc<Mutex<Vec<(String, String)>>>;

pub struct FakeNotifications {
    /// The private bus: what `DBUS_SESSION_BUS_ADDRESS` should say.
    pub address: String,
    received: Received,
    bus: Child,
}

struct Service {
    received: Received,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Service {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        _app_name: &str,
        _replaces_id: u32,
        _app_icon: &str,
        summary: &str,
        body: &str,
        _actions: Vec<&str>,
        _hints: HashMap<&str, zbus::zvariant::Value<'_>>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut received = self.received.lock().unwrap();
        received.push((summary.to_string(), body.to_string()));
        received.len() as u32
    }

    fn get_capabilities(&self) -> Vec<&str> {
        vec!["body"]
    }

    fn get_server_information(&self) -> (&str, &str, &str, &str) {
        ("fake-notifications", "tokenkeeper tests", "1", "1.2")
    }
}

impl FakeNotifications {
    pub fn start() -> Self {
        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (Debian's dbus package, installed by scripts/test)");
        let mut address = String::new();
        BufReader::new(bus.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        let address = address.trim().to_string();
        let received: Received = Arc::default();
        let (ready, serving) = std::sync::mpsc::channel();
        let (at, service) = (
            address.clone(),
            Service {
                received: received.clone(),
            },
        );
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let _connection = zbus::connection::Builder::address(at.as_str())
                    .unwrap()
                    .name("org.freedesktop.Notifications")
                    .unwrap()
                    .serve_at("/org/freedesktop/Notifications", service)
                    .unwrap()
                    .build()
                    .await
                    .unwrap();
                ready.send(()).unwrap();
                std::future::pending::<()>().await;
            });
        });
        serving
            .recv_timeout(Duration::from_secs(20))
            .expect("the notification service is on the bus");
        Self {
            address,
            received,
            bus,
        }
    }

    /// (summary, body) of each notification so far.
    pub fn received(&self) -> Vec<(String, String)> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for FakeNotifications {
    fn drop(&mut self) {
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}
