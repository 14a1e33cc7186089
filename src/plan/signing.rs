//! Signed deployment records: what an agent may apply. An approved deployment is signed with the
//! service's Ed25519 key over the canonical JSON of [`SignedRecord`]; agents pin the public key and
//! verify the exact bytes before anything is applied, so neither a compromised database row nor a
//! forged Git ledger commit can make an agent deploy something nobody approved.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::policy::Rollout;

pub const RECORD_FORMAT: &str = "honua-deployment/1";

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("signing key: {0}")]
    Key(String),
    #[error("signature does not verify: the record was changed or signed by another key")]
    BadSignature,
    #[error("signed record is malformed: {0}")]
    Malformed(String),
}

named! {
    /// How an approval was given. Part of the signed record, so an agent reads only these names.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
    pub enum Via {
        /// The environment's policy approved it (`autoApprove`); no person did.
        Policy,
        /// `/honua approve` on the pull request.
        Comment,
        Api,
        Cli,
        /// An agent in Git-only mode: the commit on its branch is the approval.
        #[serde(rename = "git-only")]
        #[strum(serialize = "git-only")]
        GitOnly,
    }
}

impl Via {
    /// Given by a person, as opposed to by the policy or by a branch.
    pub fn by_a_person(self) -> bool {
        matches!(self, Via::Comment | Via::Api | Via::Cli)
    }
}

/// One approval as the signed record carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordApproval {
    pub by: String,
    pub via: Via,
    /// RFC 3339, UTC.
    pub at: String,
    pub breaking: bool,
}

/// How the agent applies the deployment, from the environment's policy (`safety`, `selfHeal`,
/// `rollout`). Signed with the record so nobody between the service and the agent can loosen it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplySafety {
    /// Seconds to wait for health and post-validation after the reload.
    pub health_check_timeout: u64,
    pub rollback_on_failure: bool,
    /// Keep the previous release and ask Honua for a snapshot (when the agent has a snapshot URL).
    pub require_backup: bool,
    /// Restore the release when the live config was edited by hand.
    pub self_heal: bool,
    /// `all` or `one-at-a-time` across the environment's agents. A value this agent does not know makes
    /// the record malformed: an agent never applies more widely than it was told.
    pub rollout: Rollout,
}

impl ApplySafety {
    pub fn of(policy: &crate::policy::EnvironmentPolicy) -> ApplySafety {
        ApplySafety {
            health_check_timeout: policy.safety.health_check_timeout,
            rollback_on_failure: policy.safety.rollback_on_failure,
            require_backup: policy.safety.require_backup,
            self_heal: policy.self_heal,
            rollout: policy.rollout,
        }
    }

    pub fn one_at_a_time(&self) -> bool {
        self.rollout == Rollout::OneAtATime
    }
}

/// What is signed: which commit may run in which environment, under which plan, approved by whom,
/// and its place in the environment's sequence (an agent ignores anything not newer than it has).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRecord {
    pub format: String,
    pub deployment: String,
    pub environment: String,
    pub repository: String,
    pub commit: String,
    pub plan_digest: String,
    pub approvals: Vec<RecordApproval>,
    pub sequence: i64,
    /// Absent in records signed before it existed: the agent then uses its own defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<ApplySafety>,
}

impl SignedRecord {
    /// The exact bytes that are signed.
    pub fn canonical(&self) -> String {
        let value = serde_json::to_value(self).expect("records encode");
        String::from_utf8(super::canonical_json(&value)).expect("JSON is UTF-8")
    }
}

/// A record with its signature: the two travel and are stored together, so one is never found without
/// the other (and the two strings cannot be passed in each other's place).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Signed {
    /// The canonical record (JSON), exactly the bytes that were signed.
    pub record: String,
    /// Its Ed25519 signature, hex.
    pub signature: String,
}

pub struct Signer {
    key: SigningKey,
}

impl Signer {
    /// A fresh 32-byte secret from the operating system's generator.
    pub fn generate_secret() -> Result<[u8; 32], SigningError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| SigningError::Key(format!("no randomness from the OS: {e}")))?;
        Ok(secret)
    }

    pub fn from_secret(secret: &[u8]) -> Result<Signer, SigningError> {
        let bytes: [u8; 32] =
            secret.try_into().map_err(|_| SigningError::Key(format!("expected 32 bytes, found {}", secret.len())))?;
        Ok(Signer { key: SigningKey::from_bytes(&bytes) })
    }

    /// The public key as agents pin it: `ed25519:` and 64 hex digits.
    pub fn public_key(&self) -> String {
        format!("ed25519:{}", hex::encode(self.key.verifying_key().as_bytes()))
    }

    /// The canonical record and its signature.
    pub fn sign(&self, record: &SignedRecord) -> Signed {
        let canonical = record.canonical();
        let signature = self.key.sign(canonical.as_bytes());
        Signed { record: canonical, signature: hex::encode(signature.to_bytes()) }
    }
}

/// Parses a pinned public key (`ed25519:<hex>`, or the bare hex).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, SigningError> {
    let hex_part = text.trim().strip_prefix("ed25519:").unwrap_or(text.trim());
    let bytes: [u8; 32] = hex::decode(hex_part).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| {
        SigningError::Key(format!("`{text}` is not an Ed25519 public key (ed25519: and 64 hex digits)"))
    })?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| SigningError::Key(e.to_string()))
}

