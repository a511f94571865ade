//! The DICOM upper-layer listener: admits connections within the association bound, checks the
//! first PDU before negotiating (so garbage and oversized PDUs get an A-ABORT, not a parse of
//! gigabytes), negotiates (verification plus the CR/DX storage SOP classes, the accepted
//! transfer syntaxes, AE title checks), then hands the association to [`crate::dimse`].
//!
//! Shutdown: the listener closes at once; each association finishes the instance it is storing
//! (so an acknowledged event is answered), then is aborted; whatever is still open after the
//! drain timeout is dropped. An aborted sender keeps its instances and resends them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use dicom_ul::association::server::{AccessControl, DefaultNegotiation, ServerAssociationOptions};
use dicom_ul::association::{Association as _, AsyncServerAssociation, Error as UlError};
use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationRJ, AssociationRJResult,
    AssociationRJServiceProviderPresentationReason, AssociationRJServiceUserReason,
    AssociationRJSource, PresentationContextResultReason, ReadError, UserIdentity,
};
use dicom_ul::Pdu;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dimse::Session;
use crate::instance::{STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES, VERIFICATION};
use crate::metrics::{GatewayMetrics, Reason};
use crate::publish::Publisher;

const ASSOCIATE_RQ: u8 = 0x01;

/// Calling and called AE title policy: the called title must be ours, the calling one in the
/// allowed list (an empty list allows any).
#[derive(Debug, Clone)]
pub struct AeAccess {
    allowed_calling: Vec<String>,
}

impl AccessControl for AeAccess {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if called_ae_title.trim() != this_ae_title.trim() {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if !self.allowed_calling.is_empty()
            && !self
                .allowed_calling
                .iter()
                .any(|a| a.trim() == calling_ae_title.trim())
        {
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

/// Settings of one association's DIMSE loop.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_pdu: u32,
    pub association_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_instance_bytes: u64,
}

/// The C-STORE/C-ECHO service class provider.
pub struct Scp {
    options: ServerAssociationOptions<'static, AeAccess, DefaultNegotiation>,
    pub(crate) limits: Limits,
    pub(crate) publisher: Arc<Publisher>,
    pub(crate) metrics: GatewayMetrics,
    slots: Arc<Semaphore>,
    /// DICOM over TLS: associations are negotiated inside a TLS session.
    tls: bool,
    /// Bounds the tasks that answer "busy", so a flood cannot grow them without limit.
    refusals: Arc<Semaphore>,
}

impl Scp {
    pub fn new(
        cfg: &Config,
        tls: Option<rustls::ServerConfig>,
        publisher: Arc<Publisher>,
        slots: Arc<Semaphore>,
    ) -> Self {
        let mut options = ServerAssociationOptions::new()
            .ae_access_control(AeAccess {
                allowed_calling: cfg.calling_aes.clone(),
            })
            .ae_title(cfg.ae_title.clone())
            .max_pdu_length(cfg.max_pdu)
            .strict(true)
            .promiscuous(false)
            .with_abstract_syntax(VERIFICATION);
        for sop in STORAGE_SOP_CLASSES {
            options = options.with_abstract_syntax(*sop);
        }
        for (ts, _) in TRANSFER_SYNTAXES {
            options = options.with_transfer_syntax(*ts);
        }
        let tls_on = tls.is_some();
        if let Some(config) = tls {
            options = options.tls_config(config);
        }
        Scp {
            tls: tls_on,
            options,
            limits: Limits {
                max_pdu: cfg.max_pdu,
                association_timeout: cfg.association_timeout(),
                idle_timeout: cfg.idle_timeout(),
                max_instance_bytes: cfg.max_instance_bytes,
            },
            metrics: publisher.metrics.clone(),
            publisher,
            refusals: Arc::new(Semaphore::new(cfg.max_associations.max(4))),
            slots,
        }
    }
}

/// Accepts connections until `shutdown`, then drains open associations for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    scp: Arc<Scp>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => admit(&mut tasks, &scp, socket, peer, &shutdown),
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a DICOM connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let drained =
        tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            open = tasks.len(),
            "associations still open after the drain timeout; dropping them"
        );
        tasks.shutdown().await;
    }
}

