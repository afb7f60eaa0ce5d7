//! Parsing ffmpeg's `-progress` output: `key=value` lines in blocks that end with
//! `progress=continue` or `progress=end`.

#[derive(Debug, Clone, PartialEq)]
pub struct EncodeProgress {
    /// 0–100, never decreasing; 100 only once every output is written.
    pub percent: f64,
    pub fps: Option<f64>,
    /// Media seconds per wall second.
    pub speed: Option<f64>,
    pub eta_seconds: Option<f64>,
    pub out_time_seconds: f64,
}

/// Percent stays below this until the outputs are complete; only `encode` reports 100.
const RUNNING_CAP: f64 = 99.9;

#[derive(Debug)]
pub(crate) struct ProgressParser {
    duration: f64,
    out_time: Option<f64>,
    fps: Option<f64>,
    speed: Option<f64>,
    best_percent: f64,
}

impl ProgressParser {
    pub fn new(duration_seconds: f64) -> Self {
        ProgressParser {
            duration: duration_seconds.max(0.001),
            out_time: None,
            fps: None,
            speed: None,
            best_percent: 0.0,
        }
    }

    /// Feeds one line; returns a report when it closes a block.
    pub fn line(&mut self, line: &str) -> Option<EncodeProgress> {
        let (key, value) = line.split_once('=')?;
        let number = || value.trim().trim_end_matches('x').parse::<f64>().ok().filter(|v| v.is_finite());
        match key.trim() {
            // out_time_ms is microseconds too (an old ffmpeg naming slip); either will do.
            "out_time_us" | "out_time_ms" => {
                if let Some(us) = number().filter(|us| *us >= 0.0) {
                    self.out_time = Some(us / 1e6);
                }
            }
            "fps" => self.fps = number().filter(|f| *f > 0.0),
            "speed" => self.speed = number().filter(|s| *s > 0.0),
            "progress" => return Some(self.report()),
            _ => {}
        }
        None
    }

    fn report(&mut self) -> EncodeProgress {
        let out_time = self.out_time.unwrap_or(0.0);
        let percent = (out_time / self.duration * 100.0).clamp(0.0, RUNNING_CAP);
        self.best_percent = self.best_percent.max(percent);
        let eta_seconds = self.speed.map(|s| ((self.duration - out_time).max(0.0)) / s);
        EncodeProgress {
            percent: self.best_percent,
            fps: self.fps,
            speed: self.speed,
            eta_seconds,
            out_time_seconds: out_time,
        }
    }

    /// The report for a finished encode.
    pub fn done(&self) -> EncodeProgress {
        EncodeProgress {
            percent: 100.0,
            fps: self.fps,
            speed: self.speed,
            eta_seconds: Some(0.0),
            out_time_seconds: self.out_time.unwrap_or(self.duration),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_become_reports_with_eta_from_speed() {
        let mut p = ProgressParser::new(10.0);
        let mut reports = Vec::new();
        for line in "frame=10\nfps=0.00\nout_time_us=N/A\nspeed=N/A\nprogress=continue\n\
                     frame=150\nfps=75.5\nout_time_us=5000000\nspeed=2.50x\nprogress=continue\n\
                     out_time_us=-9223372036854775807\nprogress=continue\n"
            .lines()
        {
            reports.extend(p.line(line));
        }
        assert_eq!(reports.len(), 3);
        assert_eq!(reports[0].percent, 0.0);
        assert_eq!(reports[0].fps, None);
        assert_eq!(reports[1].percent, 50.0);
        assert_eq!(reports[1].fps, Some(75.5));
        assert_eq!(reports[1].eta_seconds, Some(2.0));
        assert_eq!(reports[2].percent, 50.0, "never goes backwards");
        assert_eq!(p.done().percent, 100.0);
    }
}
