//! The little decoding the PKI needs beyond rcgen: base64 (kubeconfigs embed
//! PEM as base64), PEM bodies, and the three fields of a certificate's
//! TBSCertificate that rcgen does not hand back (issuer, subject, public key).
//! Kept by hand because the crate has no direct base64/DER dependency.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, no line breaks (what kubeconfig `*-data` fields hold).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64, skipping whitespace (PEM bodies are wrapped).
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits, mut padding) = (0u32, 0u32, 0usize);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            padding += 1;
            continue;
        }
        if padding > 0 {
            return None; // data after padding
        }
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (padding <= 2).then_some(out)
}

/// The DER inside the first `-----BEGIN <label>-----` block of `pem`.
pub fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    base64_decode(&pem[start..stop])
}

/// One DER element: (tag, whole element bytes, what follows it).
fn next_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |acc, &b| acc << 8 | b as usize), 2 + n)
    };
    let total = header.checked_add(len)?;
    (input.len() >= total).then(|| (tag, &input[..total], &input[total..]))
}

/// The contents of a constructed element (its bytes after the header).
fn contents(element: &[u8]) -> &[u8] {
    let header = if element[1] < 0x80 { 2 } else { 2 + (element[1] & 0x7f) as usize };
    &element[header..]
}

/// Raw DER of the fields used to check a certificate against its CA and key.
#[derive(Debug, PartialEq, Eq)]
pub struct TbsFields {
    pub issuer: Vec<u8>,
    pub subject: Vec<u8>,
    pub public_key: Vec<u8>,
}

/// Splits a DER certificate: SEQUENCE { tbs SEQUENCE { [0] version?, serial,
/// signature, issuer, validity, subject, subjectPublicKeyInfo, … }, … }.
pub fn tbs_fields(cert_der: &[u8]) -> Option<TbsFields> {
    let (_, cert, _) = next_element(cert_der)?;
    let (_, tbs, _) = next_element(contents(cert))?;
    let mut rest = contents(tbs);
    let mut fields = Vec::new();
    while fields.len() < 7 && !rest.is_empty() {
        let (tag, element, after) = next_element(rest)?;
        fields.push((tag, element));
        rest = after;
    }
    let skip = usize::from(fields.first()?.0 == 0xa0); // explicit version is optional (v1)
    let field = |i: usize| fields.get(skip + i).map(|(_, e)| e.to_vec());
    Some(TbsFields { issuer: field(2)?, subject: field(4)?, public_key: field(5)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar", &[0xff, 0x00, 0x80]] {
            let text = base64_encode(data);
            assert_eq!(base64_decode(&text).unwrap(), data, "{text}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64_decode("Zm9v\nYmE=\n").unwrap(), b"fooba");
        assert!(base64_decode("Zm9v!").is_none());
    }

    #[test]
    fn der_lengths() {
        // short form, long form, truncated
        assert_eq!(next_element(&[0x04, 0x01, 0xaa, 0xbb]).unwrap(), (0x04, &[0x04, 0x01, 0xaa][..], &[0xbb][..]));
        let long: Vec<u8> = [0x04, 0x81, 0x80].into_iter().chain([7u8; 0x80]).collect();
        assert_eq!(next_element(&long).unwrap().1.len(), 0x83);
        assert!(next_element(&[0x04, 0x05, 0x00]).is_none());
    }
}
