package call

import "strings"

// placeholderNames are caller names a PBX or carrier sends when it has none.
var placeholderNames = map[string]bool{
	"anonymous": true, "unknown": true, "unavailable": true, "restricted": true, "private": true,
	"withheld": true, "blocked": true, "no caller id": true, "out of area": true, "unknown caller": true,
}

// NetworkName is the caller name the PBX saw (CALLERID(name),
// caller_id_name, a carrier's CNAM), cleaned and at most 64 runes; "" when
// the network gave none: empty, a placeholder ("Anonymous", "unknown"), or
// a number (the caller's own, say). The caller's privacy is the caller's
// business: callers of NetworkName do not call it for a withheld number.
func NetworkName(name string) string {
	n := strings.TrimSpace(CleanValueN(name, 64))
	if n == "" || placeholderNames[strings.ToLower(n)] {
		return ""
	}
	if strings.Trim(n, "+0123456789 -().") == "" {
		return "" // a number, not a name
	}
	return n
}
