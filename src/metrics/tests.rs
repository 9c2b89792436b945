//! The registry's names and labels, as a scrape shows them.

use super::*;

#[test]
fn registers_and_encodes() {
    let m = Metrics::new().unwrap();
    m.request(
        "flan",
        "hf",
        200,
        Outcome::Success,
        Duration::from_millis(10),
        Duration::from_millis(9),
    );
    m.attempt("hf", "success", Some(200), Duration::from_millis(3));
    m.attempt("hf", "rate_limited", Some(429), Duration::from_millis(1));
    let text = String::from_utf8(m.encode()).unwrap();
    assert!(text.contains(
        r#"infergate_requests_total{backend="hf",code_class="2xx",outcome="success",route="flan"} 1"#
    ));
    assert!(
        text.contains(r#"infergate_upstream_attempts_total{backend="hf",result="rate_limited"} 1"#)
    );
    assert!(text.contains(r#"infergate_build_info{version="#));
}
