//! Decisions on a deployment: approvals (bound to its plan digest and signed with the record agents
//! verify) and rejections, each refusal audited, and the approvals a merged pull request carries to the
//! deployments of its merge commit. What a decision needs is explicit: the store and the service's
//! signing key.

use chrono::{DateTime, SecondsFormat, Utc};

use super::deployments::ms;
use super::{Controller, DecisionError};
use crate::plan::signing::{RecordApproval, Signed, SignedRecord, Signer, Via, RECORD_FORMAT};
use crate::store::{
    Approval, Deployment, DeploymentFilter, DeploymentState, Gate, NewAudit, NewDeployment, PrMerge, Store, StoreError,
};

/// Told once something was decided (a comment command, a commit's plans), before the handler answers:
/// agents are woken and the ledger, GitHub's deployments and the notifications follow
/// ([`super::Controller::decided`]).
#[async_trait::async_trait]
pub(crate) trait AfterDecision: Send + Sync {
    async fn decided(&self, repository: &str);
}

/// The decision handlers, over what they use.
pub struct Decisions<'a> {
    store: &'a dyn Store,
    signer: &'a Signer,
}

impl Controller {
    pub fn decisions(&self) -> Decisions<'_> {
        Decisions { store: &*self.store, signer: &self.signer }
    }
}

