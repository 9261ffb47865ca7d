use super::*;

#[test]
fn serials_are_compared_without_their_zero_pad() {
    assert_eq!(canonical(&[0x00, 0x8f, 0x01]), &[0x8f, 0x01]);
    assert_eq!(canonical(&[0x00, 0x00]), &[0x00]);
    assert_eq!(CertRef::new(b"n", &[0, 0x8f]), CertRef::new(b"n", &[0x8f]));
}

#[test]
fn der_elements_are_read_with_short_and_long_lengths() {
    assert_eq!(
        tlv(&[0x30, 0x01, 0xaa, 0xbb]),
        Some((0x30, &[0xaa][..], &[0xbb][..]))
    );
    let mut long = vec![0x04, 0x81, 0x80];
    long.extend([7u8; 0x80]);
    assert_eq!(
        tlv(&long).map(|(_, c, r)| (c.len(), r.len())),
        Some((0x80, 0))
    );
    assert_eq!(tlv(&[0x30, 0x05, 0x00]), None, "truncated");
    assert_eq!(tlv(&[0x30, 0x80]), None, "indefinite length is not DER");
    assert_eq!(content(&[0x30, 0x01, 0x00, 0x00]), None, "trailing data");
}

#[test]
fn pem_without_a_crl_is_refused_and_other_bytes_are_taken_as_der() {
    let err = read_crls(
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "f",
    )
    .unwrap_err();
    assert!(matches!(err, CrlError::Pem { .. }), "{err}");
    let der = read_crls(&[0x30, 0x00], "f").unwrap();
    assert_eq!(der.crls, vec![vec![0x30, 0x00]]);
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    let err = Crl::verify(
        &[0x30, 0x03, 0x02, 0x01, 0x00],
        &[],
        &BundleSet::new(),
        UNIX_EPOCH,
        "f",
        2,
    )
    .unwrap_err();
    assert!(matches!(err, CrlError::Malformed { index: 2, .. }), "{err}");
}
