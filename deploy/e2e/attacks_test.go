package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/storeprov/storeprov/deploy/devstack"
	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/helm/chartstest"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
)

// TestTenantAttacks performs, for real, every attack a hostile tenant (or a
// pod of one) has on the platform, through each path a tenant has: REST,
// gRPC, the watch stream, audit filters, the bus and the Kubernetes
// objects its chart creates. Each subtest fails if its attack succeeds.
// README.md's "Security model" names the subtest that proves each claim.
func TestTenantAttacks(t *testing.T) {
	for _, c := range configs(t) {
		t.Run(c.name, func(t *testing.T) {
			s := startStack(t, c)
			admin := &restClient{t: t, base: s.GatewayURL, token: s.Token}
			alice := tenant(t, admin, "alice")
			mallory := tenant(t, admin, "mallory")

			// The victim's READY store, and the attacker's own.
			var victim, own store
			alice.do("POST", "/v1/stores", `{"displayName":"Alice's Shop","engine":"ENGINE_WOOCOMMERCE"}`, 200, &victim)
			sandboxtest.CleanupNamespace(t, "store-"+victim.ID)
			mallory.do("POST", "/v1/stores", `{"displayName":"$(STOREPROV_KEY_SEED)","engine":"ENGINE_WOOCOMMERCE"}`, 200, &own)
			sandboxtest.CleanupNamespace(t, "store-"+own.ID)
			alice.waitPhase(victim.ID, "PHASE_READY")
			mallory.waitPhase(own.ID, "PHASE_READY")

			conn, err := grpc.NewClient(s.APIAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			grpcStores := storev1.NewStoreServiceClient(conn)
			asMallory := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+mallory.token)

			t.Run("upgrade to any image (REST)", func(t *testing.T) {
				m := mallory.on(t)
				before := deploymentImages(t, own.ID)
				for _, key := range []string{"wordpress.image.repository", "wordpress.image.tag", "mariadb.image.repository", "setup.image.repository",
					"wordpress.image.pullPolicy", "ingress.className", "storageClass", "existingSecret.database", "wordpress.persistence.size"} {
					code, body := m.raw("POST", "/v1/stores/"+own.ID+":upgrade", fmt.Sprintf(`{"values":{%q:"docker.io/evil/miner"}}`, key), m.token)
					if code != http.StatusBadRequest || !strings.Contains(string(body), key) || !strings.Contains(string(body), "wordpress.replicas") {
						t.Errorf("upgrade setting %s = %d %s; want 400 naming the key and listing what is allowed", key, code, body)
					}
				}
				if after := deploymentImages(t, own.ID); !slices.Equal(before, after) {
					t.Errorf("images changed from %v to %v", before, after)
				}
				if st := m.get(own.ID); st.Phase != "PHASE_READY" || st.Generation != "1" {
					t.Errorf("store after refused upgrades: %s generation %s, want READY at generation 1", st.Phase, st.Generation)
				}
			})

			t.Run("upgrade to any image (gRPC)", func(t *testing.T) {
				_, err := grpcStores.UpgradeStore(asMallory, &storev1.UpgradeStoreRequest{Id: own.ID, Values: map[string]string{"wordpress.image.repository": "docker.io/evil/miner"}})
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "wordpress.image.repository") {
					t.Errorf("gRPC upgrade to another image = %v, want InvalidArgument naming the key", err)
				}
			})

			t.Run("secrets published through the store name", func(t *testing.T) {
				// The store named $(STOREPROV_KEY_SEED) is READY; its title,
				// as the kubelet expands it, is the name, not the secret.
				titled := 0
				for _, c := range podContainers(t, own.ID) {
					env := chartstest.ExpandEnv(c.Env)
					if v, ok := env["STORE_TITLE"]; ok {
						titled++
						if v != "$(STOREPROV_KEY_SEED)" {
							t.Errorf("container %s: STORE_TITLE expands to %q, want the literal store name", c.Name, v)
						}
					}
				}
				if titled == 0 {
					t.Error("no container carries STORE_TITLE: the attack tested nothing")
				}
			})

			t.Run("another tenant's store (REST)", func(t *testing.T) {
				m := mallory.on(t)
				for _, req := range []struct{ method, path, body string }{
					{"GET", "/v1/stores/" + victim.ID, ""},
					{"DELETE", "/v1/stores/" + victim.ID, ""},
					{"POST", "/v1/stores/" + victim.ID + ":retry", "{}"},
					{"POST", "/v1/stores/" + victim.ID + ":upgrade", `{"values":{"wordpress.replicas":"0"}}`},
				} {
					if code, body := m.raw(req.method, req.path, req.body, m.token); code != http.StatusNotFound {
						t.Errorf("%s %s as another tenant = %d %s, want 404", req.method, req.path, code, body)
					}
				}
				var list struct{ Stores []store }
				m.do("GET", "/v1/stores", "", 200, &list)
				for _, st := range list.Stores {
					if st.ID == victim.ID {
						t.Errorf("another tenant's store is listed: %+v", st)
					}
				}
				if st := alice.on(t).get(victim.ID); st.Phase != "PHASE_READY" || st.Generation != "1" {
					t.Errorf("victim's store after the attempts: %s generation %s, want READY at generation 1", st.Phase, st.Generation)
				}
			})

			t.Run("another tenant's store (gRPC)", func(t *testing.T) {
				calls := map[string]func() error{
					"GetStore": func() error {
						_, err := grpcStores.GetStore(asMallory, &storev1.GetStoreRequest{Id: victim.ID})
						return err
					},
					"DeleteStore": func() error {
						_, err := grpcStores.DeleteStore(asMallory, &storev1.DeleteStoreRequest{Id: victim.ID})
						return err
					},
					"RetryStore": func() error {
						_, err := grpcStores.RetryStore(asMallory, &storev1.RetryStoreRequest{Id: victim.ID})
						return err
					},
					"UpgradeStore": func() error {
						_, err := grpcStores.UpgradeStore(asMallory, &storev1.UpgradeStoreRequest{Id: victim.ID})
						return err
					},
				}
				for name, call := range calls {
					if err := call(); status.Code(err) != codes.NotFound {
						t.Errorf("%s of another tenant's store = %v, want NotFound", name, err)
					}
				}
			})

			t.Run("watch stream", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(asMallory, 20*time.Second)
				defer cancel()
				stream, err := grpcStores.WatchStores(ctx, &storev1.WatchStoresRequest{})
				if err != nil {
					t.Fatal(err)
				}
				// A change of the victim's store while the attacker watches.
				var other store
				alice.on(t).do("POST", "/v1/stores", `{"displayName":"Alice's Second","engine":"ENGINE_MEDUSA"}`, 200, &other)
				sandboxtest.CleanupNamespace(t, "store-"+other.ID)
				marker := mallory.on(t).create("Mallory's Marker", "ENGINE_MEDUSA")
				sandboxtest.CleanupNamespace(t, "store-"+marker.ID)
				for {
					resp, err := stream.Recv()
					if err != nil {
						t.Fatalf("watch ended before the attacker's own store arrived: %v", err)
					}
					if id := resp.GetStore().GetId(); id == victim.ID || id == other.ID {
						t.Fatalf("the watch stream showed another tenant's store %s", id)
					}
					if resp.GetStore().GetId() == marker.ID {
						break
					}
				}
			})

			t.Run("audit filters", func(t *testing.T) {
				m := mallory.on(t)
				for _, query := range []string{"storeId=" + victim.ID, "actor=alice", "action=create", ""} {
					var resp struct{ Entries []auditEntry }
					m.do("GET", "/v1/auditEntries?"+query, "", 200, &resp)
					for _, e := range resp.Entries {
						if e.StoreID == victim.ID || e.Actor == "alice" {
							t.Errorf("audit query %q showed another tenant's entry %+v", query, e)
						}
					}
				}
			})

			t.Run("foreign namespace", func(t *testing.T) {
				attackForeignNamespace(t, s, mallory.on(t))
			})

			t.Run("kubernetes objects of its chart", func(t *testing.T) {
				attackFromStorePods(t, own.ID)
			})

			if c.natsURL != "" {
				// The external NATS of this configuration has no accounts:
				// the bus attacks run against the embedded, authenticated one.
				return
			}
			t.Run("the bus", func(t *testing.T) {
				attackBus(t, s, alice.on(t), mallory.on(t), victim.ID)
			})
		})
	}
}

