package store

import (
	"context"
	"errors"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Logged reports whether the delivery log holds an attempt of a
// destination: one removed from the config keeps its log for log.retention.
func (l *DeliveryLog) Logged(ctx context.Context, dest string) (bool, error) {
	if l == nil || dest == "" || strings.ContainsAny(dest, ".*> \t\r\n") {
		return false, nil
	}
	_, err := l.stream.GetLastMsgForSubject(ctx, subjectLog+dest+".>")
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	return err == nil, err
}
