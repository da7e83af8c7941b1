//! The LND transport end to end: `lnd::connect` against the mock LND over real
//! TLS gRPC on loopback, and the mock enforcing LND's rules on the stream.

use std::time::{Duration, Instant};

use htlcgate::lnd::connect::{classify_status, connect, ConnectError, LndEndpoint};
use htlcgate::lnd::proto::lnrpc::failure::FailureCode;
use htlcgate::lnd::proto::routerrpc::{
    CircuitKey, ForwardHtlcInterceptRequest, ForwardHtlcInterceptResponse, ResolveHoldForwardAction,
};
use htlcgate::mock_lnd::{sample_preimage, sample_request, LndAction, MockLnd, MockOptions, Offer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

const WAIT: Duration = Duration::from_secs(10);

type Call =
    JoinHandle<Result<tonic::Response<Streaming<ForwardHtlcInterceptRequest>>, tonic::Status>>;

/// One interceptor stream, as the daemon would hold it. Like LND, the mock sends
/// the response headers with the first HTLC, so the call completes only then.
struct Interceptor {
    /// Answers to LND.
    to_lnd: mpsc::Sender<ForwardHtlcInterceptResponse>,
    /// The `HtlcInterceptor` call until its response arrives.
    call: Option<Call>,
    /// Requests from LND, once the call has completed.
    from_lnd: Option<Streaming<ForwardHtlcInterceptRequest>>,
}

impl Interceptor {
    /// Connects and starts the `HtlcInterceptor` call without waiting for its response.
    async fn open(ep: &LndEndpoint) -> Result<Interceptor, ConnectError> {
        let mut client = connect(ep).await?;
        let (to_lnd, rx) = mpsc::channel(4096);
        let call =
            tokio::spawn(async move { client.htlc_interceptor(ReceiverStream::new(rx)).await });
        Ok(Interceptor {
            to_lnd,
            call: Some(call),
            from_lnd: None,
        })
    }

    /// Connects and expects LND to refuse the call at once.
    async fn refused(ep: &LndEndpoint) -> ConnectError {
        let mut interceptor = Interceptor::open(ep)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        match interceptor.response().await {
            Ok(()) => panic!("LND accepted the interceptor"),
            Err(status) => classify_status(&status, ep),
        }
    }

    /// Waits for the call's response (the first HTLC, or LND's refusal).
    async fn response(&mut self) -> Result<(), tonic::Status> {
        if let Some(call) = self.call.take() {
            let response = tokio::time::timeout(WAIT, call)
                .await
                .expect("LND answers the call in time")
                .expect("the call task does not panic")?;
            self.from_lnd = Some(response.into_inner());
        }
        Ok(())
    }

    async fn message(&mut self) -> Result<Option<ForwardHtlcInterceptRequest>, tonic::Status> {
        self.response().await?;
        let from_lnd = self.from_lnd.as_mut().expect("the call completed");
        tokio::time::timeout(WAIT, from_lnd.message())
            .await
            .expect("a message from LND in time")
    }

    async fn next(&mut self) -> ForwardHtlcInterceptRequest {
        self.message()
            .await
            .expect("the stream has not ended")
            .expect("the stream is open")
    }

    async fn answer(&self, response: ForwardHtlcInterceptResponse) {
        self.to_lnd
            .send(response)
            .await
            .expect("the stream is open");
    }

    /// Waits for LND to end the stream and returns its status.
    async fn ended(&mut self) -> tonic::Status {
        loop {
            match self.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    }
}

fn key(req: &ForwardHtlcInterceptRequest) -> (u64, u64) {
    let k = req.incoming_circuit_key.as_ref().unwrap();
    (k.chan_id, k.htlc_id)
}

fn answer(
    chan_id: u64,
    htlc_id: u64,
    action: ResolveHoldForwardAction,
) -> ForwardHtlcInterceptResponse {
    ForwardHtlcInterceptResponse {
        incoming_circuit_key: Some(CircuitKey { chan_id, htlc_id }),
        action: action as i32,
        ..Default::default()
    }
}

async fn mock(require_interceptor: bool) -> (MockLnd, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockLnd::start(MockOptions {
        dir: dir.path().join("lnd"),
        require_interceptor,
        listen: None,
    })
    .await
    .unwrap();
    (mock, dir)
}

/// A self-signed certificate like LND's, but not the mock's.
fn other_lnd_certificate_pem() -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

#[tokio::test]
async fn interceptor_receives_an_htlc_and_its_resume_is_resolved() {
    let (lnd, _dir) = mock(false).await;
    let mut interceptor = Interceptor::open(&lnd.endpoint()).await.unwrap();
    lnd.wait_connected(WAIT).await.unwrap();

    assert_eq!(
        lnd.send_htlc(sample_request(800_000 << 40, 7)),
        Offer::Intercepted
    );
    let request = interceptor.next().await;
    assert_eq!(key(&request), (800_000 << 40, 7));
    assert_eq!(request.onion_blob.len(), 1366);
    assert_eq!(lnd.held_count(), 1);

    interceptor
        .answer(answer(800_000 << 40, 7, ResolveHoldForwardAction::Resume))
        .await;
    lnd.wait_resolved(1, WAIT).await.unwrap();
    let resolutions = lnd.resolutions();
    assert_eq!(resolutions.len(), 1);
    assert_eq!(resolutions[0].stream_gen, 1);
    assert_eq!(resolutions[0].key, (800_000 << 40, 7));
    assert_eq!(
        resolutions[0].response.action,
        ResolveHoldForwardAction::Resume as i32
    );
    assert_eq!(lnd.held_count(), 0);
    assert!(lnd.violations().is_empty());
}

#[tokio::test]
async fn settle_with_the_preimage_and_fail_with_an_allowed_code_are_resolved() {
    let (lnd, _dir) = mock(false).await;
    let mut interceptor = Interceptor::open(&lnd.endpoint()).await.unwrap();
    lnd.wait_connected(WAIT).await.unwrap();
    lnd.send_htlc(sample_request(1, 1));
    lnd.send_htlc(sample_request(1, 2));
    interceptor.next().await;
    interceptor.next().await;

    let mut settle = answer(1, 1, ResolveHoldForwardAction::Settle);
    settle.preimage = sample_preimage(1, 1).to_vec();
    interceptor.answer(settle).await;
    let mut fail = answer(1, 2, ResolveHoldForwardAction::Fail);
    fail.failure_code = FailureCode::TemporaryChannelFailure as i32;
    interceptor.answer(fail).await;

    lnd.wait_resolved(2, WAIT).await.unwrap();
    assert!(lnd.violations().is_empty());
}

/// A macaroon without `offchain:write` (e.g. a read-only one): LND answers the
/// interceptor call "permission denied"; htlcgate reports the macaroon as
/// refused, naming the permissions it needs, and no stream is opened.
#[tokio::test]
async fn a_macaroon_without_offchain_write_is_reported_as_macaroon_rejected() {
    let (lnd, _dir) = mock(false).await;
    lnd.node().deny(htlcgate::mock_node::OFFCHAIN_WRITE);
    let err = Interceptor::refused(&lnd.endpoint()).await;
    assert!(
        matches!(&err, ConnectError::MacaroonRejected { message, .. } if message == "permission denied"),
        "expected MacaroonRejected, got {err:?}"
    );
    assert!(err.to_string().contains("offchain:write"), "{err}");
    assert_eq!(lnd.connects(), 0);
    assert_eq!(lnd.node().calls("HtlcInterceptor"), 1);
}

#[tokio::test]
async fn wrong_macaroon_is_reported_as_macaroon_rejected() {
    let (lnd, dir) = mock(false).await;
    let wrong = dir.path().join("other.macaroon");
    std::fs::write(&wrong, b"a macaroon of another node").unwrap();
    let ep = LndEndpoint {
        macaroon_path: wrong.clone(),
        ..lnd.endpoint()
    };

    let err = Interceptor::refused(&ep).await;
    match &err {
        ConnectError::MacaroonRejected {
            macaroon_path,
            message,
            ..
        } => {
            assert_eq!(macaroon_path, &wrong);
            assert_eq!(
                message,
                "verification failed: signature mismatch after caveat verification"
            );
        }
        other => panic!("expected MacaroonRejected, got {other:?}"),
    }
    assert!(
        err.to_string().contains("offchain:read offchain:write"),
        "{err}"
    );
    assert_eq!(lnd.connects(), 0);
}

#[tokio::test]
async fn a_different_self_signed_certificate_is_reported_as_certificate_mismatch() {
    let (lnd, dir) = mock(false).await;
    let stale = dir.path().join("stale-tls.cert");
    std::fs::write(&stale, other_lnd_certificate_pem()).unwrap();
    let ep = LndEndpoint {
        tls_cert_path: stale.clone(),
        ..lnd.endpoint()
    };

    let err = connect(&ep)
        .await
        .expect_err("the certificate is not pinned");
    match &err {
        ConnectError::CertificateMismatch { addr, cert_path } => {
            assert_eq!(addr, &lnd.addr().to_string());
            assert_eq!(cert_path, &stale);
        }
        other => panic!("expected CertificateMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_file_with_several_certificates_pins_each_of_them() {
    let (lnd, dir) = mock(false).await;
    let bundle = dir.path().join("bundle.cert");
    let mock_cert = std::fs::read_to_string(lnd.cert_path()).unwrap();
    std::fs::write(
        &bundle,
        format!("{}{}", other_lnd_certificate_pem(), mock_cert),
    )
    .unwrap();
    let ep = LndEndpoint {
        tls_cert_path: bundle,
        ..lnd.endpoint()
    };
    let _interceptor = Interceptor::open(&ep).await.unwrap();
    lnd.wait_connected(WAIT).await.unwrap();
}

#[tokio::test]
async fn nobody_listening_is_reported_as_unreachable() {
    let (lnd, _dir) = mock(false).await;
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let ep = LndEndpoint {
        rpcserver: addr.clone(),
        ..lnd.endpoint()
    };

    let err = connect(&ep).await.expect_err("nobody listens");
    assert!(
        matches!(&err, ConnectError::Unreachable { addr: a, .. } if a == &addr),
        "expected Unreachable, got {err:?}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn missing_files_are_reported_before_dialling() {
    let (lnd, dir) = mock(false).await;
    let ep = LndEndpoint {
        tls_cert_path: dir.path().join("missing.cert"),
        ..lnd.endpoint()
    };
    assert!(matches!(
        connect(&ep).await,
        Err(ConnectError::CertFile { .. })
    ));
    let ep = LndEndpoint {
        macaroon_path: dir.path().join("missing.macaroon"),
        ..lnd.endpoint()
    };
    assert!(matches!(
        connect(&ep).await,
        Err(ConnectError::MacaroonFile { .. })
    ));
}

#[tokio::test]
async fn second_interceptor_is_reported_as_interceptor_already_exists() {
    let (lnd, _dir) = mock(false).await;
    let _first = Interceptor::open(&lnd.endpoint()).await.unwrap();
    lnd.wait_connected(WAIT).await.unwrap();

    let err = Interceptor::refused(&lnd.endpoint()).await;
    assert!(
        matches!(err, ConnectError::InterceptorAlreadyExists { .. }),
        "expected InterceptorAlreadyExists, got {err:?}"
    );
    assert_eq!(lnd.connects(), 1);
    assert_eq!(lnd.current_stream(), Some(1));
}

/// Sends one HTLC, answers it with `bad`, and returns the status LND ended the stream with.
async fn stream_end_for(lnd: &MockLnd, bad: ForwardHtlcInterceptResponse) -> tonic::Status {
    let mut interceptor = Interceptor::open(&lnd.endpoint()).await.unwrap();
    lnd.wait_connected(WAIT).await.unwrap();
    lnd.send_htlc(sample_request(5, 9));
    interceptor.next().await;
    interceptor.answer(bad).await;
    let status = interceptor.ended().await;
    lnd.wait_stream_ends(1, WAIT).await.unwrap();
    status
}

fn assert_one_violation(
    lnd: &MockLnd,
    status: &tonic::Status,
    code: tonic::Code,
    message: &str,
    key: (u64, u64),
) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.message(), message);
    let violations = lnd.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].stream_gen, 1);
    assert_eq!(violations[0].message, message);
    assert_eq!(violations[0].code, code);
    assert_eq!(violations[0].key, Some(key));
    assert!(lnd.resolutions().is_empty());
}

#[tokio::test]
async fn answering_an_unknown_key_ends_the_stream_with_forward_does_not_exist() {
    let (lnd, _dir) = mock(true).await;
    let chan = (800_000u64 << 40) | (1 << 16);
    let status = stream_end_for(&lnd, answer(chan, 1, ResolveHoldForwardAction::Resume)).await;
    assert_one_violation(
        &lnd,
        &status,
        tonic::Code::Unknown,
        "forward does not exist: (Chan ID=800000:1:0, HTLC ID=1)",
        (chan, 1),
    );
    // The HTLC that was sent is still held for the next interceptor.
    assert!(lnd.is_held((5, 9)));
}

#[tokio::test]
async fn a_31_byte_preimage_ends_the_stream() {
    let (lnd, _dir) = mock(true).await;
    let mut settle = answer(5, 9, ResolveHoldForwardAction::Settle);
    settle.preimage = vec![7; 31];
    let status = stream_end_for(&lnd, settle).await;
    assert_one_violation(
        &lnd,
        &status,
        tonic::Code::Unknown,
        "invalid preimage length of 31, want 32",
        (5, 9),
    );
    assert!(lnd.is_held((5, 9)), "a key that broke a rule stays held");
}

#[tokio::test]
async fn settling_without_a_preimage_ends_the_stream_with_missing_preimage() {
    let (lnd, _dir) = mock(true).await;
    let status = stream_end_for(&lnd, answer(5, 9, ResolveHoldForwardAction::Settle)).await;
    assert_one_violation(
        &lnd,
        &status,
        tonic::Code::Unknown,
        "missing preimage",
        (5, 9),
    );
}

#[tokio::test]
async fn failing_with_fee_insufficient_ends_the_stream() {
    let (lnd, _dir) = mock(true).await;
    let mut fail = answer(5, 9, ResolveHoldForwardAction::Fail);
    fail.failure_code = FailureCode::FeeInsufficient as i32;
    let status = stream_end_for(&lnd, fail).await;
    assert_one_violation(
        &lnd,
        &status,
        tonic::Code::InvalidArgument,
        "unsupported failure code: FEE_INSUFFICIENT",
        (5, 9),
    );
}

#[tokio::test]
async fn a_failure_message_with_a_failure_code_ends_the_stream() {
    let (lnd, _dir) = mock(true).await;
    let mut fail = answer(5, 9, ResolveHoldForwardAction::Fail);
    fail.failure_message = vec![0; 292];
    fail.failure_code = FailureCode::TemporaryChannelFailure as i32;
    let status = stream_end_for(&lnd, fail).await;
    assert_one_violation(
        &lnd,
        &status,
        tonic::Code::InvalidArgument,
        "failure message and failure code are mutually exclusive",
        (5, 9),
    );
}

#[tokio::test]
async fn a_failure_message_that_is_not_292_bytes_ends_the_stream() {
    let (lnd, _dir) = mock(true).await;
    let mut fail = answer(5, 9, ResolveHoldForwardAction::Fail);
    fail.failure_message = vec![0; 291];
    let status = stream_end_for(&lnd, fail).await;
    assert_one_violation(
        &lnd,
        &status,
        tonic::Code::InvalidArgument,
        "failure message length invalid",
        (5, 9),
    );
}

#[tokio::test]
async fn a_custom_record_key_below_65536_ends_the_stream() {
    let (lnd, _dir) = mock(true).await;
    let mut modified = answer(5, 9, ResolveHoldForwardAction::ResumeModified);
    modified.out_wire_custom_records.insert(65_535, vec![1]);
    modified.out_wire_custom_records.insert(65_537, vec![2]);
    let status = stream_end_for(&lnd, modified).await;
    assert_one_violation(
        &lnd,
        &status,
        tonic::Code::InvalidArgument,
        "failed to validate custom records: custom records entry with TLV type below min: 65536",
        (5, 9),
    );
}

#[tokio::test]
async fn an_unknown_action_ends_the_stream() {
    let (lnd, _dir) = mock(true).await;
    let mut unknown = answer(5, 9, ResolveHoldForwardAction::Resume);
    unknown.action = 7;
    let status = stream_end_for(&lnd, unknown).await;
    assert_one_violation(
        &lnd,
        &status,
        tonic::Code::InvalidArgument,
        "unrecognized resolve action 7",
        (5, 9),
    );
}

#[tokio::test]
async fn an_answer_without_a_circuit_key_ends_the_stream_with_invalid_argument() {
    let (lnd, _dir) = mock(true).await;
    let mut keyless = answer(5, 9, ResolveHoldForwardAction::Resume);
    keyless.incoming_circuit_key = None;
    let status = stream_end_for(&lnd, keyless).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "CircuitKey missing from ForwardHtlcInterceptResponse"
    );
    assert_eq!(lnd.violations()[0].key, None);
}