// tenant creates a user and returns a client with its token.
func tenant(t *testing.T, admin *restClient, name string) *restClient {
	t.Helper()
	var resp struct{ Token string }
	admin.do("POST", "/v1/tokens", fmt.Sprintf(`{"user":%q,"storeQuota":5}`, name), 200, &resp)
	return &restClient{t: t, base: admin.base, token: resp.Token}
}

// on returns the client reporting to t, for a subtest.
func (c *restClient) on(t *testing.T) *restClient {
	return &restClient{t: t, base: c.base, token: c.token}
}

func (c *restClient) get(id string) store {
	c.t.Helper()
	var st store
	c.do("GET", "/v1/stores/"+id, "", 200, &st)
	return st
}

func (c *restClient) create(name, engine string) store {
	c.t.Helper()
	var st store
	c.do("POST", "/v1/stores", fmt.Sprintf(`{"displayName":%q,"engine":%q}`, name, engine), 200, &st)
	return st
}

// deploymentImages lists the images of every workload in a store's namespace.
func deploymentImages(t *testing.T, storeID string) []string {
	t.Helper()
	var images []string
	for _, c := range podContainers(t, storeID) {
		images = append(images, c.Image)
	}
	slices.Sort(images)
	return images
}

// podContainers returns the containers of every Deployment, StatefulSet
// and Job of a store, init containers included.
func podContainers(t *testing.T, storeID string) []corev1.Container {
	t.Helper()
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	ns := "store-" + storeID
	var specs []corev1.PodSpec
	deployments, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range deployments.Items {
		specs = append(specs, d.Spec.Template.Spec)
	}
	sets, err := cs.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sets.Items {
		specs = append(specs, s.Spec.Template.Spec)
	}
	jobs, err := cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs.Items {
		specs = append(specs, j.Spec.Template.Spec)
	}
	var containers []corev1.Container
	for _, s := range specs {
		containers = append(containers, s.InitContainers...)
		containers = append(containers, s.Containers...)
	}
	if len(containers) == 0 {
		t.Fatalf("no workloads in %s", ns)
	}
	return containers
}

