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
    use rustls::sign::Signer;
    use rustls_pki_types::{PrivateKeyDer, SignatureVerificationAlgorithm};

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
        /// The server's part of one X25519MLKEM768 exchange alone: its
        /// X25519 share generated and agreed and ML-KEM encapsulation to
        /// the client's key; `None` when the provider has no such group.
        pub x25519mlkem768_server_ns: Option<f64>,
    }

    impl Floor {
        /// The unavoidable public-key work of one full mutual handshake
        /// with one-certificate chains: two key shares generated and
        /// agreed, two CertificateVerify signatures, and `verifications`
        /// signature checks (4 with both peer chains verified in full: each
        /// side checks the peer's leaf signature and its CertificateVerify;
        /// 2 when verified chains are cached). With chains of two
        /// (leaf and intermediate, the root in the bundle) full
        /// verification takes 6: per side the leaf's signature, the
        /// intermediate's, and the CertificateVerify; still 2 when cached.
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

        /// The unavoidable public-key work of the server's side of one
        /// full mutual handshake: its half of an X25519MLKEM768 exchange,
        /// one CertificateVerify signature, and `verifications` signature
        /// checks of the client (2 for a one-certificate chain verified in
        /// full, 1 when the chain is cached); `None` without that group.
        pub fn server_handshake_pq_ns(&self, verifications: u32) -> Option<f64> {
            self.x25519mlkem768_server_ns
                .map(|kx| kx + self.p256_sign_ns + f64::from(verifications) * self.p256_verify_ns)
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
            if let Some(server) = self.x25519mlkem768_server_ns {
                println!(
                    "floor: X25519MLKEM768 server side alone {:.1} µs",
                    server / 1e3
                );
            }
        }
    }

    /// The floor's operations, ready to run one at a time: a P-256 signer
    /// and verifier over a fixed message, and the provider's X25519 and
    /// (when it has it) X25519MLKEM768 groups with peer shares prepared.
    pub struct Ops {
        message: [u8; 130],
        signer: Box<dyn Signer>,
        signature: Vec<u8>,
        point: Vec<u8>,
        verifier: &'static dyn SignatureVerificationAlgorithm,
        x25519: &'static dyn SupportedKxGroup,
        x25519_peer_share: Vec<u8>,
        hybrid: Option<Hybrid>,
    }

    struct Hybrid {
        group: &'static dyn SupportedKxGroup,
        client_share: Vec<u8>,
        server_share: Vec<u8>,
    }

    #[allow(
        clippy::panic,
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "bench support: a provider without these primitives is a broken bench"
    )]
    impl Ops {
        /// Prepares the operations with `provider`, signing with `key` (a
        /// P-256 PKCS#8 key).
        ///
        /// # Panics
        ///
        /// If the provider cannot load the key or lacks P-256 or X25519.
        pub fn new(provider: &CryptoProvider, key: &PrivateKeyDer<'static>) -> Self {
            let message = [0x5a_u8; 130];
            let signing = provider
                .key_provider
                .load_private_key(key.clone_key())
                .expect("the provider loads the P-256 key");
            let signer = signing
                .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
                .expect("an ECDSA P-256 signer");
            let signature = signer.sign(&message).unwrap();
            // The subjectPublicKey of a P-256 SubjectPublicKeyInfo: its last
            // 65 bytes, the uncompressed point.
            let spki = signing.public_key().expect("the key exposes its SPKI");
            let point = spki.as_ref()[spki.as_ref().len() - 65..].to_vec();
            assert_eq!(point[0], 0x04, "an uncompressed P-256 point");
            let verifier = provider
                .signature_verification_algorithms
                .mapping
                .iter()
                .find(|(scheme, _)| *scheme == SignatureScheme::ECDSA_NISTP256_SHA256)
                .and_then(|(_, algs)| {
                    algs.iter()
                        .find(|alg| alg.verify_signature(&point, &message, &signature).is_ok())
                })
                .copied()
                .expect("a P-256 verifier that accepts the signature");
            let x25519: &'static dyn SupportedKxGroup = *provider
                .kx_groups
                .iter()
                .find(|g| g.name() == NamedGroup::X25519)
                .expect("X25519");
            let x25519_peer_share = x25519.start().unwrap().pub_key().to_vec();
            let hybrid = provider
                .kx_groups
                .iter()
                .find(|g| g.name() == NamedGroup::X25519MLKEM768)
                .map(|group| {
                    let client_share = group.start().unwrap().pub_key().to_vec();
                    let server_share = group
                        .start_and_complete(&client_share)
                        .unwrap()
                        .pub_key
                        .clone();
                    Hybrid {
                        group: *group,
                        client_share,
                        server_share,
                    }
                });
            Self {
                message,
                signer,
                signature,
                point,
                verifier,
                x25519,
                x25519_peer_share,
                hybrid,
            }
        }

        /// Whether the provider has X25519MLKEM768.
        pub fn has_hybrid(&self) -> bool {
            self.hybrid.is_some()
        }

        /// One ECDSA P-256 / SHA-256 signature.
        pub fn sign(&self) {
            black_box(self.signer.sign(black_box(&self.message)).unwrap());
        }

        /// One ECDSA P-256 / SHA-256 verification.
        pub fn verify(&self) {
            self.verifier
                .verify_signature(&self.point, black_box(&self.message), &self.signature)
                .unwrap();
        }

        /// One X25519 key share generated and agreed.
        pub fn x25519(&self) {
            let share = self.x25519.start().unwrap();
            black_box(share.pub_key());
            black_box(share.complete(black_box(&self.x25519_peer_share)).unwrap());
        }

        /// Both sides of one X25519MLKEM768 exchange: the client's key
        /// shares, the server's encapsulation to them, the client's
        /// completion with a server share.
        ///
        /// # Panics
        ///
        /// Without X25519MLKEM768 ([`has_hybrid`](Self::has_hybrid)).
        pub fn x25519mlkem768_pair(&self) {
            let hybrid = self.hybrid.as_ref().expect("X25519MLKEM768");
            let client = hybrid.group.start().unwrap();
            let server = hybrid
                .group
                .start_and_complete(black_box(client.pub_key()))
                .unwrap();
            black_box(server.pub_key);
            black_box(client.complete(black_box(&hybrid.server_share)).unwrap());
        }

        /// The server's side of one X25519MLKEM768 exchange alone.
        ///
        /// # Panics
        ///
        /// Without X25519MLKEM768 ([`has_hybrid`](Self::has_hybrid)).
        pub fn x25519mlkem768_server(&self) {
            let hybrid = self.hybrid.as_ref().expect("X25519MLKEM768");
            let server = hybrid
                .group
                .start_and_complete(black_box(&hybrid.client_share))
                .unwrap();
            black_box(server.pub_key);
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
    pub fn measure(
        criterion: &mut Criterion,
        criterion_dir: &Path,
        provider: &CryptoProvider,
        key: &PrivateKeyDer<'static>,
    ) -> Floor {
        let ops = Ops::new(provider, key);
        let mut group = criterion.benchmark_group(GROUP);
        group.bench_function("p256-sign", |b| b.iter(|| ops.sign()));
        group.bench_function("p256-verify", |b| b.iter(|| ops.verify()));
        group.bench_function("x25519", |b| b.iter(|| ops.x25519()));
        if ops.has_hybrid() {
            group.bench_function("x25519mlkem768-pair", |b| {
                b.iter(|| ops.x25519mlkem768_pair())
            });
            group.bench_function("x25519mlkem768-server", |b| {
                b.iter(|| ops.x25519mlkem768_server())
            });
        }
        group.finish();
        let hybrid = |name| {
            ops.has_hybrid()
                .then(|| super::criterion_median_ns(criterion_dir, GROUP, name))
        };
        Floor {
            p256_sign_ns: super::criterion_median_ns(criterion_dir, GROUP, "p256-sign"),
            p256_verify_ns: super::criterion_median_ns(criterion_dir, GROUP, "p256-verify"),
            x25519_ns: super::criterion_median_ns(criterion_dir, GROUP, "x25519"),
            x25519mlkem768_pair_ns: hybrid("x25519mlkem768-pair"),
            x25519mlkem768_server_ns: hybrid("x25519mlkem768-server"),
        }
    }
}

/// Paired measurement for a loaded machine: several jobs timed in turn,
/// in an order shuffled each round, round after round, so that every
/// round sees the same load on each, and ratios taken within a round
/// before the median over rounds. Other
/// processes slow whole rounds; a ratio within one round mostly cancels
/// that, where two criterion medians taken seconds apart do not.
pub mod paired {
    use std::time::{Duration, Instant};

    /// One job: a name and a closure that does one unit of work and
    /// returns the time to count for it.
    pub type Job<'a> = (&'a str, &'a mut dyn FnMut() -> Duration);

    /// The counted time per unit of work of each job in each round.
    #[derive(Debug, Clone)]
    pub struct Rounds {
        names: Vec<String>,
        /// `ns[round][job]`: nanoseconds of the job's median unit in the
        /// round.
        ns: Vec<Vec<f64>>,
    }

    /// Times a closure that returns nothing: the wall time of the call.
    pub fn timed(f: &mut dyn FnMut()) -> Duration {
        let start = Instant::now();
        f();
        start.elapsed()
    }

    /// Runs `rounds` rounds; in each, every job runs `per_round` times in a
    /// row, the jobs in an order shuffled anew each round (the same
    /// sequence of orders in every run), so that no job always comes first,
    /// last or after the same other, and the round keeps each job's median
    /// unit. The times are wall time: a unit during which the
    /// thread was preempted counts the time it waited, and the median
    /// within the round leaves such units out as long as fewer than half
    /// of a job's units in the round were preempted (short units, such as
    /// one signature, rarely are; a millisecond handshake on a loaded
    /// machine more often).
    ///
    /// # Panics
    ///
    /// If `per_round` is 0.
    pub fn run(rounds: usize, per_round: u32, jobs: &mut [Job<'_>]) -> Rounds {
        assert!(per_round > 0, "at least one unit per round");
        let names = jobs.iter().map(|(name, _)| (*name).to_owned()).collect();
        let mut shuffle = Shuffle::new();
        let ns = (0..rounds)
            .map(|_| {
                let mut medians = vec![0.0; jobs.len()];
                let mut order: Vec<usize> = (0..jobs.len()).collect();
                shuffle.shuffle(&mut order);
                for i in order {
                    let job = &mut jobs[i].1;
                    let mut units: Vec<Duration> = (0..per_round).map(|_| job()).collect();
                    units.sort_unstable();
                    medians[i] = units[units.len() / 2].as_nanos() as f64;
                }
                medians
            })
            .collect();
        Rounds { names, ns }
    }

    /// Fisher–Yates shuffles driven by a fixed-seed xorshift generator:
    /// orders that vary from round to round, reproducibly.
    struct Shuffle(u64);

    impl Shuffle {
        fn new() -> Self {
            Self(0x9E37_79B9_7F4A_7C15)
        }

        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn shuffle(&mut self, items: &mut [usize]) {
            for i in (1..items.len()).rev() {
                let j = (self.next() % (i as u64 + 1)) as usize;
                items.swap(i, j);
            }
        }
    }

    impl Rounds {
        /// The number of rounds.
        pub fn len(&self) -> usize {
            self.ns.len()
        }

        /// Whether no round ran.
        pub fn is_empty(&self) -> bool {
            self.ns.is_empty()
        }

        /// The median over rounds of `f` applied to one round, given a
        /// lookup of each job's nanoseconds per unit by name.
        ///
        /// # Panics
        ///
        /// If `f` asks for a job that did not run, or no round ran.
        #[allow(
            clippy::panic,
            reason = "bench support: a misnamed job is a broken bench"
        )]
        pub fn median(&self, f: impl Fn(&dyn Fn(&str) -> f64) -> f64) -> f64 {
            assert!(!self.ns.is_empty(), "no round ran");
            let mut values: Vec<f64> = self
                .ns
                .iter()
                .map(|round| {
                    let get = |name: &str| {
                        let i = self
                            .names
                            .iter()
                            .position(|n| n == name)
                            .unwrap_or_else(|| panic!("no job named {name}"));
                        round[i]
                    };
                    f(&get)
                })
                .collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        }

        /// The median over rounds of one job's nanoseconds per unit.
        pub fn median_ns(&self, name: &str) -> f64 {
            self.median(|ns| ns(name))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::paired;

    #[test]
    fn paired_rounds_drop_preempted_units_and_pair_ratios() {
        // Job "a" takes 100 ns, except every fourth unit (a preemption)
        // takes 1 ms; job "b" takes twice a's time in each round, the
        // rounds getting slower as if the machine's load rose.
        let mut a_calls = 0_u32;
        let mut b_calls = 0_u32;
        let mut a = || {
            a_calls += 1;
            let round = u64::from((a_calls - 1) / 5);
            if a_calls.is_multiple_of(4) {
                Duration::from_millis(1)
            } else {
                Duration::from_nanos(100 * (round + 1))
            }
        };
        let mut b = || {
            b_calls += 1;
            let round = u64::from((b_calls - 1) / 5);
            Duration::from_nanos(200 * (round + 1))
        };
        let rounds = paired::run(7, 5, &mut [("a", &mut a), ("b", &mut b)]);
        assert_eq!(rounds.len(), 7);
        assert_eq!(rounds.median(|ns| ns("b") / ns("a")), 2.0);
        // Rounds 1..=7: a's median unit is 100 ns × round; the median
        // round is the fourth.
        assert_eq!(rounds.median_ns("a"), 400.0);
        assert_eq!(rounds.median_ns("b"), 800.0);
    }

    #[test]
    fn paired_rounds_shuffle_the_order_of_the_jobs() {
        // Which job ran at each position of each round.
        let runs = std::cell::RefCell::new(Vec::new());
        let mut a = || {
            runs.borrow_mut().push(0);
            Duration::from_nanos(1)
        };
        let mut b = || {
            runs.borrow_mut().push(1);
            Duration::from_nanos(2)
        };
        let mut c = || {
            runs.borrow_mut().push(2);
            Duration::from_nanos(3)
        };
        let rounds = paired::run(300, 1, &mut [("a", &mut a), ("b", &mut b), ("c", &mut c)]);
        let runs = runs.into_inner();
        let mut at = [[0_u32; 3]; 3];
        for round in runs.chunks(3) {
            let mut seen = round.to_vec();
            seen.sort_unstable();
            assert_eq!(seen, [0, 1, 2], "every job once per round");
            for (position, &job) in round.iter().enumerate() {
                at[job][position] += 1;
            }
        }
        // Each job at each position about a third of the time.
        for job in at {
            for count in job {
                assert!((70..=130).contains(&count), "positions {at:?}");
            }
        }
        // Each time is kept under its own job's name, whatever the order.
        assert_eq!(rounds.median_ns("a"), 1.0);
        assert_eq!(rounds.median_ns("b"), 2.0);
        assert_eq!(rounds.median_ns("c"), 3.0);
    }
}
