package crm

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzHTTPDecode: any CRM body decodes to a customer with an id or a name, a
// miss, or an error; never a panic.
func FuzzHTTPDecode(f *testing.F) {
	for _, s := range []string{
		`{"id":"C1","name":"Jane Doe","tier":"vip"}`, `[{"id":1,"name":"x"}]`, `[]`, `{}`, `null`,
		`<html>500</html>`, `{"data":[{"attributes":{"full_name":"N"}}]}`, `{"id":"1","name":"a"} {"x":1}`,
		`{"id":{"x":[1,2,{"y":null}]},"name":["a"],"extra":1e400}`, "\xff\xfe", `{"name":"\u0000\u202e"}`,
	} {
		f.Add([]byte(s))
	}
	plain, err := newHTTPSource(SourceConfig{Name: "f", URL: "http://127.0.0.1/?p={e164}"}, quietLog())
	if err != nil {
		f.Fatal(err)
	}
	mapped, err := newHTTPSource(SourceConfig{Name: "f", URL: "http://127.0.0.1/?p={e164}",
		Fields: map[string]string{"id": "data.0.id", "name": "data.0.attributes.full_name", "phones": "data.0.phones"},
		Extra:  map[string]string{"x": "meta.x"}}, quietLog())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, s := range []*httpSource{plain, mapped} {
			c, err := decodeFirst(s, body)
			if err != nil {
				continue
			}
			if c == nil || (c.ID == "" && c.Name == "") {
				t.Fatalf("customer without id and name: %+v", c)
			}
			c = capCustomer(c)
			if len(c.Name) > maxFieldLen || len(c.ID) > maxFieldLen || len(c.Extra) > maxExtra {
				t.Fatalf("not capped: %+v", c)
			}
		}
	})
}

// FuzzCSVParse: any file parses or fails; every indexed number is E.164.
func FuzzCSVParse(f *testing.F) {
	f.Add([]byte(testCSV))
	f.Add(SampleCSV())
	f.Add([]byte("id,name,phones\n\"C1\",\"x\",\"+1 415 555 0123;;|\"\n"))
	f.Add([]byte("phones\n\"unterminated\n"))
	f.Add([]byte("id,name,phones,email\nC1,N,+14155550123, Jane@Example.COM \nC2,M,,not an address\n"))
	f.Add([]byte("\ufeffID,NAME,PHONES,extra\nC1,N,0201234567 +31 6 12345678,x,y,z\n"))
	s, err := newCSV("f", "", "NL", quietLog())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		idx, n, _, _, err := s.parse(bytes.NewReader(data))
		if err != nil {
			return
		}
		if n < 0 || (len(idx) > 0 && n == 0) {
			t.Fatalf("count %d with %d numbers", n, len(idx))
		}
		for num, c := range idx {
			if e, ok := strings.CutPrefix(num, emailKeyPrefix); ok {
				if n, err := NormalizeEmail(e); err != nil || n != e || c == nil {
					t.Fatalf("indexed %q → %+v (%v)", num, c, err)
				}
				continue
			}
			if len(num) < 3 || num[0] != '+' || c == nil {
				t.Fatalf("indexed %q → %+v", num, c)
			}
		}
	})
}

var _ = errors.New