#[tokio::test]
async fn answering_the_same_key_twice_ends_the_stream() {
    let (lnd, _dir) = mock(true).await;
    let mut interceptor = Interceptor::open(&lnd.endpoint()).await.unwrap();
    lnd.wait_connected(WAIT).await.unwrap();
    lnd.send_htlc(sample_request(5, 9));
    interceptor.next().await;
    interceptor
        .answer(answer(5, 9, ResolveHoldForwardAction::Resume))
        .await;
    interceptor
        .answer(answer(5, 9, ResolveHoldForwardAction::Resume))
        .await;
    let status = interceptor.ended().await;
    assert_eq!(
        status.message(),
        "forward does not exist: (Chan ID=0:0:5, HTLC ID=9)"
    );
    assert_eq!(lnd.resolutions().len(), 1);
}

#[tokio::test]
async fn held_htlcs_are_replayed_after_a_reconnect_when_an_interceptor_is_required() {
    let (lnd, _dir) = mock(true).await;
    let ep = lnd.endpoint();
    let mut first = Interceptor::open(&ep).await.unwrap();
    lnd.wait_connected(WAIT).await.unwrap();
    for htlc_id in 0..3 {
        assert_eq!(
            lnd.send_htlc(sample_request(42, htlc_id)),
            Offer::Intercepted
        );
    }
    for _ in 0..3 {
        first.next().await;
    }
    first
        .answer(answer(42, 0, ResolveHoldForwardAction::Resume))
        .await;
    lnd.wait_resolved(1, WAIT).await.unwrap();

    // LND goes away from under the interceptor: the two unanswered HTLCs stay held.
    assert!(lnd.disconnect());
    let status = first.ended().await;
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(lnd.held_count(), 2);

    // Without an interceptor a new HTLC is failed back at once.
    assert_eq!(
        lnd.send_htlc(sample_request(42, 3)),
        Offer::ResolvedByLnd(LndAction::FailedNoInterceptor)
    );

    let mut second = Interceptor::open(&ep).await.unwrap();
    let mut replayed = vec![key(&second.next().await), key(&second.next().await)];
    replayed.sort_unstable();
    assert_eq!(replayed, vec![(42, 1), (42, 2)]);
    for (chan, htlc) in replayed {
        second
            .answer(answer(chan, htlc, ResolveHoldForwardAction::Resume))
            .await;
    }
    lnd.wait_resolved(3, WAIT).await.unwrap();
    let gens: Vec<u64> = lnd.resolutions().iter().map(|r| r.stream_gen).collect();
    assert_eq!(gens, vec![1, 2, 2]);
    assert_eq!(lnd.connects(), 2);
    assert_eq!(lnd.held_count(), 0);
    let outcomes = lnd.lnd_outcomes();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].key, (42, 3));
}

