//! The client's side of a consume socket's offsets: credit grants and commit frames in, and
//! forgetting partitions the socket lost in a rebalance. Split from `consume.rs`.

use super::*;

/// A frame from the client: a credit grant (pull sockets), a commit (`autoCommit=false`), or
/// nothing (`autoCommit=true` push sockets: the reference ignores inbound frames). `Err` is
/// the error frame to answer with; the socket goes on.
pub(super) fn inbound(
    frame: FrameRef<'_>,
    consumer: &SocketConsumer,
    settings: &ConsumeSettings,
    (credit, paused): (&mut Option<Credit>, &mut bool),
    stack: &mut CommitStack<TopicPartition>,
    progress: &mut HashMap<TopicPartition, i64>,
) -> Result<(), FrameError> {
    if let Some(credit) = credit.as_mut() {
        if let Some(request) = match frame {
            FrameRef::Text(text) => pull::decode_request(text),
            FrameRef::Binary(_) => None,
        } {
            credit.grant(request?);
            if std::mem::take(paused) {
                consumer.resume();
            }
            return Ok(());
        }
        if settings.auto_commit {
            return Err(pull::not_a_request());
        }
    }
    if settings.auto_commit {
        return Ok(());
    }
    commit(consumer, settings, stack, progress, settings.codec.decode_commit(frame))
}

/// Handles a commit frame; `Err` is the error frame to answer it with.
fn commit(
    consumer: &SocketConsumer,
    settings: &ConsumeSettings,
    stack: &mut CommitStack<TopicPartition>,
    progress: &mut HashMap<TopicPartition, i64>,
    id: Result<MessageId, FrameError>,
) -> Result<(), FrameError> {
    let id = id?;
    let unknown = |why: &str| Err(FrameError::new(ErrorCode::UnknownMessageId, format!("cannot commit '{id}': {why}")));
    // After a rebalance another member owns the partition: committing there could rewind it.
    let owned = forget_not_owned(consumer, stack, progress);
    let partition: TopicPartition = (Arc::from(id.topic.as_str()), id.partition);
    if !owned.contains(&partition) {
        if !settings.topics.reads(&id.topic) {
            return unknown(&format!("it names topic '{}', this socket reads '{}'", id.topic, settings.topic));
        }
        return unknown(&format!(
            "partition {} is no longer assigned to this socket (the group rebalanced); its uncommitted records go to its new owner",
            id.partition
        ));
    }
    match stack.commit(&partition, id.offset, id.timestamp) {
        // Already committed by a newer record: a partition assigned straight back in a
        // rebalance is read again from the group's offset, so a record can be sent twice and
        // committed after a newer one. The group's offset never moves back.
        Ok(next) if !not_behind(progress, &partition, next) => Ok(()),
        Ok(next) => match consumer.commit(&[(partition.clone(), next)]) {
            Ok(()) => {
                progress.insert(partition, next);
                Ok(())
            }
            Err(e) => Err(FrameError::new(ErrorCode::CommitFailed, format!("Kafka refused the commit of '{id}': {e}"))),
        },
        Err(_) => unknown("this socket did not send it, or it was already committed"),
    }
}

/// False when committing `next` on `partition` would move it back from what this socket
/// committed there (or the client got, with auto-commit) since it owns it. The same offset
/// again is committed again: commits are asynchronous, and the first may have failed.
pub(super) fn not_behind(progress: &HashMap<TopicPartition, i64>, partition: &TopicPartition, next: i64) -> bool {
    progress.get(partition).is_none_or(|done| next >= *done)
}

/// Drops what the socket remembers of partitions lost in a rebalance since it last looked,
/// even those assigned to it again since (another member may have committed further
/// meanwhile, L4); returns them.
pub(super) fn forget_rebalanced(
    consumer: &SocketConsumer,
    stack: &mut CommitStack<TopicPartition>,
    progress: &mut HashMap<TopicPartition, i64>,
) -> HashSet<TopicPartition> {
    let revoked: HashSet<TopicPartition> = consumer.take_lost().into_iter().collect();
    if !revoked.is_empty() {
        stack.retain_partitions(|p| !revoked.contains(p));
        progress.retain(|p, _| !revoked.contains(p));
    }
    revoked
}

/// [`forget_rebalanced`], then drops what the socket remembers of partitions it no longer
/// owns; returns those it owns.
pub(super) fn forget_not_owned(
    consumer: &SocketConsumer,
    stack: &mut CommitStack<TopicPartition>,
    progress: &mut HashMap<TopicPartition, i64>,
) -> HashSet<TopicPartition> {
    forget_rebalanced(consumer, stack, progress);
    let owned = consumer.assigned();
    stack.retain_partitions(|p| owned.contains(p));
    progress.retain(|p, _| owned.contains(p));
    owned
}

/// Commits on the proxy's own initiative (no commit frame asked for it): a failure is logged
/// with `what` was committed, and the socket goes on.
pub(super) fn commit_offsets(consumer: &SocketConsumer, offsets: &[(TopicPartition, i64)], what: &'static str) {
    if let Err(e) = consumer.commit(offsets) {
        tracing::warn!(error = %e, what, "a commit by the proxy failed");
    }
}
