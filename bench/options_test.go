package bench

import (
	"strings"
	"testing"
)

// The sidecar's GOMEMLIMIT is checked before anything starts: a value the Go
// runtime would refuse fails here with the flag's name, not as a child that
// dies at start.
func TestValidateSidecarMemLimit(t *testing.T) {
	for v, ok := range map[string]bool{"": true, "48MiB": true, "1GiB": true, "67108864": true, "off": true,
		"48MB": false, "12xx": false, "-1MiB": false, "48 MiB": false} {
		o := DefaultOptions()
		o.SidecarMemLimit = v
		err := o.Validate()
		if ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), "--sidecar-memlimit")) {
			t.Errorf("%q: err = %v", v, err)
		}
	}
}
