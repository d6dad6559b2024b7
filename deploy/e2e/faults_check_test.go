package e2e

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/storeprov/storeprov/pkg/sandboxtest"
)

// checkLive checks every store after the creates or the upgrades: READY,
// on the generation asked for, with the outcome the work asked for. The
// work asks for nothing that can fail, so a FAILED store is a violation
// whatever its reason: a transient fault must not make a store fail.
func (r *faultRun) checkLive(when string) {
	for _, id := range r.ids() {
		st := r.seen(id)
		r.mu.Lock()
		r.outcomes[id] = append(r.outcomes[id], st.Phase)
		failedBefore := len(r.outcomes[id]) > 1 && r.outcomes[id][0] == "PHASE_FAILED"
		r.mu.Unlock()
		switch {
		case st.Phase == "PHASE_FAILED" && failedBefore:
			// Reported after the creates; a FAILED store is not upgraded.
		case st.Phase == "PHASE_FAILED":
			r.violate("%s, store %s is FAILED (%s: %s), though nothing it was asked can fail; its last log lines:\n    %s",
				when, id, st.FailureReason, st.FailureMessage, strings.Join(trimLines(r.logs.String(), 6, id), "\n    "))
		case st.Phase != "PHASE_READY":
			// waitSettled reported it.
		case st.FailureReason != "" && !(r.rollsBack(id) && r.upgraded[id]):
			r.violate("%s, store %s is READY with failure %s: %s", when, id, st.FailureReason, st.FailureMessage)
		case r.rollsBack(id) && r.upgraded[id] && st.FailureReason != "UpgradeRolledBack":
			r.violate("%s, store %s is READY with failure %q, want UpgradeRolledBack after an upgrade its quota refuses", when, id, st.FailureReason)
		case r.rollsBack(id) && r.upgraded[id] && !strings.Contains(st.FailureMessage, "QuotaExceeded"):
			r.violate("%s, store %s was rolled back saying %q, which does not name the quota that refused its pod", when, id, st.FailureMessage)
		}
	}
}

// checkReleases checks Helm's storage in each live store's namespace:
// one release, with one deployed revision and none pending.
func (r *faultRun) checkReleases() {
	cs := sandboxtest.Clientset(r.t)
	for _, id := range r.ids() {
		st := r.seen(id)
		if st.Phase == "PHASE_DELETED" {
			continue
		}
		secrets, err := cs.CoreV1().Secrets("store-"+id).List(context.Background(), metav1.ListOptions{LabelSelector: "owner=helm"})
		if err != nil {
			r.violate("cannot list the Helm releases of store %s: %v", id, err)
			continue
		}
		names := map[string]bool{}
		var deployed, pending []string
		for _, s := range secrets.Items {
			names[s.Labels["name"]] = true
			rev := s.Labels["name"] + "." + s.Labels["version"] + ":" + s.Labels["status"]
			switch status := s.Labels["status"]; {
			case status == "deployed":
				deployed = append(deployed, rev)
			case strings.HasPrefix(status, "pending-"):
				pending = append(pending, rev)
			}
		}
		if st.Phase != "PHASE_READY" {
			// A FAILED store (itself a violation) may have no release.
			if len(names) > 1 {
				r.violate("store %s (%s) has releases %v; want at most one", id, st.Phase, keys(names))
			}
			continue
		}
		if len(names) != 1 || len(deployed) != 1 || len(pending) > 0 {
			r.violate("store %s (%s) has releases %v, deployed revisions %v and pending ones %v; want one release, one deployed revision, none pending",
				id, st.Phase, keys(names), deployed, pending)
		}
	}
}

