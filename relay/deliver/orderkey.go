package deliver

import "github.com/relaydev/relay/relay/activity"

// orderKey names the contact of an activity (its stored JSON) for order:
// contact: by order_key, or the first of activity.DefaultContactKeys.
func (w *Worker) orderKey(raw []byte) string {
	paths := activity.DefaultContactKeys
	if w.Cfg.OrderKey != "" {
		paths = []string{w.Cfg.OrderKey}
	}
	return activity.ContactKey(raw, paths)
}
