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
    /// The keyIdentifier of the authorityKeyIdentifier extension: names the
    /// signing CA's key, which tells two CAs apart even when their subjects match.
    pub authority_key_id: Option<Vec<u8>>,
}

/// Splits a DER certificate: SEQUENCE { tbs SEQUENCE { [0] version?, serial,
/// signature, issuer, validity, subject, subjectPublicKeyInfo, …, [3] extensions? }, … }.
pub fn tbs_fields(cert_der: &[u8]) -> Option<TbsFields> {
    let (_, cert, _) = next_element(cert_der)?;
    let (_, tbs, _) = next_element(contents(cert))?;
    let fields = elements(contents(tbs))?;
    let skip = usize::from(fields.first()?.0 == 0xa0); // explicit version is optional (v1)
    let field = |i: usize| fields.get(skip + i).map(|(_, e)| e.to_vec());
    let extensions = fields.iter().find(|(tag, _)| *tag == 0xa3);
    Some(TbsFields {
        issuer: field(2)?,
        subject: field(4)?,
        public_key: field(5)?,
        authority_key_id: extensions.and_then(|(_, e)| authority_key_id(contents(e))),
    })
}

/// All elements of a constructed element's contents: (tag, whole element).
fn elements(mut rest: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (tag, element, after) = next_element(rest)?;
        out.push((tag, element));
        rest = after;
    }
    Some(out)
}

/// In `Extensions ::= SEQUENCE OF SEQUENCE { extnID, critical?, extnValue OCTET STRING }`,
/// the authorityKeyIdentifier (2.5.29.35) value `SEQUENCE { [0] keyIdentifier, … }`.
fn authority_key_id(extensions: &[u8]) -> Option<Vec<u8>> {
    const AKI_OID: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x23];
    let (_, list, _) = next_element(extensions)?;
    for (_, extension) in elements(contents(list))? {
        let parts = elements(contents(extension))?;
        if parts.first()?.1 != AKI_OID {
            continue;
        }
        let (tag, value) = *parts.last()?;
        let (_, aki, _) = next_element(contents(value)).filter(|_| tag == 0x04)?;
        let (id_tag, id, _) = next_element(contents(aki))?;
        return (id_tag == 0x80).then(|| contents(id).to_vec());
    }
    None
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