#[tokio::test]
async fn a_violating_key_is_replayed_to_the_next_interceptor_when_one_is_required() {
    let (lnd, _dir) = mock(true).await;
    let mut fail = answer(5, 9, ResolveHoldForwardAction::Fail);
    fail.failure_code = FailureCode::FeeInsufficient as i32;
    stream_end_for(&lnd, fail).await;

    let mut next = Interceptor::open(&lnd.endpoint()).await.unwrap();
    assert_eq!(key(&next.next().await), (5, 9));
    next.answer(answer(5, 9, ResolveHoldForwardAction::Fail))
        .await;
    lnd.wait_resolved(1, WAIT).await.unwrap();
    assert_eq!(lnd.resolutions()[0].stream_gen, 2);
}

#[tokio::test]
async fn without_require_interceptor_lnd_resumes_held_htlcs_when_the_interceptor_goes_away() {
    let (lnd, _dir) = mock(false).await;
    let mut interceptor = Interceptor::open(&lnd.endpoint()).await.unwrap();
    lnd.wait_connected(WAIT).await.unwrap();
    lnd.send_htlc(sample_request(3, 1));
    lnd.send_htlc(sample_request(3, 2));
    interceptor.next().await;
    interceptor.next().await;

    drop(interceptor);
    lnd.wait_stream_ends(1, WAIT).await.unwrap();
    assert_eq!(lnd.held_count(), 0);
    let outcomes = lnd.lnd_outcomes();
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes
        .iter()
        .all(|o| o.action == LndAction::ResumedInterceptorGone));
    assert!(lnd.violations().is_empty());

    // And with nobody connected, new HTLCs go straight through.
    assert_eq!(
        lnd.send_htlc(sample_request(3, 3)),
        Offer::ResolvedByLnd(LndAction::ResumedNoInterceptor)
    );
}

