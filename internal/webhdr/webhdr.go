// Package webhdr sets the security headers of the pages callpop serves
// from the binary (the agent panel, the stats page): a strict
// Content-Security-Policy (only the page's own scripts, styles and
// connections), no sniffing, no referrer, no framing.
package webhdr

import "net/http"

// Set writes the headers into h.
func Set(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

// Wrap sets the headers on every answer of next.
func Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Set(w.Header())
		next.ServeHTTP(w, r)
	})
}
