//! The errors of an S3 endpoint, said so that the user knows what to do:
//! a missing bucket, rejected credentials, an endpoint that cannot be
//! reached, throttling that outlasted the retries. Anything else is the
//! endpoint's own words, with control bytes replaced (they reach the
//! terminal).

/// Whether an error text is S3's "the bucket does not exist".
pub fn no_bucket(text: &str) -> bool {
    text.contains("NoSuchBucket") || text.contains("bucket does not exist")
}

/// `text` with control characters replaced by `?` and shortened to a
/// readable length.
pub fn clean(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(400)
        .collect();
    if text.chars().count() > 400 {
        out.push('…');
    }
    out
}

/// The whole chain of an error, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// What went wrong, and what to do about it.
pub fn explain(e: &object_store::Error, bucket: &str, endpoint: &str) -> String {
    let text = chain(e);
    let detail = clean(&text);
    if no_bucket(&text) {
        return format!(
            "bucket '{bucket}' does not exist at {endpoint}; create it, or fix the bucket name \
             in --store / MOAT_STORE"
        );
    }
    let creds = [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "ExpiredToken",
    ]
    .iter()
    .find(|c| text.contains(*c));
    if let Some(code) = creds.copied().or(match e {
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            Some("denied")
        }
        _ => None,
    }) {
        return format!(
            "{endpoint} refused the credentials ({code}); check AWS_ACCESS_KEY_ID, \
             AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN or AWS_PROFILE ({detail})"
        );
    }
    if text.contains("SlowDown") || text.contains("503") || text.contains("TooManyRequests") {
        return format!(
            "{endpoint} kept throttling the requests (retried with backoff); try again later \
             ({detail})"
        );
    }
    let unreachable = [
        "error sending request",
        "connect",
        "Connection refused",
        "dns error",
        "timed out",
    ];
    if unreachable.iter().any(|u| text.contains(u)) {
        return format!(
            "cannot reach {endpoint}; check AWS_ENDPOINT_URL and the network (AWS_ALLOW_HTTP=true \
             for a plain-http endpoint) ({detail})"
        );
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_never_reach_the_message() {
        assert_eq!(clean("a\x1b[2Jb\nc"), "a [2Jb c");
        assert!(clean(&"x".repeat(1000)).ends_with('…'));
    }

    #[test]
    fn missing_bucket_and_credentials_are_named() {
        let e = object_store::Error::Generic {
            store: "S3",
            source: "Error performing request: NoSuchBucket".into(),
        };
        assert!(explain(&e, "bkt", "http://x").contains("bucket 'bkt' does not exist"));
        let e = object_store::Error::Generic {
            store: "S3",
            source: "403 Forbidden: <Code>InvalidAccessKeyId</Code>".into(),
        };
        assert!(explain(&e, "bkt", "http://x").contains("refused the credentials"));
    }
}
