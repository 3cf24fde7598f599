//! The stub tracer: runs the command and reports only the command itself.
//! Used where no real tracer exists, when tracing is disabled, and in tests.

use super::{EventSink, ExecEvent, Launch, Tracer, now_ns};

pub struct StubTracer;

impl Tracer for StubTracer {
    fn name(&self) -> &'static str {
        "stub"
    }

    fn run(
        self: Box<Self>,
        launch: &Launch,
        sink: &EventSink,
        started: &dyn Fn(i32),
    ) -> std::io::Result<i32> {
        let start = now_ns();
        let (mut child, pid) = launch.spawn(started)?;
        let status = child.wait()?;
        let code = exit_code(status);
        sink.send(ExecEvent {
            timestamp: start,
            pid,
            ppid: std::process::id() as i32,
            command: super::detect::basename(&launch.program.to_string_lossy()).to_string(),
            args: launch
                .args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            working_dir: launch.cwd.to_string_lossy().into_owned(),
            exit_code: Some(code),
            duration: Some((now_ns() - start).max(0) as u64),
        });
        Ok(code)
    }
}

pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
