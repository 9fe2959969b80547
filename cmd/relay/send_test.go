package main

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestAttrValues(t *testing.T) {
	tests := []struct {
		arg     string
		key     string
		want    any
		wantErr bool
	}{
		{"campaign=black-friday", "campaign", "black-friday", false},
		{"total=12.5", "total", json.Number("12.5"), false},
		{"count=-3", "count", json.Number("-3"), false},
		{"huge=1e400", "huge", json.Number("1e400"), false},
		{"vip=true", "vip", true, false},
		{"vip=false", "vip", false, false},
		{"zip=02134", "zip", "02134", false}, // a leading zero is not a JSON number
		{"x=NaN", "x", "NaN", false},
		{"x=0x10", "x", "0x10", false},
		{"x=1_000", "x", "1_000", false},
		{"x=True", "x", "True", false},
		{`x="12"`, "x", `"12"`, false},
		{"x= 12", "x", " 12", false},
		{"url=https://a.example/?q=1", "url", "https://a.example/?q=1", false},
		{"empty=", "empty", "", false},
		{"=v", "", nil, true},
		{"novalue", "", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.arg, func(t *testing.T) {
			a := attrFlags{}
			err := a.Set(tc.arg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Set(%q) error %v, want error %v", tc.arg, err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(a[tc.key], tc.want) {
				t.Errorf("Set(%q) = %#v, want %#v", tc.arg, a[tc.key], tc.want)
			}
		})
	}
}

func TestActivityItem(t *testing.T) {
	tests := []struct {
		name string
		want map[string]any
	}{
		{"email.open", map[string]any{"type": "email", "action": "open"}},
		{"product.add_to_cart", map[string]any{"type": "product", "action": "add_to_cart"}},
		{"pageview", map[string]any{"type": "pageview"}},
		{"Opened email", map[string]any{"activity": "Opened email"}},
		{"Email.Open", map[string]any{"activity": "Email.Open"}},
		{"opened email", map[string]any{"activity": "opened email"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := activityItem(tc.name); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("activityItem(%q) = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
}
