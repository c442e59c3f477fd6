//! The admin API's consumer group routes end to end: list, describe, offsets, alter and
//! delete, with the committed offsets checked by the independent client.

mod common;

use common::admin::*;
use common::*;
use serde_json::{json, Value};

/// A consumer group with committed offsets and no members, committed by the independent client.
fn commit_with_tool(group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let mut args = vec!["commit".to_owned(), group.to_owned(), topic.to_owned()];
    args.extend(offsets.iter().map(|(p, o)| format!("{p}={o}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kafka_tool(&args, "");
}

fn committed_with_tool(group: &str, topic: &str) -> Value {
    serde_json::from_str(kafka_tool(&["committed", group, topic], "").trim()).unwrap()
}

#[tokio::test]
async fn consumer_groups_list_describe_offsets_alter_and_delete() {
    let (proxy, admin) = admin_proxy(&[]).await;
    let topic = unique("groups");
    let other = unique("groups-other");
    create_topic(&topic, 3).await;
    create_topic(&other, 1).await;
    let records: Vec<Value> =
        (0..3).map(|p| json!({"value": {"format": "string", "value": format!("r{p}")}, "partition": p})).collect();
    write_with_tool(&topic, &records);
    let idle = unique("test-group-idle");
    let active = unique("test-group-active");
    commit_with_tool(&idle, &topic, &[(0, 1), (1, 1), (2, 1)]);
    commit_with_tool(&idle, &other, &[(0, 0)]);

    // An active group: a consume socket of the proxy, a member once it got a record.
    let mut ws = connect(&proxy.url(&format!(
        "/socket/out?clientId=admin-test-client&groupId={active}&topic={topic}&autoCommit=false&valType=string"
    )))
    .await;
    recv_json(&mut ws).await;

    let all = get_json(admin, "/admin/consumer-group/all?includeInternals=true").await;
    let ids: Vec<&str> = all.as_array().unwrap().iter().map(|g| g["groupId"].as_str().unwrap()).collect();
    assert!(ids.contains(&idle.as_str()) && ids.contains(&active.as_str()), "{ids:?}");
    let visible = get_json(admin, "/admin/consumer-group/all").await;
    assert!(visible.as_array().unwrap().iter().all(|g| {
        let id = g["groupId"].as_str().unwrap();
        !id.starts_with('_')
            && !id.starts_with("ws-proxy-session-consumer")
            && !id.starts_with("ws-proxy-dynamic-config-handler-consumer")
    }));
    let active_only = get_json(admin, "/admin/consumer-group/all?activeOnly=true&includeInternals=false").await;
    let groups = active_only.as_array().unwrap();
    assert!(groups.iter().any(|g| g["groupId"] == active.as_str()), "{active_only}");
    assert!(!groups.iter().any(|g| g["groupId"] == idle.as_str()), "{active_only}");
    assert!(groups
        .iter()
        .all(|g| ["STABLE", "PREPARING_REBALANCE", "COMPLETING_REBALANCE"].contains(&g["state"].as_str().unwrap())));
    let listed = groups.iter().find(|g| g["groupId"] == active.as_str()).unwrap();
    assert_eq!(listed["members"], json!([]));
    assert_eq!(listed["isSimple"], false);
    assert_eq!(call(admin, "GET", "/admin/consumer-group/all?activeOnly=maybe", None, &[]).await.0, 400);

    let d = get_json(admin, &format!("/admin/consumer-group/{active}/describe")).await;
    assert_eq!(
        (d["groupId"].as_str(), d["state"].as_str(), d["isSimple"].as_bool()),
        (Some(active.as_str()), Some("STABLE"), Some(false))
    );
    assert_eq!(d["members"], json!(["admin-test-client"]));
    assert!(d["partitionAssignor"].is_string());
    let d = get_json(admin, &format!("/admin/consumer-group/{idle}/describe")).await;
    assert_eq!((d["state"].as_str(), d["members"].clone()), (Some("EMPTY"), json!([])));
    let d = get_json(admin, "/admin/consumer-group/no-such-group-ever/describe").await;
    assert_eq!(d["state"], "DEAD");

    // Offsets: every committed offset of the group, over all its topics.
    let offsets = get_json(admin, &format!("/admin/consumer-group/{idle}/offsets")).await;
    let mut want: Vec<Value> =
        (0..3).map(|p| json!({"topic": topic, "partition": p, "offset": 1, "metadata": null})).collect();
    want.push(json!({"topic": other, "partition": 0, "offset": 0, "metadata": null}));
    want.sort_by_key(|v| (v["topic"].as_str().unwrap().to_owned(), v["partition"].as_i64()));
    assert_eq!(offsets, Value::Array(want));
    assert_eq!(
        call(admin, "GET", "/admin/consumer-group/no-such-group-ever/offsets", None, &[]).await,
        (404, "application/json".into(), String::new())
    );

    // Alter an idle group: answers all its offsets after the change; Kafka has them.
    let alter: Value = (0..3).map(|p| json!({"topic": topic, "partition": p, "offset": 100})).collect();
    let (status, _, body) = call(
        admin,
        "PUT",
        &format!("/admin/consumer-group/{idle}/offsets/alter/{topic}"),
        Some(&alter.to_string()),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let after: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(after.as_array().unwrap().iter().filter(|o| o["offset"] == 100).count(), 3, "{after}");
    assert_eq!(after.as_array().unwrap().len(), 4, "{after}");
    assert_eq!(committed_with_tool(&idle, &topic), json!({"0": 100, "1": 100, "2": 100}));
    // An active group refuses; bad JSON is a 400 naming the problem.
    let (status, _, body) = call(
        admin,
        "PUT",
        &format!("/admin/consumer-group/{active}/offsets/alter/{topic}"),
        Some(&alter.to_string()),
        &[],
    )
    .await;
    assert_eq!((status, body.as_str()), (412, "{\n  \"message\" : \"Unable to modify the consumer group offsets because the group is still considered to be active. Please ensure that all consumer clients are stopped before trying again.\"\n}"));
    let (status, _, body) = call(
        admin,
        "PUT",
        &format!("/admin/consumer-group/{idle}/offsets/alter/{topic}"),
        Some(r#"[{"topic":"t","partiton":0}]"#),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("partiton"), "{body}");
    for (body, text) in [
        (json!([{"topic": topic, "partition": 7, "offset": 1}]), format!("Topic {topic} has no partition 7.")),
        (
            json!([{"topic": "no-such-topic-here", "partition": 0, "offset": 1}]),
            "Topic no-such-topic-here has no partition 0.".to_owned(),
        ),
        (json!([{"topic": topic, "partition": 0, "offset": -5}]), format!("The offset -5 of {topic}-0 is negative.")),
    ] {
        let path = format!("/admin/consumer-group/{idle}/offsets/alter/{topic}");
        let (status, _, answer) = call(admin, "PUT", &path, Some(&body.to_string()), &[]).await;
        assert_eq!((status, answer), (400, format!("{{\n  \"message\" : \"{text}\"\n}}")));
    }
    assert_eq!(committed_with_tool(&idle, &topic), json!({"0": 100, "1": 100, "2": 100}), "nothing changed");
    // An empty list changes nothing and answers the offsets.
    let (status, _, body) =
        call(admin, "PUT", &format!("/admin/consumer-group/{idle}/offsets/alter/{topic}"), Some("[]"), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap().as_array().unwrap().len(), 4);

    // Delete one topic's offsets: the other topic's stay.
    assert_eq!(
        call(admin, "DELETE", &format!("/admin/consumer-group/{active}/offsets/delete/{topic}"), None, &[]).await.0,
        412
    );
    assert_eq!(
        call(admin, "DELETE", &format!("/admin/consumer-group/{idle}/offsets/delete/{topic}"), None, &[]).await,
        (200, "application/json".into(), String::new())
    );
    assert_eq!(
        get_json(admin, &format!("/admin/consumer-group/{idle}/offsets")).await,
        json!([{"topic": other, "partition": 0, "offset": 0, "metadata": null}])
    );
    assert_eq!(committed_with_tool(&idle, &topic), json!({"0": -1001, "1": -1001, "2": -1001}));
    // The docs' `DELETE .../offsets`: all of them.
    assert_eq!(call(admin, "DELETE", &format!("/admin/consumer-group/{idle}/offsets"), None, &[]).await.0, 200);
    assert_eq!(call(admin, "GET", &format!("/admin/consumer-group/{idle}/offsets"), None, &[]).await.0, 404);

    // The consume socket was not disturbed.
    write_with_tool(&topic, &[json!({"value": {"format": "string", "value": "still here"}, "partition": 0})]);
    let mut seen = Vec::new();
    while !seen.contains(&json!("still here")) {
        seen.push(recv_json(&mut ws).await["value"]["value"].clone());
    }
}
