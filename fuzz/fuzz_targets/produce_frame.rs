//! Produce frames as the socket gets them: any text, decoded with every value type (and a key
//! type), must give one outcome per record, and every answer must render as valid JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsproxy_protocol::produce::{render_answer, render_answers, Answer, ProduceFrame, RecordDecoder};
use wsproxy_protocol::FormatType;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let val_type = FormatType::ALL[selector as usize % FormatType::ALL.len()];
    let key_type = (selector >= 128).then(|| FormatType::ALL[(selector as usize / 9) % FormatType::ALL.len()]);
    let frame = RecordDecoder { key_type, val_type }.parse_frame(text);
    let outcomes = match &frame {
        ProduceFrame::Single(o) => std::slice::from_ref(o),
        ProduceFrame::Batch(list) => list.as_slice(),
    };
    assert_eq!(outcomes.len(), frame.len());
    let answers: Vec<Answer<'_>> = outcomes
        .iter()
        .filter_map(|o| match o {
            Ok(record) => {
                // The in-flight accounting covers every byte the record holds.
                assert!(record.size() >= record.value.as_ref().map_or(0, Vec::len));
                None
            }
            Err(e) => Some(Answer::Err(e.frame())),
        })
        .collect();
    for a in &answers {
        let rendered = render_answer(a);
        serde_json::from_str::<serde_json::Value>(&rendered).expect("an error answer is JSON");
    }
    serde_json::from_str::<serde_json::Value>(&render_answers(&answers)).expect("an array answer is JSON");
});
