//! One established association: DIMSE messages in, responses out. C-ECHO is answered; a
//! C-STORE's data set is collected (up to the instance limit), checked, stored and published,
//! and only then answered: success once the broker acknowledged the scan event, a failure
//! status otherwise (0x0122 SOP class not supported, 0xA900 data set mismatch, 0xC000 cannot
//! understand, 0xA700 out of resources for anything a resend may fix). Operations are served
//! one at a time (no asynchronous operations window is negotiated).

use std::time::Instant;

use bytes::Bytes;
use dicom_ul::association::{AsyncServerAssociation, Error as UlError};
use dicom_ul::pdu::{PDataValue, PDataValueType, ReadError};
use dicom_ul::Pdu;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::command::{
    read_command, response, Command, C_ECHO_RQ, C_ECHO_RSP, C_STORE_RQ, C_STORE_RSP,
    MAX_COMMAND_BYTES,
};
use crate::error::{clip, describe_ul_error, pdu_kind, status, InstanceError};
use crate::instance::{
    is_storage_sop_class, part10_file, read_dataset, trim_uid, InstanceMeta, VERIFICATION,
};
use crate::metrics::{Protocol, Reason};
use crate::publish::Published;
use crate::scp::Scp;

/// A C-STORE whose data set is arriving.
struct Incoming {
    pc_id: u8,
    command: Command,
    /// The complete data set, once its last fragment arrived.
    data: Bytes,
    buffer: Vec<u8>,
    /// Bytes received so far, also past the limit.
    size: u64,
    overflow: bool,
}

/// How an association ended.
enum End {
    Released,
    PeerAborted,
    ConnectionLost(String),
    /// The gateway aborts: a refusal (counted) or shutdown (not counted).
    Abort(Option<Reason>, String),
}

pub struct Session<'a, S> {
    association: AsyncServerAssociation<S>,
    scp: &'a Scp,
    peer: String,
    peer_ae: String,
    shutdown: CancellationToken,
}