// checkGone checks that nothing of the deleted stores is left: their
// namespaces (and with them PVCs and Secrets) and their volumes.
func (r *faultRun) checkGone() {
	ctx := context.Background()
	cs := sandboxtest.Clientset(r.t)
	ours := map[string]bool{}
	for _, id := range r.ids() {
		ours["store-"+id] = true
		if st := r.seen(id); st.Phase != "PHASE_DELETED" {
			continue // reported by waitSettled
		}
		ns, err := cs.CoreV1().Namespaces().Get(ctx, "store-"+id, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			r.violate("cannot read namespace store-%s: %v", id, err)
			continue
		}
		pvcs, _ := cs.CoreV1().PersistentVolumeClaims(ns.Name).List(ctx, metav1.ListOptions{})
		secrets, _ := cs.CoreV1().Secrets(ns.Name).List(ctx, metav1.ListOptions{})
		r.violate("store %s is DELETED but namespace %s is %s with %d PVCs and %d Secrets", id, ns.Name, ns.Status.Phase, len(pvcs.Items), len(secrets.Items))
	}
	// The provisioner removes a volume after its claim; give it time.
	deadline := time.Now().Add(time.Minute)
	for {
		pvs, err := cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
		if err != nil {
			r.violate("cannot list volumes: %v", err)
			return
		}
		var left []string
		for _, pv := range pvs.Items {
			if pv.Spec.ClaimRef != nil && ours[pv.Spec.ClaimRef.Namespace] {
				left = append(left, pv.Name+" ("+pv.Spec.ClaimRef.Namespace+", "+string(pv.Status.Phase)+")")
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.violate("volumes of deleted stores left a minute after the stores were DELETED: %v", left)
			return
		}
		time.Sleep(time.Second)
	}
}

// checkAudit checks that the audit log has every transition of every
// store: what was asked (create, upgrade, delete) and what came of it
// (ready, failure, deleted).
func (r *faultRun) checkAudit() {
	ctx := context.Background()
	for _, id := range r.ids() {
		// What each phase came to, as checkLive saw it: a ready for a
		// generation that became READY, a failure for one that FAILED or
		// an upgrade rolled back.
		want := map[string]int{"create": 1, "delete": 1, "deleted": 1}
		r.mu.Lock()
		outcomes := r.outcomes[id]
		upgraded := r.upgraded[id]
		r.mu.Unlock()
		if len(outcomes) > 0 {
			want[outcomeAction(outcomes[0], false)]++
		}
		if upgraded {
			want["upgrade"] = 1
			if len(outcomes) > 1 {
				want[outcomeAction(outcomes[1], r.rollsBack(id))]++
			}
		}
		delete(want, "")
		deadline := time.Now().Add(time.Minute)
		for {
			var resp struct{ Entries []auditEntry }
			status, err := r.admin.retry(ctx, "GET", "/v1/auditEntries?storeId="+id, "", &resp, nil)
			if status != 200 {
				r.violate("cannot read the audit log of store %s: %d %v", id, status, err)
				break
			}
			got := map[string]int{}
			for _, e := range resp.Entries {
				got[e.Action]++
			}
			var missing []string
			for action, n := range want {
				if got[action] < n {
					missing = append(missing, fmt.Sprintf("%s (%d of %d)", action, got[action], n))
				}
			}
			sort.Strings(missing)
			if len(missing) == 0 {
				break
			}
			if time.Now().After(deadline) {
				r.violate("the audit log of store %s lacks %s; it has %v", id, strings.Join(missing, ", "), got)
				break
			}
			time.Sleep(time.Second)
		}
	}
}

// outcomeAction is the audit action of a generation that ended in phase.
func outcomeAction(phase string, rolledBack bool) string {
	switch {
	case phase == "PHASE_FAILED" || (phase == "PHASE_READY" && rolledBack):
		return "failure"
	case phase == "PHASE_READY":
		return "ready"
	}
	return ""
}

// holdFinalizer keeps a ConfigMap, and with it its namespace, until the
// suite removes it.
const holdFinalizer = "faults.storeprov.dev/hold"

// holdNamespaces puts a ConfigMap with a finalizer in the namespaces of
// the first stores, before they are deleted.
func holdNamespaces(ctx context.Context, r *faultRun, phase string) {
	if phase != "delete" {
		return
	}
	cs := sandboxtest.Clientset(r.t)
	for _, id := range r.ids()[:min(r.form.stuck, len(r.ids()))] {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "fault-hold", Finalizers: []string{holdFinalizer}}}
		if _, err := cs.CoreV1().ConfigMaps("store-"+id).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			r.violate("the suite could not hold namespace store-%s: %v", id, err)
			continue
		}
		r.mu.Lock()
		r.injected++
		r.held = append(r.held, id)
		r.mu.Unlock()
		r.logf("fault: namespace store-%s held by a ConfigMap with finalizer %s", id, holdFinalizer)
	}
}

