//! Connection admission: a node-wide cap on open sockets and a cap per client IP
//! (`WSPROXY_MAX_CONNECTIONS`, `WSPROXY_MAX_CONNECTIONS_PER_IP`; 0 is unlimited). Check and
//! count happen under one lock, so two racing upgrades cannot both take the last slot. A slot
//! is a guard that the socket task holds; dropping it frees the slot at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Why a socket was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Total(usize),
    PerIp(IpAddr, usize),
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// The limits and the sockets counted against them.
#[derive(Clone)]
pub struct Admission {
    max_total: usize,
    max_per_ip: usize,
    counts: Arc<Mutex<Counts>>,
}

/// One admitted socket; frees its slot when dropped.
pub struct Slot {
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl Admission {
    pub fn new(max_total: usize, max_per_ip: usize) -> Admission {
        Admission { max_total, max_per_ip, counts: Arc::default() }
    }

    /// Takes a slot for a socket from `ip`, or says which limit is reached.
    pub fn admit(&self, ip: IpAddr) -> Result<Slot, Refused> {
        let mut c = self.counts.lock().expect("admission counts are never poisoned");
        if self.max_total > 0 && c.total >= self.max_total {
            return Err(Refused::Total(self.max_total));
        }
        let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
        if self.max_per_ip > 0 && from_ip >= self.max_per_ip {
            return Err(Refused::PerIp(ip, self.max_per_ip));
        }
        c.total += 1;
        c.per_ip.insert(ip, from_ip + 1);
        Ok(Slot { ip, counts: self.counts.clone() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().expect("admission counts are never poisoned");
        c.total -= 1;
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_and_slots_come_back() {
        let a = Admission::new(3, 2);
        let (x, y): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let s1 = a.admit(x).unwrap();
        let _s2 = a.admit(x).unwrap();
        assert_eq!(a.admit(x).err(), Some(Refused::PerIp(x, 2)));
        let _s3 = a.admit(y).unwrap();
        assert_eq!(a.admit(y).err(), Some(Refused::Total(3)));
        drop(s1);
        assert!(a.admit(x).is_ok());
        assert!(a.counts.lock().unwrap().per_ip.len() <= 2);
    }

    #[test]
    fn unlimited_when_zero() {
        let a = Admission::new(0, 0);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let slots: Vec<Slot> = (0..1000).map(|_| a.admit(ip).unwrap()).collect();
        assert_eq!(slots.len(), 1000);
    }

    #[test]
    fn racing_admissions_never_exceed_the_limit() {
        let a = Admission::new(50, 0);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let a = a.clone();
                std::thread::spawn(move || (0..100).filter_map(|_| a.admit(ip).ok()).collect::<Vec<_>>())
            })
            .collect();
        // Keep every slot alive until all threads are done.
        let admitted: Vec<Vec<Slot>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(admitted.iter().map(Vec::len).sum::<usize>(), 50);
    }
}
