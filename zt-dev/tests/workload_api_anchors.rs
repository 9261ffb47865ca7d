//! The Workload API source keeps anchors in their trust domain: an agent
//! that sends a partner's CA inside our own trust domain's bundle is
//! refused, so the partner cannot mint our IDs.
//!
//! The agent here is a bare Workload API server over a Unix socket that
//! answers with hand-made messages: zt's own types cannot even build such a
//! bundle.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};
use zt_core::source::{SourceError, SvidSource as _, WorkloadApiSource};
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::FakeCa;
use zt_dev::workload_api::pb;
use zt_dev::workload_api::pb::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Sends one X.509-SVID response, then keeps the stream open.
struct Agent {
    response: pb::X509svidResponse,
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for Agent {
    type FetchX509SVIDStream = Stream_<pb::X509svidResponse>;
    type FetchX509BundlesStream = Stream_<pb::X509BundlesResponse>;
    type FetchJWTBundlesStream = Stream_<pb::JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        _: Request<pb::X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let first = futures::stream::once(std::future::ready(Ok(self.response.clone())));
        Ok(Response::new(Box::pin(
            first.chain(futures::stream::pending()),
        )))
    }

    async fn fetch_x509_bundles(
        &self,
        _: Request<pb::X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn fetch_jwtsvid(
        &self,
        _: Request<pb::JwtsvidRequest>,
    ) -> Result<Response<pb::JwtsvidResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn fetch_jwt_bundles(
        &self,
        _: Request<pb::JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn validate_jwtsvid(
        &self,
        _: Request<pb::ValidateJwtsvidRequest>,
    ) -> Result<Response<pb::ValidateJwtsvidResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

async fn connect(
    response: pb::X509svidResponse,
) -> (
    tempfile::TempDir,
    Result<std::sync::Arc<WorkloadApiSource>, SourceError>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SpiffeWorkloadApiServer::new(Agent { response }))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    let source = WorkloadApiSource::builder()
        .endpoint(format!("unix://{}", path.display()))
        .initial_sync_timeout(Duration::from_secs(10))
        // This server implements the X.509 stream only.
        .jwt_bundles(false)
        .build()
        .await;
    (dir, source)
}

fn response(ca: &FakeCa, bundle: Vec<u8>) -> pb::X509svidResponse {
    let id = SpiffeId::new("spiffe://example.org/orders").unwrap();
    let svid = ca.issue_x509_svid(&id, Duration::from_secs(600)).unwrap();
    pb::X509svidResponse {
        svids: vec![pb::X509svid {
            spiffe_id: id.to_string(),
            x509_svid: svid.chain_der_concat(),
            x509_svid_key: svid.private_key().secret_der().to_vec(),
            bundle,
            hint: String::new(),
        }],
        crl: Vec::new(),
        federated_bundles: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_api_source_refuses_a_partner_ca_in_our_trust_domains_bundle() {
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let partner = FakeCa::new(TrustDomain::new("partner.example").unwrap()).unwrap();

    // Our own bundle alone: the source starts.
    let (_dir, good) = connect(response(&ca, ca.bundle().to_der_concat())).await;
    let good = good.unwrap();
    assert_eq!(
        good.current().unwrap().svid().id().to_string(),
        "spiffe://example.org/orders"
    );
    good.shutdown().await;

    // The partner's CA appended to our trust domain's bundle: refused.
    let mut mixed = ca.bundle().to_der_concat();
    mixed.extend_from_slice(&partner.bundle().to_der_concat());
    let (_dir, refused) = connect(response(&ca, mixed)).await;
    let err = refused.expect_err("the source must not start");
    let text = err.to_string();
    assert!(text.contains("spiffe://partner.example"), "{text}");
    assert!(text.contains("example.org"), "{text}");
}