// attackForeignNamespace makes store-<id> exist, unlabelled, before the
// orchestrators see the store: the store fails with NamespaceConflict and
// the namespace is neither relabelled nor deleted, not even when the
// store is deleted.
func attackForeignNamespace(t *testing.T, s *devstack.Stack, m *restClient) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	if err := s.StopOrchestrators(ctx); err != nil {
		t.Fatal(err)
	}
	st := m.create("Takeover", "ENGINE_WOOCOMMERCE")
	ns := "store-" + st.ID
	foreign, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: ns, Labels: map[string]string{"team": "frontend"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sandboxtest.CleanupNamespace(t, ns)
	s.StartOrchestrators()

	failed := m.waitPhase(st.ID, "PHASE_FAILED")
	if lifecycle.Reason(failed.FailureReason) != lifecycle.ReasonNamespaceConflict || !strings.Contains(failed.FailureMessage, ns) {
		t.Errorf("store over a foreign namespace failed with %s: %s; want NamespaceConflict naming %s", failed.FailureReason, failed.FailureMessage, ns)
	}
	m.do("DELETE", "/v1/stores/"+st.ID, "", 200, nil)
	m.waitPhase(st.ID, "PHASE_DELETED")
	after, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the foreign namespace is gone after the store was deleted: %v", err)
	}
	if after.ResourceVersion != foreign.ResourceVersion || after.DeletionTimestamp != nil || after.Labels["app.kubernetes.io/managed-by"] != "" {
		t.Errorf("the foreign namespace was changed: labels %v, deleting %v", after.Labels, after.DeletionTimestamp != nil)
	}
}

// attackFromStorePods checks what a store's own pods are held to: the
// namespace enforces Pod Security restricted, so a privileged or
// host-mounting pod is refused, and egress never reaches cloud metadata,
// other private ranges or the shared range.
func attackFromStorePods(t *testing.T, storeID string) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	ns := "store-" + storeID
	obj, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if level := obj.Labels["pod-security.kubernetes.io/enforce"]; level != "restricted" {
		t.Errorf("store namespace enforces Pod Security %q, want restricted", level)
	}
	privileged := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "escape"},
		Spec: corev1.PodSpec{
			HostNetwork: true,
			Containers: []corev1.Container{{Name: "c", Image: "busybox",
				SecurityContext: &corev1.SecurityContext{Privileged: &privileged}}},
			Volumes: []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}},
		},
	}
	_, err = cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if !apierrors.IsForbidden(err) {
		t.Errorf("a privileged, host-mounting pod in the store namespace = %v, want Forbidden by Pod Security", err)
	}
	egress, err := cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, "allow-web-internet-egress", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, rule := range egress.Spec.Egress {
		for _, peer := range rule.To {
			if peer.IPBlock == nil {
				t.Errorf("internet egress rule has a peer that is not an IP block: %+v", peer)
				continue
			}
			for _, closed := range []string{"169.254.0.0/16", "100.64.0.0/10", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} {
				if !slices.Contains(peer.IPBlock.Except, closed) {
					t.Errorf("store egress reaches %s: %s except %v", closed, peer.IPBlock.CIDR, peer.IPBlock.Except)
				}
			}
		}
	}
}

