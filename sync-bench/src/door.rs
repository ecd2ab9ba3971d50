//! The door tablet of `offline-tablets`, run as a process of its own.
//!
//! A real door tablet shares neither its address space, its allocator nor
//! its CPU with twenty other replicas. In one process with them, its
//! slowest answers (260-1,170 ms) waited without running: 0-1 ms of the
//! answering thread's CPU (BENCHMARKS.md, "Index steps that end when a scan
//! waits"). So the bench starts itself again in `door-tablet` mode, pinned
//! to `--door-cpu` when given, and drives it over the child's stdin and
//! stdout: one command line in, one answer line out.
//!
//! | command | answer |
//! |---|---|
//! | `open PATH EVENT ATTENDEES` | `ready` once the event is downloaded (sync stopped again) |
//! | `scan FIRST_TICKET` | `scanning`: synced, and scanning fresh tickets at [`SCANS_PER_S`] |
//! | `count` | the number of scans the replica holds |
//! | `stop` | the scanner's answer times, a JSON array of milliseconds |
//! | `report` | JSON: the list's counts, duplicates, receive CPU |
//! | `quit` | `bye`, after the sync stopped |

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use client_core::event_model::rules::{Answer, Direction};
use client_core::{ClientCore, DocumentId, SyncHandle};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::Args;
use crate::checkin::{download, wait_for};

/// Scans the door tablet makes per second while the others come back.
pub const SCANS_PER_S: u64 = 5;
/// Fresh tickets kept for the door tablet.
pub const TICKETS: usize = 2_000;

/// The parent's handle on the door tablet's process.
pub struct DoorProcess {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

/// What the door tablet holds at the end, to compare with the others.
pub struct DoorReport {
    pub expected: u64,
    pub checked_in: u64,
    pub inside: u64,
    pub duplicates: usize,
    pub receive_cpu_s: f64,
}

impl DoorProcess {
    /// Starts this bench again in `door-tablet` mode, with the parent's
    /// arguments (server, token, trust) and on `args.door_cpu` if given.
    pub fn start(args: &Args) -> anyhow::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(child_args(std::env::args().skip(1)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(cpu) = args.door_cpu {
            crate::checkin::check_cpu(cpu)?;
            // SAFETY: between fork and exec the closure only calls
            // sched_setaffinity, which is async-signal-safe, on a stack
            // value; every thread of the new process inherits the CPU.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    crate::checkin::pin_this_thread(cpu)
                });
            }
        }
        let mut child = command
            .spawn()
            .context("starting the door tablet's process")?;
        let input = child.stdin.take().context("the door tablet's stdin")?;
        let output = BufReader::new(child.stdout.take().context("the door tablet's stdout")?);
        Ok(Self {
            child,
            input,
            output,
        })
    }

    /// Sends one command and reads its one-line answer.
    fn ask(&mut self, command: &str) -> anyhow::Result<String> {
        writeln!(self.input, "{command}")
            .and_then(|()| self.input.flush())
            .with_context(|| format!("telling the door tablet `{command}`"))?;
        let mut answer = String::new();
        if self.output.read_line(&mut answer)? == 0 {
            bail!("the door tablet's process ended (after `{command}`)");
        }
        let answer = answer.trim_end().to_owned();
        if let Some(error) = answer.strip_prefix("error ") {
            bail!("the door tablet, at `{command}`: {error}");
        }
        Ok(answer)
    }

    pub fn open(
        &mut self,
        path: &std::path::Path,
        event: DocumentId,
        attendees: usize,
    ) -> anyhow::Result<()> {
        let path = path
            .to_str()
            .context("a door tablet path that is not UTF-8")?;
        if path.contains(char::is_whitespace) {
            bail!("the door tablet's path has a space: {path}");
        }
        self.expect(&format!("open {path} {event} {attendees}"), "ready")
    }

    pub fn start_scanning(&mut self, first_ticket: usize) -> anyhow::Result<()> {
        self.expect(&format!("scan {first_ticket}"), "scanning")
    }

    pub fn scan_count(&mut self) -> anyhow::Result<u64> {
        Ok(self.ask("count")?.parse()?)
    }

    /// Stops the scanner; its answers' times in milliseconds.
    pub fn stop_scanning(&mut self) -> anyhow::Result<Vec<f64>> {
        Ok(serde_json::from_str(&self.ask("stop")?)?)
    }

    pub fn report(&mut self) -> anyhow::Result<DoorReport> {
        let report: Value = serde_json::from_str(&self.ask("report")?)?;
        let number = |key: &str| {
            report[key]
                .as_f64()
                .with_context(|| format!("`{key}` in the door tablet's report: {report}"))
        };
        Ok(DoorReport {
            expected: number("expected")? as u64,
            checked_in: number("checked_in")? as u64,
            inside: number("inside")? as u64,
            duplicates: number("duplicates")? as usize,
            receive_cpu_s: number("receive_cpu_s")?,
        })
    }

    pub fn quit(mut self) -> anyhow::Result<()> {
        self.expect("quit", "bye")?;
        self.child.wait()?;
        Ok(())
    }

    fn expect(&mut self, command: &str, wanted: &str) -> anyhow::Result<()> {
        let answer = self.ask(command)?;
        if answer != wanted {
            bail!("the door tablet answered `{answer}` to `{command}`");
        }
        Ok(())
    }
}

