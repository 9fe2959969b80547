package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relaydev/relay/connectors/salesforce/sftest"
)

// TestValidateRemote: validate --remote describes the Salesforce object
// and reports each field the org would refuse at its line and column; a
// mapping the org takes is ok.
func TestValidateRemote(t *testing.T) {
	fake := sftest.New(t, sftest.WithPicklist("Campaign__c", true, "bf", "xmas"), sftest.WithReadOnly("Total__c"))
	write := func(fields string) string {
		yaml := fmt.Sprintf(`ingest: {tokens: [t]}
admin: {token: a}
destinations:
  - name: sf
    type: salesforce
    allow_private_network: true
    instance_url: %s
    auth: {token_url: %s, client_id: client-id, client_secret: client-secret}
    object: Activity__c
    external_id_field: Relay_Id__c
    fields:
      Relay_Id__c: id
%s`, fake.URL, fake.TokenURL(), fields)
		path := filepath.Join(t.TempDir(), "relay.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	bad := write("      Campaign__c: '\"summer\"'\n      Total__c: attributes.total\n      Nope__c: name\n")
	code, out, errOut := runCLI(t, "validate", "--remote", "-c", bad)
	want := []string{
		bad + `:13:20: destinations[0].fields.Campaign__c: "summer" is not a value of the restricted picklist Activity__c.Campaign__c (bf, xmas)`,
		bad + `:14:17: destinations[0].fields.Total__c: Activity__c.Total__c is not writable`,
		bad + `:15:16: destinations[0].fields.Nope__c: no field Nope__c on Activity__c`,
	}
	if code != 1 || out != "" {
		t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errOut)
		}
	}
	good := write("      Campaign__c: '\"bf\"'\n      Type__c: name\n")
	if code, out, errOut := runCLI(t, "validate", "--remote", "-c", good); code != 0 || !strings.HasSuffix(out, ": ok (1 destination)\n") {
		t.Errorf("a mapping the org takes: exit %d, %q, %q", code, out, errOut)
	}
	if code, _, _ := runCLI(t, "validate", "-c", bad); code != 0 {
		t.Errorf("without --remote the org is not asked: exit %d", code)
	}
}