/// When `d` expires, to the minute, for people.
fn expiry_text(d: &Deployment) -> String {
    let at = d.expires_at.and_then(DateTime::<Utc>::from_timestamp_millis).unwrap_or_default();
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Decisions<'_> {
    /// `new` with its record signed over its approvals: it is created approved (by the policy, or by
    /// whoever asked for a rollback).
    pub(super) fn signed(&self, mut new: NewDeployment) -> NewDeployment {
        new.deployment.signed = Some(self.sign(&new.deployment, &new.approvals));
        new
    }

    /// The signed record of `d` with `approvals` (canonical JSON) and its signature: what agents verify.
    fn sign(&self, d: &Deployment, approvals: &[Approval]) -> Signed {
        let record = SignedRecord {
            format: RECORD_FORMAT.into(),
            deployment: d.id.to_string(),
            environment: d.environment.to_string(),
            repository: d.repository.clone(),
            commit: d.commit.to_string(),
            plan_digest: d.plan_digest.clone(),
            approvals: approvals
                .iter()
                .map(|a| RecordApproval { by: a.actor.clone(), via: a.via, at: rfc3339(a.at), breaking: a.breaking })
                .collect(),
            sequence: d.sequence,
            safety: d.safety.clone(),
        };
        self.signer.sign(&record)
    }

    /// Approves deployment `id` for `actor` (already authorised by the caller: API role, comment
    /// permission). The approval is bound to the deployment's plan digest and signed with it.
    pub async fn approve(
        &self,
        id: &str,
        actor: &str,
        via: Via,
        breaking: bool,
        at: DateTime<Utc>,
    ) -> Result<Deployment, DecisionError> {
        // A refusal is audited (who tried what, and why not); a store failure is not a refusal.
        let outcome: Result<Deployment, DecisionError> = async {
            let d = self.store.deployment(id).await?.ok_or_else(|| DecisionError::NotFound(id.into()))?;
            // Past its deadline it expires now, whether or not the sweep has come by yet.
            let overdue = d.expires_at.is_some_and(|deadline| deadline <= ms(at));
            let d = if overdue && DeploymentState::Expired.comes_from().contains(&d.state) {
                self.expire(d, at).await?
            } else {
                d
            };
            match d.state {
                DeploymentState::AwaitingApproval | DeploymentState::Blocked => {}
                DeploymentState::Expired => {
                    let at = expiry_text(&d);
                    return Err(DecisionError::Expired { id: d.id, at });
                }
                DeploymentState::Approved => {
                    return Err(DecisionError::WrongState { id: d.id, state: d.state, hint: "it is approved already" })
                }
                DeploymentState::Superseded => {
                    return Err(DecisionError::WrongState {
                        id: d.id,
                        state: d.state,
                        hint: "a newer deployment of the environment replaced it; approve that one",
                    })
                }
                state => {
                    return Err(DecisionError::WrongState {
                        id: d.id,
                        state,
                        hint: "only a deployment awaiting approval can be approved",
                    })
                }
            }
            match d.gate {
                Gate::Closed => return Err(DecisionError::Closed { id: d.id, reasons: d.reasons.join("; ") }),
                Gate::Breaking if !breaking => return Err(DecisionError::NeedsBreaking { id: d.id }),
                _ => {}
            }
            let approval =
                Approval { actor: actor.into(), via, plan_digest: d.plan_digest.clone(), breaking, at: ms(at) };
            let mut approvals = self.store.approvals(&d.id).await?;
            approvals.push(approval.clone());
            let signed = self.sign(&d, &approvals);
            let message = format!(
                "approved by {actor} via {via}{} (plan {})",
                if breaking { ", breaking changes acknowledged" } else { "" },
                d.plan_digest
            );
            if !self.store.approve(&d.id, &approval, &signed, &message).await? {
                let now = self.store.deployment(&d.id).await?.map_or(d.state, |d| d.state);
                return Err(DecisionError::WrongState {
                    id: d.id,
                    state: now,
                    hint: "it changed while the approval was recorded",
                });
            }
            self.store.deployment(id).await?.ok_or_else(|| DecisionError::NotFound(id.into()))
        }
        .await;
        if let Err(refused) = &outcome {
            if !matches!(refused, DecisionError::Store(_)) {
                self.audit_refusal(id, actor, "approve", &refused.to_string(), at).await;
            }
        }
        outcome
    }

    /// Expires `d` (waiting for its approval past its `expires_at`) and returns it as it is then: expired,
    /// or as someone else moved it first.
    pub(super) async fn expire(&self, d: Deployment, at: DateTime<Utc>) -> Result<Deployment, StoreError> {
        let message = format!("no approval came within the environment's approvalTimeout (by {})", expiry_text(&d));
        self.store.transition(&d.id, DeploymentState::Expired, "service", &message, ms(at)).await?;
        Ok(self.store.deployment(&d.id).await?.unwrap_or(d))
    }

    /// Rejects a deployment that has not started.
    pub async fn reject(
        &self,
        id: &str,
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Deployment, DecisionError> {
        let d = self.store.deployment(id).await?.ok_or_else(|| DecisionError::NotFound(id.into()))?;
        let message = if reason.trim().is_empty() {
            format!("rejected by {actor}")
        } else {
            format!("rejected by {actor}: {}", reason.trim())
        };
        if !self.store.transition(id, DeploymentState::Rejected, actor, &message, ms(at)).await? {
            let refused = DecisionError::WrongState {
                id: d.id,
                state: d.state,
                hint: "only a deployment that has not started can be rejected",
            };
            self.audit_refusal(id, actor, "reject", &refused.to_string(), at).await;
            return Err(refused);
        }
        self.store.deployment(id).await?.ok_or_else(|| DecisionError::NotFound(id.into()))
    }

    /// A pull request of `repository` was merged: its merge commit is remembered, and its approvals carry
    /// to the deployments of that commit that exist already (the push may have been processed first).
    pub async fn pull_request_merged(&self, repository: &str, merge: &PrMerge) -> Result<(), StoreError> {
        self.store.record_pr_merge(repository, merge, Utc::now().timestamp_millis()).await?;
        let waiting = self
            .store
            .deployments(&DeploymentFilter {
                repository: Some(repository.to_string()),
                states: vec![DeploymentState::AwaitingApproval, DeploymentState::Blocked],
                limit: 100,
                ..Default::default()
            })
            .await?;
        for d in waiting.iter().filter(|d| d.commit == merge.merge_sha) {
            self.carry_pr_approvals(d).await?;
        }
        Ok(())
    }

    /// Applies a still-valid approval given on the merged PR's final head to `d`, if `d` changes and
    /// decides exactly what was approved. Otherwise the deployment waits for a new approval.
    pub async fn carry_pr_approvals(&self, d: &Deployment) -> Result<(), StoreError> {
        if !matches!(d.state, DeploymentState::AwaitingApproval | DeploymentState::Blocked) {
            return Ok(());
        }
        let Some(merge) = self.store.pr_merge_of(&d.repository, &d.commit).await? else { return Ok(()) };
        let digest = crate::plan::change_digest(&d.plan);
        let approvals = self.store.pr_approvals(&d.repository, merge.number).await?;
        for a in approvals.iter().filter(|a| a.environment == d.environment && a.head_sha == merge.head_sha) {
            if a.change_digest != digest {
                tracing::info!(deployment = %d.id, pr = merge.number, "a PR approval does not carry: the deployment's plan differs");
                continue;
            }
            match self.approve(&d.id, &a.actor, Via::Comment, a.breaking, Utc::now()).await {
                Ok(_) => {
                    tracing::info!(deployment = %d.id, pr = merge.number, approver = %a.actor, "PR approval carried to the deployment");
                    return Ok(());
                }
                Err(e) => tracing::info!(deployment = %d.id, error = %e, "a PR approval could not be carried"),
            }
        }
        Ok(())
    }

    async fn audit_refusal(&self, id: &str, actor: &str, action: &str, message: &str, at: DateTime<Utc>) {
        let refused = format!("{action}.refused");
        if let Err(e) = self.record_refusal(actor, &refused, id, None, message, ms(at)).await {
            tracing::warn!(error = %e, "could not record a refused {action} in the audit log");
        }
    }

    /// Records a refused attempt on deployment `id` (a caller without the role, an agent naming another
    /// environment's deployment): who, what, and why, under the deployment's repository and environment
    /// (or `environment` when given: the one the caller acted for).
    pub async fn record_refusal(
        &self,
        actor: &str,
        action: &str,
        id: &str,
        environment: Option<&str>,
        message: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let d = self.store.deployment(id).await.ok().flatten();
        let entry = NewAudit {
            actor: actor.to_string(),
            action: action.to_string(),
            repository: d.as_ref().map(|d| d.repository.clone()),
            environment: environment.map(Into::into).or_else(|| d.as_ref().map(|d| d.environment.clone())),
            deployment: d.map(|d| d.id),
            message: message.to_string(),
        };
        self.store.record_audit(&entry, at_ms).await
    }
}
