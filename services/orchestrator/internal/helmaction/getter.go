package helmaction

import (
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// restClientGetter is the genericclioptions.RESTClientGetter Helm builds
// its clients from: the orchestrator's rest.Config, with discovery and the
// REST mapper shared by every store (discovered once per process, not
// once per action), and a default namespace of the store's.
type restClientGetter struct {
	config    *rest.Config
	discovery discovery.CachedDiscoveryInterface
	mapper    meta.RESTMapper
	namespace string
}

func (g *restClientGetter) ToRESTConfig() (*rest.Config, error) {
	return rest.CopyConfig(g.config), nil
}

func (g *restClientGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	return g.discovery, nil
}

func (g *restClientGetter) ToRESTMapper() (meta.RESTMapper, error) { return g.mapper, nil }

func (g *restClientGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig {
	return &namespacedConfig{
		defaults: clientcmd.NewDefaultClientConfig(clientcmdapi.Config{}, &clientcmd.ConfigOverrides{}),
		getter:   g,
	}
}

// namespacedConfig answers the questions Helm and kubectl's factory ask a
// kubeconfig loader from the getter: no kubeconfig file is read.
type namespacedConfig struct {
	defaults clientcmd.ClientConfig
	getter   *restClientGetter
}

func (c *namespacedConfig) RawConfig() (clientcmdapi.Config, error) { return c.defaults.RawConfig() }

func (c *namespacedConfig) ConfigAccess() clientcmd.ConfigAccess { return c.defaults.ConfigAccess() }

func (c *namespacedConfig) ClientConfig() (*rest.Config, error) { return c.getter.ToRESTConfig() }

func (c *namespacedConfig) Namespace() (string, bool, error) { return c.getter.namespace, true, nil }
