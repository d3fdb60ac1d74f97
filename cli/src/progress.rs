//! How `toolmesh call` shows the progress its callee reports: a live bar redrawn on one line of
//! a terminal, or plain `progress 3/10: message` lines when stderr is piped; stdout keeps the result.

use std::io::Write;
use std::sync::mpsc;
use std::thread::JoinHandle;
use toolmesh_core::report::{Notification, NotificationObserver};
use toolmesh_core::text::escape;

/// Columns a live line may take when the terminal's width is unknown (COLUMNS unset): one less
/// than the narrowest common terminal, so the line never wraps and `\r` redraws it in place.
const DEFAULT_COLUMNS: usize = 80;
const BAR_WIDTH: usize = 20;

/// One update for the printer thread; `None` ends it.
type Update = Option<(f64, Option<f64>, Option<String>)>;

/// Writes progress to stderr on a thread of its own, so that a slow terminal or a full pipe
/// never holds the runtime thread that received the notification.
pub struct ProgressDisplay {
    updates: mpsc::Sender<Update>,
    printer: JoinHandle<()>,
}

impl ProgressDisplay {
    /// Starts the printer; `live` redraws one line (a terminal), otherwise each update is a line.
    /// The observer goes in the call's context: it asks the callee for progress alone.
    pub fn start(live: bool) -> (ProgressDisplay, NotificationObserver) {
        let (updates, received) = mpsc::channel::<Update>();
        let columns = std::env::var("COLUMNS").ok().and_then(|c| c.parse::<usize>().ok()).filter(|&c| c > 20).unwrap_or(DEFAULT_COLUMNS);
        let printer = std::thread::spawn(move || print(&received, live, columns - 1));
        let sender = updates.clone();
        let observer = NotificationObserver::progress(move |notification| {
            if let Notification::Progress { progress, total, message } = notification {
                let _ = sender.send(Some((progress, total, message)));
            }
        });
        (ProgressDisplay { updates, printer }, observer)
    }

    /// Prints what is queued, clears a live line, and returns once stderr has it all, so that
    /// what the command prints next comes after it.
    pub async fn finish(self) {
        let _ = self.updates.send(None);
        let printer = self.printer;
        let _ = tokio::task::spawn_blocking(move || printer.join()).await;
    }
}

fn print(updates: &mpsc::Receiver<Update>, live: bool, columns: usize) {
    let mut drawn = false;
    while let Ok(Some((progress, total, message))) = updates.recv() {
        let mut err = std::io::stderr().lock();
        let _ = if live {
            drawn = true;
            write!(err, "\r\x1b[2K{}", bar(progress, total, message.as_deref(), columns))
        } else {
            writeln!(err, "{}", line(progress, total, message.as_deref()))
        };
        let _ = err.flush();
    }
    if drawn {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
}

/// `progress 3/10: message` (or `progress 3`), the callee's message escaped.
fn line(progress: f64, total: Option<f64>, message: Option<&str>) -> String {
    let mut line = format!("progress {}", count(progress, total));
    if let Some(message) = message {
        line.push_str(": ");
        line.push_str(&escape(message));
    }
    line
}

/// `[#########           ] 3/10 message` cut to `columns` characters; without a total, no bar.
fn bar(progress: f64, total: Option<f64>, message: Option<&str>, columns: usize) -> String {
    let mut text = match total.filter(|t| *t > 0.0) {
        Some(total) => {
            let filled = ((progress / total).clamp(0.0, 1.0) * BAR_WIDTH as f64).round() as usize;
            format!("[{}{}] {}", "#".repeat(filled), " ".repeat(BAR_WIDTH - filled), count(progress, Some(total)))
        }
        None => format!("progress {}", count(progress, None)),
    };
    if let Some(message) = message {
        text.push(' ');
        text.push_str(&escape(message));
    }
    text.chars().take(columns).collect()
}

/// `3/10`, `3`, `2.5/10`: whole numbers without a fraction.
fn count(progress: f64, total: Option<f64>) -> String {
    match total {
        Some(total) => format!("{progress}/{total}"),
        None => progress.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piped_lines_say_the_count_and_the_escaped_message() {
        assert_eq!(line(3.0, Some(10.0), Some("copying")), "progress 3/10: copying");
        assert_eq!(line(2.5, None, None), "progress 2.5");
        assert_eq!(line(1.0, Some(2.0), Some("a\u{1b}[2Jb\nc")), "progress 1/2: a\\u{1b}[2Jb\\u{a}c");
    }

    #[test]
    fn the_live_bar_fills_with_progress_and_never_outgrows_the_line() {
        assert_eq!(bar(5.0, Some(10.0), Some("half"), 79), format!("[{}{}] 5/10 half", "#".repeat(10), " ".repeat(10)));
        assert_eq!(bar(12.0, Some(10.0), None, 79), format!("[{}] 12/10", "#".repeat(20)), "more than the total fills it");
        assert_eq!(bar(4.0, None, Some("steps"), 79), "progress 4 steps");
        assert_eq!(bar(1.0, Some(2.0), Some(&"x".repeat(200)), 40).chars().count(), 40);
    }
}
