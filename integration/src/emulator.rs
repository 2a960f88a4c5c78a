//! SQS emulators started by the tests on free loopback ports, and a small blocking SQS client.
//!
//! fauxqs (npm, from `tools/`) is fast; moto's server mode (PyPI) is slow but a second,
//! independent implementation. Each test makes its own queue with a unique name; the process
//! is killed when the guard drops. A [`Proxy`] in front of an emulator lets a test cut the
//! network (an outage) without losing the emulator's in-memory queue.

use aws_sdk_sqs::types::QueueAttributeName;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Fauxqs,
    Moto,
}

pub struct Emulator {
    child: Child,
    pub port: u16,
    pub kind: Kind,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Emulator {
    pub fn start(kind: Kind) -> Self {
        let port = free_port();
        let mut cmd = match kind {
            Kind::Fauxqs => {
                let mut c = Command::new(repo_root().join("tools/node_modules/.bin/fauxqs"));
                c.env("FAUXQS_PORT", port.to_string()).env("FAUXQS_LOGGER", "false");
                // Loopback only: fauxqs itself listens on every interface.
                let loopback = repo_root().join("tools/loopback.cjs");
                c.env("NODE_OPTIONS", format!("--require \"{}\"", loopback.display()));
                c
            }
            Kind::Moto => {
                // scripts/deps.sh installs moto into .run/venv.
                let venv = repo_root().join(".run/venv/bin/python");
                let mut c =
                    Command::new(if venv.exists() { venv } else { PathBuf::from("python3") });
                c.args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()]);
                c
            }
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {kind:?} (run scripts/deps.sh): {e}"));
        let emu = Emulator { child, port, kind };
        let up = crate::wait_until(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "{kind:?} did not start on port {port}");
        emu
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on a free port that forwards to `target` while enabled; disabled, it refuses
/// new connections and cuts the open ones, like a network outage. It can also lose the
/// responses to chosen SQS actions: the request reaches the emulator, which acts on it, and
/// the connection is cut before the answer gets back, as when the network fails mid-request
/// (the client cannot tell whether its request took effect), refuse chosen actions (the
/// connection is cut before the request reaches the emulator), or stall them (the request is
/// swallowed and the connection kept open: an answer that never comes), delay them, or answer
/// them itself: a 403 AccessDenied (a role without the permission) or a throttle.
pub struct Proxy {
    pub port: u16,
    enabled: Arc<AtomicBool>,
    faults: Arc<Mutex<Faults>>,
    stop: Arc<AtomicBool>,
}

/// The `X-Amz-Target` lines whose requests a [`Proxy`] mistreats.
#[derive(Default)]
struct Faults {
    lose_response: Vec<String>,
    refuse: Vec<String>,
    /// Answered by the proxy itself, with this response.
    answer: Vec<String>,
    answer_with: String,
    stall: Vec<String>,
    delay: Vec<String>,
    delay_by: Duration,
}

/// What the proxy does with one chunk of a request.
enum Verdict {
    /// Cut the connection before the request reaches the emulator.
    Refuse,
    /// Answer it with a canned response, without the emulator.
    Answer(String),
    /// Swallow the request and keep the connection open: no answer ever comes.
    Stall,
    /// Pass it on, after `delay`; with `lose_response`, drop the answer and cut the connection.
    Forward { lose_response: bool, delay: Option<Duration> },
}

impl Faults {
    fn verdict(&self, chunk: &[u8]) -> Verdict {
        if names_any(chunk, &self.refuse) {
            Verdict::Refuse
        } else if names_any(chunk, &self.answer) {
            Verdict::Answer(self.answer_with.clone())
        } else if names_any(chunk, &self.stall) {
            Verdict::Stall
        } else {
            Verdict::Forward {
                lose_response: names_any(chunk, &self.lose_response),
                delay: names_any(chunk, &self.delay).then_some(self.delay_by),
            }
        }
    }
}

fn targets(actions: &[&str]) -> Vec<String> {
    actions.iter().map(|a| format!("AmazonSQS.{a}\r\n")).collect()
}

impl Proxy {
    pub fn start(target_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let enabled = Arc::new(AtomicBool::new(true));
        let faults = Arc::new(Mutex::new(Faults::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (en, fa, st) = (Arc::clone(&enabled), Arc::clone(&faults), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if !en.load(Ordering::Relaxed) {
                            drop(client);
                            continue;
                        }
                        let _ = client.set_nonblocking(false);
                        if let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) {
                            pipe(client, server, Arc::clone(&en), Arc::clone(&fa));
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy { port, enabled, faults, stop }
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// From now on, the responses to these SQS actions (e.g. `"DeleteMessageBatch"`) are lost;
    /// an empty list ends that.
    pub fn lose_responses_to(&self, actions: &[&str]) {
        self.faults.lock().expect("faults").lose_response = targets(actions);
    }

    /// From now on, requests for these SQS actions never reach the emulator; an empty list
    /// ends that.
    pub fn refuse(&self, actions: &[&str]) {
        self.faults.lock().expect("faults").refuse = targets(actions);
    }

    /// From now on, requests for these SQS actions are answered as SQS answers a role that
    /// lacks the permission (403, AccessDenied); an empty list ends that.
    pub fn deny(&self, actions: &[&str]) {
        let message = "Access to the resource is denied.";
        let answer = sqs_error("403 Forbidden", "AccessDenied", "AccessDeniedException", message);
        self.answer(actions, answer);
    }

    /// From now on, requests for these SQS actions are answered as an SQS that throttles the
    /// caller (400, ThrottlingException); an empty list ends that.
    pub fn throttle(&self, actions: &[&str]) {
        let answer = sqs_error(
            "400 Bad Request",
            "ThrottlingException",
            "ThrottlingException",
            "Rate exceeded",
        );
        self.answer(actions, answer);
    }

    fn answer(&self, actions: &[&str], response: String) {
        let mut faults = self.faults.lock().expect("faults");
        faults.answer = targets(actions);
        faults.answer_with = response;
    }

    /// From now on, requests for these SQS actions reach the emulator `by` late; an empty list
    /// ends that.
    pub fn delay(&self, actions: &[&str], by: Duration) {
        let mut faults = self.faults.lock().expect("faults");
        faults.delay = targets(actions);
        faults.delay_by = by;
    }

    /// From now on, requests for these SQS actions are swallowed and never answered, the
    /// connection left open until the client gives up; an empty list ends that for new requests.
    pub fn stall(&self, actions: &[&str]) {
        self.faults.lock().expect("faults").stall = targets(actions);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn pipe(
    client: TcpStream,
    server: TcpStream,
    enabled: Arc<AtomicBool>,
    faults: Arc<Mutex<Faults>>,
) {
    // Set when a request whose response is to be lost goes through; the response is then
    // dropped and both sides cut. The request side sets it before forwarding, so it is set
    // before any byte of the answer can arrive.
    let doomed = Arc::new(AtomicBool::new(false));
    // Set when a request is swallowed: the emulator may close its idle side (Node does after
    // 60 s), which must not reach the client, who waits for an answer.
    let swallowed = Arc::new(AtomicBool::new(false));
    let upstream = (client.try_clone().expect("clone"), server.try_clone().expect("clone"), true);
    for (mut from, mut to, requests) in [upstream, (server, client, false)] {
        let (enabled, faults, doomed, swallowed) = (
            Arc::clone(&enabled),
            Arc::clone(&faults),
            Arc::clone(&doomed),
            Arc::clone(&swallowed),
        );
        std::thread::spawn(move || {
            let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 16 * 1024];
            let cut = |from: &TcpStream, to: &TcpStream| {
                let _ = from.shutdown(std::net::Shutdown::Both);
                let _ = to.shutdown(std::net::Shutdown::Both);
            };
            loop {
                if !enabled.load(Ordering::Relaxed) {
                    return cut(&from, &to);
                }
                match from.read(&mut buf) {
                    Ok(0) if swallowed.load(Ordering::SeqCst) => return,
                    Ok(0) => {
                        let _ = to.shutdown(std::net::Shutdown::Write);
                        return;
                    }
                    Ok(n) if requests => {
                        let verdict = faults.lock().expect("faults").verdict(&buf[..n]);
                        match verdict {
                            Verdict::Refuse => return cut(&from, &to),
                            Verdict::Answer(response) => {
                                let _ = from.write_all(response.as_bytes());
                                let _ = from.shutdown(std::net::Shutdown::Write);
                                discard_until_closed(&mut from, &enabled);
                                return cut(&from, &to);
                            }
                            Verdict::Stall => {
                                swallowed.store(true, Ordering::SeqCst);
                                discard_until_closed(&mut from, &enabled);
                                return cut(&from, &to);
                            }
                            Verdict::Forward { lose_response, delay } => {
                                if lose_response {
                                    doomed.store(true, Ordering::SeqCst);
                                }
                                if let Some(by) = delay {
                                    std::thread::sleep(by);
                                }
                            }
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    Ok(_) if doomed.load(Ordering::SeqCst) => return cut(&from, &to),
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    Err(e) if idle(&e) => {}
                    Err(_) => return,
                }
            }
        });
    }
}

/// An SQS error answer in the JSON protocol, with the query-compatible error code the SDK
/// reads (`x-amzn-query-error`), the connection closed after it.
fn sqs_error(status: &str, code: &str, type_name: &str, message: &str) -> String {
    let body = format!(r#"{{"__type":"com.amazonaws.sqs#{type_name}","message":"{message}"}}"#);
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.0\r\n\
         x-amzn-query-error: {code};Sender\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads and drops what the client sends until it hangs up (or the proxy is disabled).
fn discard_until_closed(from: &mut TcpStream, enabled: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    while enabled.load(Ordering::Relaxed) {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if idle(&e) => {}
            Err(_) => return,
        }
    }
}

/// A read that timed out with nothing to read: the connection is still open.
fn idle(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

/// Whether a chunk of a request carries one of these `X-Amz-Target` values.
fn names_any(chunk: &[u8], targets: &[String]) -> bool {
    targets.iter().any(|t| chunk.windows(t.len()).any(|w| w.eq_ignore_ascii_case(t.as_bytes())))
}

/// An SQS client for a local emulator (region us-east-1, dummy credentials).
pub async fn client_for(endpoint: &str) -> aws_sdk_sqs::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&conf)
}

/// A blocking SQS client for test set-up and checks.
pub struct Sqs {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_sqs::Client,
    pub queue_url: String,
}

pub struct Msg {
    pub id: String,
    pub body: String,
    pub receipt: String,
}

impl Sqs {
    fn connect(endpoint: &str) -> (tokio::runtime::Runtime, aws_sdk_sqs::Client) {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let client = rt.block_on(client_for(endpoint));
        (rt, client)
    }

    /// Creates a uniquely named queue on `endpoint`.
    pub fn new_queue(endpoint: &str) -> Self {
        let (rt, client) = Self::connect(endpoint);
        let name = crate::unique("q");
        let queue_url = rt
            .block_on(client.create_queue().queue_name(&name).send())
            .expect("create queue")
            .queue_url
            .expect("queue url");
        Sqs { rt, client, queue_url }
    }

    /// A uniquely named queue whose redrive policy moves a message to its own dead-letter queue
    /// once it has been received `max_receive_count` times: (queue, dead-letter queue).
    pub fn new_queue_with_dead_letters(endpoint: &str, max_receive_count: u32) -> (Self, Self) {
        let dlq = Self::new_queue(endpoint);
        let arn = dlq
            .rt
            .block_on(
                dlq.client
                    .get_queue_attributes()
                    .queue_url(&dlq.queue_url)
                    .attribute_names(QueueAttributeName::QueueArn)
                    .send(),
            )
            .expect("dead-letter queue attributes")
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("dead-letter queue ARN");
        let (rt, client) = Self::connect(endpoint);
        let policy =
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"{max_receive_count}"}}"#);
        let queue_url = rt
            .block_on(
                client
                    .create_queue()
                    .queue_name(crate::unique("q"))
                    .attributes(QueueAttributeName::RedrivePolicy, policy)
                    .send(),
            )
            .expect("create queue with a redrive policy")
            .queue_url
            .expect("queue url");
        (Sqs { rt, client, queue_url }, dlq)
    }

    /// The existing queue `name` on `endpoint`.
    pub fn named(endpoint: &str, name: &str) -> Self {
        let (rt, client) = Self::connect(endpoint);
        let queue_url = rt
            .block_on(client.get_queue_url().queue_name(name).send())
            .expect("queue exists")
            .queue_url
            .expect("queue url");
        Sqs { rt, client, queue_url }
    }

    /// Sends one message that becomes receivable only after `delay_seconds`.
    pub fn send_delayed(&self, body: &str, delay_seconds: i32) {
        self.rt
            .block_on(
                self.client
                    .send_message()
                    .queue_url(&self.queue_url)
                    .message_body(body)
                    .delay_seconds(delay_seconds)
                    .send(),
            )
            .expect("send delayed");
    }

    pub fn send_all(&self, bodies: &[String]) {
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(b)
                        .build()
                        .expect("entry")
                })
                .collect();
            let out = self
                .rt
                .block_on(
                    self.client
                        .send_message_batch()
                        .queue_url(&self.queue_url)
                        .set_entries(Some(entries))
                        .send(),
                )
                .expect("send batch");
            assert!(out.failed.is_empty(), "send failed: {:?}", out.failed);
        }
    }

    /// Receives up to 10 messages without deleting them.
    pub fn receive(&self, visibility: i32) -> Vec<Msg> {
        let out = self
            .rt
            .block_on(
                self.client
                    .receive_message()
                    .queue_url(&self.queue_url)
                    .max_number_of_messages(10)
                    .visibility_timeout(visibility)
                    .wait_time_seconds(1)
                    .send(),
            )
            .expect("receive");
        out.messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| Msg {
                id: m.message_id.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
                receipt: m.receipt_handle.unwrap_or_default(),
            })
            .collect()
    }

    /// (visible, in flight).
    pub fn depth(&self) -> (u64, u64) {
        let out = self
            .rt
            .block_on(
                self.client
                    .get_queue_attributes()
                    .queue_url(&self.queue_url)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                    .send(),
            )
            .expect("attributes");
        let a = out.attributes.unwrap_or_default();
        let get = |k| a.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }
}
