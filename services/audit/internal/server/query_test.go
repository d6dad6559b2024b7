package server

import (
	"testing"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	"github.com/storeprov/storeprov/pkg/auth"
)

func TestPageSizeDefaultsAndIsCapped(t *testing.T) {
	tests := []struct {
		name      string
		pageSize  int32
		wantLimit int
	}{
		{name: "unset means the default", pageSize: 0, wantLimit: DefaultPageSize},
		{name: "a small size is kept", pageSize: 7, wantLimit: 7},
		{name: "the maximum is kept", pageSize: MaxPageSize, wantLimit: MaxPageSize},
		{name: "a larger size is capped", pageSize: MaxPageSize + 1, wantLimit: MaxPageSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := query(&auditv1.ListAuditEntriesRequest{PageSize: tt.pageSize}, auth.Principal{Name: "root", Admin: true})
			if err != nil {
				t.Fatal(err)
			}
			if q.Limit != tt.wantLimit {
				t.Errorf("limit = %d, want %d", q.Limit, tt.wantLimit)
			}
		})
	}
}
