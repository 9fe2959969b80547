package store

import (
	"context"
	"errors"
	"regexp"

	"github.com/nats-io/nats.go/jetstream"
)

// Logged reports whether the delivery log holds an attempt of a
// destination: one removed from the config keeps its log for log.retention.
func (l *DeliveryLog) Logged(ctx context.Context, dest string) (bool, error) {
	if l == nil || !destinationName.MatchString(dest) {
		return false, nil // no destination could have that name
	}
	_, err := l.stream.GetLastMsgForSubject(ctx, subjectLog+dest+".>")
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	return err == nil, err
}

// destinationName is the form config gives destination names.
var destinationName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
