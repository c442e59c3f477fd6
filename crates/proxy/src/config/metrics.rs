//! `[metrics]`: the Prometheus endpoint, and the Confluent monitoring settings of the reference,
//! which are accepted (so existing deployments start) but have no effect here.

use super::env_vars::*;
use super::reader::Reader;

/// Whether `/metrics` is served, and how many topics get their own label.
pub(super) fn read(r: &mut Reader<'_>) -> (bool, usize) {
    (r.boolean(WSPROXY_METRICS_ENABLED), r.parse(WSPROXY_METRICS_MAX_TOPIC_LABELS, "a number"))
}

/// librdkafka has no Confluent monitoring interceptors: the seed's settings (the table's
/// switch, and any `WSPROXY_KAFKA_MONITORING_*` or `WSPROXY_KAFKA_METRICS_*`) are named in one
/// warning.
pub(super) fn confluent_monitoring_warning(r: &mut Reader<'_>) {
    let enabled = r.string(WSPROXY_CONFLUENT_MONITORING_ENABLED).eq_ignore_ascii_case("true");
    let mut set: Vec<&str> = r
        .vars()
        .iter()
        .filter(|(k, v)| {
            let monitoring = k.starts_with("WSPROXY_KAFKA_MONITORING_") || k.starts_with("WSPROXY_KAFKA_METRICS_");
            monitoring && !v.trim().is_empty()
        })
        .map(|(k, _)| k.as_str())
        .collect();
    if enabled {
        set.push(WSPROXY_CONFLUENT_MONITORING_ENABLED.name);
    }
    if set.is_empty() {
        return;
    }
    set.sort_unstable();
    r.warn(format!(
        "Confluent monitoring interceptors are a Java client feature that librdkafka does not have; {} {} accepted but has no effect. Scrape the Prometheus metrics at /metrics instead (see README, Operating).",
        set.join(", "),
        if set.len() == 1 { "is" } else { "are" }
    ));
}
