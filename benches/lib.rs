//! Helpers shared by zt's criterion benchmarks.
#![forbid(unsafe_code)]

/// The median time per iteration, in nanoseconds, that criterion
/// estimated for `group/name` in `criterion_dir`; the benches print their
/// ratios from it.
///
/// # Panics
///
/// If the estimate file is missing or malformed (the bench did not run).
#[allow(
    clippy::panic,
    clippy::unwrap_used,
    reason = "bench support: a missing estimate is a broken bench"
)]
pub fn criterion_median_ns(criterion_dir: &std::path::Path, group: &str, name: &str) -> f64 {
    let path = criterion_dir
        .join(group)
        .join(name)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["median"]["point_estimate"]
        .as_f64()
        .unwrap_or_else(|| panic!("no median in {}", path.display()))
}

/// The physical floor of the jobs zt does: the public-key operations a
/// handshake or a token check cannot avoid, measured with the crypto
/// provider zt uses, in the same process as the bench that compares
/// against them.
pub mod floor {
    use std::hint::black_box;
    use std::path::Path;

    use criterion::Criterion;
    use rustls::NamedGroup;
    use rustls::SignatureScheme;
    use rustls::crypto::CryptoProvider;
    use rustls::crypto::SupportedKxGroup;
    use rustls_pki_types::PrivateKeyDer;

    /// Criterion group of the floor measurements.
    pub const GROUP: &str = "floor";

    /// The medians, in nanoseconds, of one operation each.
    #[derive(Debug, Clone, Copy)]
    pub struct Floor {
        /// One ECDSA P-256 / SHA-256 signature.
        pub p256_sign_ns: f64,
        /// One ECDSA P-256 / SHA-256 verification.
        pub p256_verify_ns: f64,
        /// One X25519 key share generated and agreed (one side's part of
        /// the key exchange).
        pub x25519_ns: f64,
        /// Both sides' work in one X25519MLKEM768 exchange: the client's
        /// key shares generated and completed (X25519 agreement and ML-KEM
        /// decapsulation) plus the server's (X25519 and ML-KEM
        /// encapsulation); `None` when the provider has no such group.
        pub x25519mlkem768_pair_ns: Option<f64>,
    }

    impl Floor {
        /// The unavoidable public-key work of one full mutual handshake
        /// with one-certificate chains: two key shares generated and
        /// agreed, two CertificateVerify signatures, and `verifications`
        /// signature checks (4 with both peer chains verified in full: each
        /// side checks the peer's leaf signature and its CertificateVerify;
        /// 2 when verified chains are cached).
        pub fn handshake_ns(&self, verifications: u32) -> f64 {
            2.0 * self.x25519_ns
                + 2.0 * self.p256_sign_ns
                + f64::from(verifications) * self.p256_verify_ns
        }

        /// As [`handshake_ns`](Self::handshake_ns), with the key exchange
        /// done by X25519MLKEM768; `None` without that group.
        pub fn handshake_pq_ns(&self, verifications: u32) -> Option<f64> {
            self.x25519mlkem768_pair_ns.map(|kx| {
                kx + 2.0 * self.p256_sign_ns + f64::from(verifications) * self.p256_verify_ns
            })
        }

        /// Prints each figure.
        pub fn print(&self) {
            println!(
                "floor: P-256 sign {:.1} µs, P-256 verify {:.1} µs, X25519 share+agree {:.1} µs",
                self.p256_sign_ns / 1e3,
                self.p256_verify_ns / 1e3,
                self.x25519_ns / 1e3
            );
            if let Some(pq) = self.x25519mlkem768_pair_ns {
                println!(
                    "floor: X25519MLKEM768 both sides {:.1} µs (X25519 both sides {:.1} µs)",
                    pq / 1e3,
                    2.0 * self.x25519_ns / 1e3
                );
            }
        }
    }

    /// Measures the floor with `provider`, signing with `key` (a P-256
    /// PKCS#8 key), into `criterion`, and returns the medians read back
    /// from `criterion_dir`.
    ///
    /// # Panics
    ///
    /// If the provider cannot load the key, lacks P-256 or X25519, or
    /// criterion wrote no estimate (a broken bench).
    #[allow(
        clippy::panic,
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "bench support: a provider without these primitives is a broken bench"
    )]
    pub fn measure(
        criterion: &mut Criterion,
        criterion_dir: &Path,
        provider: &CryptoProvider,
        key: &PrivateKeyDer<'static>,
    ) -> Floor {
        let message = [0x5a_u8; 130];
        let signing = provider
            .key_provider
            .load_private_key(key.clone_key())
            .expect("the provider loads the P-256 key");
        let signer = signing
            .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
            .expect("an ECDSA P-256 signer");
        let signature = signer.sign(&message).unwrap();
        // The subjectPublicKey of a P-256 SubjectPublicKeyInfo: its last 65
        // bytes, the uncompressed point.
        let spki = signing.public_key().expect("the key exposes its SPKI");
        let point = &spki.as_ref()[spki.as_ref().len() - 65..];
        assert_eq!(point[0], 0x04, "an uncompressed P-256 point");
        let verifier = provider
            .signature_verification_algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == SignatureScheme::ECDSA_NISTP256_SHA256)
            .and_then(|(_, algs)| {
                algs.iter()
                    .find(|alg| alg.verify_signature(point, &message, &signature).is_ok())
            })
            .copied()
            .expect("a P-256 verifier that accepts the signature");
        let x25519: &'static dyn SupportedKxGroup = *provider
            .kx_groups
            .iter()
            .find(|g| g.name() == NamedGroup::X25519)
            .expect("X25519");
        let peer_share = x25519.start().unwrap().pub_key().to_vec();
        let hybrid = provider
            .kx_groups
            .iter()
            .find(|g| g.name() == NamedGroup::X25519MLKEM768)
            .copied();

        let mut group = criterion.benchmark_group(GROUP);
        group.bench_function("p256-sign", |b| {
            b.iter(|| signer.sign(black_box(&message)).unwrap())
        });
        group.bench_function("p256-verify", |b| {
            b.iter(|| {
                verifier
                    .verify_signature(point, black_box(&message), &signature)
                    .unwrap()
            })
        });
        group.bench_function("x25519", |b| {
            b.iter(|| {
                let share = x25519.start().unwrap();
                black_box(share.pub_key());
                share.complete(black_box(&peer_share)).unwrap()
            })
        });
        if let Some(hybrid) = hybrid {
            let client_share = hybrid.start().unwrap().pub_key().to_vec();
            let server_share = hybrid
                .start_and_complete(&client_share)
                .unwrap()
                .pub_key
                .clone();
            group.bench_function("x25519mlkem768-pair", |b| {
                b.iter(|| {
                    // Client: key shares; server: encapsulate to them;
                    // client: complete with a server share.
                    let client = hybrid.start().unwrap();
                    let server = hybrid
                        .start_and_complete(black_box(client.pub_key()))
                        .unwrap();
                    black_box(server.pub_key);
                    client.complete(black_box(&server_share)).unwrap()
                })
            });
        }
        group.finish();
        Floor {
            p256_sign_ns: super::criterion_median_ns(criterion_dir, GROUP, "p256-sign"),
            p256_verify_ns: super::criterion_median_ns(criterion_dir, GROUP, "p256-verify"),
            x25519_ns: super::criterion_median_ns(criterion_dir, GROUP, "x25519"),
            x25519mlkem768_pair_ns: hybrid
                .map(|_| super::criterion_median_ns(criterion_dir, GROUP, "x25519mlkem768-pair")),
        }
    }
}
