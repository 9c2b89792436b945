//! Every series whose labels the config makes known is in `/metrics` at 0
//! before any traffic, so `rate()` and the shipped alert rules see it from
//! the start (a labelled counter is otherwise absent until its first
//! increment).

#[cfg(test)]
mod common;

#[cfg(test)]
mod tests {
    use super::common::Harness;

    #[tokio::test]
    async fn known_label_sets_are_present_at_zero_before_any_traffic() {
        let h = Harness::start().await;
        let text = h
            .client
            .get(h.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let expected = [
            r#"infergate_requests_total{backend="hf",code_class="2xx",outcome="success",route="both"} 0"#,
            r#"infergate_requests_total{backend="sm",code_class="5xx",outcome="upstream_error",route="both"} 0"#,
            r#"infergate_requests_total{backend="none",code_class="5xx",outcome="gateway_error",route="hf"} 0"#,
            r#"infergate_requests_total{backend="none",code_class="4xx",outcome="client_error",route="unknown"} 0"#,
            r#"infergate_retries_total{reason="rate_limited",route="both"} 0"#,
            r#"infergate_retries_total{reason="upstream_unreachable",route="sm"} 0"#,
            r#"infergate_retry_budget_exhausted_total{route="js"} 0"#,
            r#"infergate_failovers_total{from="sm",route="both",to="hf"} 0"#,
            r#"infergate_failovers_total{from="hf",route="both",to="sm"} 0"#,
            r#"infergate_hedges_total{route="both"} 0"#,
            r#"infergate_shed_total{route="hf"} 0"#,
            r#"infergate_backend_ejections_total{backend="js"} 0"#,
            r#"infergate_upstream_attempts_total{backend="hf",result="success"} 0"#,
            r#"infergate_upstream_attempts_total{backend="sm",result="cancelled"} 0"#,
            r#"infergate_upstream_attempts_total{backend="sm",result="model_error"} 0"#,
            r#"infergate_credentials_refresh_total{backend="sm",result="failure"} 0"#,
            r#"infergate_stream_events_total{backend="hf",route="both"} 0"#,
            r#"infergate_stream_errors_total{backend="sm",kind="idle_timeout",route="sm"} 0"#,
            r#"infergate_stream_errors_total{backend="hf",kind="model_error",route="hf"} 0"#,
            r#"infergate_connections_accepted_total{worker="0"} "#,
            r#"infergate_request_duration_seconds_count{route="js"} 0"#,
            r#"infergate_overhead_seconds_count{route="sm"} 0"#,
            r#"infergate_upstream_duration_seconds_count{backend="hf",code_class="5xx"} 0"#,
            r#"infergate_stream_time_to_first_byte_seconds_count{backend="sm",route="both"} 0"#,
        ];
        let missing: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|line| !text.contains(line))
            .collect();
        assert!(missing.is_empty(), "missing from /metrics: {missing:#?}");
        // A JumpStart text2text backend cannot stream: no stream series.
        assert!(!text.contains(r#"infergate_stream_events_total{backend="js""#));
        // No pair of a backend with itself.
        assert!(!text.contains(r#"infergate_failovers_total{from="sm",route="both",to="sm"}"#));
        h.shutdown().await;
    }
}
