// Package jsonbody reads the JSON body of an API request strictly and
// answers what was wrong with it, the same way on every endpoint that takes
// one (POST /v1/contacts, POST /v1/callbacks): {"error": …, "field": …}.
package jsonbody

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Error is what is wrong with a request: the HTTP status (400, 413, 415…),
// the JSON field it is about ("" for the body as a whole) and a message
// that never holds more than a short piece of the input.
type Error struct {
	Status int
	Field  string
	Msg    string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Decode reads r's body into v: at most max bytes (413), Content-Type
// application/json or none (415), valid UTF-8, one JSON value with no field
// v does not have (400, naming the field where it can).
func Decode(w http.ResponseWriter, r *http.Request, max int64, v any) *Error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return &Error{Status: http.StatusUnsupportedMediaType, Msg: "the body must be JSON (Content-Type: application/json)"}
		}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("larger than %d bytes (%d KiB)", max, max>>10)}
		}
		return &Error{Status: http.StatusBadRequest, Msg: "could not be read"}
	}
	if !utf8.Valid(raw) {
		return &Error{Status: http.StatusBadRequest, Msg: "not valid UTF-8"}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return &Error{Status: http.StatusBadRequest, Msg: "one JSON object only"}
	}
	return nil
}

// decodeError names what the decoder refused.
func decodeError(err error) *Error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		return &Error{Status: http.StatusBadRequest, Field: clip(typeErr.Field, 32), Msg: "must be a " + typeErr.Type.Kind().String()}
	case errors.As(err, &syntaxErr):
		return &Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf("not valid JSON (at byte %d)", syntaxErr.Offset)}
	case errors.Is(err, io.EOF):
		return &Error{Status: http.StatusBadRequest, Msg: "empty: a JSON object expected"}
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		f = clip(strings.Trim(f, `"`), 40)
		return &Error{Status: http.StatusBadRequest, Field: f, Msg: "unknown field " + f}
	}
	return &Error{Status: http.StatusBadRequest, Msg: "not a valid JSON object"}
}

// clip keeps at most n bytes of s, letters, digits and . _ - only: a field
// name as the client sent it, safe in an answer and a log.
func clip(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		if c := s[i]; c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// WriteError answers {"error": msg, "field": field} (field left out when
// "") with status; never cached, never sniffed.
func WriteError(w http.ResponseWriter, status int, field, msg string) {
	WriteJSON(w, status, struct {
		Error string `json:"error"`
		Field string `json:"field,omitempty"`
	}{msg, field})
}

// WriteJSON answers v as JSON with status; never cached, never sniffed.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
