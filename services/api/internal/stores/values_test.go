package stores

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
)

func TestValidateValuesUsesThePolicyOfTheEnginesChart(t *testing.T) {
	tests := []struct {
		name   string
		engine storev1.Engine
		values map[string]string
		// want is the refused field, empty when the values are admitted.
		want *InvalidFieldError
	}{
		{name: "woocommerce replicas", engine: storev1.Engine_ENGINE_WOOCOMMERCE, values: map[string]string{"wordpress.replicas": "2"}},
		{name: "medusa replicas", engine: storev1.Engine_ENGINE_MEDUSA, values: map[string]string{"medusa.replicas": "2"}},
		{
			name: "medusa key on woocommerce", engine: storev1.Engine_ENGINE_WOOCOMMERCE, values: map[string]string{"medusa.replicas": "2"},
			want: &InvalidFieldError{`values["medusa.replicas"]`, "is not a value a tenant may set; allowed: mariadb.resources.limits.cpu, mariadb.resources.limits.memory, mariadb.resources.requests.cpu, mariadb.resources.requests.memory, setup.currency, setup.product.description, setup.product.name, setup.product.regularPrice, setup.product.sku, wordpress.php.memoryLimit, wordpress.php.uploadMaxFilesize, wordpress.replicas, wordpress.resources.limits.cpu, wordpress.resources.limits.memory, wordpress.resources.requests.cpu, wordpress.resources.requests.memory"},
		},
		{
			name: "woocommerce key on medusa", engine: storev1.Engine_ENGINE_MEDUSA, values: map[string]string{"wordpress.replicas": "2"},
			want: &InvalidFieldError{`values["wordpress.replicas"]`, "is not a value a tenant may set; allowed: medusa.replicas, medusa.resources.limits.cpu, medusa.resources.limits.memory, medusa.resources.requests.cpu, medusa.resources.requests.memory, postgresql.resources.limits.cpu, postgresql.resources.limits.memory, postgresql.resources.requests.cpu, postgresql.resources.requests.memory, setup.currency, setup.product.description, setup.product.name, setup.product.price, setup.product.sku"},
		},
		{
			name: "image", engine: storev1.Engine_ENGINE_MEDUSA, values: map[string]string{"medusa.image.repository": "evil/miner"},
			want: &InvalidFieldError{`values["medusa.image.repository"]`, "is not a value a tenant may set; allowed: medusa.replicas, medusa.resources.limits.cpu, medusa.resources.limits.memory, medusa.resources.requests.cpu, medusa.resources.requests.memory, postgresql.resources.limits.cpu, postgresql.resources.limits.memory, postgresql.resources.requests.cpu, postgresql.resources.requests.memory, setup.currency, setup.product.description, setup.product.name, setup.product.price, setup.product.sku"},
		},
		{
			name: "bound", engine: storev1.Engine_ENGINE_WOOCOMMERCE, values: map[string]string{"wordpress.resources.limits.cpu": "4"},
			want: &InvalidFieldError{`values["wordpress.resources.limits.cpu"]`, "must be at most 2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateValues(tt.engine, tt.values)
			var got *InvalidFieldError
			if err != nil && !errors.As(err, &got) {
				t.Fatalf("validateValues = %v, want an *InvalidFieldError", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("validateValues (-want +got):\n%s", diff)
			}
		})
	}
}
