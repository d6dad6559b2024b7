##@ Local cluster (kind; needs Docker)
#
# Included by the root Makefile (bash, -eu -o pipefail). `make local-up` runs
# the platform for real in a kind cluster with ingress-nginx, where stores
# serve HTTP: the dashboard at http://dashboard.127.0.0.1.nip.io and each
# store at http://store-<id>.127.0.0.1.nip.io. It needs Docker, kind and
# kubectl; helm is taken from PATH or from the sandbox's .cache/sandbox/bin.
# Without Docker, `make dev` runs the platform on the sandbox cluster instead.
#
# Steps, each safe to repeat: create the cluster (deploy/kind/kind-config.yaml)
# unless it exists; apply ingress-nginx's published manifest for kind and
# wait for it; build the four service images with deploy/docker/Dockerfile
# and load them into the cluster (`kind load docker-image`); install or
# upgrade helm/platform with helm/values-local.yaml, restarting the services
# when the release already existed so that they run the fresh images.

LOCAL_ROOT       := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)
LOCAL_CLUSTER    ?= storeprov
LOCAL_CONTEXT    := kind-$(LOCAL_CLUSTER)
LOCAL_NAMESPACE  ?= storeprov
LOCAL_RELEASE    ?= platform
LOCAL_IMAGE_REPO ?= storeprov
LOCAL_IMAGE_TAG  ?= dev
LOCAL_SERVICES   := api audit gateway orchestrator
LOCAL_HELM       ?= $(or $(shell command -v helm 2>/dev/null),$(LOCAL_ROOT)/.cache/sandbox/bin/helm)

# ingress-nginx's manifest for kind, pinned to a controller release (a file
# path works too).
INGRESS_NGINX_VERSION  ?= controller-v1.13.3
INGRESS_NGINX_MANIFEST ?= https://github.com/kubernetes/ingress-nginx/raw/$(INGRESS_NGINX_VERSION)/deploy/static/provider/kind/deploy.yaml

.PHONY: local-check
local-check: ## Check that Docker, kind, kubectl and helm are there for local-up
	@missing=""; \
	for tool in docker kind kubectl; do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	[ -x "$(LOCAL_HELM)" ] || missing="$$missing helm"; \
	if [ -n "$$missing" ]; then \
		echo "local-up: not found on PATH:$$missing" >&2; \
		echo "  make local-up runs the platform in a kind cluster and needs Docker, kind and kubectl." >&2; \
		echo "  kind:  go install sigs.k8s.io/kind@latest   (needs Docker to run)" >&2; \
		echo "  helm:  make sandbox-bin builds one into .cache/sandbox/bin" >&2; \
		echo "  No Docker here? 'make dev' runs the whole platform on the sandbox cluster instead." >&2; \
		exit 1; \
	fi; \
	if ! docker info >/dev/null 2>&1; then \
		echo "local-up: docker is installed but its daemon does not answer ('docker info' failed): start Docker and retry." >&2; \
		exit 1; \
	fi

