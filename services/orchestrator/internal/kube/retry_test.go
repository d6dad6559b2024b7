package kube_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/storeprov/storeprov/pkg/sandboxtest"
	"github.com/storeprov/storeprov/services/orchestrator/internal/kube"
)

// A proxy in front of the sandbox's API server fails every other request
// with 500 or 429: with RetryTransient, reads and writes all succeed.
func TestTransientAPIErrorsAreRetried(t *testing.T) {
	cfg := sandboxtest.RESTConfig(t)
	target, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	upstream, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = upstream
	var n, failed atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := n.Add(1); i%2 == 1 {
			failed.Add(1)
			code := http.StatusInternalServerError
			if i%4 == 1 {
				code = http.StatusTooManyRequests
			}
			http.Error(w, "injected fault", code)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()

	viaProxy := &rest.Config{Host: srv.URL}
	kube.RetryTransient(viaProxy)
	cs, err := kubernetes.NewForConfig(viaProxy)
	if err != nil {
		t.Fatal(err)
	}
	ns := "retry-" + sandboxtest.RandomSuffix()
	sandboxtest.CleanupNamespace(t, ns)
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create through a faulty API: %v", err)
	}
	for range 5 {
		if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
			t.Fatalf("get through a faulty API: %v", err)
		}
	}
	if failed.Load() < 5 {
		t.Errorf("only %d requests failed: the proxy injected too little", failed.Load())
	}
}