impl Drop for DoorProcess {
    fn drop(&mut self) {
        // After `quit` it has ended; after an error it must not outlive us.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The parent's arguments with its mode replaced by `door-tablet`.
fn child_args(parent: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut mode_next = false;
    for arg in parent {
        if mode_next {
            mode_next = false;
            continue;
        }
        if arg == "--mode" {
            mode_next = true;
            continue;
        }
        if arg.starts_with("--mode=") {
            continue;
        }
        out.push(arg);
    }
    out.extend(["--mode".to_owned(), "door-tablet".to_owned()]);
    out
}

/// The door tablet's side: answers the parent's commands until `quit` or
/// the end of its input.
pub async fn serve(args: &Args) -> anyhow::Result<()> {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let mut door = Door::default();
    while let Some(line) = lines.next_line().await? {
        let (answer, done) = match door.handle(args, &line).await {
            Ok(answer) => (answer, line == "quit"),
            // One line: the parent shows it and gives up.
            Err(error) => (format!("error {:#}", error).replace('\n', " "), false),
        };
        stdout.write_all(answer.as_bytes()).await?;
        stdout.write_all(b"\n").await?;
        stdout.flush().await?;
        if done {
            break;
        }
    }
    Ok(())
}

/// The scanning thread; its answer times when it ends.
type Scanner = std::thread::JoinHandle<anyhow::Result<Vec<f64>>>;

#[derive(Default)]
struct Door {
    core: Option<(ClientCore, DocumentId)>,
    sync: Option<SyncHandle>,
    scanner: Option<(Arc<AtomicBool>, Scanner)>,
    receive_cpu_before: Duration,
}

impl Door {
    async fn handle(&mut self, args: &Args, line: &str) -> anyhow::Result<String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["open", path, event, attendees] => {
                let event = DocumentId::parse(event).map_err(|e| anyhow::anyhow!("{e}"))?;
                let attendees: usize = attendees.parse()?;
                let core = ClientCore::open(path)?;
                let sync = core.start_sync(args.sync_config(&args.urls[0])?);
                download(
                    "the door tablet's download",
                    &core,
                    event,
                    attendees,
                    Duration::from_secs(args.timeout_secs),
                )
                .await?;
                sync.stop().await;
                self.core = Some((core, event));
                Ok("ready".into())
            }
            ["scan", first] => {
                let first: usize = first.parse()?;
                let (core, event) = self.core.clone().context("`open` first")?;
                self.receive_cpu_before = core.sync_receive_cpu();
                self.sync = Some(core.start_sync(args.sync_config(&args.urls[0])?));
                wait_for(
                    "the door tablet's connection",
                    Duration::from_secs(args.timeout_secs),
                    || core.sync_status().connected,
                )
                .await?;
                let stop = Arc::new(AtomicBool::new(false));
                let scanner = {
                    let stop = stop.clone();
                    std::thread::spawn(move || scan(&core, event, first, &stop))
                };
                self.scanner = Some((stop, scanner));
                Ok("scanning".into())
            }
            ["count"] => {
                let (core, event) = self.core.as_ref().context("`open` first")?;
                Ok(core.scan_count(*event)?.to_string())
            }
            ["stop"] => {
                let (stop, scanner) = self.scanner.take().context("`scan` first")?;
                stop.store(true, Ordering::Relaxed);
                let latencies = scanner
                    .join()
                    .map_err(|_| anyhow::anyhow!("the door tablet's scanner panicked"))??;
                Ok(serde_json::to_string(&latencies)?)
            }
            ["report"] => {
                let (core, event) = self.core.as_ref().context("`open` first")?;
                let counts = core.counts(*event, Some("main"))?;
                Ok(json!({
                    "expected": counts.expected,
                    "checked_in": counts.checked_in,
                    "inside": counts.inside,
                    "duplicates": core.duplicates(*event)?.len(),
                    "receive_cpu_s": (core.sync_receive_cpu() - self.receive_cpu_before).as_secs_f64(),
                })
                .to_string())
            }
            ["quit"] => {
                if let Some(sync) = self.sync.take() {
                    sync.stop().await;
                }
                Ok("bye".into())
            }
            _ => bail!("unknown command `{line}`"),
        }
    }
}

/// Scans fresh tickets from `T{first}` at [`SCANS_PER_S`] until `stop`,
/// timing each answer; every one must admit.
fn scan(
    core: &ClientCore,
    event: DocumentId,
    first: usize,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::new();
    let period = Duration::from_millis(1000 / SCANS_PER_S);
    let mut next = Instant::now();
    for n in 0..TICKETS {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let code = format!("T{:07}", first + n);
        let asked = Instant::now();
        let result = core.check_in(event, &code, "main", Direction::Entry)?;
        latencies.push(asked.elapsed().as_secs_f64() * 1e3);
        if result.answer != Answer::Admitted {
            bail!("the door tablet answered {:?}", result.answer);
        }
        next += period;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok(latencies)
}

#[cfg(test)]
mod tests {
    use super::child_args;

    #[test]
    fn the_child_gets_the_parents_arguments_in_door_tablet_mode() {
        let parent = [
            "--url",
            "ws://127.0.0.1:1/sync",
            "--mode",
            "offline-tablets",
            "--clients",
            "3",
            "--mode=offline-tablets",
        ]
        .map(String::from);
        assert_eq!(
            child_args(parent.into_iter()),
            [
                "--url",
                "ws://127.0.0.1:1/sync",
                "--clients",
                "3",
                "--mode",
                "door-tablet"
            ]
        );
    }
}
