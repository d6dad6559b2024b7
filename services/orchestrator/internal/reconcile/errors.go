package reconcile

import (
	"errors"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/kube"
)

// Error is a reconcile that did not converge, with what the store's FAILED
// status would say if the caller gives up.
type Error struct {
	// Reason is a lifecycle reason (lifecycle.ReasonTimeout, …) for the
	// FAILED status: now when Terminal, after the last retry otherwise.
	Reason lifecycle.Reason
	// Terminal means retrying cannot help: the caller publishes FAILED
	// (Reconciler.Fail) and drops the command.
	Terminal bool
	Err      error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// classify converts an error from a step or the bus into an *Error, once,
// by its type: what a user must fix is terminal, anything the cluster or
// the bus may get over is retried.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var re *Error
	if errors.As(err, &re) {
		return err
	}
	var te *kube.TerminatingError
	switch {
	case errors.Is(err, storeid.ErrInvalid):
		return &Error{Reason: lifecycle.ReasonInvalidSpec, Terminal: true, Err: err}
	case errors.Is(err, kube.ErrNamespaceConflict):
		return &Error{Reason: lifecycle.ReasonNamespaceConflict, Terminal: true, Err: err}
	case errors.Is(err, kube.ErrCredentialsLost):
		return &Error{Reason: lifecycle.ReasonCredentialsLost, Terminal: true, Err: err}
	case errors.As(err, &te):
		return &Error{Reason: lifecycle.ReasonNamespaceStuck, Err: err}
	case errors.Is(err, kube.ErrNamespaceTerminating):
		return &Error{Reason: lifecycle.ReasonNamespaceTerminating, Err: err}
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "exceeded quota"):
		return &Error{Reason: lifecycle.ReasonQuotaExceeded, Err: err}
	}
	return &Error{Reason: lifecycle.ReasonRetriesExhausted, Err: err}
}
