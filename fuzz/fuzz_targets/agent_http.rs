//! Arbitrary bytes as one connection to the agent's real HTTP stack (axum and hyper over an
//! in-memory stream): see `suitekey::fuzzing::AgentHttp`. Every connection must end with an
//! answer or a close within five seconds, and an answer must be HTTP (1.0 for a 1.0 request).
#![no_main]

use std::sync::LazyLock;

use suitekey::fuzzing::AgentHttp;

static AGENT: LazyLock<AgentHttp> =
    LazyLock::new(|| AgentHttp::new().expect("the fuzzing agent starts"));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let answer = AGENT
        .exchange(data)
        .expect("the agent answers or closes the connection within 5 s");
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 ") || answer.starts_with(b"HTTP/1.0 "),
        "not an HTTP answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
});