#[tokio::test]
async fn an_on_chain_htlc_can_only_be_settled() {
    let (lnd, _dir) = mock(false).await;
    let ep = lnd.endpoint();
    let mut interceptor = Interceptor::open(&ep).await.unwrap();
    lnd.wait_connected(WAIT).await.unwrap();
    lnd.send_htlc_on_chain(sample_request(8, 1));
    interceptor.next().await;
    interceptor
        .answer(answer(8, 1, ResolveHoldForwardAction::Resume))
        .await;
    let status = interceptor.ended().await;
    assert_eq!(
        status.message(),
        "cannot resume held htlc in the on-chain flow"
    );
    // On-chain HTLCs survive the interceptor going away even without requireinterceptor.
    assert!(lnd.is_held((8, 1)));

    let mut interceptor = Interceptor::open(&ep).await.unwrap();
    assert_eq!(key(&interceptor.next().await), (8, 1));
    interceptor
        .answer(answer(8, 1, ResolveHoldForwardAction::Fail))
        .await;
    let status = interceptor.ended().await;
    assert_eq!(
        status.message(),
        "cannot fail held htlc in the on-chain flow"
    );

    let mut interceptor = Interceptor::open(&ep).await.unwrap();
    assert_eq!(key(&interceptor.next().await), (8, 1));
    let mut settle = answer(8, 1, ResolveHoldForwardAction::Settle);
    settle.preimage = sample_preimage(8, 1).to_vec();
    interceptor.answer(settle).await;
    lnd.wait_resolved(1, WAIT).await.unwrap();
    assert_eq!(lnd.resolutions()[0].stream_gen, 3);
    assert_eq!(lnd.violations().len(), 2);
}

