//! The command line's logger: runc's `--log FILE` (appended; default stderr) and `--log-format
//! text|json`. containerd's runc shim reads the last `"level":"error"` line of the JSON log to
//! explain a failure, so errors always get a line.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use log::{Level, LevelFilter, Log, Metadata, Record};

use super::args::LogFormat;

struct Logger {
    out: Mutex<Box<dyn Write + Send>>,
    format: LogFormat,
    level: LevelFilter,
}

/// Install the logger.
pub fn init(path: Option<&Path>, format: LogFormat, debug: bool) -> anyhow::Result<()> {
    let out: Box<dyn Write + Send> = match path {
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("open log file {}", p.display()))?,
        ),
        None => Box::new(std::io::stderr()),
    };
    let level = if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Warn
    };
    log::set_boxed_logger(Box::new(Logger {
        out: Mutex::new(out),
        format,
        level,
    }))
    .context("install the logger")?;
    log::set_max_level(level);
    Ok(())
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// One log line in `format`.
fn line(format: LogFormat, level: Level, msg: &str, time: &str) -> String {
    match format {
        LogFormat::Json => {
            let v = serde_json::json!({"level": level_name(level), "msg": msg, "time": time});
            format!("{v}\n")
        }
        LogFormat::Text => format!(
            "time={time:?} level={} msg={}\n",
            level_name(level),
            serde_json::Value::from(msg)
        ),
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let time = super::time::rfc3339(std::time::SystemTime::now());
        let text = line(
            self.format,
            record.level(),
            &record.args().to_string(),
            &time,
        );
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(text.as_bytes());
    }

    fn flush(&self) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_level_msg_time() {
        let l = line(LogFormat::Json, Level::Error, "boom \"x\"", "T");
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "boom \"x\"");
        assert_eq!(v["time"], "T");
        assert!(l.ends_with('\n'));
    }

    #[test]
    fn text_lines_quote_the_message() {
        let l = line(LogFormat::Text, Level::Warn, "a b", "T");
        assert_eq!(l, "time=\"T\" level=warning msg=\"a b\"\n");
    }
}
