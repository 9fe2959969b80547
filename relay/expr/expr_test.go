package expr

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/relay/activity"
)

func testActivity() *activity.Activity {
	return &activity.Activity{ID: "a-1", Name: "email.open", Type: "email", Action: "open", Activity: "Opened email",
		OccurredAt: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), ReceivedAt: time.Date(2026, 11, 22, 10, 0, 1, 0, time.UTC),
		Contact:    json.RawMessage(`{"email":"ann@example.com","id":"c_1"}`),
		Attributes: json.RawMessage(`{"campaign":"black-friday","total":250,"big":12345678901234567891,"price":9.5,"tags":["a","b"],"nested":{"k":true}}`)}
}

func TestCompileChecksTypes(t *testing.T) {
	tests := []struct {
		src     string
		want    Result
		wantErr string // "" = compiles
	}{
		{`activity.attributes.campaign == "black-friday"`, Bool, ""},
		{`has(activity.contact.email) && activity.type == "email"`, Bool, ""},
		{`activity.occurred_at > timestamp("2026-01-01T00:00:00Z")`, Bool, ""},
		{`activity.attributes.flag`, Bool, ""}, // dyn: checked at run time
		{`activity.atributes.campaign == "x"`, Bool, "undefined field 'atributes'"},
		{`activity.contacts.email == "x"`, Bool, "undefined field 'contacts'"},
		{`activity.nme == "x"`, Bool, "undefined field 'nme'"},
		{`activity.name`, Bool, "must be a bool, it is string"},
		{`activity.occurred_at + 1`, Bool, "no matching overload"},
		{`{"text": activity.name}`, Object, ""},
		{`[activity.id]`, Object, ""},
		{`activity.name`, Object, "must be a map or a list"},
		{`activity.attributes`, Object, ""},
		{`activity.name + "x"`, Any, ""},
		{`activity.`, Bool, "invalid CEL expression"},
	}
	for _, tc := range tests {
		_, err := Compile(tc.src, tc.want)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("Compile(%q) = %v, want no error", tc.src, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Msg, tc.wantErr)):
			t.Errorf("Compile(%q) = %v, want an error with %q", tc.src, err, tc.wantErr)
		}
	}
}

func TestErrorPosition(t *testing.T) {
	_, err := Compile("activity.type == \"email\" &&\n  activity.atributes.x == 1", Bool)
	if err == nil || err.Line != 2 || err.Col != 11 {
		t.Fatalf("error = %+v, want line 2 col 11", err)
	}
}

func TestEvaluate(t *testing.T) {
	in, err := NewInput(testActivity())
	if err != nil {
		t.Fatal(err)
	}
	bools := []struct {
		src     string
		want    bool
		wantErr bool
	}{
		{`activity.attributes.campaign == "black-friday"`, true, false},
		{`activity.attributes.total > 100`, true, false},
		{`activity.attributes.price < 10.0`, true, false},
		{`activity.attributes.big > 0u`, true, false},
		{`"a" in activity.attributes.tags`, true, false},
		{`activity.attributes.nested.k`, true, false},
		{`has(activity.contact.phone)`, false, false},
		{`activity.attributes.missing == "x"`, false, true},
		{`activity.attributes.campaign`, false, true}, // a string, not a bool
	}
	for _, tc := range bools {
		p, cerr := Compile(tc.src, Bool)
		if cerr != nil {
			t.Fatalf("Compile(%q): %v", tc.src, cerr)
		}
		got, err := p.Bool(in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("%s = %v, %v; want %v (error: %v)", tc.src, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestValueKeepsIntegers(t *testing.T) {
	in, err := NewInput(testActivity())
	if err != nil {
		t.Fatal(err)
	}
	p, cerr := Compile(`{"id": activity.id, "total": activity.attributes.total, "big": activity.attributes.big, "at": activity.occurred_at, "tags": activity.attributes.tags, "n": 9007199254740993}`, Object)
	if cerr != nil {
		t.Fatal(cerr)
	}
	v, err := p.Value(in)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(v)
	want := `{"at":"2026-11-22T10:00:00Z","big":12345678901234567891,"id":"a-1","n":9007199254740993,"tags":["a","b"],"total":250}`
	if string(got) != want {
		t.Errorf("value = %s\nwant    %s", got, want)
	}
}
