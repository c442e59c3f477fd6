//! Typed reads of one setting at a time from the variables (the `--config` file, then the
//! environment), collecting every problem instead of stopping at the first.
//!
//! Settings are named by the consts of [`super::env_vars`], never by a string, so a read
//! cannot name a setting the table does not have; an empty or missing variable reads as the
//! table's default.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::IpAddr;
use std::time::Duration;

use super::env_vars::EnvVar;

#[cfg(test)]
thread_local! {
    /// The settings this thread's reads asked for (a test checks that every row is read).
    pub(super) static READ: std::cell::RefCell<std::collections::HashSet<&'static str>> = Default::default();
}

/// Reads typed values from a map of variables; every problem is kept for the one report.
pub(super) struct Reader<'a> {
    vars: &'a HashMap<String, String>,
    errors: Vec<String>,
    /// Settings that are accepted but risky or without effect, logged once at start.
    pub(super) warnings: Vec<String>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(vars: &'a HashMap<String, String>) -> Self {
        Reader { vars, errors: Vec::new(), warnings: Vec::new() }
    }

    /// The value that was read, or every problem found while reading.
    pub(super) fn finish<T>(self, value: T) -> Result<T, Vec<String>> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }

    /// All the variables, for settings named by a prefix rather than by the table.
    pub(super) fn vars(&self) -> &'a HashMap<String, String> {
        self.vars
    }

    /// The trimmed value, or the default when the variable is missing or blank.
    pub(super) fn string(&self, var: EnvVar) -> String {
        #[cfg(test)]
        READ.with(|read| read.borrow_mut().insert(var.name));
        match self.vars.get(var.name) {
            Some(v) if !v.trim().is_empty() => v.trim().to_owned(),
            _ => var.default.to_owned(),
        }
    }

    /// A setting kept for the reference's deployments that has no effect here.
    pub(super) fn accept(&self, var: EnvVar) {
        let _ = self.string(var);
    }

    /// A comma-separated list, entries trimmed, empty entries dropped.
    pub(super) fn list(&self, var: EnvVar) -> Vec<String> {
        self.string(var).split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }

    pub(super) fn parse<T: std::str::FromStr + Default>(&mut self, var: EnvVar, what: &str) -> T {
        let raw = self.string(var);
        raw.parse().unwrap_or_else(|_| {
            self.fail(var, format!("'{raw}' is not {what}"));
            T::default()
        })
    }

    pub(super) fn boolean(&mut self, var: EnvVar) -> bool {
        let raw = self.string(var);
        match raw.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => true,
            "false" | "no" | "off" | "0" => false,
            _ => {
                self.fail(var, format!("'{raw}' is not a boolean (true or false)"));
                false
            }
        }
    }

    pub(super) fn duration(&mut self, var: EnvVar) -> Duration {
        let raw = self.string(var);
        parse_duration(&raw).unwrap_or_else(|e| {
            self.fail(var, e);
            Duration::ZERO
        })
    }

    /// An IP address; `fallback` when the setting is empty or invalid (the error is kept).
    pub(super) fn ip(&mut self, var: EnvVar, fallback: IpAddr) -> IpAddr {
        let raw = self.string(var);
        if raw.is_empty() {
            return fallback;
        }
        raw.parse().unwrap_or_else(|_| {
            self.fail(var, format!("'{raw}' is not an IP address"));
            fallback
        })
    }

    /// Records a problem with one setting: `NAME: text`.
    pub(super) fn fail(&mut self, var: EnvVar, text: impl Display) {
        self.errors.push(format!("{}: {text}", var.name));
    }

    /// Records a problem that names several settings itself.
    pub(super) fn error(&mut self, text: impl Into<String>) {
        self.errors.push(text.into());
    }

    /// Whether a problem with this setting was already recorded (its value did not parse).
    pub(super) fn has_error(&self, var: EnvVar) -> bool {
        self.errors.iter().any(|e| e.strip_prefix(var.name).is_some_and(|rest| rest.starts_with(':')))
    }

    /// `NAME: must be greater than zero` when `zero`, unless the value already failed to parse.
    pub(super) fn above_zero(&mut self, var: EnvVar, zero: bool) {
        if zero && !self.has_error(var) {
            self.fail(var, "must be greater than zero");
        }
    }

    pub(super) fn warn(&mut self, text: impl Into<String>) {
        self.warnings.push(text.into());
    }
}

/// Parses the reference's duration forms: `10 seconds`, `1 second`, `5m`, `500ms`, `30 days`,
/// or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = (s[..split].trim(), s[split..].trim());
    let value: f64 = num.parse().map_err(|_| format!("'{s}' is not a duration (e.g. '10 seconds', '5m', '500ms')"))?;
    let unit_secs = match unit.to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 0.001,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        _ => return Err(format!("'{s}' has an unknown time unit '{unit}'")),
    };
    Ok(Duration::from_secs_f64(value * unit_secs))
}