.PHONY: local-up
local-up: local-check ## Run the platform in a kind cluster with ingress-nginx (needs Docker); dashboard at http://dashboard.127.0.0.1.nip.io
	@if kind get clusters 2>/dev/null | grep -qx '$(LOCAL_CLUSTER)'; then \
		echo "local-up: reusing kind cluster $(LOCAL_CLUSTER)"; \
	else \
		echo "local-up: creating kind cluster $(LOCAL_CLUSTER)"; \
		kind create cluster --name $(LOCAL_CLUSTER) --config $(LOCAL_ROOT)/deploy/kind/kind-config.yaml --wait 180s; \
	fi
	@echo "local-up: installing ingress-nginx ($(INGRESS_NGINX_VERSION))"
	kubectl --context $(LOCAL_CONTEXT) apply -f $(INGRESS_NGINX_MANIFEST)
	kubectl --context $(LOCAL_CONTEXT) -n ingress-nginx rollout status deployment/ingress-nginx-controller --timeout=300s
	@# The admission webhook must have its certificate (made by the manifest's
	@# Jobs) before any Ingress is created; finished Jobs may be gone already.
	@if kubectl --context $(LOCAL_CONTEXT) -n ingress-nginx get jobs -o name | grep -q .; then \
		kubectl --context $(LOCAL_CONTEXT) -n ingress-nginx wait --for=condition=complete job --all --timeout=300s; \
	fi
	@for svc in $(LOCAL_SERVICES); do \
		echo "local-up: building $(LOCAL_IMAGE_REPO)/$$svc:$(LOCAL_IMAGE_TAG)"; \
		docker build -f $(LOCAL_ROOT)/deploy/docker/Dockerfile --build-arg SERVICE=$$svc -t $(LOCAL_IMAGE_REPO)/$$svc:$(LOCAL_IMAGE_TAG) $(LOCAL_ROOT); \
		kind load docker-image --name $(LOCAL_CLUSTER) $(LOCAL_IMAGE_REPO)/$$svc:$(LOCAL_IMAGE_TAG); \
	done
	@existed=false; \
	if $(LOCAL_HELM) --kube-context $(LOCAL_CONTEXT) -n $(LOCAL_NAMESPACE) status $(LOCAL_RELEASE) >/dev/null 2>&1; then existed=true; fi; \
	echo "local-up: helm upgrade --install $(LOCAL_RELEASE) (namespace $(LOCAL_NAMESPACE))"; \
	$(LOCAL_HELM) --kube-context $(LOCAL_CONTEXT) upgrade --install $(LOCAL_RELEASE) $(LOCAL_ROOT)/helm/platform \
		--namespace $(LOCAL_NAMESPACE) --create-namespace \
		-f $(LOCAL_ROOT)/helm/values-local.yaml \
		--set image.repository=$(LOCAL_IMAGE_REPO) --set-string image.tag=$(LOCAL_IMAGE_TAG) \
		--wait --timeout 10m; \
	if $$existed; then \
		echo "local-up: restarting the services onto the images just loaded"; \
		kubectl --context $(LOCAL_CONTEXT) -n $(LOCAL_NAMESPACE) rollout restart deployment -l app.kubernetes.io/instance=$(LOCAL_RELEASE); \
		kubectl --context $(LOCAL_CONTEXT) -n $(LOCAL_NAMESPACE) rollout status deployment -l app.kubernetes.io/instance=$(LOCAL_RELEASE) --timeout=300s; \
	fi
	@echo
	@echo "  dashboard + REST   http://dashboard.127.0.0.1.nip.io"
	@echo "  stores             http://store-<id>.127.0.0.1.nip.io"
	@echo "  first admin token  kubectl --context $(LOCAL_CONTEXT) -n $(LOCAL_NAMESPACE) get secret $(LOCAL_RELEASE)-admin-token -o jsonpath='{.data.token}' | base64 -d"
	@echo "  api gRPC           kubectl --context $(LOCAL_CONTEXT) -n $(LOCAL_NAMESPACE) port-forward svc/$(LOCAL_RELEASE)-api 9090:9090"

# The Medusa chart's server image has no public build (helm/README.md).
LOCAL_MEDUSA_IMAGE ?= storeprov/medusa-store:$(shell sed -n '/^medusa:/,/^[a-z]/s/^    tag: "\(.*\)"/\1/p' $(LOCAL_ROOT)/helm/medusa-store/values.yaml)

.PHONY: local-medusa-image
local-medusa-image: local-check ## Build the Medusa store image and load it into the local-up cluster (slow: npm install in Docker)
	docker build -t $(LOCAL_MEDUSA_IMAGE) $(LOCAL_ROOT)/helm/medusa-image
	kind load docker-image --name $(LOCAL_CLUSTER) $(LOCAL_MEDUSA_IMAGE)

.PHONY: local-down
local-down: ## Delete the kind cluster of local-up and everything in it (safe when none exists)
	@if ! command -v kind >/dev/null 2>&1; then \
		echo "local-down: kind is not on PATH, so there is no kind cluster to delete"; \
	elif kind get clusters 2>/dev/null | grep -qx '$(LOCAL_CLUSTER)'; then \
		kind delete cluster --name $(LOCAL_CLUSTER); \
	else \
		echo "local-down: no kind cluster named $(LOCAL_CLUSTER)"; \
	fi