fn admit(
    tasks: &mut JoinSet<()>,
    scp: &Arc<Scp>,
    socket: TcpStream,
    peer: SocketAddr,
    shutdown: &CancellationToken,
) {
    let peer = peer.to_string();
    match scp.slots.clone().try_acquire_owned() {
        Ok(permit) => {
            let scp = scp.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { associate(scp, socket, peer, permit, shutdown).await });
        }
        Err(_) => match scp.refusals.clone().try_acquire_owned() {
            Ok(permit) => {
                let scp = scp.clone();
                tasks.spawn(async move { refuse_busy(scp, socket, peer, permit).await });
            }
            Err(_) => scp.metrics.rejected(
                Reason::Busy,
                &peer,
                "association limit reached and refusal queue full; connection closed",
            ),
        },
    }
}

async fn send_pdu(socket: &mut TcpStream, pdu: &Pdu) {
    let mut buf = Vec::with_capacity(64);
    if dicom_ul::write_pdu(&mut buf, pdu).is_ok() {
        let _ = socket.write_all(&buf).await;
        let _ = socket.shutdown().await;
    }
}

fn abort_pdu(reason: AbortRQServiceProviderReason) -> Pdu {
    Pdu::AbortRQ {
        source: AbortRQSource::ServiceProvider(reason),
    }
}

/// Beyond the association bound: reads the request and answers A-ASSOCIATE-RJ (transient,
/// local limit exceeded), so the sender knows to retry later.
async fn refuse_busy(
    scp: Arc<Scp>,
    mut socket: TcpStream,
    peer: String,
    _permit: OwnedSemaphorePermit,
) {
    let mut buf = BytesMut::with_capacity(1024);
    let read = tokio::time::timeout(
        scp.limits.association_timeout,
        dicom_ul::association::read_pdu_from_wire_async(
            &mut socket,
            &mut buf,
            scp.limits.max_pdu,
            true,
        ),
    )
    .await;
    let reply = match read {
        Ok(Ok(Pdu::AssociationRQ(_))) => Pdu::AssociationRJ(AssociationRJ {
            result: AssociationRJResult::Transient,
            source: AssociationRJSource::ServiceProviderPresentation(
                AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
            ),
        }),
        _ => abort_pdu(AbortRQServiceProviderReason::ReasonNotSpecified),
    };
    send_pdu(&mut socket, &reply).await;
    scp.metrics.rejected(
        Reason::Busy,
        &peer,
        "association limit reached; association rejected (transient)",
    );
}

/// What the first bytes of a connection say.
enum Opening {
    AssociateRq,
    Closed,
    NotAssociateRq(u8),
    TooLong(u32),
}

/// Looks at the first PDU header without consuming it.
async fn opening(socket: &TcpStream, max_pdu: u32) -> std::io::Result<Opening> {
    let mut header = [0u8; 6];
    loop {
        let n = socket.peek(&mut header).await?;
        if n == 0 {
            return Ok(Opening::Closed);
        }
        if header[0] != ASSOCIATE_RQ {
            return Ok(Opening::NotAssociateRq(header[0]));
        }
        if n >= header.len() {
            let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
            return Ok(if len > max_pdu {
                Opening::TooLong(len)
            } else {
                Opening::AssociateRq
            });
        }
        // A header split across segments: wait for the rest (bounded by the caller's timeout).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Classifies why negotiation failed: the reason label, or `None` when the peer merely left.
fn establish_failure(e: &UlError) -> Option<Reason> {
    match e {
        UlError::Rejected { association_rj, .. } => Some(match association_rj.source {
            AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::CallingAETitleNotRecognized,
            ) => Reason::CallingAeNotAllowed,
            AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::CalledAETitleNotRecognized,
            ) => Reason::CalledAeMismatch,
            _ => Reason::MalformedPdu,
        }),
        UlError::ReceivePdu {
            source: ReadError::PduTooLarge { .. },
            ..
        } => Some(Reason::PduTooLarge),
        UlError::ConnectionClosed { .. } => None,
        UlError::TlsHandshake { .. } | UlError::TlsConnection { .. } => Some(Reason::TlsHandshake),
        _ => Some(Reason::MalformedPdu),
    }
}