// attackBus tries the bus as a pod that reached NATS: without credentials
// nothing is accepted; and even with a platform service's credentials a
// status of a generation the api never issued, or an audit entry that
// names another owner, changes nothing a tenant sees.
func attackBus(t *testing.T, s *devstack.Stack, alice, m *restClient, victimID string) {
	topo := bus.Topology{Prefix: s.BusPrefix(), Replicas: 1}

	t.Run("anonymous", func(t *testing.T) {
		nc, err := nats.Connect(s.NATSURL, nats.Timeout(5*time.Second), nats.NoReconnect())
		if err == nil {
			defer nc.Close()
			pubErr := nc.Publish(topo.CommandSubject(victimID), []byte("delete"))
			flushErr := nc.FlushTimeout(5 * time.Second)
			t.Fatalf("anonymous connection accepted (publish: %v, flush: %v), want an authorization error", pubErr, flushErr)
		}
		if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("anonymous connection = %v, want an authorization error", err)
		}
	})

	t.Run("forged status", func(t *testing.T) {
		_, js := connectAs(t, s, bus.RoleOrchestrator)
		forged := &eventsv1.StoreStatusChanged{
			StoreId: victimID, ObservedGeneration: 99, Phase: storev1.Phase_PHASE_DELETED,
			Reason: string(lifecycle.ReasonDeleted), Time: timestamppb.Now(),
		}
		publish(t, js, topo.StatusSubject(victimID), "forged-status-"+victimID, forged)
		// The api applies one store's events in stream order: once this
		// later event of generation 1 shows, the forgery has been judged.
		marker := "marker-" + sandboxtest.RandomSuffix()
		publish(t, js, topo.StatusSubject(victimID), marker, &eventsv1.StoreStatusChanged{
			StoreId: victimID, ObservedGeneration: 1, Phase: storev1.Phase_PHASE_READY,
			Reason: string(lifecycle.ReasonUpgradeFailed), Message: marker, Time: timestamppb.Now(),
		})
		deadline := time.Now().Add(30 * time.Second)
		st := alice.get(victimID)
		for st.FailureMessage != marker && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			st = alice.get(victimID)
		}
		if st.FailureMessage != marker {
			t.Fatalf("the api did not apply a status of generation 1 within 30s: %+v", st)
		}
		if st.Phase != "PHASE_READY" || st.ObservedGeneration != "1" {
			t.Errorf("victim's store after a forged status of generation 99: %s observed generation %s, want READY at 1", st.Phase, st.ObservedGeneration)
		}
	})

	t.Run("forged audit owner", func(t *testing.T) {
		_, js := connectAs(t, s, bus.RoleOrchestrator)
		id := "forged-" + sandboxtest.RandomSuffix()
		publish(t, js, topo.AuditSubject(bus.RoleOrchestrator, victimID), id, &eventsv1.AuditEvent{Entry: &auditv1.AuditEntry{
			Id: id, Action: lifecycle.ActionReady, Actor: lifecycle.SystemActor, StoreId: victimID, StoreOwner: "mallory",
			Time: timestamppb.Now(), Detail: id,
		}})
		e, _ := alice.waitAuditEntry(victimID, id, func(e auditEntry) bool { return e.Detail == id })
		if e.StoreID != victimID {
			t.Fatalf("forged entry = %+v", e)
		}
		var resp struct{ Entries []auditEntry }
		m.do("GET", "/v1/auditEntries?storeId="+victimID, "", 200, &resp)
		if len(resp.Entries) != 0 {
			t.Errorf("an audit event naming mallory as owner of alice's store showed mallory %+v", resp.Entries)
		}
	})
}

// connectAs connects to the stack's NATS server as role, with its password.
func connectAs(t *testing.T, s *devstack.Stack, role bus.Role) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	topo := bus.Topology{Prefix: s.BusPrefix()}
	opts := append(topo.ConnectOptions(role, bus.Credentials{Password: s.NATSPassword(role)}, nil), nats.Timeout(5*time.Second))
	nc, err := nats.Connect(s.NATSURL, opts...)
	if err != nil {
		t.Fatalf("cannot connect to NATS as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// publish publishes msg to subject through JetStream, as a service does.
func publish(t *testing.T, js jetstream.JetStream, subject, msgID string, msg proto.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.Publish(ctx, js, subject, msgID, msg); err != nil {
		t.Fatal(err)
	}
}
