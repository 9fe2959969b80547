package deliver

import "github.com/relaydev/relay/relay/api"

// Order is the lanes' status, nil for a destination without order: contact.
func (w *Worker) Order() *api.OrderStatus {
	if !w.Ordered() {
		return nil
	}
	st := &api.OrderStatus{Key: w.Cfg.OrderKey}
	if st.Key == "" {
		st.Key = "contact.id|contact.email|contact.phone"
	}
	s := w.session.Load()
	if s == nil {
		return st
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.Held, st.Contacts, st.Resuming = len(s.held), len(s.byKey), s.gate != nil
	for _, l := range s.byKey {
		st.HeldBehind += max(0, len(l.queue)-1)
	}
	return st
}

// HeldBehind is the id of the earlier activity of the same contact that
// the activity id waits behind in this process's lanes, or "".
func (w *Worker) HeldBehind(id string) string {
	s := w.session.Load()
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.held {
		if h.id != id {
			continue
		}
		if l := s.byKey[h.key]; l != nil && len(l.queue) > 0 && l.queue[0] != h {
			return l.queue[0].id
		}
		return ""
	}
	return ""
}