async fn associate(
    scp: Arc<Scp>,
    mut socket: TcpStream,
    peer: String,
    permit: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) {
    let limits = &scp.limits;
    if scp.tls {
        // The first bytes are a TLS ClientHello: the PDU checks happen inside the session
        // (dicom-ul reads the A-ASSOCIATE-RQ under the same PDU limit, strictly).
        let negotiated = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(limits.association_timeout, scp.options.establish_tls_async(socket)) => r,
        };
        let negotiated = negotiated.map(|r| {
            r.map_err(|e| establish_failure(&e).map(|r| (r, crate::error::describe_ul_error(&e))))
        });
        if let Some(association) = admitted(&scp, &peer, negotiated) {
            serve_association(&scp, association, peer, permit, shutdown).await;
        }
        return;
    }
    let negotiated = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = tokio::time::timeout(limits.association_timeout, async {
            match opening(&socket, limits.max_pdu).await {
                Ok(Opening::AssociateRq) => {}
                Ok(Opening::Closed) | Err(_) => return Err(None),
                Ok(Opening::NotAssociateRq(t)) => {
                    send_pdu(&mut socket, &abort_pdu(AbortRQServiceProviderReason::UnrecognizedPdu)).await;
                    return Err(Some((Reason::MalformedPdu, format!("first PDU has type 0x{t:02x}, not A-ASSOCIATE-RQ"))));
                }
                Ok(Opening::TooLong(len)) => {
                    send_pdu(&mut socket, &abort_pdu(AbortRQServiceProviderReason::InvalidPduParameter)).await;
                    return Err(Some((Reason::PduTooLarge, format!("A-ASSOCIATE-RQ of {len} bytes, limit {}", limits.max_pdu))));
                }
            }
            scp.options.establish_async(socket).await.map_err(|e| {
                establish_failure(&e).map(|r| (r, crate::error::describe_ul_error(&e)))
            })
        }) => r,
    };
    if let Some(association) = admitted(&scp, &peer, negotiated) {
        serve_association(&scp, association, peer, permit, shutdown).await;
    }
}

/// The outcome of a negotiation: the association, or `None` after counting why there is none.
type Negotiated<S> = Result<
    Result<AsyncServerAssociation<S>, Option<(Reason, String)>>,
    tokio::time::error::Elapsed,
>;

fn admitted<S>(
    scp: &Scp,
    peer: &str,
    negotiated: Negotiated<S>,
) -> Option<AsyncServerAssociation<S>> {
    match negotiated {
        Err(_elapsed) => {
            scp.metrics.rejected(
                Reason::AssociationTimeout,
                peer,
                "no complete A-ASSOCIATE-RQ within the association timeout; connection closed",
            );
            None
        }
        Ok(Err(None)) => {
            tracing::debug!(peer, "connection closed before association");
            None
        }
        Ok(Err(Some((reason, detail)))) => {
            scp.metrics.rejected(reason, peer, &detail);
            None
        }
        Ok(Ok(a)) => Some(a),
    }
}

async fn serve_association<S>(
    scp: &Scp,
    association: AsyncServerAssociation<S>,
    peer: String,
    _permit: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let mut accepted = 0;
    let mut refused = Vec::new();
    for pc in association.presentation_contexts() {
        let reason = match pc.reason {
            PresentationContextResultReason::Acceptance => {
                accepted += 1;
                continue;
            }
            PresentationContextResultReason::TransferSyntaxesNotSupported => {
                Reason::TransferSyntaxNotSupported
            }
            _ => Reason::AbstractSyntaxNotSupported,
        };
        refused.push((reason, crate::error::clip(&pc.abstract_syntax)));
    }
    scp.metrics.contexts_refused(&peer, accepted, &refused);
    let peer_ae = association.peer_ae_title().to_string();
    let _active = scp.metrics.association_opened(&peer_ae, &peer, accepted);
    Session::new(association, scp, peer, peer_ae, shutdown)
        .run()
        .await;
}
