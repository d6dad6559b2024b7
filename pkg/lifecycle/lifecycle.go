// Package lifecycle names the facts of a store's life that several services
// share: audit actions, status reasons, the actor of what the platform does
// by itself, and the ids that make repeated events idempotent. Status,
// events, the audit log and the dashboard all use these names.
package lifecycle

import (
	"fmt"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
)

// Audit actions.
const (
	ActionCreate   = "create"   // a user asked for a store
	ActionDelete   = "delete"   // a user asked to delete a store
	ActionRetry    = "retry"    // a user retried a failed store
	ActionUpgrade  = "upgrade"  // a user asked for a new chart version or values
	ActionReady    = "ready"    // the store became READY
	ActionFailure  = "failure"  // provisioning or deletion failed
	ActionDeleted  = "deleted"  // everything the store owned is gone
	ActionRepaired = "repaired" // a resync found a READY store drifted and repaired it
	// A command was cancelled unfinished because a newer one for its store
	// (an upgrade, a retry, a delete) was queued; the newer one runs next.
	ActionSuperseded = "superseded"
)

// SystemActor is the actor of what the orchestrator does on its own.
const SystemActor = "system:orchestrator"

// ResyncActor is the actor of the commands the api's periodic resync
// queues. A resync command carries a store's current generation; for a
// generation the orchestrator already applied, it asks to verify the store
// and repair its drift, publishing nothing when nothing drifted.
const ResyncActor = "system:resync"

// Reason says in one word why a store is in its phase: a FAILED store's
// failure, a READY store kept on its previous revision, a DELETING store
// waiting for its namespace. On the wire and in the database it is the
// string itself (StoreStatusChanged.reason, Store.failure_reason); a
// reader keeps a reason it does not know as it is, so a newer writer's
// reasons pass through an older reader.
type Reason string

// Status reasons, in StoreStatusChanged.reason and Store.failure_reason.
const (
	ReasonProvisioning         Reason = "Provisioning"
	ReasonReady                Reason = "Ready"
	ReasonDeleting             Reason = "Deleting"
	ReasonDeleted              Reason = "Deleted"
	ReasonTimeout              Reason = "Timeout"              // not ready within the provisioning deadline
	ReasonQuotaExceeded        Reason = "QuotaExceeded"        // the namespace quota refused a workload
	ReasonCredentialsLost      Reason = "CredentialsLost"      // a credentials Secret was deleted out of band
	ReasonNamespaceTerminating Reason = "NamespaceTerminating" // the namespace is still being deleted
	ReasonNamespaceStuck       Reason = "NamespaceStuck"       // deletion did not finish; message names the blocker
	ReasonRetriesExhausted     Reason = "RetriesExhausted"     // transient errors outlasted every redelivery
	ReasonInvalidSpec          Reason = "InvalidSpec"          // the command cannot succeed as written
	ReasonNamespaceConflict    Reason = "NamespaceConflict"    // store-<id> exists and is not the platform's; left untouched
	// The tenant policy of the chart version to install refuses the
	// store's value overrides; the message names the key and what is
	// allowed. A new store is FAILED; a READY store stays READY on its
	// previous revision, as after UpgradeFailed.
	ReasonValuesRefused Reason = "ValuesRefused"

	// Why a store's workloads did not become ready, read from the cluster.
	ReasonPodsRejected     Reason = "PodsRejected"     // admission refused the pods (LimitRange, Pod Security)
	ReasonUnschedulable    Reason = "Unschedulable"    // no node can take a pod (PodScheduled=False)
	ReasonImagePullBackOff Reason = "ImagePullBackOff" // an image cannot be pulled (ErrImagePull, ImagePullBackOff)
	ReasonCrashLoopBackOff Reason = "CrashLoopBackOff" // a container keeps crashing
	ReasonPVCPending       Reason = "PVCPending"       // a claim found no volume
	ReasonSetupJobFailed   Reason = "SetupJobFailed"   // a setup, migration or admin Job exhausted its retries
	// The chart's order check (a storefront order placed and cancelled,
	// run when the orchestrator's --order-check asks for it) exhausted its
	// retries: the store serves but cannot sell. The message is the
	// check's own line, "order check failed at <step>: <detail>". A first
	// install is FAILED; an upgrade of a READY store is rolled back
	// (UpgradeRolledBack, whose message quotes it).
	ReasonOrderCheckFailed Reason = "OrderCheckFailed"

	// Outcomes of an upgrade of a READY store, which stays READY on its
	// previous revision; the message says why.
	ReasonUpgradeRolledBack Reason = "UpgradeRolledBack" // the upgraded release did not become ready and was rolled back
	ReasonUpgradeFailed     Reason = "UpgradeFailed"     // the upgrade could not be applied; nothing changed

	// A resync found a READY store drifted (objects deleted or changed out
	// of band, workloads not ready) and repaired it; the message says what.
	ReasonDriftRepaired Reason = "DriftRepaired"
	// A resync found the namespace of a READY store gone, and its data with
	// it: it is not provisioned again behind the owner's back.
	ReasonStoreLost Reason = "StoreLost"
)

// StatusEventID is the Nats-Msg-Id of a status change, so the same change
// published twice is stored once.
func StatusEventID(storeID string, generation int64, phase storev1.Phase, reason Reason) string {
	return fmt.Sprintf("status/%s/%d/%s/%s", storeID, generation, phase, reason)
}

// AuditEventID is the id of an audit event the orchestrator emits about a
// generation of a store: the same outcome reported twice is recorded once.
// The audit service keys entries by this id and the event's lease token,
// so the same outcome reached again under another lease (a second attempt)
// is an entry of its own; publish it with AttemptID as its message id.
func AuditEventID(storeID string, generation int64, action string) string {
	return fmt.Sprintf("audit/%s/%d/%s", storeID, generation, action)
}

// AttemptID is the message id (Nats-Msg-Id) of a status or audit event
// whose id is id, made under a store lease whose fencing token is
// leaseToken: id with the token appended, so that JetStream's
// deduplication drops an attempt's own republish but never another
// attempt's event (a later holder's READY after a fenced-out one's). A
// zero token (no lease, as the api's events) leaves id as it is.
func AttemptID(id string, leaseToken uint64) string {
	if leaseToken == 0 {
		return id
	}
	return fmt.Sprintf("%s/lease/%d", id, leaseToken)
}

// CommandID is the Nats-Msg-Id of the provisioning command of a generation.
func CommandID(storeID string, generation int64) string {
	return fmt.Sprintf("command/%s/%d", storeID, generation)
}

// ResyncCommandID is the Nats-Msg-Id of the resync command of a generation
// queued in resync period slot (the period's start in Unix seconds), so
// that api replicas resyncing in the same period queue it once.
func ResyncCommandID(storeID string, generation, slot int64) string {
	return fmt.Sprintf("%s/resync/%d", CommandID(storeID, generation), slot)
}

// RepairAuditEventID is the id of the audit event of a drift repaired by
// the resync command issued at issueUnixNano: each repair is recorded once,
// however often its command is delivered.
func RepairAuditEventID(storeID string, generation, issueUnixNano int64) string {
	return fmt.Sprintf("%s/%d", AuditEventID(storeID, generation, ActionRepaired), issueUnixNano)
}
