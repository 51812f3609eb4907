package bench

import (
	"strings"
	"testing"
)

// checkValidate sets each value with set and checks Validate accepts it (ok)
// or refuses it naming flag.
func checkValidate(t *testing.T, flag string, set func(*Options, string), values map[string]bool) {
	t.Helper()
	for v, ok := range values {
		o := DefaultOptions()
		set(&o, v)
		err := o.Validate()
		if ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), flag)) {
			t.Errorf("%s %q: err = %v", flag, v, err)
		}
	}
}

// The sidecar's GOMEMLIMIT is checked before anything starts: a value the Go
// runtime would refuse fails here with the flag's name, not as a child that
// dies at start.
func TestValidateSidecarMemLimit(t *testing.T) {
	checkValidate(t, "--sidecar-memlimit", func(o *Options, v string) { o.SidecarMemLimit = v }, map[string]bool{
		"": true, "48MiB": true, "1GiB": true, "67108864": true, "off": true,
		"48MB": false, "12xx": false, "-1MiB": false, "48 MiB": false})
}

// --redis takes host:port, several comma-separated for a cluster.
func TestValidateRedis(t *testing.T) {
	checkValidate(t, "--redis", func(o *Options, v string) { o.Redis = v }, map[string]bool{
		"": true, "127.0.0.1:6379": true, "[::1]:6379": true, "a:7000,b:7001,c:7002": true,
		"localhost": false, "a:7000,": false, "a:7000,,b:7001": false, "a:": false})
}

// --pbx names one simulator, or several distinct ones (not direct) to run at once.
func TestValidatePBX(t *testing.T) {
	checkValidate(t, "--pbx", func(o *Options, v string) { o.PBX = v }, map[string]bool{
		PBXAsterisk: true, PBXDirect: true, "asterisk,freeswitch-outbound": true, "freeswitch-inbound,asterisk,freeswitch-outbound": true,
		"asterisk,asterisk": false, "asterisk,direct": false, "asterisk,": false, "asterisk,pbx9": false, "": false})
}
