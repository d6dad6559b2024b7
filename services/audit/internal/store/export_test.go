package store

import (
	"time"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
)

// HashOf returns the hash Append gives e when it follows the entry whose
// hash is prev and is recorded at recordedAt: what someone who knows the
// scheme would compute to rewrite an entry.
func HashOf(prev string, e *auditv1.AuditEntry, recordedAt time.Time) string {
	return content{
		EventID: e.GetId(), LeaseToken: e.GetLeaseToken(), Action: e.GetAction(), Actor: e.GetActor(),
		StoreID: e.GetStoreId(), StoreOwner: e.GetStoreOwner(), Time: e.GetTime().AsTime(),
		Detail: e.GetDetail(), RecordedAt: recordedAt,
	}.hash(prev)
}
