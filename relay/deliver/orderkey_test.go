package deliver

import (
	"testing"

	"github.com/relaydev/relay/config"
)

func TestOrderKey(t *testing.T) {
	tests := []struct {
		name, key, raw, want string
	}{
		{"id first", "", `{"contact": {"email": "a@x", "id": "c1"}}`, "contact.id=c1"},
		{"email without id", "", `{"contact": {"email": "a@x", "phone": "+1"}}`, "contact.email=a@x"},
		{"phone last", "", `{"contact": {"phone": "+1"}}`, "contact.phone=+1"},
		{"empty id skipped", "", `{"contact": {"id": "", "email": "a@x"}}`, "contact.email=a@x"},
		{"null id skipped", "", `{"contact": {"id": null, "phone": "+1"}}`, "contact.phone=+1"},
		{"number kept as written", "", `{"contact": {"id": 12345678901234567891}}`, "contact.id:12345678901234567891"},
		{"a number is not its string", "", `{"contact": {"id": 777}}`, "contact.id:777"},
		{"a string is not its number", "", `{"contact": {"id": "777"}}`, "contact.id=777"},
		{"a boolean", "attributes.vip", `{"attributes": {"vip": true}}`, "attributes.vip:true"},
		{"no contact", "", `{"attributes": {"id": "x"}}`, ""},
		{"object is no key", "", `{"contact": {"id": {"a": 1}}}`, ""},
		{"attribute path", "attributes.account.id", `{"attributes": {"account": {"id": "acme"}}}`, "attributes.account.id=acme"},
		{"attribute path missing", "attributes.account.id", `{"contact": {"id": "c1"}}`, ""},
		{"not JSON", "", `{"contact"`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &Worker{Cfg: config.Destination{OrderKey: tc.key}}
			if got := w.orderKey([]byte(tc.raw)); got != tc.want {
				t.Errorf("orderKey = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestServerAtLeast(t *testing.T) {
	tests := []struct {
		version string
		want    bool
	}{
		{"2.11.0", true}, {"2.15.2", true}, {"3.0.0", true}, {"2.12.0-beta.1", true},
		{"2.10.22", false}, {"1.99.0", false}, {"", false}, {"x", false},
	}
	for _, tc := range tests {
		if got := serverAtLeast(tc.version, 2, 11); got != tc.want {
			t.Errorf("serverAtLeast(%q, 2, 11) = %v, want %v", tc.version, got, tc.want)
		}
	}
}