#[tokio::test]
async fn a_stopped_lnd_is_unreachable_and_after_a_restart_replays_held_htlcs() {
    let (mut lnd, _dir) = mock(true).await;
    let ep = lnd.endpoint();
    let mut interceptor = Interceptor::open(&ep).await.unwrap();
    lnd.wait_connected(WAIT).await.unwrap();
    lnd.send_htlc(sample_request(9, 1));
    interceptor.next().await;

    lnd.stop().await;
    interceptor.ended().await;
    let err = connect(&ep).await.expect_err("LND is down");
    assert!(matches!(err, ConnectError::Unreachable { .. }), "{err:?}");

    lnd.restart().await.unwrap();
    assert_eq!(lnd.addr().to_string(), ep.rpcserver);
    let mut interceptor = Interceptor::open(&ep).await.unwrap();
    assert_eq!(key(&interceptor.next().await), (9, 1));
    interceptor
        .answer(answer(9, 1, ResolveHoldForwardAction::Resume))
        .await;
    lnd.wait_resolved(1, WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_pushes_twenty_thousand_htlcs_through_one_stream() {
    const N: u64 = 20_000;
    let (lnd, _dir) = mock(false).await;
    let mut interceptor = Interceptor::open(&lnd.endpoint()).await.unwrap();
    lnd.wait_connected(WAIT).await.unwrap();

    let started = Instant::now();
    let answers = interceptor.to_lnd.clone();
    let echo = tokio::spawn(async move {
        for _ in 0..N {
            let request = interceptor.next().await;
            let (chan, htlc) = key(&request);
            answers
                .send(answer(chan, htlc, ResolveHoldForwardAction::Resume))
                .await
                .unwrap();
        }
        interceptor
    });
    for htlc_id in 0..N {
        lnd.send_htlc(sample_request(1, htlc_id));
    }
    let sent = started.elapsed();
    lnd.wait_resolved(N as usize, Duration::from_secs(60))
        .await
        .unwrap();
    let _interceptor = echo.await.unwrap();
    let total = started.elapsed();
    eprintln!(
        "{N} HTLCs offered in {sent:?} ({:.0}/s), answered in {total:?} ({:.0}/s)",
        N as f64 / sent.as_secs_f64(),
        N as f64 / total.as_secs_f64()
    );
    assert_eq!(lnd.resolution_count(), N as usize);
    assert!(lnd.violations().is_empty());
}
