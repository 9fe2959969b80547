package salesforce

import (
	"context"
	"reflect"
	"testing"

	"github.com/relaydev/relay/connectors/salesforce/sftest"
)

// TestCheckAgainstDescribe: the mapping is checked against the object's
// describe: a field missing, one not writable, a type that cannot take
// the path, a fixed value too long or not in a restricted picklist, an
// external id field that is not one, a relate field that is no lookup —
// each at its path. A mapping the org takes has no problem.
func TestCheckAgainstDescribe(t *testing.T) {
	fake := newFake(t,
		sftest.WithObject("Task", "Relay_Id__c", "Subject", "Status", "Priority", "Type__c", "Occurred_At__c", "Formula__c", "WhoId"),
		sftest.WithPicklist("Status", true, "Not Started", "Completed"),
		sftest.WithMaxLength("Priority", 4),
		sftest.WithFieldType("Occurred_At__c", "boolean"),
		sftest.WithFieldType("WhoId", "reference"),
		sftest.WithReadOnly("Formula__c"))
	d := taskDestination(fake, "leave_unset")
	d.Fields = map[string]string{
		"Relay_Id__c": "id", "Subject": "name", "Status": `"Done"`, "Priority": `"Normal"`,
		"Occurred_At__c": "occurred_at", "Formula__c": "type", "Missing__c": "action",
	}
	s := newSink(t, d, nil)
	got, err := s.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []Problem{
		{"fields.Formula__c", "Task.Formula__c is not writable (createable false, updateable false): give the integration user edit access, or map another field"},
		{"fields.Missing__c", "no field Missing__c on Task (or the integration user cannot see it)"},
		{"fields.Occurred_At__c", "Task.Occurred_At__c is a boolean field; it cannot take a date-time"},
		{"fields.Priority", `"Normal" is longer than Task.Priority's 4 characters`},
		{"fields.Status", `"Done" is not a value of the restricted picklist Task.Status (Not Started, Completed)`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%q\nwant\n%q", got, want)
	}

	good := newFake(t, sftest.WithPicklist("Campaign__c", true, "bf"))
	if got, err := newSink(t, destination(good), nil).Check(context.Background()); err != nil || len(got) != 0 {
		t.Errorf("a mapping the org takes: %v %v", got, err)
	}
	d = destination(good)
	d.Object = "Nope__c"
	if got, _ := newSink(t, d, nil).Check(context.Background()); len(got) != 1 || got[0].Path != "object" {
		t.Errorf("unknown object: %v", got)
	}
}
