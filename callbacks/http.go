package callbacks

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// Handler serves POST /v1/callbacks and GET and DELETE
// /v1/callbacks/{id}. It checks no credentials: main mounts it behind the
// API keys' scope callbacks.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/callbacks", s.handleSubmit)
	mux.HandleFunc("GET /v1/callbacks/{id}", s.handleGet)
	mux.HandleFunc("DELETE /v1/callbacks/{id}", s.handleCancel)
	mux.HandleFunc("/v1/callbacks", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", "POST")
		writeError(w, &Error{Status: http.StatusMethodNotAllowed, Msg: "use POST"})
	})
	mux.HandleFunc("/v1/callbacks/{id}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", "GET, DELETE")
		writeError(w, &Error{Status: http.StatusMethodNotAllowed, Msg: "use GET or DELETE"})
	})
	return mux
}

func (s *Service) handleSubmit(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "application/json") {
		writeError(w, &Error{Status: http.StatusUnsupportedMediaType, Msg: "the body must be JSON (Content-Type: application/json)"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			requestsTotal.WithLabelValues("invalid").Inc()
			writeError(w, &Error{Status: http.StatusRequestEntityTooLarge, Msg: "the body is larger than 16 KiB"})
			return
		}
		writeError(w, &Error{Status: http.StatusBadRequest, Msg: "could not read the body"})
		return
	}
	var req Request
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		requestsTotal.WithLabelValues("invalid").Inc()
		writeError(w, jsonError(err))
		return
	}
	if dec.More() {
		requestsTotal.WithLabelValues("invalid").Inc()
		writeError(w, &Error{Status: http.StatusBadRequest, Msg: "one JSON object expected, more found"})
		return
	}
	st, created, err := s.Submit(r.Context(), req)
	if err != nil {
		writeError(w, s.httpError(err))
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
		w.Header().Set("Location", "/v1/callbacks/"+st.ID)
	}
	writeJSON(w, code, st)
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	st, ok, err := s.Get(r.Context(), r.PathValue("id"))
	switch {
	case err != nil:
		writeError(w, s.httpError(err))
	case !ok:
		writeError(w, &Error{Status: http.StatusNotFound, Field: "id", Msg: "no such callback request"})
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

// handleCancel: 204 for a pending request (now cancelled); 202 with the
// status for one being dialled (no further attempt; the one under way goes
// on); 409 with the status for one that is over; 404 for none.
func (s *Service) handleCancel(w http.ResponseWriter, r *http.Request) {
	st, ok, err := s.Cancel(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, ErrTerminal):
		writeJSON(w, http.StatusConflict, struct {
			Error string `json:"error"`
			Status
		}{"the request is " + string(st.State) + ": nothing to cancel", st})
	case err != nil:
		writeError(w, s.httpError(err))
	case !ok:
		writeError(w, &Error{Status: http.StatusNotFound, Field: "id", Msg: "no such callback request"})
	case st.State == StateDialing:
		writeJSON(w, http.StatusAccepted, st)
	default:
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	}
}

// httpError turns err into what the client is told; a store failure is a
// 503 whose detail stays in the log.
func (s *Service) httpError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	s.storeWarn.Warn(s.log, "callbacks: request failed", "err", err)
	return &Error{Status: http.StatusServiceUnavailable, Msg: "callback requests are unavailable; try again later"}
}

// jsonError names what was wrong with the body.
func jsonError(err error) *Error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	msg := err.Error()
	switch {
	case errors.As(err, &te):
		return &Error{Status: http.StatusBadRequest, Field: te.Field, Msg: "must be a " + te.Type.String()}
	case errors.As(err, &se):
		return &Error{Status: http.StatusBadRequest, Msg: "the body is not valid JSON"}
	case strings.HasPrefix(msg, "json: unknown field "):
		f, _ := strconv.Unquote(strings.TrimPrefix(msg, "json: unknown field "))
		return &Error{Status: http.StatusBadRequest, Field: f, Msg: "unknown field (number, name, when, queue, note)"}
	case errors.Is(err, io.EOF):
		return &Error{Status: http.StatusBadRequest, Msg: "the body is empty: a JSON object expected"}
	}
	return &Error{Status: http.StatusBadRequest, Msg: "the body is not a valid JSON object"}
}

type errorJSON struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeError(w http.ResponseWriter, e *Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	writeJSON(w, e.Status, errorJSON{Error: e.Msg, Field: e.Field})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
