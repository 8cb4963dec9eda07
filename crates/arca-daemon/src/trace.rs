//! `tracing` events of arca's own code (targets starting with `arca`), forwarded to the
//! daemon's [`EventLog`] as one line each: the message, then `key=value` for every field.
//!
//! The web server reports its security events this way (a failed login with the client's
//! address, a lock of an address): they reach the same log as the daemon's other events.
//! Nothing secret is ever put in a field. [`install`] sets the process-wide subscriber
//! once; later calls (a second daemon in the same test process) keep the first one.

use std::fmt::Write as _;
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::runner::EventLog;

/// Forwards events at level INFO and above from `arca*` targets to an [`EventLog`].
pub struct Forward(pub Arc<dyn EventLog>);

#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for Forward {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("arca") && *metadata.level() <= Level::INFO
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = Line::default();
        event.record(&mut line);
        self.0
            .event(None, &format!("{}{}", line.message, line.fields));
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// Makes [`Forward`] to `events` the process's subscriber, unless one is set already.
pub fn install(events: Arc<dyn EventLog>) {
    let _ = tracing::subscriber::set_global_default(Forward(events));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Lines(Mutex<Vec<String>>);

    impl EventLog for Lines {
        fn event(&self, _job: Option<&str>, message: &str) {
            self.0.lock().unwrap().push(message.to_string());
        }
    }

    #[test]
    fn arca_events_become_lines_and_others_are_dropped() {
        let lines = Arc::new(Lines(Mutex::new(Vec::new())));
        let sub = Forward(lines.clone());
        tracing::subscriber::with_default(sub, || {
            tracing::warn!(target: "arca::web", peer = %"127.0.0.1", tries = 3, "wrong token");
            tracing::warn!(target: "hyper", "not ours");
            tracing::debug!(target: "arca::web", "too detailed");
        });
        assert_eq!(
            *lines.0.lock().unwrap(),
            vec!["wrong token peer=127.0.0.1 tries=3".to_string()]
        );
    }
}
