package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/services/orchestrator/internal/lease"
)

// supersededError is the cause of a command's cancellation when a newer
// command for its store arrived while it worked: the newer one runs
// instead, at once, rather than after the older one's waits.
type supersededError struct {
	by *eventsv1.ProvisionCommand
}

func (e *supersededError) Error() string {
	return fmt.Sprintf("superseded by generation %d (%s, by %s)", e.by.GetGeneration(), actionLabel(e.by), e.by.GetActor())
}

// watchSupersede returns a context derived from ctx that is cancelled with
// a *supersededError when the newest command on cmd's store's subject is
// newer than cmd (lease.Newer), checked every SupersedeCheck. The newest
// command is read from the commands stream itself (its last message on
// the subject), so nothing is missed while the watch was not running. A
// read that fails is tried again at the next check: the older command then
// only runs on, as it would without the watch. The returned function stops
// the watch and cancels the context.
func (w *Worker) watchSupersede(ctx context.Context, commands jetstream.Stream, cmd *eventsv1.ProvisionCommand) (context.Context, func()) {
	watched, cancel := context.WithCancelCause(ctx)
	subject := w.topology.CommandSubject(cmd.GetStoreId())
	done := make(chan struct{})
	quit := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(w.opts.SupersedeCheck)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-watched.Done():
				return
			case <-tick.C:
			}
			newest, err := lastCommand(watched, commands, subject)
			if err != nil {
				if watched.Err() == nil {
					w.log.Debug("cannot read the newest command of a store", "store", cmd.GetStoreId(), "err", err)
				}
				continue
			}
			if newest != nil && lease.Newer(newest.GetGeneration(), newest.GetAction(), cmd.GetGeneration(), cmd.GetAction()) {
				cancel(&supersededError{by: newest})
				return
			}
		}
	}()
	return watched, sync.OnceFunc(func() { close(quit); <-done; cancel(context.Canceled) })
}

// lastCommand returns the newest command queued on subject, or nil when
// none is.
func lastCommand(ctx context.Context, commands jetstream.Stream, subject string) (*eventsv1.ProvisionCommand, error) {
	readCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	raw, err := commands.GetLastMsgForSubject(readCtx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var newest eventsv1.ProvisionCommand
	if err := bus.DecodeStored(raw, &newest); err != nil {
		return nil, err
	}
	return &newest, nil
}