impl<'a, S> Session<'a, S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    pub fn new(
        association: AsyncServerAssociation<S>,
        scp: &'a Scp,
        peer: String,
        peer_ae: String,
        shutdown: CancellationToken,
    ) -> Self {
        Session {
            association,
            scp,
            peer,
            peer_ae,
            shutdown,
        }
    }

    pub async fn run(mut self) {
        let end = self.serve().await;
        let (peer, peer_ae) = (self.peer.clone(), self.peer_ae.clone());
        match end {
            End::Released => {
                if let Err(e) = self.association.send(&Pdu::ReleaseRP).await {
                    let error = describe_ul_error(&e);
                    tracing::debug!(peer, error, "sending A-RELEASE-RP failed");
                }
                tracing::info!(peer, peer_ae, "association released");
            }
            End::PeerAborted => tracing::info!(peer, peer_ae, "association aborted by the peer"),
            End::ConnectionLost(why) => {
                tracing::info!(peer, peer_ae, why, "association connection lost")
            }
            End::Abort(reason, detail) => {
                match reason {
                    Some(r) => self.scp.metrics.rejected(r, &peer, &detail),
                    None => tracing::info!(peer, peer_ae, detail, "aborting association"),
                }
                let _ = self.association.abort().await;
            }
        }
    }

    async fn serve(&mut self) -> End {
        let mut command: Vec<u8> = Vec::new();
        let mut incoming: Option<Incoming> = None;
        loop {
            let received = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    return End::Abort(None, "gateway shutting down".into());
                }
                r = tokio::time::timeout(self.scp.limits.idle_timeout, self.association.receive()) => r,
            };
            let pdu = match received {
                Err(_elapsed) => {
                    return End::Abort(
                        Some(Reason::IdleTimeout),
                        format!(
                            "no PDU for {} ms; association aborted",
                            self.scp.limits.idle_timeout.as_millis()
                        ),
                    )
                }
                Ok(Err(UlError::ReceivePdu {
                    source: ReadError::PduTooLarge { pdu_length, .. },
                    ..
                })) => {
                    return End::Abort(
                        Some(Reason::PduTooLarge),
                        format!(
                            "PDU of {pdu_length} bytes, limit {}",
                            self.scp.limits.max_pdu
                        ),
                    )
                }
                Ok(Err(e @ UlError::ReceivePdu { .. })) => {
                    return End::Abort(Some(Reason::MalformedPdu), describe_ul_error(&e))
                }
                Ok(Err(e)) => return End::ConnectionLost(describe_ul_error(&e)),
                Ok(Ok(pdu)) => pdu,
            };
            match pdu {
                Pdu::PData { data } => {
                    for pdv in data {
                        if let Err(end) = self.pdv(pdv, &mut command, &mut incoming).await {
                            return end;
                        }
                    }
                }
                Pdu::ReleaseRQ => {
                    if incoming.is_some() {
                        tracing::warn!(peer = self.peer, "release requested mid data set");
                    }
                    return End::Released;
                }
                Pdu::AbortRQ { .. } => return End::PeerAborted,
                other => {
                    return End::Abort(
                        Some(Reason::MalformedPdu),
                        format!("unexpected {} PDU", pdu_kind(&other)),
                    )
                }
            }
        }
    }

    async fn pdv(
        &mut self,
        pdv: PDataValue,
        command: &mut Vec<u8>,
        incoming: &mut Option<Incoming>,
    ) -> Result<(), End> {
        let violation = |detail: String| End::Abort(Some(Reason::ProtocolViolation), detail);
        match pdv.value_type {
            PDataValueType::Command => {
                if incoming.is_some() {
                    return Err(violation("command while a data set is incomplete".into()));
                }
                command.extend_from_slice(&pdv.data);
                if command.len() > MAX_COMMAND_BYTES {
                    return Err(violation("command set too long".into()));
                }
                if !pdv.is_last {
                    return Ok(());
                }
                let cmd = read_command(command).map_err(violation)?;
                command.clear();
                match cmd.field {
                    C_ECHO_RQ => {
                        tracing::debug!(peer = self.peer, "C-ECHO");
                        let mut echo = cmd;
                        echo.sop_class = VERIFICATION.to_string();
                        self.respond(
                            pdv.presentation_context_id,
                            C_ECHO_RSP,
                            &echo,
                            status::SUCCESS,
                            None,
                        )
                        .await
                    }
                    C_STORE_RQ if cmd.has_dataset => {
                        *incoming = Some(Incoming {
                            pc_id: pdv.presentation_context_id,
                            command: cmd,
                            data: Bytes::new(),
                            buffer: Vec::new(),
                            size: 0,
                            overflow: false,
                        });
                        Ok(())
                    }
                    C_STORE_RQ => {
                        let comment = "C-STORE without a data set";
                        self.scp
                            .metrics
                            .rejected(Reason::DatasetUnreadable, &self.peer, comment);
                        self.respond(
                            pdv.presentation_context_id,
                            C_STORE_RSP,
                            &cmd,
                            status::CANNOT_UNDERSTAND,
                            Some(comment),
                        )
                        .await
                    }
                    other => Err(violation(format!(
                        "DIMSE command 0x{other:04x} is not served"
                    ))),
                }
            }
            PDataValueType::Data => {
                let Some(current) = incoming.as_mut() else {
                    return Err(violation("data set without a C-STORE request".into()));
                };
                if pdv.presentation_context_id != current.pc_id {
                    return Err(violation("data set on another presentation context".into()));
                }
                current.size += pdv.data.len() as u64;
                if current.size > self.scp.limits.max_instance_bytes {
                    // Keep reading (the sender is mid-message) but stop keeping the bytes.
                    current.overflow = true;
                    current.buffer = Vec::new();
                } else {
                    current.buffer.extend_from_slice(&pdv.data);
                }
                if !pdv.is_last {
                    return Ok(());
                }
                let Some(mut done) = incoming.take() else {
                    return Ok(());
                };
                done.data = Bytes::from(std::mem::take(&mut done.buffer));
                self.store(done).await
            }
        }
    }

    async fn respond(
        &mut self,
        pc_id: u8,
        field: u16,
        request: &Command,
        status: u16,
        comment: Option<&str>,
    ) -> Result<(), End> {
        let data = response(field, request, status, comment).map_err(|e| End::Abort(None, e))?;
        let pdu = Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc_id,
                value_type: PDataValueType::Command,
                is_last: true,
                data,
            }],
        };
        self.association.send(&pdu).await.map_err(|e| {
            End::ConnectionLost(format!("sending a response: {}", describe_ul_error(&e)))
        })
    }

    /// Stores and publishes a complete C-STORE, then answers it.
    async fn store(&mut self, incoming: Incoming) -> Result<(), End> {
        let received = Instant::now();
        self.scp
            .metrics
            .instance_received(Protocol::Dimse, incoming.size);
        let pc_id = incoming.pc_id;
        let outcome = self.accept(&incoming, received).await;
        let (code, comment) = match outcome {
            Ok(_) => (status::SUCCESS, None),
            Err(e) => {
                let detail = format!("C-STORE of {}: {e}", clip(&incoming.command.sop_instance));
                self.scp.metrics.rejected(e.reason(), &self.peer, &detail);
                (e.status(), Some(e.to_string()))
            }
        };
        self.respond(
            pc_id,
            C_STORE_RSP,
            &incoming.command,
            code,
            comment.as_deref(),
        )
        .await
    }

    async fn accept(
        &self,
        incoming: &Incoming,
        received: Instant,
    ) -> Result<Published, InstanceError> {
        let cmd = &incoming.command;
        if incoming.overflow {
            return Err(InstanceError::TooLarge {
                limit: self.scp.limits.max_instance_bytes,
            });
        }
        if !is_storage_sop_class(&cmd.sop_class) {
            return Err(InstanceError::SopClassNotSupported {
                sop_class: clip(&cmd.sop_class),
            });
        }
        let pc = self
            .association
            .presentation_contexts()
            .iter()
            .find(|pc| pc.id == incoming.pc_id)
            .ok_or_else(|| InstanceError::DatasetMismatch("unknown presentation context".into()))?;
        if trim_uid(&pc.abstract_syntax) != cmd.sop_class {
            return Err(InstanceError::DatasetMismatch(
                "affected SOP class differs from the presentation context".into(),
            ));
        }
        // Parsing a large data set is CPU work: off the runtime's workers.
        let (bytes, ts) = (incoming.data.clone(), pc.transfer_syntax.clone());
        let dataset = tokio::task::spawn_blocking(move || read_dataset(&bytes, &ts))
            .await
            .map_err(|e| InstanceError::Unreadable(e.to_string()))??;
        let meta = InstanceMeta::from_dataset(&dataset)?;
        if meta.sop_class_uid != cmd.sop_class {
            return Err(InstanceError::DatasetMismatch(format!(
                "SOP class {} of the data set differs from the request's {}",
                meta.sop_class_uid, cmd.sop_class
            )));
        }
        if meta.sop_instance_uid != cmd.sop_instance {
            return Err(InstanceError::DatasetMismatch(
                "SOP instance UID of the data set differs from the request's".into(),
            ));
        }
        let file = part10_file(&meta, &pc.transfer_syntax, &self.peer_ae, &incoming.data)?;
        self.scp
            .publisher
            .publish(Protocol::Dimse, &meta, Bytes::from(file), received)
            .await
    }
}
