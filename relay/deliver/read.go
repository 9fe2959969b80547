package deliver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ReadActivity reads a stored activity's data by its stream sequence (a
// hand-over's, a held lane's). One no longer stored is a gone error.
func (w *Worker) ReadActivity(ctx context.Context, seq uint64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stored, err := w.st.Bus.Activities.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("the stored activity (sequence %d) is gone: older than nats.retention, or erased (%w)", seq, err)
	}
	if err != nil {
		return nil, err
	}
	return stored.Data, nil
}
