//! What `up` shows while it works: on a terminal, one line per host with
//! its current step and elapsed time (indicatif); otherwise one plain line
//! per step; with `--output json`, nothing until the final document.

use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Bars,
    Lines,
    Quiet,
}

impl Style {
    /// Bars on a terminal, plain lines otherwise, nothing for JSON.
    pub fn detect(json: bool) -> Style {
        match (json, std::io::IsTerminal::is_terminal(&std::io::stderr())) {
            (true, _) => Style::Quiet,
            (false, true) => Style::Bars,
            (false, false) => Style::Lines,
        }
    }
}

pub struct Progress {
    style: Style,
    multi: MultiProgress,
    /// Indexed like the inventory's hosts.
    hosts: Vec<Host>,
    width: usize,
    start: Instant,
}

/// One host's line.
struct Host {
    name: String,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(style: Style, names: &[String]) -> Progress {
        let multi = MultiProgress::with_draw_target(match style {
            Style::Bars => ProgressDrawTarget::stderr(),
            _ => ProgressDrawTarget::hidden(),
        });
        let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
        let template = format!("{{spinner}} {{prefix:{width}}} {{elapsed:>4}} {{msg}}");
        let hosts = names
            .iter()
            .map(|name| {
                let bar = (style == Style::Bars).then(|| {
                    let style = ProgressStyle::with_template(&template).expect("a valid template");
                    let bar = multi.add(ProgressBar::new_spinner().with_style(style).with_prefix(name.clone()));
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                Host { name: name.clone(), bar }
            })
            .collect();
        Progress { style, multi, hosts, width, start: Instant::now() }
    }

    /// Host `i` is now doing `step`.
    pub fn step(&self, i: usize, step: &str) {
        let h = &self.hosts[i];
        match (&h.bar, self.style) {
            (Some(bar), _) => bar.set_message(step.to_string()),
            (None, Style::Lines) => eprintln!("[{:>5.1}s] {:w$}  {step}", self.start.elapsed().as_secs_f64(), h.name, w = self.width),
            _ => {}
        }
    }

    /// Host `i` is done (`ok`) or failed, with a last word.
    pub fn finish(&self, i: usize, ok: bool, last: &str) {
        let h = &self.hosts[i];
        let mark = if ok { "✓" } else { "✗" };
        match (&h.bar, self.style) {
            (Some(bar), _) => {
                bar.set_style(
                    ProgressStyle::with_template(&format!("{mark} {{prefix:{}}} {{elapsed:>4}} {{msg}}", self.width))
                        .expect("a valid template"),
                );
                bar.finish_with_message(last.to_string());
            }
            (None, Style::Lines) => {
                eprintln!("[{:>5.1}s] {:w$}  {mark} {last}", self.start.elapsed().as_secs_f64(), h.name, w = self.width)
            }
            _ => {}
        }
    }

    /// A line that is not about one host (above the bars).
    pub fn say(&self, line: &str) {
        match self.style {
            Style::Bars => {
                let _ = self.multi.println(line);
            }
            Style::Lines => eprintln!("{line}"),
            Style::Quiet => {}
        }
    }

    /// Runs `f` (a question on the terminal) with the bars hidden.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.multi.suspend(f)
    }

    /// Removes the bars before the summary is printed.
    pub fn clear(&self) {
        let _ = self.multi.clear();
    }
}
