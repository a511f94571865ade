//! Dead letters: a record a stage cannot process, with its original bytes and the reason.

use std::collections::BTreeMap;

use cxrflow_contracts::{topics, DeadLetter};

use crate::kafka::stage::Inbound;
use crate::time::now_millis;

/// Topics keyed by study UID: their record key names the study even when the record itself
/// cannot be read.
const STUDY_KEYED: &[&str] = &[
    topics::SCAN,
    topics::INGESTED,
    topics::PREPROCESSED,
    topics::PREDICTIONS,
    topics::TRIAGE,
    topics::FEEDBACK,
    topics::LABELED,
];

/// The study a record names by its key, on a study-keyed topic (a plausible UID only: short,
/// printable, no spaces).
fn study_of_key(msg: &Inbound) -> Option<String> {
    if !STUDY_KEYED.contains(&msg.logical.as_str()) {
        return None;
    }
    let key = msg.key_str()?;
    let plausible = !key.is_empty() && key.len() <= 64 && key.chars().all(|c| c.is_ascii_graphic());
    plausible.then_some(key)
}

/// Builds the dead letter for `msg`. The study is the processor's (it read the record), else
/// the record key's on a study-keyed topic, so triage can list the study as not assessable.
pub fn dead_letter(
    stage: &str,
    msg: &Inbound,
    reason: &str,
    error: &str,
    study: Option<String>,
) -> DeadLetter {
    let study = study.or_else(|| study_of_key(msg));
    let replay_count = msg
        .headers
        .get("cxrflow-replay-count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    DeadLetter {
        stage: stage.to_string(),
        reason: reason.to_string(),
        error: error.to_string(),
        source_topic: msg.topic.clone(),
        source_partition: msg.partition,
        source_offset: msg.offset,
        key: msg.key.clone(),
        payload: msg.payload.clone(),
        headers: msg.headers.clone(),
        study_instance_uid: study,
        failed_at: now_millis(),
        replay_count,
    }
}

/// Headers for a replayed record: the original ones plus a replay counter.
pub fn replay_headers(dl: &DeadLetter) -> BTreeMap<String, String> {
    let mut h = dl.headers.clone();
    h.insert(
        "cxrflow-replay-count".into(),
        (dl.replay_count + 1).to_string(),
    );
    h.insert(
        "cxrflow-replayed-from".into(),
        format!(
            "{}/{}/{}",
            dl.source_topic, dl.source_partition, dl.source_offset
        ),
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(logical: &str, key: Option<&[u8]>) -> Inbound {
        Inbound {
            topic: format!("prefix.{logical}"),
            logical: logical.to_string(),
            partition: 0,
            offset: 9,
            key: key.map(<[u8]>::to_vec),
            payload: Some(b"garbage".to_vec()),
            headers: BTreeMap::new(),
            timestamp_ms: None,
        }
    }

    #[test]
    fn an_unreadable_record_names_its_study_by_its_key_on_study_keyed_topics() {
        let dl = dead_letter(
            "ingest",
            &inbound(topics::SCAN, Some(b"1.2.3")),
            "codec.corrupt",
            "x",
            None,
        );
        assert_eq!(dl.study_instance_uid.as_deref(), Some("1.2.3"));
        let dl = dead_letter(
            "ingest",
            &inbound(topics::SCAN, Some(b"1.2.3")),
            "r",
            "x",
            Some("9.9".into()),
        );
        assert_eq!(
            dl.study_instance_uid.as_deref(),
            Some("9.9"),
            "the processor's study wins"
        );
        // Not a study key: the drift topic is keyed by alert id; no key; an implausible key.
        for (topic, key) in [
            (topics::DRIFT, Some(&b"alert-1"[..])),
            (topics::SCAN, None),
            (topics::SCAN, Some(&b"has space"[..])),
            (topics::SCAN, Some(&[0xff, 0xfe][..])),
        ] {
            let dl = dead_letter("s", &inbound(topic, key), "r", "x", None);
            assert_eq!(dl.study_instance_uid, None, "{topic} {key:?}");
        }
    }
}
