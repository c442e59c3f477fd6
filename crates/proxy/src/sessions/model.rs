//! The session documents of `_wsproxy.session.state`, in the Scala proxy's JSON format (its
//! section 4.8), and the pure rules for adding and removing socket instances.
//!
//! A session is keyed by its id: the `groupId` of consumer sockets, the `clientId` of producer
//! sockets. Records written by Scala nodes are read as they are (including the pre-1.0 consumer
//! format), and ours are read by Scala nodes, so both can share a cluster during a migration.

use serde::{Deserialize, Serialize};

/// One session document (the value of a session-state record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "session_type")]
pub enum Session {
    #[serde(rename_all = "camelCase")]
    ConsumerSession { session_id: String, group_id: String, max_connections: u32, instances: Vec<Instance> },
    #[serde(rename_all = "camelCase")]
    ProducerSession { session_id: String, max_connections: u32, instances: Vec<Instance> },
}

/// One open socket of a session, owned by the node `serverId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "client_instance_type")]
pub enum Instance {
    #[serde(rename_all = "camelCase")]
    ConsumerInstance { id: ConsumerInstanceId, server_id: String },
    #[serde(rename_all = "camelCase")]
    ProducerInstance { id: ProducerInstanceId, server_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerInstanceId {
    pub group_id: String,
    pub client_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerInstanceId {
    pub producer_id: String,
    /// Always written, as `null` when absent (the reference's encoder does the same).
    pub instance_id: Option<String>,
}

/// The pre-1.0 consumer session format, still accepted on read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OldSession {
    consumer_group_id: String,
    consumers: Vec<OldConsumer>,
    consumer_limit: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OldConsumer {
    id: String,
    server_id: String,
}

/// Which kind of socket a session holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Consumer,
    Producer,
}

/// Why an instance may not join a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The session already has `limit` instances.
    Full { session_id: String, limit: u32 },
    /// An instance with the same id is already registered.
    Duplicate(Instance),
    /// The id names a session of the other kind (a consumer group and a producer clientId).
    OtherKind { session_id: String, existing: Kind },
}

impl Instance {
    pub fn consumer(group_id: &str, client_id: &str, server_id: &str) -> Instance {
        Instance::ConsumerInstance {
            id: ConsumerInstanceId { group_id: group_id.to_owned(), client_id: client_id.to_owned() },
            server_id: server_id.to_owned(),
        }
    }

    pub fn producer(producer_id: &str, instance_id: Option<&str>, server_id: &str) -> Instance {
        Instance::ProducerInstance {
            id: ProducerInstanceId { producer_id: producer_id.to_owned(), instance_id: instance_id.map(str::to_owned) },
            server_id: server_id.to_owned(),
        }
    }

    pub fn server_id(&self) -> &str {
        match self {
            Instance::ConsumerInstance { server_id, .. } | Instance::ProducerInstance { server_id, .. } => server_id,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Instance::ConsumerInstance { .. } => Kind::Consumer,
            Instance::ProducerInstance { .. } => Kind::Producer,
        }
    }

    /// The same socket identity, whichever node owns it.
    pub fn same_id(&self, other: &Instance) -> bool {
        match (self, other) {
            (Instance::ConsumerInstance { id: a, .. }, Instance::ConsumerInstance { id: b, .. }) => a == b,
            (Instance::ProducerInstance { id: a, .. }, Instance::ProducerInstance { id: b, .. }) => a == b,
            _ => false,
        }
    }

    /// The client id the user chose (consumer `clientId`, producer `instanceId` or `clientId`).
    pub fn describe(&self) -> String {
        match self {
            Instance::ConsumerInstance { id, .. } => id.client_id.clone(),
            Instance::ProducerInstance { id, .. } => id.instance_id.clone().unwrap_or_else(|| id.producer_id.clone()),
        }
    }
}

impl Session {
    /// An empty session for the id, holding sockets of `kind`.
    pub fn new(kind: Kind, session_id: &str, max_connections: u32) -> Session {
        match kind {
            Kind::Consumer => Session::ConsumerSession {
                session_id: session_id.to_owned(),
                group_id: session_id.to_owned(),
                max_connections,
                instances: Vec::new(),
            },
            Kind::Producer => {
                Session::ProducerSession { session_id: session_id.to_owned(), max_connections, instances: Vec::new() }
            }
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Session::ConsumerSession { .. } => Kind::Consumer,
            Session::ProducerSession { .. } => Kind::Producer,
        }
    }

    pub fn session_id(&self) -> &str {
        match self {
            Session::ConsumerSession { session_id, .. } | Session::ProducerSession { session_id, .. } => session_id,
        }
    }

    pub fn instances(&self) -> &[Instance] {
        match self {
            Session::ConsumerSession { instances, .. } | Session::ProducerSession { instances, .. } => instances,
        }
    }

    fn instances_mut(&mut self) -> &mut Vec<Instance> {
        match self {
            Session::ConsumerSession { instances, .. } | Session::ProducerSession { instances, .. } => instances,
        }
    }

    pub fn max_connections(&self) -> u32 {
        match self {
            Session::ConsumerSession { max_connections, .. } | Session::ProducerSession { max_connections, .. } => {
                *max_connections
            }
        }
    }

