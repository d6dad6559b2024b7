package stores

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"entgo.io/ent/dialect/sql"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/auth"
	"github.com/storeprov/storeprov/services/api/internal/ent"
	entstore "github.com/storeprov/storeprov/services/api/internal/ent/store"
)

// Page sizes of List.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// pageToken is the position after the last store of a page: stores are
// listed newest first by (create_time, id).
type pageToken struct {
	CreateTime time.Time `json:"t"`
	ID         string    `json:"i"`
}

// List returns the stores the caller may see, newest first, optionally only
// those in phase, and the token of the next page ("" on the last page).
func (s *Service) List(ctx context.Context, caller auth.Principal, pageSize int32, token string, phase storev1.Phase) ([]*ent.Store, string, error) {
	switch {
	case pageSize < 0:
		return nil, "", &InvalidFieldError{"page_size", fmt.Sprintf("is %d: use 0 for the default (%d) or up to %d", pageSize, DefaultPageSize, MaxPageSize)}
	case pageSize == 0:
		pageSize = DefaultPageSize
	case pageSize > MaxPageSize:
		pageSize = MaxPageSize
	}
	q := s.Client.Store.Query()
	if !caller.Admin {
		q = q.Where(entstore.Owner(caller.Name))
	}
	if phase != storev1.Phase_PHASE_UNSPECIFIED {
		if _, ok := storev1.Phase_name[int32(phase)]; !ok {
			return nil, "", &InvalidFieldError{"phase", fmt.Sprintf("%d is not a phase", phase)}
		}
		q = q.Where(entstore.Phase(phase))
	}
	if token != "" {
		after, err := decodePageToken(token)
		if err != nil {
			return nil, "", err
		}
		q = q.Where(entstore.Or(
			entstore.CreateTimeLT(after.CreateTime),
			entstore.And(entstore.CreateTime(after.CreateTime), entstore.IDLT(after.ID)),
		))
	}
	list, err := q.Order(entstore.ByCreateTime(sql.OrderDesc()), entstore.ByID(sql.OrderDesc())).
		Limit(int(pageSize) + 1).All(ctx)
	if err != nil {
		return nil, "", err
	}
	if len(list) <= int(pageSize) {
		return list, "", nil
	}
	list = list[:pageSize]
	last := list[len(list)-1]
	return list, encodePageToken(pageToken{CreateTime: last.CreateTime, ID: last.ID}), nil
}

func encodePageToken(t pageToken) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(s string) (pageToken, error) {
	var t pageToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err != nil || t.ID == "" {
		return t, &InvalidFieldError{"page_token", "is not a token this API returned: pass next_page_token of the previous page unchanged"}
	}
	return t, nil
}
