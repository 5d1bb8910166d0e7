//! The HTTP details of a ranged download: the client's timeouts, a header's value, and a
//! `Content-Range` answer read.

use std::time::Duration;

pub(super) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into()
}

pub(super) fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `bytes START-END/TOTAL` -> (START, END + 1, TOTAL).
pub(super) fn content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let (a, b, total) = (a.parse().ok()?, b.parse::<u64>().ok()?, total.parse().ok()?);
    (a <= b && b < total).then_some((a, b + 1, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        assert_eq!(content_range("bytes 0-0/1234"), Some((0, 1, 1234)));
        assert_eq!(content_range("bytes 10-19/20"), Some((10, 20, 20)));
        assert_eq!(content_range("bytes 10-20/20"), None);
        assert_eq!(content_range("bytes */20"), None);
    }
}