/// Verifies the signature over the exact bytes of the record and returns the record. A record that
/// verifies but is not in canonical form is refused too, so there is one encoding per decision.
pub fn verify(key: &VerifyingKey, signed: &Signed) -> Result<SignedRecord, SigningError> {
    let Signed { record, signature } = signed;
    let bytes: [u8; 64] =
        hex::decode(signature).ok().and_then(|b| b.try_into().ok()).ok_or(SigningError::BadSignature)?;
    key.verify_strict(record.as_bytes(), &Signature::from_bytes(&bytes)).map_err(|_| SigningError::BadSignature)?;
    let parsed: SignedRecord = serde_json::from_str(record).map_err(|e| SigningError::Malformed(e.to_string()))?;
    if parsed.format != RECORD_FORMAT || parsed.canonical() != *record {
        return Err(SigningError::Malformed("not a canonical honua-deployment/1 record".into()));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> SignedRecord {
        SignedRecord {
            format: RECORD_FORMAT.into(),
            deployment: "prod-20241004123456-abc1234".into(),
            environment: "production".into(),
            repository: "city/gis-config".into(),
            commit: "abc1234abc1234abc1234abc1234abc1234abc12".into(),
            plan_digest: "sha256:00ff".into(),
            approvals: vec![RecordApproval {
                by: "alice".into(),
                via: Via::Comment,
                at: "2024-10-04T12:34:56Z".into(),
                breaking: false,
            }],
            sequence: 7,
            safety: None,
        }
    }

    #[test]
    fn a_signed_record_verifies_with_the_public_key_and_fails_when_any_field_changes() {
        let signer = Signer::from_secret(&Signer::generate_secret().unwrap()).unwrap();
        let key = parse_public_key(&signer.public_key()).unwrap();
        let signed = signer.sign(&record());
        assert_eq!(verify(&key, &signed).unwrap(), record());
        let with = |record: &str, signature: &str| Signed { record: record.into(), signature: signature.into() };

        type Tamper = Box<dyn Fn(&mut SignedRecord)>;
        let tampered: Vec<Tamper> = vec![
            Box::new(|r| r.deployment.push('x')),
            Box::new(|r| r.environment = "staging".into()),
            Box::new(|r| r.repository = "evil/gis-config".into()),
            Box::new(|r| r.commit = "0000000000000000000000000000000000000000".into()),
            Box::new(|r| r.plan_digest = "sha256:11ff".into()),
            Box::new(|r| r.approvals.clear()),
            Box::new(|r| r.approvals[0].by = "mallory".into()),
            Box::new(|r| r.approvals[0].breaking = true),
            Box::new(|r| r.sequence = 8),
            Box::new(|r| r.format = "honua-deployment/2".into()),
            // Loosening how it is applied is a change too.
            Box::new(|r| {
                r.safety = Some(ApplySafety {
                    health_check_timeout: 3600,
                    rollback_on_failure: false,
                    require_backup: false,
                    self_heal: false,
                    rollout: Rollout::All,
                })
            }),
        ];
        for change in tampered {
            let mut r = record();
            change(&mut r);
            assert!(verify(&key, &with(&r.canonical(), &signed.signature)).is_err(), "{r:?} verified");
        }
        // Another key's signature, a truncated signature, and a non-canonical re-encoding are refused.
        let other = Signer::from_secret(&Signer::generate_secret().unwrap()).unwrap();
        assert!(verify(&key, &with(&signed.record, &other.sign(&record()).signature)).is_err());
        assert!(verify(&key, &with(&signed.record, &signed.signature[..64])).is_err());
        let pretty = serde_json::to_string_pretty(&record()).unwrap();
        let pretty_signature = hex::encode(signer.key.sign(pretty.as_bytes()).to_bytes());
        assert!(matches!(verify(&key, &with(&pretty, &pretty_signature)), Err(SigningError::Malformed(_))));
    }

    #[test]
    fn a_signed_record_with_a_value_this_agent_does_not_know_is_refused_not_read_loosely() {
        let signer = Signer::from_secret(&[7u8; 32]).unwrap();
        let key = parse_public_key(&signer.public_key()).unwrap();
        let mut r = record();
        r.safety = Some(ApplySafety {
            health_check_timeout: 60,
            rollback_on_failure: true,
            require_backup: false,
            self_heal: false,
            rollout: Rollout::OneAtATime,
        });
        let known = signer.sign(&r);
        assert!(verify(&key, &known).unwrap().safety.unwrap().one_at_a_time());
        for (from, to) in [("\"one-at-a-time\"", "\"sideways\""), ("\"comment\"", "\"carrier-pigeon\"")] {
            let unknown = known.record.replace(from, to);
            assert_ne!(unknown, known.record);
            let signature = hex::encode(signer.key.sign(unknown.as_bytes()).to_bytes());
            let verdict = verify(&key, &Signed { record: unknown, signature });
            assert!(matches!(verdict, Err(SigningError::Malformed(_))), "{to}: {verdict:?}");
        }
    }

    #[test]
    fn public_keys_parse_only_in_the_documented_form() {
        let signer = Signer::from_secret(&[7u8; 32]).unwrap();
        assert!(parse_public_key(&signer.public_key()).is_ok());
        assert!(parse_public_key(signer.public_key().trim_start_matches("ed25519:")).is_ok());
        assert!(parse_public_key("ed25519:abcd").is_err());
        assert!(Signer::from_secret(&[1u8; 31]).is_err());
    }
}
