package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/storeprov/storeprov/services/api/internal/app"
	"github.com/storeprov/storeprov/services/api/internal/resync"
)

func TestRunRefusesABadResyncInterval(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := app.Run(ctx, app.Options{DatabaseURL: "sqlite://" + t.TempDir() + "/api.db", Resync: resync.Options{Interval: time.Second}})
	if err == nil || !strings.Contains(err.Error(), "--resync-interval 1s: use 0 to disable the resync, or an interval of at least 10s") {
		t.Fatalf("Run with --resync-interval=1s = %v, want an error naming the flag and what to use", err)
	}
}