    /// The session with `instance` added under the current `limit` (0: unlimited), or why not.
    /// The limit is the one configured now: a changed limit applies from the next socket on.
    pub fn admit(&self, instance: Instance, limit: u32) -> Result<Session, Refusal> {
        if self.kind() != instance.kind() {
            return Err(Refusal::OtherKind { session_id: self.session_id().to_owned(), existing: self.kind() });
        }
        if let Some(existing) = self.instances().iter().find(|i| i.same_id(&instance)) {
            return Err(Refusal::Duplicate(existing.clone()));
        }
        if limit > 0 && self.instances().len() as u32 >= limit {
            return Err(Refusal::Full { session_id: self.session_id().to_owned(), limit });
        }
        let mut next = self.clone();
        match &mut next {
            Session::ConsumerSession { max_connections, .. } | Session::ProducerSession { max_connections, .. } => {
                *max_connections = limit
            }
        }
        next.instances_mut().push(instance);
        Ok(next)
    }

    /// The session without the instances `gone` selects, or `None` when nothing changes.
    pub fn without(&self, gone: impl Fn(&Instance) -> bool) -> Option<Session> {
        if !self.instances().iter().any(&gone) {
            return None;
        }
        let mut next = self.clone();
        next.instances_mut().retain(|i| !gone(i));
        Some(next)
    }

    /// The record value: compact JSON, every field written.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("sessions always serialize")
    }

    /// Reads a record value in the current format or the pre-1.0 consumer format.
    pub fn from_json(bytes: &[u8]) -> Result<Session, serde_json::Error> {
        serde_json::from_slice::<Session>(bytes).or_else(|current| match serde_json::from_slice::<OldSession>(bytes) {
            Ok(old) => Ok(Session::ConsumerSession {
                session_id: old.consumer_group_id.clone(),
                group_id: old.consumer_group_id.clone(),
                max_connections: old.consumer_limit,
                instances: old
                    .consumers
                    .into_iter()
                    .map(|c| Instance::consumer(&old.consumer_group_id, &c.id, &c.server_id))
                    .collect(),
            }),
            Err(_) => Err(current),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_reference_consumer_format() {
        let scala = br#"{"session_type":"ConsumerSession","sessionId":"g1","groupId":"g1","maxConnections":2,"instances":[{"client_instance_type":"ConsumerInstance","id":{"groupId":"g1","clientId":"c1"},"serverId":"node-9"}]}"#;
        let s = Session::from_json(scala).unwrap();
        assert_eq!(s.instances(), &[Instance::consumer("g1", "c1", "node-9")]);
        assert_eq!(s.max_connections(), 2);
        assert_eq!(s.to_json(), scala.to_vec(), "we write exactly what the reference writes");
    }

    #[test]
    fn reads_and_writes_the_reference_producer_format() {
        let scala = br#"{"session_type":"ProducerSession","sessionId":"p","maxConnections":1,"instances":[{"client_instance_type":"ProducerInstance","id":{"producerId":"p","instanceId":null},"serverId":"n1"},{"client_instance_type":"ProducerInstance","id":{"producerId":"p","instanceId":"i2"},"serverId":"n2"}]}"#;
        let s = Session::from_json(scala).unwrap();
        assert_eq!(s.kind(), Kind::Producer);
        assert_eq!(s.instances()[1], Instance::producer("p", Some("i2"), "n2"));
        assert_eq!(s.to_json(), scala.to_vec());
    }

    #[test]
    fn reads_the_pre_1_0_format() {
        let old = br#"{"consumerGroupId":"g","consumers":[{"id":"c1","serverId":"n1"}],"consumerLimit":3}"#;
        let s = Session::from_json(old).unwrap();
        assert_eq!(s, Session::new(Kind::Consumer, "g", 3).admit(Instance::consumer("g", "c1", "n1"), 3).unwrap());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Session::from_json(b"{\"session_type\":\"Nope\"}").is_err());
        assert!(Session::from_json(b"not json").is_err());
    }

    #[test]
    fn admits_up_to_the_limit_and_refuses_duplicates() {
        let s = Session::new(Kind::Consumer, "g", 2);
        let s = s.admit(Instance::consumer("g", "a", "n1"), 2).unwrap();
        assert_eq!(
            s.admit(Instance::consumer("g", "a", "n2"), 2),
            Err(Refusal::Duplicate(Instance::consumer("g", "a", "n1")))
        );
        let s = s.admit(Instance::consumer("g", "b", "n2"), 2).unwrap();
        assert_eq!(
            s.admit(Instance::consumer("g", "c", "n1"), 2),
            Err(Refusal::Full { session_id: "g".into(), limit: 2 })
        );
        // A limit raised since applies to the next socket; 0 is unlimited.
        assert!(s.admit(Instance::consumer("g", "c", "n1"), 3).is_ok());
        assert!(s.admit(Instance::consumer("g", "c", "n1"), 0).is_ok());
    }

    #[test]
    fn refuses_the_other_kind() {
        let s = Session::new(Kind::Consumer, "x", 2);
        assert!(matches!(s.admit(Instance::producer("x", Some("i"), "n"), 0), Err(Refusal::OtherKind { .. })));
    }

    #[test]
    fn removes_by_predicate() {
        let s = Session::new(Kind::Producer, "p", 0)
            .admit(Instance::producer("p", Some("1"), "n1"), 0)
            .unwrap()
            .admit(Instance::producer("p", Some("2"), "n2"), 0)
            .unwrap();
        let gone = s.without(|i| i.server_id() == "n1").unwrap();
        assert_eq!(gone.instances(), &[Instance::producer("p", Some("2"), "n2")]);
        assert!(gone.without(|i| i.server_id() == "n1").is_none());
    }
}
