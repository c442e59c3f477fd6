//! The credit of a `pull=true` consume socket: records the client granted with
//! `{"request":N}` and has not received yet. Grants add up to a cap
//! (`WSPROXY_CONSUMER_MAX_CREDIT`); every record sent (a batch frame counts its records, an
//! error frame in a record's place counts as that record) takes one. Pure data: the consume
//! loop owns one and asks it how many records it may send.

/// Records a pull socket may still send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credit {
    available: u64,
    max: u64,
}

impl Credit {
    /// No credit yet; grants add up to at most `max` (at least 1).
    pub fn new(max: u32) -> Self {
        Credit { available: 0, max: u64::from(max.max(1)) }
    }

    /// Adds `n` records, up to the cap.
    pub fn grant(&mut self, n: u64) {
        self.available = self.available.saturating_add(n).min(self.max);
    }

    /// How many records may be sent now.
    pub fn available(&self) -> usize {
        usize::try_from(self.available).unwrap_or(usize::MAX)
    }

    /// Takes `n` records that were sent (never below zero).
    pub fn take(&mut self, n: usize) {
        self.available = self.available.saturating_sub(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_starts_empty_adds_up_to_the_cap_and_is_taken_per_record() {
        let mut c = Credit::new(10_000);
        assert_eq!(c.available(), 0);
        c.grant(10);
        c.grant(5);
        assert_eq!(c.available(), 15);
        c.take(4);
        assert_eq!(c.available(), 11);
        c.take(100);
        assert_eq!(c.available(), 0);
        c.grant(u64::MAX);
        assert_eq!(c.available(), 10_000, "capped");
        c.grant(1);
        assert_eq!(c.available(), 10_000);
        assert_eq!(Credit::new(0).max, 1);
    }
}
