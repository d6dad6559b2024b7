package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
)

// storeSummary is what a test can know of a store without an orchestrator.
type storeSummary struct {
	ID, Name, Owner string
	Engine          storev1.Engine
	Phase           storev1.Phase
}

func summarize(stores []*storev1.Store) []storeSummary {
	var out []storeSummary
	for _, st := range stores {
		out = append(out, storeSummary{st.GetId(), st.GetDisplayName(), st.GetOwner(), st.GetEngine(), st.GetPhase()})
	}
	return out
}

// createStore creates a store as the holder of token and returns it.
func createStore(t *testing.T, token string, args ...string) *storev1.Store {
	t.Helper()
	created := runJSON(t, token, newStore, append([]string{"create"}, args...)...)
	if len(created) != 1 || created[0].GetId() == "" {
		t.Fatalf("create %s printed %v, want one store", strings.Join(args, " "), created)
	}
	return created[0]
}

func TestStoreCreateListGetDelete(t *testing.T) {
	user, token := newUser(t, "shopper")

	corner := createStore(t, token, "--name", "Corner Shop", "--engine", "woocommerce")
	market := createStore(t, token, "--name", "Market", "--engine", "medusa")
	want := []storeSummary{
		{corner.GetId(), "Corner Shop", user, storev1.Engine_ENGINE_WOOCOMMERCE, storev1.Phase_PHASE_PROVISIONING},
		{market.GetId(), "Market", user, storev1.Engine_ENGINE_MEDUSA, storev1.Phase_PHASE_PROVISIONING},
	}
	if diff := cmp.Diff(want, summarize([]*storev1.Store{corner, market})); diff != "" {
		t.Errorf("create printed other stores (-want +got):\n%s", diff)
	}

	list := runJSON(t, token, newStore, "list")
	if diff := cmp.Diff(want, summarize(list), sortByID); diff != "" {
		t.Errorf("list -o json (-want +got):\n%s", diff)
	}
	table := mustRun(t, token, "list")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "ID NAME ENGINE PHASE CHART CHECKED OWNER URL AGE REASON" {
		t.Errorf("list prints no table of a header and two stores:\n%s", table)
	}
	for _, st := range want {
		if !strings.Contains(table, st.ID) || !strings.Contains(table, st.Name) {
			t.Errorf("list does not show store %s (%s):\n%s", st.ID, st.Name, table)
		}
	}

	got := runJSON(t, token, newStore, "get", corner.GetId())
	if diff := cmp.Diff([]*storev1.Store{corner}, got, protocmp.Transform()); diff != "" {
		t.Errorf("get %s, against what create printed (-want +got):\n%s", corner.GetId(), diff)
	}

	deleted := runJSON(t, token, newStore, "delete", corner.GetId())
	if len(deleted) != 1 || deleted[0].GetId() != corner.GetId() || deleted[0].GetPhase() != storev1.Phase_PHASE_DELETING {
		t.Errorf("delete %s printed %v, want the store DELETING", corner.GetId(), deleted)
	}
	deleting := want[0]
	deleting.Phase = storev1.Phase_PHASE_DELETING
	if diff := cmp.Diff([]storeSummary{deleting}, summarize(runJSON(t, token, newStore, "list", "--phase", "deleting"))); diff != "" {
		t.Errorf("list --phase deleting (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want[1:], summarize(runJSON(t, token, newStore, "list", "--phase", "provisioning"))); diff != "" {
		t.Errorf("list --phase provisioning (-want +got):\n%s", diff)
	}
}

// sortByID compares lists of stores whatever their order.
var sortByID = cmpopts.SortSlices(func(a, b storeSummary) bool { return a.ID < b.ID })

func TestCreateWithTheSameRequestIDReturnsTheSameStore(t *testing.T) {
	_, token := newUser(t, "retrier")

	first := createStore(t, token, "--name", "Retried Shop", "--request-id", "order-42")
	again := createStore(t, token, "--name", "Retried Shop", "--request-id", "order-42")
	if diff := cmp.Diff(first, again, protocmp.Transform()); diff != "" {
		t.Errorf("a create run again with its request id made another store (-first +again):\n%s", diff)
	}
	if list := runJSON(t, token, newStore, "list"); len(list) != 1 {
		t.Errorf("after a create run twice with one request id, list shows %d stores, want 1: %v", len(list), list)
	}

	r := storectl(t, token, "create", "--name", "Another Shop", "--request-id", "order-42")
	if want := "already used"; r.code != 1 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "(AlreadyExists)") {
		t.Errorf("a create with a used request id and another name: exit status %d, stderr %q; want 1 and a message saying %q (AlreadyExists)", r.code, r.stderr, want)
	}
}

func TestCreateWithoutRequestIDMakesAStoreEachRun(t *testing.T) {
	_, token := newUser(t, "twice")

	first := createStore(t, token, "--name", "Twin")
	second := createStore(t, token, "--name", "Twin")
	if first.GetId() == second.GetId() {
		t.Errorf("two creates without --request-id both returned store %s: each run must send a request id of its own", first.GetId())
	}
	if list := runJSON(t, token, newStore, "list"); len(list) != 2 {
		t.Errorf("after two creates, list shows %d stores, want 2: %v", len(list), list)
	}
}

func TestOrderCheckedSaysHowLongAgoTheCheckPassed(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	checked := &storev1.Store{OrderCheckTime: timestamppb.New(now.Add(-90 * time.Second))}
	if got := orderChecked(checked, now); got != "1m30s ago" {
		t.Errorf("orderChecked of a store checked 90 s ago = %q, want \"1m30s ago\"", got)
	}
	if got := orderChecked(&storev1.Store{}, now); got != "-" {
		t.Errorf("orderChecked of a store never checked = %q, want \"-\"", got)
	}
}