// releaseNamespaces waits until each held store says what blocks it (its
// failure reason or message naming the finalizer), then removes the
// finalizer; the store must then finish DELETED.
func releaseNamespaces(ctx context.Context, r *faultRun, phase string) {
	if phase != "delete" {
		return
	}
	cs := sandboxtest.Clientset(r.t)
	var wg sync.WaitGroup
	for _, id := range r.held {
		wg.Go(func() {
			start := time.Now()
			// Long enough for a delete attempt to time out (the
			// orchestrators' --delete-timeout, 15 s) and say so, twice.
			deadline := start.Add(time.Minute)
			said := ""
			terminating := false
			for time.Now().Before(deadline) && ctx.Err() == nil {
				var st store
				if status, _ := r.client.do(ctx, "GET", "/v1/stores/"+id, "", &st); status == 200 {
					// The namespace controller names the finalizer, or at
					// least the kind of object that remains.
					text := st.FailureReason + ": " + st.FailureMessage
					if strings.Contains(text, holdFinalizer) || strings.Contains(text, "configmaps") {
						said = fmt.Sprintf("%s %s", st.Phase, text)
						break
					}
				}
				if ns, err := cs.CoreV1().Namespaces().Get(ctx, "store-"+id, metav1.GetOptions{}); err == nil && ns.DeletionTimestamp != nil {
					terminating = true
				}
				sleep(ctx, time.Second)
			}
			switch {
			case said != "":
				r.note("store %s said what blocks it after %s: %s", id, time.Since(start).Round(time.Second), said)
			case !terminating:
				r.violate("the namespace of store %s never started terminating in %s after its delete", id, time.Since(start).Round(time.Second))
			default:
				r.violate("store %s, its namespace stuck Terminating on finalizer %s, did not say what blocks it through the api in %s; the orchestrator knew:\n    %s",
					id, holdFinalizer, time.Since(start).Round(time.Second),
					strings.Join(trimLines(r.logs.String(), 3, "store-"+id, "terminating"), "\n    "))
			}
			patch := []byte(`{"metadata":{"finalizers":null}}`)
			if _, err := cs.CoreV1().ConfigMaps("store-"+id).Patch(context.Background(), "fault-hold", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
				r.violate("the suite could not remove the finalizer of store-%s: %v", id, err)
			}
			r.logf("fault: finalizer of store-%s removed", id)
		})
	}
	wg.Wait()
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// faultTable is the scoreboard in Markdown.
func faultTable(form faultForm, base stackConfig, results []*faultRun, baseline *faultRun) string {
	var b strings.Builder
	b.WriteString("| Scenario | Stores | Faults injected | Violations | Time to settle (vs. baseline) |\n")
	b.WriteString("| --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		stores := strconv.Itoa(len(r.ids()))
		if extra := len(r.ids()) - len(r.created); extra > 0 && len(r.created) > 0 {
			stores += fmt.Sprintf(" (%d more from creates retried)", extra)
		}
		if r.stack == nil {
			stores = "–"
		}
		settle := "–"
		if r.settled > 0 {
			settle = fmt.Sprintf("%.0f s", r.settled.Seconds())
			if r != baseline && baseline.settled > 0 {
				settle += fmt.Sprintf(" (×%.1f)", r.settled.Seconds()/baseline.settled.Seconds())
			}
		}
		violations := strconv.Itoa(len(r.violations))
		if r.stack == nil {
			violations = "–"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.scenario, stores, r.faults, violations, settle)
	}
	b.WriteString("\n")
	for _, r := range results {
		if len(r.violations) == 0 && len(r.notes) == 0 && r.ambiguous == 0 {
			continue
		}
		fmt.Fprintf(&b, "**%s**\n\n", r.scenario)
		for _, v := range r.violations {
			// Evidence lines become a nested list; newlines inside an
			// error would break the item.
			head, evidence, _ := strings.Cut(v, "\n    ")
			fmt.Fprintf(&b, "- violation: %s\n", strings.ReplaceAll(head, "\n", " "))
			for _, line := range strings.Split(evidence, "\n    ") {
				if line != "" {
					fmt.Fprintf(&b, "  - %s\n", strings.ReplaceAll(line, "\n", " "))
				}
			}
		}
		if r.ambiguous > 0 {
			fmt.Fprintf(&b, "- %d requests were retried after an answer that did not say whether they had been applied\n", r.ambiguous)
		}
		for _, n := range dedupe(r.notes) {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
