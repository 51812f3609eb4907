package call

import "testing"

func TestCleanCallID(t *testing.T) {
	for in, want := range map[string]string{
		"1712345.67":                 "1712345.67",
		"ast-a/1712345.67":           "ast-a/1712345.67",
		"fs-b/2f1c-9a":               "fs-b/2f1c-9a",
		"ast a/17;12/34 5":           "asta/1712345",
		"/1712345.67":                "1712345.67",
		"ast-a/":                     "ast-a",
		"ast-a/${system(id)}":        "ast-a/systemid",
		"a/b/c":                      "a/bc",
		"ast-a/1712345.67\r\nX-A: b": "ast-a/1712345.67X-A:b",
	} {
		if got := CleanCallID(in); got != want {
			t.Errorf("CleanCallID(%q) = %q, want %q", in, got, want)
		}
	}
}
