//! Numbers as header values, without an allocation each: http's own
//! `HeaderValue::from(n)` allocates twice per number (a buffer, then its
//! shrink to fit), which on a response's `x-ratelimit-*` fields is most of
//! what a client's limit adds to the request. 0 to 99 (attempts, seconds
//! until a bucket is full again, small counts) are static values; the
//! larger numbers of one response share one allocation.

use bytes::Bytes;
use http::HeaderValue;

/// "00" to "99": the static text of every number below 100.
const TWO_DIGITS: &str = "\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// `n` as a header value: static below 100.
pub fn number(n: u64) -> HeaderValue {
    small(n).unwrap_or_else(|| HeaderValue::from(n))
}

/// Each of `ns` as a header value, those of 100 and more sharing one
/// allocation.
pub fn numbers<const N: usize>(ns: [u64; N]) -> [HeaderValue; N] {
    if ns.iter().all(|&n| n < 100) {
        return ns.map(number);
    }
    let mut digits = Digits {
        text: [0; DIGITS_ROOM],
        len: 0,
    };
    let spans = ns.map(|n| digits.push(n));
    let shared = Bytes::from_owner(digits);
    let mut spans = spans.into_iter();
    ns.map(|n| {
        let span = spans.next().flatten();
        small(n).unwrap_or_else(|| match span {
            Some((start, end)) => HeaderValue::from_maybe_shared(shared.slice(start..end))
                .unwrap_or_else(|_| HeaderValue::from(n)),
            None => HeaderValue::from(n),
        })
    })
}

/// Room for four numbers of 20 digits (a u64's most) in one allocation;
/// those that do not fit get their own.
const DIGITS_ROOM: usize = 80;

/// The static value of `n` if it is below 100.
fn small(n: u64) -> Option<HeaderValue> {
    let n = usize::try_from(n).ok().filter(|&n| n < 100)?;
    let text = if n < 10 {
        &TWO_DIGITS[2 * n + 1..2 * n + 2]
    } else {
        &TWO_DIGITS[2 * n..2 * n + 2]
    };
    Some(HeaderValue::from_static(text))
}

/// The decimal text of a few numbers, one after the other, in a buffer
/// that [`Bytes::from_owner`] keeps whole.
struct Digits {
    text: [u8; DIGITS_ROOM],
    len: usize,
}

impl Digits {
    /// Appends `n`: where its text is, if there was room for it.
    fn push(&mut self, n: u64) -> Option<(usize, usize)> {
        let mut buf = itoa::Buffer::new();
        let text = buf.format(n).as_bytes();
        let start = self.len;
        let end = start + text.len();
        self.text.get_mut(start..end)?.copy_from_slice(text);
        self.len = end;
        Some((start, end))
    }
}

impl AsRef<[u8]> for Digits {
    fn as_ref(&self) -> &[u8] {
        &self.text[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_reads_as_its_decimal_digits() {
        let probes = (0..=1_000).chain([9_999, 65_536, 1_000_000, u64::from(u32::MAX), u64::MAX]);
        for n in probes {
            assert_eq!(number(n), n.to_string().as_str(), "{n}");
            let [a, b, c] = numbers([n, 7, n / 3]);
            assert_eq!(a, n.to_string().as_str(), "{n}");
            assert_eq!(b, "7");
            assert_eq!(c, (n / 3).to_string().as_str(), "{n}");
        }
        // More than fit in one allocation: the rest get their own.
        let all = numbers([u64::MAX; 6]);
        assert!(all.iter().all(|v| v == u64::MAX.to_string().as_str()));
    }
}
